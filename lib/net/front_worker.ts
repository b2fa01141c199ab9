/**
 * The front door's thread (lib/net/front.ts): it owns the public ports,
 * tells each new connection's protocol apart, and relays its bytes to the
 * pod's internal listener for that protocol, both on 127.0.0.1:
 *
 * - an HTTP/2 connection (the 24-byte client preface on cleartext, ALPN
 *   `h2` under TLS) → the pod's node:http2 server (gRPC and HTTP/2 REST);
 * - anything else (HTTP/1.x) → the pod's Deno.serve.
 *
 * Relaying here, off the main thread, is what keeps HTTP's cost low: the
 * same relay on the main thread cost 25-30 % of the request rate
 * (docs/grpc-notes.md). TLS ends here too. Half-closes are passed on, so
 * the servers behind see a client's end-of-file as they would directly.
 */
/// <reference lib="deno.worker" />
import type { FrontCommand, FrontEvent, FrontListen } from "./front.ts";
import { descriptorUse, HEADROOM } from "./listener.ts";
import { classify } from "./preface.ts";

/** Relay buffers start small (many idle connections) and grow with the traffic. */
const MIN_BUFFER = 4 * 1024;
const MAX_BUFFER = 64 * 1024;
/** Out of descriptors: how often to look whether enough are free to listen again. */
const RETRY_MS = 250;

interface Listening {
  readonly spec: FrontListen;
  listener: Deno.Listener;
  conns: Set<Deno.Conn>;
  stopped: boolean;
}

const listening = new Map<number, Listening>();

function post(e: FrontEvent): void {
  self.postMessage(e);
}

self.onmessage = (e: MessageEvent<FrontCommand>) => {
  const c = e.data;
  if (c.op === "listen") listen(c);
  else if (c.op === "stop") stop(c.id);
  else if (c.op === "drop") drop(c.id);
};

function open(spec: FrontListen, port: number): Deno.Listener {
  return spec.tls
    ? Deno.listenTls({
      hostname: spec.hostname,
      port,
      cert: spec.tls.cert,
      key: spec.tls.key,
      alpnProtocols: ["h2", "http/1.1"],
    })
    : Deno.listen({ hostname: spec.hostname, port });
}

function listen(spec: FrontListen): void {
  let listener: Deno.Listener;
  try {
    listener = open(spec, spec.port);
  } catch (err) {
    post({ op: "error", id: spec.id, message: (err as Error).message });
    return;
  }
  const l: Listening = { spec, listener, conns: new Set(), stopped: false };
  listening.set(spec.id, l);
  post({ op: "listening", id: spec.id, port: (listener.addr as Deno.NetAddr).port });
  acceptLoop(l);
}

/**
 * Accepts until stopped. Out of descriptors (EMFILE), the listener is
 * closed, so new clients are refused rather than left in the backlog, and
 * opened again on the same port once enough descriptors are free: Deno
 * panics when one of its own threads cannot get a descriptor, so the
 * process must not sit at the limit.
 */
async function acceptLoop(l: Listening): Promise<void> {
  while (!l.stopped) {
    let conn: Deno.Conn;
    try {
      conn = await l.listener.accept();
    } catch (err) {
      if (l.stopped) return;
      const port = (l.listener.addr as Deno.NetAddr).port;
      try {
        l.listener.close();
      } catch {
        // already closed
      }
      post({ op: "paused", id: l.spec.id, message: String(err), ...descriptorUse() });
      l.listener = await reopen(l, port);
      if (l.stopped) return;
      post({ op: "resumed", id: l.spec.id, ...descriptorUse() });
      continue;
    }
    l.conns.add(conn);
    serve(l, conn).finally(() => {
      l.conns.delete(conn);
      drainedYet(l);
    });
  }
}

async function reopen(l: Listening, port: number): Promise<Deno.Listener> {
  for (;;) {
    await new Promise((r) => setTimeout(r, RETRY_MS));
    if (l.stopped) return l.listener;
    const use = descriptorUse();
    if (use && use.open > use.limit - HEADROOM) continue;
    try {
      return open(l.spec, port);
    } catch {
      // not yet
    }
  }
}

/**
 * Stops accepting; the connections already relayed go on, and "drained"
 * is posted once the last one has ended.
 */
function stop(id: number): void {
  const l = listening.get(id);
  if (!l) return post({ op: "drained", id });
  if (!l.stopped) {
    l.stopped = true;
    try {
      l.listener.close();
    } catch {
      // already closed
    }
  }
  post({ op: "stopped", id });
  drainedYet(l);
}

function drainedYet(l: Listening): void {
  if (!l.stopped || l.conns.size > 0 || !listening.has(l.spec.id)) return;
  listening.delete(l.spec.id);
  post({ op: "drained", id: l.spec.id });
}

/** Closes whatever is still open on that listener (shutdown past its deadline). */
function drop(id: number): void {
  const l = listening.get(id);
  if (!l) return;
  stop(id);
  for (const c of l.conns) close(c);
}

function close(c: Deno.Conn): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}

/** Reads with a deadline; null on end-of-file or when the deadline passes first. */
async function readWithin(conn: Deno.Conn, buf: Uint8Array, ms: number): Promise<number | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<null>((r) => timer = setTimeout(() => r(null), ms));
  try {
    return await Promise.race([conn.read(buf), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function serve(l: Listening, conn: Deno.Conn): Promise<void> {
  const { spec } = l;
  let up: Deno.TcpConn | null = null;
  try {
    let h2: boolean;
    let first: Uint8Array;
    if (spec.tls) {
      const hs = await Promise.race([
        (conn as Deno.TlsConn).handshake(),
        new Promise<null>((r) => setTimeout(() => r(null), spec.firstByteMs)),
      ]);
      if (hs === null) return close(conn);
      h2 = hs.alpnProtocol === "h2";
      first = new Uint8Array(0);
    } else {
      const seen = await sniff(conn, spec.firstByteMs);
      if (seen === null) return close(conn);
      [h2, first] = seen;
    }
    up = await Deno.connect({ hostname: "127.0.0.1", port: h2 ? spec.h2Port : spec.http1Port });
    up.setNoDelay(true);
    if (!spec.tls) (conn as Deno.TcpConn).setNoDelay(true);
    if (first.length > 0) await writeAll(up, first);
    // The client's end-of-file is passed on as a half-close (a request may
    // still be answered); the server's ends the connection, as it would
    // have directly.
    relay(conn, up).catch(() => close(conn));
    await relay(up, conn);
  } catch {
    // A reset or a failed connect: both ends are closed below.
  } finally {
    close(conn);
    if (up) close(up);
  }
}

/**
 * Reads until the bytes tell HTTP/2's preface from anything else: [h2,
 * bytes read]; null when the client sends nothing within `ms` or hangs up.
 */
async function sniff(conn: Deno.Conn, ms: number): Promise<[boolean, Uint8Array] | null> {
  const buf = new Uint8Array(MIN_BUFFER);
  let have = 0;
  const deadline = performance.now() + ms;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) return null;
    const n = await readWithin(conn, buf.subarray(have), left);
    if (n === null) return null;
    have += n;
    const kind = classify(buf, have);
    if (kind !== "more") return [kind === "h2", buf.slice(0, have)];
  }
}

async function writeAll(to: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await to.write(bytes.subarray(off));
}

/** Copies `from` → `to` until end-of-file, then half-closes `to`. */
async function relay(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  let buf = new Uint8Array(MIN_BUFFER);
  for (;;) {
    const n = await from.read(buf);
    if (n === null) break;
    await writeAll(to, buf.subarray(0, n));
    if (n === buf.length && buf.length < MAX_BUFFER) buf = new Uint8Array(buf.length * 2);
  }
  await to.closeWrite().catch(() => {});
}

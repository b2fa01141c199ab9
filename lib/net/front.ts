/**
 * The front door: HTTP/1.x, HTTP/2 REST and gRPC on one public port.
 *
 * `Deno.serve` answers HTTP/2 but cannot send the trailers gRPC ends every
 * call with, and it only serves connections it accepted itself. So the
 * port is accepted here, and each connection is told apart before anyone
 * parses it:
 *
 * - under TLS by ALPN, which reads no application byte: `h2` goes to the
 *   pod's node:http2 server (lib/net/h2_server.ts), anything else straight
 *   to Deno's own HTTP server for that one connection (the runtime's
 *   internal `serveHttpOnConnection`, what Deno.serve runs per connection);
 * - in cleartext by its first bytes (lib/net/preface.ts): HTTP/2's preface
 *   goes to the node:http2 server with those bytes; HTTP/1.x has its first
 *   request(s) served from the bytes in hand (lib/net/http1_first.ts) and
 *   is then handed to Deno's server.
 *
 * Nothing is relayed: after the first request a connection costs what it
 * costs under Deno.serve (a relay cost 25-30 % of the request rate on the
 * main thread, and on a worker thread a core's worth of CPU at 1 000
 * streams: docs/grpc-notes.md).
 */
import type { Logger } from "../log.ts";
import type { H2Server } from "./h2_server.ts";
import { type HangUpWatch, type Http1Handler, Input, serveBuffered } from "./http1_first.ts";
import { descriptorUse, HEADROOM } from "./listener.ts";
import { classify } from "./preface.ts";

/** Out of descriptors: how often to look whether enough are free to listen again. */
const RETRY_MS = 250;

interface ServeOnConnection {
  (
    conn: Deno.Conn,
    signal: AbortSignal | undefined,
    handler: Http1Handler,
    onError: (e: unknown) => Response | Promise<Response>,
    onListen: (scheme: string) => void,
  ): { finished: Promise<void>; shutdown(): Promise<void> };
}

/**
 * Deno's per-connection HTTP server (the one Deno.serve runs for each
 * connection it accepts), or null in a runtime without it.
 */
function denoServeOnConnection(): ServeOnConnection | null {
  const d = Deno as unknown as { internal?: symbol } & Record<symbol, Record<string, unknown>>;
  const f = d.internal ? d[d.internal]?.serveHttpOnConnection : undefined;
  return typeof f === "function" ? f as ServeOnConnection : null;
}

/** Why the front door cannot run in this runtime, or null when it can. */
export function frontUnavailable(): string | null {
  return denoServeOnConnection()
    ? null
    : `Deno ${Deno.version.deno} has no internal serveHttpOnConnection`;
}

export interface FrontOptions {
  hostname: string;
  port: number;
  tls?: { cert: string; key: string };
  /** The pod's route table, for HTTP/1.x. */
  http1: Http1Handler;
  onError: (e: unknown) => Response | Promise<Response>;
  /** The pod's HTTP/2 server; null: HTTP/2 connections are closed (a gRPC-only port has no HTTP/1.x either). */
  h2: H2Server | null;
  /** false: HTTP/1.x connections are closed (a gRPC-only port). */
  serveHttp1?: boolean;
  /** A connection that has not shown its protocol by then is closed (slowloris). */
  firstByteMs: number;
  /** Tells when a client whose first request is answered here hangs up. */
  watchHangUp?: HangUpWatch;
  log: Logger;
}

/** One public port. */
export interface FrontPort {
  readonly port: number;
  /** Stops accepting (resolves once the port is free); connections go on until their answers end. */
  stop(): Promise<void>;
  /** Stopped, then every HTTP/1.x connection drained as Deno.serve's shutdown drains. */
  drained(): Promise<void>;
  /** Closes every connection still open. */
  drop(): void;
}

export function openFront(opts: FrontOptions): FrontPort {
  const serveOn = denoServeOnConnection();
  if (!serveOn) throw new Error(frontUnavailable()!);
  const open = (port: number): Deno.Listener =>
    opts.tls
      ? Deno.listenTls({
        hostname: opts.hostname,
        port,
        cert: opts.tls.cert,
        key: opts.tls.key,
        alpnProtocols: opts.h2 ? ["h2", "http/1.1"] : ["http/1.1"],
      })
      : Deno.listen({ hostname: opts.hostname, port });
  let listener = open(opts.port);
  const port = (listener.addr as Deno.NetAddr).port;
  let stopped = false;
  /** Aborted when the port stops: connections idle in the front door's hands close. */
  const stopping = new AbortController();
  /** Connections not yet handed over (sniffing, or their first requests here). */
  const own = new Set<Deno.Conn>();
  /** Those that have not shown their protocol yet. */
  const sniffing = new Set<Deno.Conn>();
  /** Deno's servers of the connections handed over. */
  const served = new Set<{ finished: Promise<void>; shutdown(): Promise<void> }>();
  const settled = new Set<Promise<unknown>>();
  const scheme = opts.tls ? "https" : "http";

  const close = (c: Deno.Conn) => {
    try {
      c.close();
    } catch {
      // already closed
    }
  };

  const handOver = (conn: Deno.Conn) => {
    const server = serveOn(conn, undefined, opts.http1, opts.onError, () => {});
    served.add(server);
    server.finished.catch(() => {}).finally(() => served.delete(server));
    if (stopped) server.shutdown().catch(() => {});
  };

  const serve = async (conn: Deno.Conn) => {
    sniffing.add(conn);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<null>((r) => timer = setTimeout(() => r(null), opts.firstByteMs));
    try {
      if (opts.tls) {
        const hs = await Promise.race([(conn as Deno.TlsConn).handshake(), late]);
        clearTimeout(timer);
        sniffing.delete(conn);
        if (hs === null) return close(conn);
        if (hs.alpnProtocol === "h2") {
          if (!opts.h2) return close(conn);
          own.delete(conn);
          return opts.h2.accept(conn, new Uint8Array(0));
        }
        if (opts.serveHttp1 === false) return close(conn);
        own.delete(conn);
        return handOver(conn);
      }
      (conn as Deno.TcpConn).setNoDelay(true);
      // Read until the bytes decide (a strict prefix of the preface needs more).
      const input = new Input(conn, new Uint8Array(0));
      for (;;) {
        if (!await Promise.race([input.fill(), late.then(() => false)])) {
          clearTimeout(timer);
          return close(conn);
        }
        const have = input.view();
        const kind = classify(have);
        if (kind === "more") continue;
        clearTimeout(timer);
        sniffing.delete(conn);
        if (kind === "h2") {
          if (!opts.h2) return close(conn);
          own.delete(conn);
          return opts.h2.accept(conn, have);
        }
        if (opts.serveHttp1 === false) return close(conn);
        if (
          await serveBuffered(conn, input, opts.http1, scheme, opts.watchHangUp, stopping.signal)
        ) {
          own.delete(conn);
          if (stopped) return close(conn);
          handOver(conn);
        }
        return;
      }
    } catch {
      close(conn);
    } finally {
      clearTimeout(timer);
      sniffing.delete(conn);
      own.delete(conn);
    }
  };

  const reopen = async (): Promise<boolean> => {
    for (;;) {
      await new Promise((r) => setTimeout(r, RETRY_MS));
      if (stopped) return false;
      const use = descriptorUse();
      if (use && use.open > use.limit - HEADROOM) continue;
      try {
        listener = open(port);
        opts.log.info("listening again", { port, ...use });
        return true;
      } catch {
        // not yet
      }
    }
  };

  const acceptLoop = async () => {
    while (!stopped) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (stopped) return;
        // Out of descriptors (EMFILE): close the port, so new clients are
        // refused rather than left in the backlog, and open it again once
        // enough are free: Deno panics when one of its own threads cannot
        // get a descriptor, so the process must not sit at the limit.
        try {
          listener.close();
        } catch {
          // already closed
        }
        opts.log.error(
          "the listener stopped accepting connections; it listens again once " +
            "descriptors are free",
          { port, error: String(e), ...descriptorUse() },
        );
        if (!await reopen()) return;
        continue;
      }
      own.add(conn);
      const p = serve(conn);
      settled.add(p);
      p.finally(() => settled.delete(p));
    }
  };
  const accepting = acceptLoop();

  const stop = async () => {
    if (!stopped) {
      stopped = true;
      stopping.abort();
      try {
        listener.close();
      } catch {
        // already closed
      }
    }
    // The pending accept holds the socket until it has failed.
    await accepting;
  };
  return {
    port,
    stop,
    async drained() {
      await stop();
      // Connections still sniffing have sent no request: nothing to finish.
      for (const c of sniffing) close(c);
      await Promise.all([...settled].map((p) => p.catch(() => {})));
      await Promise.all([...served].map((s) => s.shutdown().catch(() => {})));
    },
    drop() {
      stop();
      for (const c of own) close(c);
      for (const s of served) s.shutdown().catch(() => {});
    },
  };
}

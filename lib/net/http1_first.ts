/**
 * The HTTP/1.x requests of a connection whose first bytes the front door
 * read to tell its protocol (lib/net/front.ts). Those bytes cannot be given
 * back to the kernel, so Deno's server cannot parse them: they are served
 * here, and at the first request boundary with nothing left in hand the
 * connection goes to Deno's server for the rest of its life. Usually that
 * is one request per connection.
 *
 * The answers are written as Deno.serve writes them (status line, the
 * headers, content-length or chunked, date), except that header names come
 * in the Headers object's sorted order.
 */
import { STATUS_CODES } from "node:http";

export type Http1Handler = (
  req: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

/** Watches a client's connection while its answer is pending: the signal aborts when it is gone. */
export type HangUpWatch = (client: Deno.NetAddr) => { signal: AbortSignal; release(): void };

/** A request head larger than this is refused (431), as hyper's limit does. */
const MAX_HEAD = 64 * 1024;
/** A body the handler left unread is skipped up to this size; beyond it the connection closes. */
const MAX_SKIP = 1 << 20;
const enc = new TextEncoder();
const dec = new TextDecoder("latin1");

/**
 * Bytes read from a connection and not yet used. A read into an empty
 * buffer is small: idle connections (thousands, each waiting on a read)
 * hold only that, and what arrives then is usually one request head.
 */
export class Input {
  #buf: Uint8Array;
  #start = 0;
  #end: number;
  constructor(private readonly conn: Deno.Conn, first: Uint8Array) {
    this.#buf = first;
    this.#end = first.length;
  }

  get size(): number {
    return this.#end - this.#start;
  }

  view(): Uint8Array {
    return this.#buf.subarray(this.#start, this.#end);
  }

  take(n: number): Uint8Array<ArrayBuffer> {
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  #reading: Promise<boolean> | null = null;

  /**
   * Reads more from the connection; false at end-of-file. Calls made while
   * a read is pending share it (one read at a time on a socket).
   */
  fill(): Promise<boolean> {
    this.#reading ??= this.#read().finally(() => this.#reading = null);
    return this.#reading;
  }

  async #read(): Promise<boolean> {
    const chunk = new Uint8Array(this.size === 0 ? 2048 : 16 * 1024);
    const n = await this.conn.read(chunk);
    if (n === null) return false;
    const have = this.view();
    let next = chunk.subarray(0, n);
    if (have.length > 0) {
      next = new Uint8Array(have.length + n);
      next.set(have);
      next.set(chunk.subarray(0, n), have.length);
    }
    this.#buf = next;
    this.#start = 0;
    this.#end = next.length;
    return true;
  }
}

class BadRequest extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

interface Head {
  method: string;
  target: string;
  minor: number;
  headers: [string, string][];
}

function indexOfHeadEnd(b: Uint8Array): number {
  for (let i = 3; i < b.length; i++) {
    if (b[i] === 10 && b[i - 1] === 13 && b[i - 2] === 10 && b[i - 3] === 13) return i + 1;
  }
  return -1;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function parseHead(text: string): Head {
  const lines = text.split("\r\n");
  const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP\/1\.([01])$/.exec(lines[0]);
  if (!m) throw new BadRequest(400, "bad request line");
  const headers: [string, string][] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    if (line === "") continue;
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) throw new BadRequest(400, "bad header");
    headers.push([name.toLowerCase(), line.slice(colon + 1).trim()]);
  }
  return { method: m[1], target: m[2], minor: Number(m[3]), headers };
}

/** The request body as a stream of its bytes (content-length or chunked), read on demand. */
function bodyStream(input: Input, framing: { length: number } | "chunked"): {
  stream: ReadableStream<Uint8Array>;
  /** Reads and drops what the handler left; false when too much is left or the client left. */
  skipRest(): Promise<boolean>;
} {
  let left = framing === "chunked" ? 0 : framing.length;
  let chunkLeft = 0;
  let done = framing !== "chunked" && left === 0;
  /** Up to `max` body bytes, or null at its end. */
  const next = async (max: number): Promise<Uint8Array | null> => {
    if (done) return null;
    if (framing !== "chunked") {
      while (input.size === 0) if (!await input.fill()) throw new BadRequest(400, "body cut short");
      const part = input.take(Math.min(input.size, left, max));
      left -= part.length;
      if (left === 0) done = true;
      return part;
    }
    if (chunkLeft === 0) {
      // A chunk-size line (extensions ignored), or the last chunk and its trailers.
      let eol: number;
      while ((eol = lineEnd(input.view())) < 0) {
        if (input.size > 4096 || !await input.fill()) throw new BadRequest(400, "bad chunk");
      }
      const size = parseInt(dec.decode(input.take(eol)).split(";")[0].trim(), 16);
      input.take(2);
      if (!Number.isFinite(size) || size < 0) throw new BadRequest(400, "bad chunk size");
      if (size === 0) {
        // Trailers, up to the empty line.
        for (;;) {
          while ((eol = lineEnd(input.view())) < 0) {
            if (input.size > MAX_HEAD || !await input.fill()) {
              throw new BadRequest(400, "bad trailer");
            }
          }
          input.take(eol + 2);
          if (eol === 0) break;
        }
        done = true;
        return null;
      }
      chunkLeft = size;
    }
    while (input.size === 0) if (!await input.fill()) throw new BadRequest(400, "body cut short");
    const part = input.take(Math.min(input.size, chunkLeft, max));
    chunkLeft -= part.length;
    if (chunkLeft === 0) {
      while (input.size < 2) if (!await input.fill()) throw new BadRequest(400, "body cut short");
      input.take(2);
    }
    return part;
  };
  const stream = new ReadableStream<Uint8Array>({
    async pull(c) {
      try {
        const part = await next(64 * 1024);
        if (part === null) c.close();
        else c.enqueue(part);
      } catch (e) {
        c.error(e);
      }
    },
  });
  return {
    stream,
    async skipRest() {
      let skipped = 0;
      try {
        for (;;) {
          const part = await next(64 * 1024);
          if (part === null) return true;
          skipped += part.length;
          if (skipped > MAX_SKIP) return false;
        }
      } catch {
        return false;
      }
    },
  };
}

function lineEnd(b: Uint8Array): number {
  for (let i = 1; i < b.length; i++) if (b[i] === 10 && b[i - 1] === 13) return i - 1;
  return -1;
}

let dateSecond = 0;
let dateText = "";
/** The date header's value, made once a second as servers do. */
function httpDate(): string {
  const now = Math.floor(Date.now() / 1000);
  if (now !== dateSecond) {
    dateSecond = now;
    dateText = new Date(now * 1000).toUTCString();
  }
  return dateText;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of parts) {
    out.set(p, n);
    n += p.length;
  }
  return out;
}

/**
 * One chunk of a chunked body in one buffer: hex size, CRLF, the bytes,
 * CRLF; written into `into` when it is large enough (one buffer per answer,
 * reused once each write is done: no allocation per frame).
 */
function chunkFrame(value: Uint8Array, into: Uint8Array): Uint8Array {
  let digits = 1;
  while (value.length >= 16 ** digits) digits++;
  const size = digits + 2 + value.length + 2;
  const out = size <= into.length ? into.subarray(0, size) : new Uint8Array(size);
  for (let i = digits - 1, v = value.length; i >= 0; i--, v = Math.floor(v / 16)) {
    const d = v % 16;
    out[i] = d < 10 ? 48 + d : 87 + d;
  }
  out[digits] = 13;
  out[digits + 1] = 10;
  out.set(value, digits + 2);
  out[out.length - 2] = 13;
  out[out.length - 1] = 10;
  return out;
}

function headText(minor: number, res: Response, framing: string): string {
  let head = `HTTP/1.${minor} ${res.status} ${
    res.statusText || STATUS_CODES[res.status] || ""
  }\r\n`;
  res.headers.forEach((v, k) => {
    if (k !== "content-length" && k !== "transfer-encoding") {
      head += `${k}: ${v}\r\n`;
    }
  });
  return `${head}${framing}date: ${httpDate()}\r\n\r\n`;
}

/** Writes a Response; false when the client went away. */
async function writeResponse(
  conn: Deno.Conn,
  minor: number,
  method: string,
  res: Response,
  gone?: AbortSignal,
  flowing?: () => void,
): Promise<boolean> {
  const bodiless = method === "HEAD" || res.status < 200 || res.status === 204 ||
    res.status === 304;
  const streamed = !bodiless && minor === 1 &&
    (res.headers.get("content-type") ?? "").startsWith("text/event-stream");
  try {
    if (!streamed) {
      const body = res.body ? new Uint8Array(await res.arrayBuffer()) : new Uint8Array(0);
      const length = res.status === 204 || res.status === 304
        ? ""
        : `content-length: ${body.length}\r\n`;
      const head = enc.encode(headText(minor, res, length));
      await writeAll(conn, bodiless ? head : concat([head, body]));
      return true;
    }
    await writeAll(conn, enc.encode(headText(minor, res, "transfer-encoding: chunked\r\n")));
    const reader = res.body!.getReader();
    const frameBuf = new Uint8Array(1024);
    // The client hung up: the stream is cancelled, as Deno.serve cancels it.
    const hangUp = () =>
      reader.cancel(new DOMException("client went away", "AbortError")).catch(() => {});
    gone?.addEventListener("abort", hangUp, { once: true });
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (value.length === 0) continue;
        await writeAll(conn, chunkFrame(value, frameBuf));
        flowing?.();
      }
    } catch (e) {
      await reader.cancel(e).catch(() => {});
      return false;
    } finally {
      gone?.removeEventListener("abort", hangUp);
    }
    if (gone?.aborted) return false;
    await writeAll(conn, enc.encode("0\r\n\r\n"));
    return true;
  } catch {
    await res.body?.cancel().catch(() => {});
    return false;
  }
}

/**
 * Serves requests while bytes that were read are in hand. Resolves true at
 * a request boundary with nothing in hand and the connection kept alive
 * (hand it over), false once the connection is closed.
 */
export async function serveBuffered(
  conn: Deno.Conn,
  input: Input,
  handler: Http1Handler,
  scheme: "http" | "https",
  watchHangUp?: HangUpWatch,
  /** Aborted at shutdown: a connection idle between requests is closed then. */
  stopping?: AbortSignal,
): Promise<boolean> {
  /** The read left pending during the first answer (see below), and whether it was waited for. */
  let pendingRead: Promise<boolean> | null = null;
  let readDone = false;
  const close = () => {
    try {
      conn.close();
    } catch {
      // already closed
    }
    return false;
  };
  const refuse = async (status: number) => {
    const res = new Response(null, { status, headers: { connection: "close" } });
    await writeResponse(conn, 1, "GET", res).catch(() => {});
    return close();
  };
  while (input.size > 0) {
    let end: number;
    while ((end = indexOfHeadEnd(input.view())) < 0) {
      if (input.size > MAX_HEAD) return await refuse(431);
      if (!await input.fill().catch(() => false)) return close();
    }
    if (end > MAX_HEAD) return await refuse(431);
    let head: Head;
    try {
      head = parseHead(dec.decode(input.take(end - 4)));
      input.take(4);
    } catch {
      return await refuse(400);
    }
    const get = (name: string) => head.headers.find(([k]) => k === name)?.[1];
    const te = get("transfer-encoding");
    const cl = get("content-length");
    let framing: { length: number } | "chunked";
    if (te !== undefined) {
      if (te.toLowerCase() !== "chunked" || cl !== undefined) return await refuse(400);
      framing = "chunked";
    } else if (cl !== undefined) {
      if (!/^\d{1,15}$/.test(cl)) return await refuse(400);
      framing = { length: Number(cl) };
    } else framing = { length: 0 };
    const connection = (get("connection") ?? "").toLowerCase();
    const keepAlive = head.minor === 1
      ? !connection.includes("close")
      : connection.includes("keep-alive");
    const hasBody = framing === "chunked" || framing.length > 0;
    if (hasBody && (get("expect") ?? "").toLowerCase() === "100-continue" && input.size === 0) {
      await writeAll(conn, enc.encode("HTTP/1.1 100 Continue\r\n\r\n")).catch(() => {});
    }
    // A body all in hand goes to the Request as bytes: read through a JS
    // stream, it made every later request's body and stream code dearer
    // (the runtime's shared stream code then serves two kinds of reader).
    const bodyInHand = framing !== "chunked" && input.size >= framing.length;
    const bytes = hasBody && framing !== "chunked" && bodyInHand
      ? input.take(framing.length)
      : null;
    const body = hasBody && !bytes ? bodyStream(input, framing) : null;
    const gone = new AbortController();
    let req: Request;
    try {
      // The Host header goes to the router as sent (it judges it); the URL
      // falls back to localhost when the header cannot be part of one.
      let url = head.target.startsWith("/")
        ? `${scheme}://${get("host") || "localhost"}${head.target}`
        : head.target;
      try {
        new URL(url);
      } catch {
        url = `${scheme}://localhost${head.target.startsWith("/") ? head.target : "/"}`;
      }
      req = new Request(url, {
        method: head.method,
        headers: head.headers,
        body: head.method === "GET" || head.method === "HEAD" ? undefined : bytes ?? body?.stream,
        signal: gone.signal,
      });
    } catch {
      return await refuse(400);
    }
    let sent!: () => void;
    const completed = new Promise<void>((r) => sent = r);
    // A hang-up while the answer is pending. On the connection's first
    // answer, when its body is all in hand, a read stays pending and tells
    // at once, as Deno's server would (bytes it brings, the next request,
    // are kept; the connection is handed over only after that request,
    // since a pending read cannot be withdrawn). Otherwise nothing may read
    // the socket and the caller's watcher tells (the kernel's TCP table).
    let watch: ReturnType<HangUpWatch> | undefined;
    if (pendingRead === null && bodyInHand) {
      pendingRead = input.fill().then((more) => {
        if (!more) gone.abort();
        return more;
      }, () => {
        gone.abort();
        return false;
      });
    } else {
      watch = watchHangUp?.(conn.remoteAddr as Deno.NetAddr);
      watch?.signal.addEventListener("abort", () => gone.abort(), { once: true });
    }
    let res: Response;
    try {
      res = await handler(req, {
        remoteAddr: conn.remoteAddr as Deno.NetAddr,
        completed,
      });
    } catch {
      res = new Response(null, { status: 500 });
    }
    // Once a stream's bytes flow, a failed write tells a hang-up: the watch
    // (a scan of the TCP table while any is registered) is let go.
    let watching = watch !== undefined;
    const ok = await writeResponse(conn, head.minor, head.method, res, gone.signal, () => {
      if (!watching) return;
      watching = false;
      watch!.release();
    });
    watch?.release();
    sent();
    if (!ok || gone.signal.aborted) {
      gone.abort();
      return close();
    }
    if (body && !await body.skipRest()) return close();
    const closing = (res.headers.get("connection") ?? "").toLowerCase().includes("close");
    if (!keepAlive || closing) return close();
    if (pendingRead !== null && !readDone && input.size === 0) {
      // The read still owns the socket: the next request (or the end) comes
      // through it; a shutdown closes the connection idle meanwhile.
      readDone = true;
      if (stopping?.aborted) return close();
      const stop = new Promise<false>((r) =>
        stopping?.addEventListener("abort", () => r(false), { once: true })
      );
      if (!await Promise.race([pendingRead, stop])) return close();
    }
  }
  return true;
}

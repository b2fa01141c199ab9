/**
 * A small HTTP/1.1 keep-alive load generator, used by bench/run.ts when `wrk`
 * is not installed. Each connection sends the same POST again as soon as the
 * previous answer (Content-Length or chunked) has been read in full. Prints
 * one JSON line: {"requests":…, "errors":…, "seconds":…, "rps":…}.
 *
 *   deno run -A bench/loadgen.ts <port> <path> <connections> <seconds> <json body>
 *
 * <port> may be a range, <first>:<count> (a fleet's pods): connection i goes
 * to port first + i mod count.
 */

const [portArg, path, connArg, secondsArg, body] = Deno.args;
const [first, count = 1] = portArg.split(":").map(Number);
const connections = Number(connArg);
const seconds = Number(secondsArg);

const encoder = new TextEncoder();
const bodyBytes = encoder.encode(body);
const requestTo = (port: number) =>
  encoder.encode(
    `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${bodyBytes.length}\r\n\r\n${body}`,
  );

/** Buffered reader over a connection, with just what response parsing needs. */
class Reader {
  buf = new Uint8Array(64 * 1024);
  start = 0;
  end = 0;
  constructor(readonly conn: Deno.Conn) {}

  async fill(): Promise<void> {
    if (this.start > 0) {
      this.buf.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    if (this.end === this.buf.length) {
      const bigger = new Uint8Array(this.buf.length * 2);
      bigger.set(this.buf.subarray(0, this.end));
      this.buf = bigger;
    }
    const n = await this.conn.read(this.buf.subarray(this.end));
    if (n === null) throw new Error("connection closed");
    this.end += n;
  }

  /** Reads up to and including CRLF; returns the line without it. */
  async line(): Promise<string> {
    for (;;) {
      for (let i = this.start; i + 1 < this.end; i++) {
        if (this.buf[i] === 13 && this.buf[i + 1] === 10) {
          const s = String.fromCharCode(...this.buf.subarray(this.start, i));
          this.start = i + 2;
          return s;
        }
      }
      await this.fill();
    }
  }

  async skip(n: number): Promise<void> {
    while (this.end - this.start < n) {
      n -= this.end - this.start;
      this.start = this.end;
      await this.fill();
    }
    this.start += n;
  }
}

/** Reads one response; returns its status. */
async function readResponse(r: Reader): Promise<number> {
  const status = Number((await r.line()).split(" ")[1]);
  let length = -1;
  let chunked = false;
  for (;;) {
    const h = (await r.line()).toLowerCase();
    if (h === "") break;
    if (h.startsWith("content-length:")) length = Number(h.slice(15));
    else if (h.startsWith("transfer-encoding:") && h.includes("chunked")) chunked = true;
  }
  if (chunked) {
    for (;;) {
      const size = parseInt(await r.line(), 16);
      await r.skip(size + 2);
      if (size === 0) break;
    }
  } else if (length > 0) {
    await r.skip(length);
  }
  return status;
}

let requests = 0;
let errors = 0;
const began = performance.now();
const deadline = began + seconds * 1000;

async function worker(_: unknown, i: number): Promise<void> {
  const port = first + (i % count);
  const request = requestTo(port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new Reader(conn);
  try {
    while (performance.now() < deadline) {
      await conn.write(request);
      const status = await readResponse(reader);
      if (status >= 200 && status < 300) requests++;
      else errors++;
    }
  } catch {
    errors++;
  } finally {
    conn.close();
  }
}

await Promise.all(Array.from({ length: connections }, worker));
const elapsed = (performance.now() - began) / 1000;
console.log(JSON.stringify({ requests, errors, seconds: elapsed, rps: requests / elapsed }));

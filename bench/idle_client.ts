/**
 * Opens many streaming chat requests over raw HTTP/1.1 sockets and keeps
 * them open without reading further, for the idle-stream memory measurement
 * in bench/run.ts. Waits for each response's status line and headers, prints
 * `ready <open> <failed>` once every request was tried, then idles until it
 * is killed.
 *
 *   deno run -A bench/idle_client.ts <port> <count>
 */

const port = Number(Deno.args[0]);
const count = Number(Deno.args[1]);
/** Connections being set up at once (stays well under the listen backlog). */
const PARALLEL = 256;

const body = JSON.stringify({
  model: "m",
  messages: [{ role: "user", content: "Hello, how are you today?" }],
  max_tokens: 100,
  ignore_eos: true,
  stream: true,
});
const request = new TextEncoder().encode(
  `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
);
const decoder = new TextDecoder();

const open: Deno.Conn[] = [];
let failed = 0;
let next = 0;

/** Sends one request and waits until the response head has arrived. */
async function openStream(): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(request);
  const buf = new Uint8Array(1024);
  let head = "";
  while (!head.includes("\r\n\r\n")) {
    const n = await conn.read(buf);
    if (n === null) throw new Error("closed before the response head");
    head += decoder.decode(buf.subarray(0, n));
  }
  if (!head.startsWith("HTTP/1.1 200")) {
    conn.close();
    throw new Error(head.split("\r\n")[0]);
  }
  open.push(conn);
}

async function lane(): Promise<void> {
  while (next < count) {
    next++;
    try {
      await openStream();
    } catch {
      failed++;
    }
  }
}

await Promise.all(Array.from({ length: Math.min(PARALLEL, count) }, lane));
console.log(`ready ${open.length} ${failed}`);
// Keep the sockets (and this process) alive until the bench kills us.
setInterval(() => {}, 60_000);

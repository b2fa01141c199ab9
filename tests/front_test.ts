/**
 * The front door (lib/net/front.ts) on raw sockets: how it tells HTTP/2
 * from HTTP/1.x whatever the first read holds, what it does with silence,
 * and that HTTP/1.1 pipelining passes through.
 */
import assert from "node:assert/strict";
import { startSim } from "./helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function connect(url: string): Promise<Deno.TcpConn> {
  const { hostname, port } = new URL(url);
  return await Deno.connect({ hostname, port: Number(port) });
}

/** Reads until `enough` holds for what arrived, the peer closes, or `ms` pass. */
async function readUntil(
  conn: Deno.Conn,
  enough: (b: Uint8Array) => boolean,
  ms = 5000,
): Promise<{ bytes: Uint8Array; closed: boolean }> {
  let bytes = new Uint8Array(0);
  const deadline = performance.now() + ms;
  const buf = new Uint8Array(4096);
  while (performance.now() < deadline) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      conn.read(buf).catch(() => null),
      new Promise<"late">((r) => timer = setTimeout(() => r("late"), deadline - performance.now())),
    ]);
    clearTimeout(timer);
    if (n === "late") break;
    if (n === null) return { bytes, closed: true };
    const next = new Uint8Array(bytes.length + n);
    next.set(bytes);
    next.set(buf.subarray(0, n), bytes.length);
    bytes = next;
    if (enough(bytes)) break;
  }
  return { bytes, closed: false };
}

const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/** An empty SETTINGS frame: length 0, type 4, no flags, stream 0. */
const SETTINGS = new Uint8Array([0, 0, 0, 4, 0, 0, 0, 0, 0]);

Deno.test("front door: an HTTP/2 preface split across writes still reaches HTTP/2", async () => {
  await using s = await startSim();
  const conn = await connect(s.url);
  try {
    await conn.write(enc.encode(PREFACE.slice(0, 3)));
    await new Promise((r) => setTimeout(r, 50));
    await conn.write(enc.encode(PREFACE.slice(3, 16)));
    await new Promise((r) => setTimeout(r, 50));
    await conn.write(enc.encode(PREFACE.slice(16)));
    await conn.write(SETTINGS);
    const { bytes } = await readUntil(conn, (b) => b.length >= 9);
    assert.ok(bytes.length >= 9, "the server's first frame");
    assert.equal(bytes[3], 4, "it is a SETTINGS frame: HTTP/2 answered");
  } finally {
    conn.close();
  }
});

Deno.test("front door: bytes that only start like the preface are HTTP/1.x", async () => {
  await using s = await startSim();
  for (
    const head of ["PRI * HTTP/1.1\r\nHost: x\r\n\r\n", "POST /health HTTP/1.1\r\nHost: x\r\n\r\n"]
  ) {
    const conn = await connect(s.url);
    try {
      await conn.write(enc.encode(head));
      const { bytes } = await readUntil(conn, (b) => dec.decode(b).includes("\r\n\r\n"));
      assert.match(
        dec.decode(bytes),
        /^HTTP\/1\.1 [45]\d\d /,
        `an HTTP/1.1 answer to ${head.slice(0, 4)}`,
      );
    } finally {
      conn.close();
    }
  }
  // And a plain request is answered as ever.
  assert.equal((await fetch(`${s.url}/health`)).status, 200);
});

Deno.test("front door: a client that shows no protocol is closed after the idle timeout", async () => {
  await using s = await startSim(["--idle-timeout", "300ms"]);
  for (const first of ["", "PRI * HTTP"]) {
    const conn = await connect(s.url);
    try {
      if (first) await conn.write(enc.encode(first));
      const t0 = performance.now();
      const { closed } = await readUntil(conn, () => false, 10_000);
      const took = performance.now() - t0;
      assert.ok(closed, `closed (${JSON.stringify(first)})`);
      assert.ok(took >= 250, `not before the timeout (${took.toFixed(0)} ms)`);
    } finally {
      conn.close();
    }
  }
  assert.equal((await fetch(`${s.url}/health`)).status, 200);
});

Deno.test("front door: pipelined HTTP/1.1 requests on one connection, all answered in order", async () => {
  await using s = await startSim();
  const conn = await connect(s.url);
  try {
    const body = JSON.stringify({ model: "test-model", prompt: "hi", max_tokens: 2 });
    const post = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${body.length}\r\n\r\n${body}`;
    // Three requests in one write, the first bytes of the connection.
    await conn.write(enc.encode(`GET /health HTTP/1.1\r\nHost: x\r\n\r\n${post}${post}`));
    const { bytes } = await readUntil(
      conn,
      (b) => (dec.decode(b).match(/"object":"text_completion"/g) ?? []).length === 2,
    );
    const text = dec.decode(bytes);
    assert.equal(text.match(/HTTP\/1\.1 200 /g)?.length, 3);
    assert.equal(text.match(/"object":"text_completion"/g)?.length, 2);
  } finally {
    conn.close();
  }
});

Deno.test("front door: first requests answered from the bytes in hand, then Deno's server", async () => {
  await using s = await startSim();
  const body = JSON.stringify({ model: "test-model", prompt: "hi", max_tokens: 2 });
  const headEnd = (b: Uint8Array) => {
    const t = dec.decode(b);
    const i = t.indexOf("\r\n\r\n");
    if (i < 0) return false;
    const len = /content-length: (\d+)/i.exec(t.slice(0, i));
    return len ? t.length >= i + 4 + Number(len[1]) : /0\r\n\r\n$/.test(t);
  };
  // A chunked upload as the first request.
  const chunked = await connect(s.url);
  try {
    const half = body.length >> 1;
    await chunked.write(enc.encode(
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        "Transfer-Encoding: chunked\r\n\r\n" +
        `${half.toString(16)}\r\n${body.slice(0, half)}\r\n` +
        `${(body.length - half).toString(16)}\r\n${body.slice(half)}\r\n0\r\n\r\n`,
    ));
    const { bytes } = await readUntil(chunked, headEnd);
    assert.match(dec.decode(bytes), /^HTTP\/1\.1 200 OK\r\n[^]*"object":"text_completion"/);
  } finally {
    chunked.close();
  }
  // Expect: 100-continue, the body sent only after the interim answer.
  const expect = await connect(s.url);
  try {
    await expect.write(enc.encode(
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        `Content-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`,
    ));
    const interim = await readUntil(expect, (b) => dec.decode(b).includes("\r\n\r\n"));
    assert.match(dec.decode(interim.bytes), /^HTTP\/1\.1 100 Continue\r\n\r\n/);
    await expect.write(enc.encode(body));
    const { bytes } = await readUntil(expect, headEnd);
    assert.match(dec.decode(bytes), /^HTTP\/1\.1 200 OK\r\n/);
  } finally {
    expect.close();
  }
  // One keep-alive connection, one request at a time: the first is answered
  // by the front door, the next ones by Deno's server, alike.
  const conn = await connect(s.url);
  try {
    const heads: string[] = [];
    for (let i = 0; i < 3; i++) {
      await conn.write(enc.encode(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
          `Content-Length: ${body.length}\r\n\r\n${body}`,
      ));
      const { bytes } = await readUntil(conn, headEnd);
      const text = dec.decode(bytes);
      assert.match(text, /"object":"text_completion"/, `answer ${i + 1}`);
      heads.push(
        text.slice(0, text.indexOf("\r\n\r\n")).split("\r\n").slice(1)
          .map((h) => h.split(":")[0].toLowerCase()).filter((h) => h !== "date").sort().join(","),
      );
    }
    assert.equal(new Set(heads).size, 1, `the same headers each time: ${heads.join(" | ")}`);
    // HEAD answers carry the length of the body they leave out.
    await conn.write(enc.encode("HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"));
    const { bytes } = await readUntil(conn, (b) => dec.decode(b).includes("\r\n\r\n"));
    assert.match(dec.decode(bytes), /^HTTP\/1\.1 \d{3} /);
  } finally {
    conn.close();
  }
});

Deno.test("front door: HTTP/2 rapid reset leaves nothing held and the server answering", async () => {
  const http2 = await import("node:http2");
  // Answers that would take a minute: only the resets can free them in time.
  await using s = await startSim(["--time-to-first-token", "60s"]);
  const session = http2.connect(s.url);
  session.on("error", () => {}); // the server may end an abusive session
  const body = JSON.stringify({ model: "test-model", prompt: "hi", max_tokens: 5 });
  for (let i = 0; i < 3000 && !session.destroyed; i++) {
    const st = session.request({
      ":method": "POST",
      ":path": "/v1/completions",
      "content-type": "application/json",
    });
    st.on("error", () => {});
    st.end(body);
    st.close(http2.constants.NGHTTP2_CANCEL);
    if (i % 500 === 0) await new Promise((r) => setTimeout(r, 0));
  }
  session.destroy();
  const engine = s.running.ranks[0].sim.engine;
  const t0 = performance.now();
  while (engine.runningCount + engine.waitingCount > 0 && performance.now() - t0 < 10_000) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(engine.runningCount + engine.waitingCount, 0, "every reset request let go");
  assert.equal((await fetch(`${s.url}/health`)).status, 200);
});

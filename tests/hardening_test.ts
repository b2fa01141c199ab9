/**
 * Abuse cases from the security review (issue 13): each would once have
 * crashed, exhausted or fooled the server. Resource cases run a child
 * server, bounded in time and load, on loopback only. Tolerances hold on a
 * loaded 2-core machine: the figures asserted are orders of magnitude away
 * from what the old code did.
 */
import assert from "node:assert/strict";
import { DisconnectWatcher } from "../routes/disconnect.ts";
import { rawHttp, sleep, spawnSim, startSim } from "./helpers.ts";

const chat = (extra: Record<string, unknown> = {}) => ({
  model: "test-model",
  messages: [{ role: "user", content: "hi" }],
  ...extra,
});

async function status(res: Response): Promise<number> {
  await res.body?.cancel();
  return res.status;
}

// ------------------------------------------------- 1. numbers from requests

Deno.test("non-finite and out-of-range numbers are 400s, never stored or echoed", async () => {
  await using s = await startSim();
  const before = JSON.stringify(s.running.ranks[0].sim.config);
  const rawPost = (path: string, text: string) =>
    fetch(s.url + path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: text,
    });
  const cases: [string, string][] = [
    ["/fake_metrics", '{"total-prompt-tokens": 1e999}'],
    ["/fake_metrics", '{"running-requests": 1e999}'],
    ["/fake_metrics", '{"kv-cache-usage": 1.5}'],
    ["/fake_metrics", '{"kv-cache-usage": "ramp:0:10:30s"}'],
    ["/fake_metrics", '{"ttft-buckets-values": [1, 1e999]}'],
    ["/fake_metrics", '{"request-success-total": {"stop": 1e999}}'],
    ["/fake_metrics", '{"loras": [{"running": "", "waiting": "", "timestamp": 1e999}]}'],
    ["/fake_metrics", '{"running-requests": "oscillate:0:10:99999999h"}'],
    ["/admin/config", '{"time-to-first-token": 1e999}'],
    ["/admin/config", '{"time-to-first-token": 1e300}'],
    ["/admin/config", '{"time-to-first-token": "99999999h"}'],
    ["/admin/config", '{"inter-token-latency": "25h"}'],
    ["/admin/config", '{"time-factor-under-load": 1e300}'],
    ["/admin/config", '{"failure-injection-rate": 1e999}'],
    ["/admin/config", '{"fake-metrics": {"prefix-cache-hits": 1e999}}'],
  ];
  for (const [path, body] of cases) {
    const res = await rawPost(path, body);
    const text = await res.text();
    assert.equal(res.status, 400, `${path} ${body}: ${text}`);
    assert.doesNotMatch(text, /Infinity|NaN/, `${path} ${body} echoes: ${text}`);
    assert.equal(JSON.parse(text).error.type, "BadRequestError");
  }
  assert.equal(JSON.stringify(s.running.ranks[0].sim.config), before, "nothing changed");
  // The metrics still render, and GET /admin/config has no odd durations.
  assert.equal(await status(await fetch(`${s.url}/metrics`)), 200);
  assert.doesNotMatch(await (await fetch(`${s.url}/admin/config`)).text(), /Infinity|NaN/);
});

Deno.test("an error no caller caught is logged and the process keeps running", async () => {
  const script = `
    import { guardProcess } from "./lib/process_guard.ts";
    import { Logger } from "./lib/log.ts";
    guardProcess(new Logger("info"));
    setTimeout(() => { throw new Error("thrown in a timer"); }, 5);
    setTimeout(() => { throw new Error("thrown in a timer"); }, 10);
    Promise.reject(new Error("a rejection nobody handles"));
    setTimeout(() => console.log("still alive"), 50);
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    cwd: new URL("..", import.meta.url),
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  assert.match(stdout, /still alive/);
  assert.match(stderr, /unhandled promise rejection.*a rejection nobody handles/);
  // The same message twice is logged once.
  assert.equal(stderr.match(/thrown in a timer/g)?.length, 1, stderr);
});

// ------------------------------------------------------ 2. file descriptors

Deno.test("out of descriptors: existing connections are served, then it listens again", async () => {
  const sim = await spawnSim(
    ["--model", "test-model", "--header-timeout", "60s", "--idle-timeout", "60s"],
    { shell: "ulimit -n 160; exec" },
  );
  const { hostname, port } = new URL(sim.url);
  const flood: Deno.Conn[] = [];
  const enc = new TextEncoder();
  const ask = async (c: Deno.Conn) => {
    await c.write(enc.encode("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
    const buf = new Uint8Array(4096);
    const n = await c.read(buf);
    return new TextDecoder().decode(buf.subarray(0, n ?? 0));
  };
  const kept = await Deno.connect({ hostname, port: Number(port) });
  try {
    assert.match(await ask(kept), /^HTTP\/1\.1 200/);
    // More idle connections than the process may hold descriptors.
    for (let i = 0; i < 200; i++) {
      try {
        flood.push(await Deno.connect({ hostname, port: Number(port) }));
      } catch { /* refused once the listener is gone */ }
    }
    await sim.line(/stopped accepting connections/);
    // Still running, and the connection it had is still served.
    assert.match(await ask(kept), /^HTTP\/1\.1 200/);
    // Descriptors free up: it listens again.
    for (const c of flood.splice(0)) c.close();
    await sim.line(/listening again/);
    assert.equal(await status(await fetch(`${sim.url}/health`)), 200);
    assert.equal(sim.lines.filter((l) => /stopped accepting/.test(l)).length, 1, "logged once");
  } finally {
    kept.close();
    for (const c of flood) c.close();
    await sim.close();
  }
});

// ------------------------------------------ 3 and 8. work and memory bounds

Deno.test("per-request limits: sequences and output tokens are 400s, decided at once", async () => {
  await using s = await startSim(["--time-to-first-token", "60s"]);
  // 1 000 prompts × n = 1024 × 1 000 tokens: refused before anything is planned.
  const t0 = performance.now();
  const big = await s.post("/v1/completions", {
    model: "test-model",
    prompt: Array.from({ length: 1000 }, () => "x"),
    n: 1024,
    max_tokens: 1000,
    stream: true,
  });
  const err = await big.json();
  assert.equal(big.status, 400);
  assert.match(err.error.message, /max-sequences-per-request/);
  // n = 1024 × max_tokens 1000 = 1 024 000 reserved tokens: over the budget.
  const many = await s.post("/v1/chat/completions", chat({ n: 1024, max_tokens: 1000 }));
  const err2 = await many.json();
  assert.equal(many.status, 400);
  assert.match(err2.error.message, /max-output-tokens-per-request/);
  assert.equal(err2.error.param, "max_tokens");
  assert.ok(performance.now() - t0 < 5000, "refused without generating anything");
  const engine = s.running.ranks[0].sim.engine;
  assert.equal(engine.runningCount + engine.waitingCount, 0);
  // The limits are options.
  await using t = await startSim(["--max-sequences-per-request", "2"]);
  assert.equal(await status(await t.post("/v1/chat/completions", chat({ n: 3 }))), 400);
  assert.equal(
    await status(await t.post("/v1/chat/completions", chat({ n: 2, max_tokens: 1 }))),
    200,
  );
});

Deno.test("a million tiny prompts are refused without blocking /health", async () => {
  await using s = await startSim();
  const body = `{"model":"test-model","max_tokens":1,"prompt":[${'"a",'.repeat(999_999)}"a"]}`;
  assert.ok(body.length < 4 * 1048576);
  const big = s.post("/v1/completions", body);
  let worst = 0;
  let done = false;
  const probe = (async () => {
    while (!done) {
      const t = performance.now();
      assert.equal(await status(await fetch(`${s.url}/health`)), 200);
      worst = Math.max(worst, performance.now() - t);
      await sleep(5);
    }
  })();
  const res = await big;
  done = true;
  await probe;
  assert.equal(res.status, 400);
  assert.match((await res.json()).error.message, /Too many prompts/);
  // It used to block every request for 7.6 s.
  assert.ok(worst < 1500, `/health waited ${worst.toFixed(0)} ms`);
});

Deno.test("queued requests cost a few KB, not their answers", async () => {
  const sim = await spawnSim([
    "--model",
    "test-model",
    "--max-num-seqs",
    "1",
    "--time-to-first-token",
    "60s",
  ]);
  try {
    const send = () =>
      fetch(`${sim.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(chat({ n: 1024, max_tokens: 250, stream: true })),
      });
    // Warm up (code, heap), then measure 200 queued requests.
    const warm = await Promise.all(Array.from({ length: 10 }, send));
    await sleep(300);
    const before = sim.rssMiB();
    const queued = await Promise.all(Array.from({ length: 200 }, send));
    await sleep(500);
    const grown = sim.rssMiB() - before;
    for (const r of [...warm, ...queued]) await r.body?.cancel();
    // 11.8 MB each before: 2.3 GB for 200. Now a few KB each.
    assert.ok(grown < 150, `200 queued requests grew RSS by ${grown.toFixed(0)} MiB`);
  } finally {
    await sim.close();
  }
});

// ----------------------------------------------------------- 4. slow readers

/** Sends a streaming request on a raw socket and never reads the answer. */
async function stuckReader(url: string, body: unknown): Promise<Deno.Conn> {
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const json = JSON.stringify(body);
  await conn.write(
    new TextEncoder().encode(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${json.length}\r\n\r\n${json}`,
    ),
  );
  return conn;
}

Deno.test("clients that never read: memory stays bounded, then they are dropped", async () => {
  const sim = await spawnSim([
    "--model",
    "test-model",
    "--max-num-seqs",
    "16",
    "--stream-stall-timeout",
    "2s",
  ]);
  const conns: Deno.Conn[] = [];
  try {
    const before = sim.rssMiB();
    // 8 × 256 choices × 1 000 tokens, zero latency: ~400 MB of frames if
    // produced regardless of the reader.
    for (let i = 0; i < 8; i++) {
      conns.push(
        await stuckReader(
          sim.url,
          chat({ n: 256, max_tokens: 1000, ignore_eos: true, stream: true }),
        ),
      );
    }
    await sleep(1000);
    const grown = sim.rssMiB() - before;
    assert.ok(grown < 150, `8 stuck readers grew RSS by ${grown.toFixed(0)} MiB`);
    // Another client is served normally meanwhile.
    const res = await fetch(`${sim.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(chat({ max_tokens: 5, stream: true })),
    });
    assert.match(await res.text(), /\[DONE\]/);
    // Past the stall timeout the stuck streams are dropped and their slots freed.
    const running = async () => {
      const m = await (await fetch(`${sim.url}/metrics`)).text();
      return Number(/^vllm:num_requests_running\{[^}]*\} (\S+)/m.exec(m)?.[1]);
    };
    const t0 = performance.now();
    while (await running() > 0) {
      assert.ok(performance.now() - t0 < 20_000, "stuck streams still hold their slots");
      await sleep(200);
    }
    await sim.line(/stopped reading/);
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed by the server */ }
    }
    await sim.close();
  }
});

// ------------------------------------------------------- 5. false disconnects

Deno.test("live clients on new connections are never taken for gone", async () => {
  await using s = await startSim(["--time-to-first-token", "150ms", "--max-num-seqs", "64"]);
  const statuses = new Map<number, number>();
  for (let wave = 0; wave < 6; wave++) {
    // Each fetch with its own client: a new connection per request.
    const batch = await Promise.all(Array.from({ length: 50 }, async () => {
      const client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
      try {
        const res = await fetch(`${s.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          // Over ~400 bytes, so Deno cannot watch the connection itself.
          body: JSON.stringify(chat({ max_tokens: 1, user: "x".repeat(600) })),
          client,
        });
        await res.body?.cancel();
        return res.status;
      } finally {
        client.close();
      }
    }));
    for (const st of batch) statuses.set(st, (statuses.get(st) ?? 0) + 1);
  }
  assert.deepEqual([...statuses], [[200, 300]]);
});

Deno.test("disconnect watcher: judged only by later scans, and only after two misses", () => {
  const w = new DisconnectWatcher(8000);
  try {
    const early = w.watch(5001);
    // A scan began, then a connection was accepted and watched while the
    // table was being read: the table cannot list it.
    const first = w.beginScan();
    const late = w.watch(5002);
    w.judge(new Set([5001]), first);
    assert.equal(late.signal.aborted, false, "a scan begun before the watch cannot judge it");
    // One later scan that misses a port is not enough (a table read in pieces
    // can skip a live connection), two in a row are.
    w.judge(new Set([5001]), w.beginScan());
    assert.equal(late.signal.aborted, false);
    w.judge(new Set([5001, 5002]), w.beginScan());
    w.judge(new Set([5001]), w.beginScan());
    assert.equal(late.signal.aborted, false, "the misses must be consecutive");
    w.judge(new Set([5001]), w.beginScan());
    assert.equal(late.signal.aborted, true);
    assert.equal(early.signal.aborted, false);
    early.release();
  } finally {
    w.close();
  }
});

// ------------------------------------------------------------ 7. Host header

Deno.test("the Host header cannot choose the route; a bad one is a 400 in the error shape", async () => {
  await using s = await startSim(["--api-key", "k"]);
  const body = JSON.stringify(chat({ max_tokens: 1 }));
  const post = (host: string) =>
    rawHttp(
      s.url,
      `POST /v1/chat/completions HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n` +
        `Authorization: Bearer k\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\n\r\n${body}`,
    );
  for (const host of ["x/admin/config?", "a b", "[::1", "x:99999", "u@x", "x#y", "x\\y"]) {
    const { text } = await post(host);
    assert.match(text, /^HTTP\/1\.1 400 /, `Host ${host}: ${text.slice(0, 80)}`);
    const json = JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4));
    assert.equal(json.error.message, "Invalid Host header.");
  }
  for (const host of ["localhost", "127.0.0.1:8000", "[::1]:80", "my-pod.ns.svc"]) {
    const { text } = await post(host);
    assert.match(text, /^HTTP\/1\.1 200 /, `Host ${host}: ${text.slice(0, 80)}`);
    assert.match(text, /"chat\.completion"/);
  }
});

// ------------------------------------------------------------- 9. timeouts

/** Resolves with ms until the server closes `conn` (reads and drops what it sends). */
async function closedAfter(conn: Deno.Conn, t0: number): Promise<number> {
  const buf = new Uint8Array(4096);
  try {
    while (await conn.read(buf) !== null) { /* drain */ }
  } catch { /* reset */ }
  return performance.now() - t0;
}

Deno.test("slow heads, stalled bodies and idle connections are closed; long answers are not", async () => {
  const sim = await spawnSim([
    "--model",
    "test-model",
    "--header-timeout",
    "1s",
    "--body-timeout",
    "1s",
    "--idle-timeout",
    "1s",
    "--time-to-first-token",
    "3500ms",
  ]);
  const { hostname, port } = new URL(sim.url);
  const conns: Deno.Conn[] = [];
  const open = async () => {
    const c = await Deno.connect({ hostname, port: Number(port) });
    conns.push(c);
    return c;
  };
  const enc = new TextEncoder();
  let trickling = true;
  try {
    const t0 = performance.now();
    const closes: Promise<number>[] = [];
    // Heads sent a byte every 200 ms: never complete.
    for (let i = 0; i < 10; i++) {
      const c = await open();
      closes.push(closedAfter(c, t0));
      (async () => {
        for (const ch of "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + "a".repeat(200)) {
          if (!trickling) return;
          try {
            await c.write(enc.encode(ch));
          } catch {
            return;
          }
          await sleep(200);
        }
      })();
    }
    // Connections that never send anything.
    for (let i = 0; i < 10; i++) closes.push(closedAfter(await open(), t0));
    // Bodies that stop half-way.
    for (let i = 0; i < 5; i++) {
      const c = await open();
      await c.write(enc.encode(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{",
      ));
      closes.push(closedAfter(c, t0));
    }
    // Keep-alive connections left idle after an answer.
    for (let i = 0; i < 5; i++) {
      const c = await open();
      await c.write(enc.encode("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
      closes.push(closedAfter(c, t0));
    }
    // Answers that take longer than every timeout, with no byte moving meanwhile.
    const body = JSON.stringify(chat({ max_tokens: 2, ignore_eos: true }));
    const slow = fetch(`${sim.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    const slowStream = fetch(`${sim.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(chat({ max_tokens: 2, stream: true })),
    });
    const times = await Promise.all(closes);
    const worst = Math.max(...times);
    // Each had 1 s; the reaper looks once a second. 8 s leaves room for a loaded machine.
    assert.ok(worst < 8000, `slowest close after ${worst.toFixed(0)} ms`);
    assert.ok(Math.min(...times) >= 900, `none closed early: ${Math.min(...times)} ms`);
    const res = await slow;
    assert.equal(res.status, 200);
    assert.equal((await res.json()).usage.completion_tokens, 2);
    const streamed = await (await slowStream).text();
    assert.match(streamed, /\[DONE\]/);
    // The server still serves.
    assert.equal(await status(await fetch(`${sim.url}/health`)), 200);
  } finally {
    trickling = false;
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await sim.close();
  }
});

// ---------------------------------------------------------------- 10. drain

Deno.test("SIGTERM drains within --shutdown-timeout despite endless requests", async () => {
  const sim = await spawnSim([
    "--model",
    "test-model",
    "--inter-token-latency",
    "500ms",
    "--shutdown-timeout",
    "1s",
  ]);
  let upload: Deno.Conn | undefined;
  try {
    // A stream that would run for ~8 minutes, and an upload that never ends.
    const stream = await fetch(`${sim.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(chat({ max_tokens: 1000, ignore_eos: true, stream: true })),
    });
    const reader = stream.body!.getReader();
    await reader.read();
    const { hostname, port } = new URL(sim.url);
    upload = await Deno.connect({ hostname, port: Number(port) });
    await upload.write(
      new TextEncoder().encode(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n" +
          'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model"',
      ),
    );
    await sleep(100);
    const t0 = performance.now();
    sim.child.kill("SIGTERM");
    const st = await sim.child.status;
    const took = performance.now() - t0;
    assert.equal(st.code, 0);
    assert.ok(took < 10_000, `exited after ${took.toFixed(0)} ms`);
    assert.ok(took >= 900, `drained for its timeout first (${took.toFixed(0)} ms)`);
    await sim.line(/shutdown-timeout passed/);
    // The stream ended (cut off) rather than hanging.
    for (;;) {
      try {
        if ((await reader.read()).done) break;
      } catch {
        break;
      }
    }
  } finally {
    upload?.close();
    await sim.close();
  }
});

// ------------------------------------------------- 11. client faults, 413

Deno.test("a 413 on a chunked upload closes the connection; client faults are not ERRORs", async () => {
  const sim = await spawnSim(["--model", "test-model", "--max-request-body-size-mb", "1"]);
  try {
    const chunk = "x".repeat(65536);
    const head = "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n" +
      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    // 2 MiB in 64 KiB chunks, never terminated: the server must not wait for the end.
    const body = `${chunk.length.toString(16)}\r\n${chunk}\r\n`.repeat(32);
    const { text, closed } = await rawHttp(sim.url, head + body, 10_000);
    assert.match(text, /^HTTP\/1\.1 413 /);
    assert.match(text, /connection: close/i);
    assert.ok(closed, "the server closed the connection");
    // Bad JSON, and an upload the client breaks off, are client faults.
    const bad = await fetch(`${sim.url}/v1/completions`, { method: "POST", body: "{" });
    assert.equal(await status(bad), 400);
    const { hostname, port } = new URL(sim.url);
    const c = await Deno.connect({ hostname, port: Number(port) });
    await c.write(
      new TextEncoder().encode(
        "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{",
      ),
    );
    await sleep(100);
    c.close();
    await sleep(300);
    assert.equal(await status(await fetch(`${sim.url}/health`)), 200);
    const errors = sim.lines.filter((l) => / ERROR /.test(l));
    assert.deepEqual(errors, []);
  } finally {
    await sim.close();
  }
});

// ----------------------------------------------------------- 13. LoRA names

Deno.test("LoRA names that would make metric labels ambiguous are refused", async () => {
  await using s = await startSim();
  for (const name of ["a,b", "a b", "", "x".repeat(300), "tab\there"]) {
    const res = await s.post("/v1/load_lora_adapter", { lora_name: name, lora_path: "/p" });
    assert.equal(res.status, 400, JSON.stringify(name));
    await res.body?.cancel();
  }
  const ok = await s.post("/v1/load_lora_adapter", {
    lora_name: "team-a/adapter_1",
    lora_path: "/p",
  });
  assert.equal(await status(ok), 200);
  await assert.rejects(
    () => startSim(["--lora-modules", '{"name":"a,b","path":"/p"}']),
    /adapter name "a,b"/,
  );
});

/**
 * KV events through a real ZMQ subscriber (kv-cache.md): topic, seq, the
 * batch layout and integer widths, hashes recomputed here from the spec's
 * algorithm (FNV-1a 64 over cborg's canonical CBOR, independent of
 * lib/kv), parents, BlockRemoved on eviction, the map format,
 * AllBlocksCleared on sleep, LoRA fields, replay with its end marker, and
 * per-rank topics and ports with --data-parallel-size 2.
 */
import assert from "node:assert/strict";
import { decode } from "@msgpack/msgpack";
import { encode as cbor } from "cborg";
import { decodeBase64 } from "./fixtures/base64.ts";
import { type ChildSim, spawnSim } from "./helpers.ts";

const POD_IP = "10.1.2.3";

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function consecutivePorts(): number {
  for (;;) {
    const a = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const base = (a.addr as Deno.NetAddr).port;
    try {
      Deno.listen({ hostname: "127.0.0.1", port: base + 1 }).close();
      return base;
    } catch {
      // taken: try another pair
    } finally {
      a.close();
    }
  }
}

/** FNV-1a 64 with BigInt, straight from the definition. */
function fnv64(bytes: Uint8Array): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h;
}

/** The reference's chain (kv-cache.md, "fnv64a-cbor"), seed "". */
function blockHashes(tokens: number[], model: string, blockSize: number): bigint[] {
  const root = fnv64(cbor([fnv64(new Uint8Array(0)), null, model]));
  const out: bigint[] = [];
  let parent = root;
  for (let b = 0; b + blockSize <= tokens.length; b += blockSize) {
    parent = fnv64(cbor([parent, tokens.slice(b, b + blockSize), null]));
    out.push(parent);
  }
  return out;
}

interface Message {
  topic: string;
  seq: bigint;
  raw: Uint8Array;
  batch: [number, unknown[], number];
}

/** A ZMQ client process (tests/fixtures/kv_subscriber.ts): its JSON lines, as they come. */
function zmqClient(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./fixtures/kv_subscriber.ts", import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  (async () => {
    let buf = "";
    for await (const part of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += part;
      let n;
      while ((n = buf.indexOf("\n")) >= 0) {
        lines.push(JSON.parse(buf.slice(0, n)));
        buf = buf.slice(n + 1);
        for (const w of waiters.splice(0)) w();
      }
    }
  })();
  let read = 0;
  const line = async (): Promise<Record<string, unknown>> => {
    while (read >= lines.length) await new Promise<void>((r) => waiters.push(r));
    return lines[read++];
  };
  return {
    line,
    async frames(): Promise<Uint8Array[]> {
      for (;;) {
        const l = await line();
        if (Array.isArray(l.frames)) return l.frames.map((f: string) => decodeBase64(f));
      }
    },
    async close(): Promise<void> {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    },
  };
}

/** `p`, or a rejection naming `what` after `ms`: a lost message fails a test, never hangs it. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A subscriber process connecting to `port`; `ready` once connected to the simulator's publisher. */
function subscriber(port: number) {
  const c = zmqClient(["sub", String(port)]);
  return {
    ready: async (ms = 30_000) =>
      assert.deepEqual(await within(c.line(), ms, `a subscriber on ${port}`), { ready: true }),
    async next(): Promise<Message> {
      const [topic, seq, raw] = await within(c.frames(), 30_000, `a message on ${port}`);
      return {
        topic: new TextDecoder().decode(topic),
        seq: new DataView(seq.buffer, seq.byteOffset, 8).getBigUint64(0),
        raw,
        batch: decode(raw, { useBigInt64: true }) as [number, unknown[], number],
      };
    },
    close: () => c.close(),
  };
}

async function start(args: string[], zmqPort: number, env = {}): Promise<ChildSim> {
  const s = await spawnSim([
    "--model",
    "m",
    "--enable-kvcache",
    "--block-size",
    "8",
    "--event-batch-size",
    "1",
    "--zmq-endpoint",
    `tcp://*:${zmqPort}`, // bound: the subscriber processes connect
    ...args,
  ], { env: { POD_IP, ...env } });
  return s;
}

async function complete(url: string, prompt: number[], model = "m") {
  const r = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, prompt, max_tokens: 1 }),
  });
  assert.equal(r.status, 200, await r.clone().text());
  return await r.json();
}

const ids = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const portOf = (url: string) => Number(new URL(url).port);

Deno.test("kv events: topic, seq from 1, the 9-element BlockStored with the reference's hashes", async () => {
  const port = freePort();
  const sub = subscriber(port);
  const s = await start(["--kv-cache-size", "4"], port);
  try {
    await sub.ready();
    const prompt = ids(1, 20); // two full blocks and 4 tokens over
    await complete(s.url, prompt);
    const m1 = await sub.next();
    assert.equal(m1.topic, `kv@${POD_IP}:${portOf(s.url)}@m`);
    assert.equal(m1.seq, 1n);
    const [ts, events, rank] = m1.batch;
    assert.ok(Math.abs(ts - Date.now() / 1000) < 60);
    assert.equal(rank, 0);
    const hashes = blockHashes(prompt, "m", 8);
    assert.deepEqual(events, [["BlockStored", hashes, 0n, ids(1, 16), 8, null, "GPU", null, null]]);
    // Widths on the bytes: a float64 ts, uint64 hashes and parent, uint32 token ids.
    const h = hex(m1.raw);
    assert.ok(h.startsWith("93cb"));
    assert.ok(h.includes("cf" + hashes[0].toString(16).padStart(16, "0")));
    assert.ok(h.includes("cf0000000000000000"));
    assert.ok(h.includes("ce00000001ce00000002"));
    // The same prefix and one more block: the new block only, parented on the cached one.
    await complete(s.url, ids(1, 24));
    const m2 = await sub.next();
    assert.equal(m2.seq, 2n);
    const more = blockHashes(ids(1, 24), "m", 8);
    assert.deepEqual(m2.batch[1], [
      ["BlockStored", [more[2]], more[1], ids(17, 8), 8, null, "GPU", null, null],
    ]);
    // A different prompt that needs room: idle blocks are evicted, announced before it.
    // Three blocks are cached in a cache of four: the one idle longest makes room.
    await complete(s.url, ids(100, 16));
    const removed: unknown[] = [];
    let stored: unknown = null;
    while (stored === null) {
      for (const e of (await sub.next()).batch[1] as unknown[][]) {
        if (e[0] === "BlockRemoved") removed.push(e);
        else stored = e;
      }
    }
    assert.deepEqual(removed, [["BlockRemoved", [more[0]], "GPU"]]);
    assert.deepEqual((stored as unknown[])[1], blockHashes(ids(100, 16), "m", 8));
  } finally {
    await s.close();
    await sub.close();
  }
});

Deno.test("kv events: the map format, LoRA fields, AllBlocksCleared on sleep, replay", async () => {
  const port = freePort();
  const replayPort = freePort();
  const sub = subscriber(port);
  const s = await start(
    [
      "--use-vllm-map-event-format",
      "--lora-modules",
      '{"name":"ad1"}',
      "--enable-sleep-mode",
      "--kv-events-replay-endpoint",
      `tcp://127.0.0.1:${replayPort}`,
    ],
    port,
    { VLLM_SERVER_DEV_MODE: "1" },
  );
  try {
    await sub.ready();
    await complete(s.url, ids(1, 8), "ad1");
    const m = await sub.next();
    assert.deepEqual(m.batch[1], [{
      type: "BlockStored",
      block_hashes: blockHashes(ids(1, 8), "ad1", 8),
      parent_block_hash: null,
      token_ids: ids(1, 8),
      block_size: 8,
      lora_id: 1,
      medium: "GPU",
      lora_name: "ad1",
    }]);
    await (await fetch(`${s.url}/sleep`, { method: "POST" })).body?.cancel();
    const cleared = await sub.next();
    assert.deepEqual(cleared.batch[1], [{ type: "AllBlocksCleared" }]);
    assert.equal(cleared.seq, 2n);
    // Replay from seq 2 (asked once both batches were sent): that batch, then the end marker.
    const again = zmqClient(["replay", `tcp://127.0.0.1:${replayPort}`, "2"]);
    try {
      const [empty, topic, seq, payload] = await again.frames();
      assert.equal(empty.length, 0);
      assert.equal(new TextDecoder().decode(topic), cleared.topic);
      assert.equal(new DataView(seq.buffer, seq.byteOffset, 8).getBigUint64(0), 2n);
      assert.equal(hex(payload), hex(cleared.raw));
      const end = await again.frames();
      assert.deepEqual(end.map(hex), ["", "", "ffffffffffffffff", ""]);
    } finally {
      await again.close();
    }
  } finally {
    await s.close();
    await sub.close();
  }
});

Deno.test("kv events: each data-parallel rank publishes on its own port, topic and rank", async () => {
  // Two consecutive free ports: rank r publishes to base + r. Another process
  // (a parallel test, or one of this simulator's own HTTP listeners) may take
  // base + 1 before the simulator binds it: then the subscriber never connects,
  // and the test starts again on a fresh pair.
  for (let attempt = 1;; attempt++) {
    const base = consecutivePorts();
    const sub0 = subscriber(base);
    const sub1 = subscriber(base + 1);
    let s: ChildSim | undefined;
    try {
      try {
        // A taken port can also fail the simulator's start (its bind).
        s = await start(["--data-parallel-size", "2"], base);
        await Promise.all([sub0.ready(10_000), sub1.ready(10_000)]);
      } catch (e) {
        if (attempt < 3) continue;
        throw e;
      }
      const url1 = s.url.replace(/:(\d+)$/, (_m, p) => `:${Number(p) + 1}`);
      await complete(s.url, ids(1, 8));
      await complete(url1, ids(1, 8));
      const m0 = await sub0.next();
      const m1 = await sub1.next();
      assert.equal(m0.topic, `kv@${POD_IP}:${portOf(s.url)}@m`);
      assert.equal(m1.topic, `kv@${POD_IP}:${portOf(url1)}@m`);
      assert.equal(m0.batch[2], 0);
      assert.equal(m1.batch[2], 1);
      assert.equal(m1.seq, 1n); // each rank counts its own
      return;
    } finally {
      await s?.close();
      await sub0.close();
      await sub1.close();
    }
  }
});

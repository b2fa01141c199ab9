/**
 * The gRPC engine service (grpc.md) through a real @grpc/grpc-js client built
 * from the same proto, on the API port itself (the front door,
 * lib/net/front.ts) unless a test says otherwise: every RPC, token timing,
 * errors, Abort and a client cancel freeing the slot, HTTP/1.1, HTTP/2 REST
 * and gRPC on one port at once, --grpc-port, TLS.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { engineService } from "../lib/api/grpc/codec.ts";
import { freePort, retryPortInUse, sleep, startSim, type TestServer, waitFor } from "./helpers.ts";

// deno-lint-ignore no-explicit-any
type Client = any;
// deno-lint-ignore no-explicit-any
type Msg = any;

const Engine = grpc.makeGenericClientConstructor(engineService(), "VllmEngine");

/** A simulator and a gRPC client of its API port (or of a --grpc-port listener with `own`). */
async function withGrpc(
  args: string[] = [],
  env: Record<string, string> = {},
  own = false,
): Promise<{ s: TestServer; c: Client; port: number }> {
  const s = await retryPortInUse(() =>
    startSim([...(own ? ["--grpc-port", String(freePort())] : []), ...args], env)
  );
  const rank = s.running.ranks[0];
  const port = own ? rank.grpcPort!.port : rank.port;
  const c = new Engine(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return { s, c, port };
}

function unary(c: Client, method: string, req: Msg): Promise<Msg> {
  return new Promise((resolve, reject) =>
    c[method](req, (e: Error | null, r: Msg) => e ? reject(e) : resolve(r))
  );
}

/** A Generate call's messages, each with its arrival time (ms after the call). */
function generate(c: Client, req: Msg): { call: Msg; done: Promise<{ at: number; m: Msg }[]> } {
  const t0 = performance.now();
  const call = c.Generate(req);
  const got: { at: number; m: Msg }[] = [];
  const done = new Promise<{ at: number; m: Msg }[]>((resolve, reject) => {
    call.on("data", (m: Msg) => got.push({ at: performance.now() - t0, m }));
    call.on("end", () => resolve(got));
    call.on("error", reject);
  });
  return { call, done };
}

Deno.test("grpc: Generate non-streaming and streaming, tokenized and text input", async () => {
  const { s, c } = await withGrpc(["--seed", "4"]);
  try {
    const whole = await generate(c, {
      request_id: "r1",
      tokenized: { original_text: "", input_ids: [1, 2, 3] },
      sampling_params: { max_tokens: 5, ignore_eos: true },
    }).done;
    assert.equal(whole.length, 1);
    const done = whole[0].m.complete;
    assert.equal(done.output_ids.length, 5);
    assert.equal(done.finish_reason, "length");
    assert.equal(done.prompt_tokens, 3);
    assert.equal(done.completion_tokens, 5);
    const streamed = await generate(c, {
      request_id: "r2",
      text: "Hello there, simulator",
      sampling_params: { max_tokens: 4, ignore_eos: true },
      stream: true,
    }).done;
    // The same text over HTTP: the same prompt tokens.
    const http = await s.client.completions.create({
      model: "test-model",
      prompt: "Hello there, simulator",
      max_tokens: 1,
    });
    const chunks = streamed.filter((x) => x.m.response === "chunk").map((x) => x.m.chunk);
    assert.equal(chunks.length, 4, "one chunk per token");
    for (const ch of chunks) {
      assert.equal(ch.token_ids.length, 1);
      assert.equal(ch.completion_tokens, 1);
      assert.equal(ch.prompt_tokens, http.usage!.prompt_tokens);
    }
    const last = streamed.at(-1)!.m;
    assert.equal(last.response, "complete");
    assert.deepEqual(last.complete.output_ids, []);
    assert.equal(last.complete.completion_tokens, 0);
    assert.equal(last.complete.finish_reason, "length");
  } finally {
    c.close();
    await s.close();
  }
});

Deno.test("grpc: a stream is paced: first chunk after the TTFT, then the ITL", async () => {
  const { s, c } = await withGrpc([
    "--time-to-first-token",
    "300ms",
    "--inter-token-latency",
    "100ms",
  ]);
  try {
    const got = await generate(c, {
      request_id: "t",
      tokenized: { original_text: "", input_ids: [5, 6] },
      sampling_params: { max_tokens: 4, ignore_eos: true },
      stream: true,
    }).done;
    const at = got.filter((x) => x.m.response === "chunk").map((x) => x.at);
    assert.equal(at.length, 4);
    assert.ok(at[0] >= 250, `first chunk at ${at[0]} ms`);
    assert.ok(at[3] - at[0] >= 250, `three gaps of ~100 ms: ${at.map(Math.round)}`);
  } finally {
    c.close();
    await s.close();
  }
});

Deno.test("grpc: GetModelInfo, HealthCheck, GetServerInfo, Embed", async () => {
  const { s, c } = await withGrpc(["--max-model-len", "2048", "--enable-sleep-mode"], {
    VLLM_SERVER_DEV_MODE: "1",
  });
  try {
    const info = await unary(c, "GetModelInfo", {});
    assert.equal(info.model_path, "test-model");
    assert.equal(info.is_generation, true);
    assert.equal(info.max_context_length, 2048);
    assert.deepEqual(await unary(c, "HealthCheck", {}), { healthy: true, message: "" });
    const server0 = await unary(c, "GetServerInfo", {});
    assert.equal(server0.server_type, "vllm-grpc");
    assert.equal(server0.active_requests, 0);
    assert.ok(server0.uptime_seconds > 0);
    const emb = await unary(c, "Embed", {
      request_id: "e",
      tokenized: { original_text: "", input_ids: [1, 2, 3, 4] },
    });
    assert.equal(emb.embedding_dim, 384);
    assert.equal(emb.embedding.length, 384);
    assert.equal(emb.prompt_tokens, 4);
    const server1 = await unary(c, "GetServerInfo", {});
    assert.ok(server1.last_receive_timestamp > Date.now() / 1000 - 60);
    // Sleeping: not healthy, paused.
    assert.equal((await s.post("/sleep", {})).status, 200);
    const asleep = await unary(c, "HealthCheck", {});
    assert.equal(asleep.healthy, false);
    assert.equal((await unary(c, "GetServerInfo", {})).is_paused, true);
  } finally {
    c.close();
    await s.close();
  }
});

Deno.test("grpc: Abort ends a running Generate with finish_reason abort; a cancel frees the slot", async () => {
  const { s, c } = await withGrpc(["--inter-token-latency", "200ms"]);
  try {
    const slow = generate(c, {
      request_id: "slow-1",
      tokenized: { original_text: "", input_ids: [1, 2] },
      sampling_params: { max_tokens: 100, ignore_eos: true },
      stream: true,
    });
    await waitFor(() => s.running.ranks[0].sim.engine.runningCount === 1, 5000, "running");
    assert.equal((await unary(c, "GetServerInfo", {})).active_requests, 1);
    await unary(c, "Abort", { request_ids: ["slow-1", "unknown"] });
    const got = await slow.done;
    assert.equal(got.at(-1)!.m.complete.finish_reason, "abort");
    assert.ok(got.length < 100);
    await waitFor(() => s.running.ranks[0].sim.engine.runningCount === 0, 5000, "freed");
    // A client that cancels frees its slot too.
    const other = generate(c, {
      request_id: "slow-2",
      tokenized: { original_text: "", input_ids: [1, 2] },
      sampling_params: { max_tokens: 100, ignore_eos: true },
      stream: true,
    });
    other.done.catch(() => {});
    await waitFor(() => s.running.ranks[0].sim.engine.runningCount === 1, 5000, "running");
    other.call.cancel();
    await waitFor(() => s.running.ranks[0].sim.engine.runningCount === 0, 5000, "cancel frees");
    await sleep(10);
  } finally {
    c.close();
    await s.close();
  }
});

Deno.test("grpc: errors map to gRPC codes; bad input never crashes", async () => {
  const { s, c } = await withGrpc(["--max-model-len", "64"]);
  try {
    const code = async (req: Msg) => {
      try {
        await generate(c, req).done;
        return "ok";
      } catch (e) {
        return (e as { code: number }).code;
      }
    };
    assert.equal(await code({ request_id: "a" }), grpc.status.INVALID_ARGUMENT, "no input");
    assert.equal(
      await code({ request_id: "b", tokenized: { input_ids: [] } }),
      grpc.status.INVALID_ARGUMENT,
    );
    assert.equal(
      await code({
        request_id: "c",
        tokenized: { input_ids: [1] },
        sampling_params: { max_tokens: 0 },
      }),
      grpc.status.INVALID_ARGUMENT,
      "max_tokens 0",
    );
    assert.equal(
      await code({
        request_id: "d",
        tokenized: { input_ids: Array.from({ length: 100 }, (_, i) => i) },
      }),
      grpc.status.INVALID_ARGUMENT,
      "past the context window",
    );
    assert.equal(
      await code({
        request_id: "e",
        tokenized: { input_ids: [1] },
        sampling_params: { max_tokens: 2 },
      }),
      "ok",
    );
  } finally {
    c.close();
    await s.close();
  }
  // Failure injection: a rate limit is RESOURCE_EXHAUSTED.
  const f = await withGrpc(["--failure-injection-rate", "100", "--failure-types", "rate_limit"]);
  try {
    const err = await generate(f.c, { request_id: "x", tokenized: { input_ids: [1] } }).done
      .then(() => null, (e) => e);
    assert.equal(err?.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(err.details, /Rate limit reached/);
  } finally {
    f.c.close();
    await f.s.close();
  }
});

Deno.test("grpc: HTTP/1.1, HTTP/2 REST and gRPC on the API port at once", async () => {
  const { s, c, port } = await withGrpc(["--time-to-first-token", "50ms"]);
  assert.equal(port, Number(new URL(s.url).port), "gRPC on the HTTP port itself");
  // HTTP/2 with prior knowledge (h2c), as `curl --http2-prior-knowledge` speaks it.
  const h2 = Deno.createHttpClient({ http1: false, http2: true });
  try {
    const [g, chat, rest, models] = await Promise.all([
      generate(c, {
        request_id: "g",
        tokenized: { input_ids: [1, 2] },
        sampling_params: { max_tokens: 3 },
        stream: true,
      }).done,
      s.client.chat.completions.create({
        model: "test-model",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 3,
      }),
      fetch(`${s.url}/v1/chat/completions`, {
        client: h2,
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "test-model",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 2,
          stream: true,
        }),
      }).then(async (r) => ({
        status: r.status,
        type: r.headers.get("content-type"),
        text: await r.text(),
      })),
      fetch(`${s.url}/v1/models`, { client: h2 }).then((r) => r.json()),
    ]);
    assert.equal(g.at(-1)!.m.response, "complete");
    assert.ok(chat.choices[0].message.content!.length > 0);
    // HTTP/2 REST is the route table's, SSE included.
    assert.equal(rest.status, 200);
    assert.match(rest.type!, /^text\/event-stream/);
    assert.match(rest.text, /"object":"chat\.completion\.chunk"/);
    assert.match(rest.text, /data: \[DONE\]\n\n$/);
    assert.equal(models.data[0].id, "test-model");
    // HTTP/2 errors keep their family's shape.
    const missing = await fetch(`${s.url}/v1/nothing`, { client: h2 });
    assert.equal(missing.status, 404);
    assert.match((await missing.json()).error.message, /Not Found/);
  } finally {
    h2.close();
    c.close();
    await s.close();
  }
});

Deno.test("grpc: --grpc-port adds a gRPC-only listener", async () => {
  const { s, c, port } = await withGrpc([], {}, true);
  try {
    assert.notEqual(port, Number(new URL(s.url).port));
    assert.equal((await unary(c, "HealthCheck", {})).healthy, true);
    // HTTP/1.1 there gets no HTTP answer: the connection is closed.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(new TextEncoder().encode("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
    const buf = new Uint8Array(1024);
    const n = await conn.read(buf).catch(() => null);
    conn.close();
    assert.ok(n === null || !/^HTTP\/1/.test(new TextDecoder().decode(buf.subarray(0, n))));
    // The API port serves gRPC as well.
    const api = new Engine(new URL(s.url).host, grpc.credentials.createInsecure());
    assert.equal((await unary(api, "HealthCheck", {})).healthy, true);
    api.close();
  } finally {
    c.close();
    await s.close();
  }
});

Deno.test("grpc: --no-grpc leaves the port to HTTP alone", async () => {
  const { s, c } = await withGrpc(["--no-grpc"]);
  try {
    assert.equal(s.running.ranks[0].front, undefined);
    assert.equal(await s.post("/v1/models", {}).then((r) => r.status), 405);
    const err = await unary(c, "HealthCheck", {}).then(() => null, (e) => e);
    assert.ok(err !== null, "no gRPC answer");
    assert.notEqual(err.code, grpc.status.OK);
    // Nor is there gRPC in --mm-encoder-only mode (grpc.md).
    await using enc = await startSim(["--mm-encoder-only"]);
    assert.equal(enc.running.ranks[0].front, undefined);
    assert.equal(enc.running.ranks[0].h2, undefined);
  } finally {
    c.close();
    await s.close();
  }
});

Deno.test("grpc: Abort also ends HTTP requests by their X-Request-Id (streamed or not)", async () => {
  const { s, c } = await withGrpc(["--inter-token-latency", "200ms"]);
  const engine = s.running.ranks[0].sim.engine;
  try {
    const body = (stream: boolean) =>
      JSON.stringify({
        model: "test-model",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 100,
        ignore_eos: true,
        stream,
      });
    const headers = (id: string) => ({ "content-type": "application/json", "x-request-id": id });
    // Streamed: the body ends early once aborted.
    const res = await fetch(`${s.url}/v1/chat/completions`, {
      method: "POST",
      headers: headers("http-stream"),
      body: body(true),
    });
    const text = res.text().catch(() => "(broken off)");
    await waitFor(() => engine.runningCount === 1, 5000, "the stream running");
    await unary(c, "Abort", { request_ids: ["http-stream"] });
    await waitFor(() => engine.runningCount === 0, 5000, "the stream's slot freed");
    assert.ok(!(await text).includes("[DONE]"), "the stream did not run to its end");
    // Not streamed: the request ends without its answer.
    const whole = fetch(`${s.url}/v1/chat/completions`, {
      method: "POST",
      headers: headers("http-whole"),
      body: body(false),
    });
    await waitFor(() => engine.runningCount === 1, 5000, "the request running");
    await unary(c, "Abort", { request_ids: ["http-whole"] });
    await waitFor(() => engine.runningCount === 0, 5000, "its slot freed");
    const r = await whole;
    await r.body?.cancel();
    assert.notEqual(r.status, 200);
    assert.equal(s.running.ranks[0].sim.inflight.size, 0, "nothing left registered");
  } finally {
    c.close();
    await s.close();
  }
});

/** The part of grpc.reflection.v1's proto a client needs to list services and fetch a file. */
const REFLECTION_PROTO = `
syntax = "proto3";
package grpc.reflection.v1;
service ServerReflection {
  rpc ServerReflectionInfo(stream ServerReflectionRequest) returns (stream ServerReflectionResponse);
}
message ServerReflectionRequest {
  string host = 1;
  oneof message_request {
    string file_by_filename = 3;
    string file_containing_symbol = 4;
    string list_services = 7;
  }
}
message ServerReflectionResponse {
  string valid_host = 1;
  ServerReflectionRequest original_request = 2;
  oneof message_response {
    FileDescriptorResponse file_descriptor_response = 4;
    ListServiceResponse list_services_response = 6;
    ErrorResponse error_response = 7;
  }
}
message FileDescriptorResponse { repeated bytes file_descriptor_proto = 1; }
message ListServiceResponse { repeated ServiceResponse service = 1; }
message ServiceResponse { string name = 1; }
message ErrorResponse { int32 error_code = 1; string error_message = 2; }
`;

Deno.test("grpc: server reflection lists the engine service and describes it", async () => {
  const protobuf = (await import("protobufjs")).default;
  const root = protobuf.parse(REFLECTION_PROTO, { keepCase: true }).root;
  const Req = root.lookupType("grpc.reflection.v1.ServerReflectionRequest");
  const Res = root.lookupType("grpc.reflection.v1.ServerReflectionResponse");
  const Reflection = grpc.makeGenericClientConstructor({
    ServerReflectionInfo: {
      path: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      requestStream: true,
      responseStream: true,
      requestSerialize: (o: object) => Req.encode(Req.fromObject(o)).finish(),
      requestDeserialize: (b: Uint8Array) => Req.toObject(Req.decode(b)),
      responseSerialize: (o: object) => Res.encode(Res.fromObject(o)).finish(),
      responseDeserialize: (b: Uint8Array) => Res.toObject(Res.decode(b), { oneofs: true }),
    },
    // deno-lint-ignore no-explicit-any
  } as any, "ServerReflection");
  const { s, port } = await withGrpc();
  const r = new Reflection(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as Client;
  try {
    const ask = (req: Msg) =>
      new Promise<Msg>((resolve, reject) => {
        const call = r.ServerReflectionInfo();
        call.on("data", (m: Msg) => {
          resolve(m);
          call.end();
        });
        call.on("error", reject);
        call.write(req);
      });
    const list = await ask({ list_services: "" });
    const names = list.list_services_response.service.map((x: Msg) => x.name);
    assert.ok(names.includes("vllm.grpc.engine.VllmEngine"), JSON.stringify(names));
    const file = await ask({ file_containing_symbol: "vllm.grpc.engine.VllmEngine" });
    const bytes: Uint8Array[] = file.file_descriptor_response.file_descriptor_proto;
    assert.ok(bytes.length >= 1);
    const text = new TextDecoder().decode(bytes[0]);
    assert.match(text, /GenerateRequest/);
    assert.match(text, /vllm\.grpc\.engine/);
  } finally {
    r.close();
    await s.close();
  }
});

Deno.test("grpc: a draining server refuses new calls; past the shutdown-timeout running ones end Unavailable", async () => {
  const { s, c } = await withGrpc(["--inter-token-latency", "500ms", "--shutdown-timeout", "1s"]);
  const engine = s.running.ranks[0].sim.engine;
  try {
    const slow = generate(c, {
      request_id: "slow",
      tokenized: { input_ids: [1, 2] },
      sampling_params: { max_tokens: 100, ignore_eos: true },
      stream: true,
    });
    const slowEnd = slow.done.then(() => null, (e) => e);
    await waitFor(() => engine.runningCount === 1, 5000, "running");
    const stopping = s.close();
    await sleep(100);
    const late = await unary(c, "HealthCheck", {}).then(() => null, (e) => e);
    assert.equal(late?.code, grpc.status.UNAVAILABLE, "a new call while draining");
    const err = await slowEnd;
    assert.equal(err?.code, grpc.status.UNAVAILABLE);
    assert.match(err.details, /shutting down/);
    await stopping;
  } finally {
    c.close();
  }
});

Deno.test("grpc: GetModelInfo reports a real tokenizer's vocabulary size", async () => {
  const { QWEN_TOKENIZER_JSON, qwenTokenizerDir } = await import("./fixtures/qwen_tokenizer.ts");
  const json = QWEN_TOKENIZER_JSON as {
    model: { vocab: Record<string, number> };
    added_tokens: { id: number }[];
  };
  const ids = [...Object.values(json.model.vocab), ...json.added_tokens.map((t) => t.id)];
  const expected = ids.reduce((m, id) => Math.max(m, id), 0) + 1;
  const { s, c } = await withGrpc([
    "--model",
    "Qwen/Qwen2.5-1.5B-Instruct",
    "--tokenizer",
    qwenTokenizerDir(),
  ]);
  try {
    const info = await unary(c, "GetModelInfo", {});
    assert.equal(info.vocab_size, expected);
    assert.ok(expected > 150_000);
  } finally {
    c.close();
    await s.close();
  }
});

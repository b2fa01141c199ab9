/**
 * The same streaming load over gRPC Generate and over HTTP SSE (chat
 * completions), for `deno task bench --only grpc`: `concurrency` loops each
 * run streamed requests of `tokens` tokens back to back for `seconds`, and
 * every token's arrival is timed. Prints one JSON line:
 * {"rps": streams per second, "ttftP50": ms, "itlP50": ms, "itlP99": ms, "errors": n}.
 *
 *   grpc_load.ts grpc <port> <seconds> <concurrency> <tokens>
 *   grpc_load.ts sse  <port> <seconds> <concurrency> <tokens>
 */
import * as grpc from "@grpc/grpc-js";
import { engineService } from "../lib/api/grpc/codec.ts";

const [mode, portArg, secondsArg, concArg, tokensArg] = Deno.args;
// A range <first>:<count> (a fleet's pods): loop i works against port first + i mod count.
const [firstPort, portCount = 1] = portArg.split(":").map(Number);
const until = performance.now() + Number(secondsArg) * 1000;
const tokens = Number(tokensArg);
const ttft: number[] = [];
const itl: number[] = [];
let done = 0;
let errors = 0;

/** One streamed request; each token's arrival time relative to the start. */
type OneStream = () => Promise<number[]>;

// deno-lint-ignore no-explicit-any
const clients = new Map<number, any>();

/** Generate calls on one client (one HTTP/2 connection) per port, as gRPC clients share channels. */
function grpcStream(port: number): OneStream {
  const Engine = grpc.makeGenericClientConstructor(engineService(), "VllmEngine");
  if (!clients.has(port)) {
    clients.set(port, new Engine(`127.0.0.1:${port}`, grpc.credentials.createInsecure()));
  }
  const client = clients.get(port);
  return () =>
    new Promise((resolve, reject) => {
      const t0 = performance.now();
      const at: number[] = [];
      const call = client.Generate({
        request_id: crypto.randomUUID(),
        tokenized: { input_ids: [1, 2, 3, 4] },
        sampling_params: { max_tokens: tokens, ignore_eos: true },
        stream: true,
      });
      // deno-lint-ignore no-explicit-any
      call.on("data", (m: any) => {
        if (m.response === "chunk") at.push(performance.now() - t0);
      });
      call.on("end", () => resolve(at));
      call.on("error", reject);
    });
}

function sseStream(port: number): OneStream {
  const body = JSON.stringify({
    model: "m",
    messages: [{ role: "user", content: "hi" }],
    max_tokens: tokens,
    ignore_eos: true,
    stream: true,
  });
  const decoder = new TextDecoder();
  return async () => {
    const t0 = performance.now();
    const at: number[] = [];
    const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    for await (const chunk of res.body!) {
      // One arrival per content frame (the role frame carries no token).
      const text = decoder.decode(chunk, { stream: true });
      const frames = text.split('"content":').length - 1 - (text.includes('"role"') ? 1 : 0);
      for (let i = 0; i < frames; i++) at.push(performance.now() - t0);
    }
    return at;
  };
}

const t0 = performance.now();
await Promise.all(
  Array.from({ length: Number(concArg) }, async (_, i) => {
    const port = firstPort + (i % portCount);
    const one = mode === "grpc" ? grpcStream(port) : sseStream(port);
    while (performance.now() < until) {
      try {
        const at = await one();
        if (at.length === 0) continue;
        ttft.push(at[0]);
        for (let i = 1; i < at.length; i++) itl.push(at[i] - at[i - 1]);
        done++;
      } catch {
        errors++;
      }
    }
  }),
);
const seconds = (performance.now() - t0) / 1000;
const pct = (a: number[], p: number) => {
  if (a.length === 0) return NaN;
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
console.log(JSON.stringify({
  rps: done / seconds,
  ttftP50: pct(ttft, 0.5),
  itlP50: pct(itl, 0.5),
  itlP99: pct(itl, 0.99),
  errors,
}));
Deno.exit(0);

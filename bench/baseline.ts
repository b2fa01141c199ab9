/**
 * The benchmark's yardstick: a bare `Deno.serve` handler that reads the JSON
 * body and answers with a fixed chat completion, or (when the body asks for
 * `"stream": true`) a fixed SSE stream of the same shape the simulator sends
 * for a 100-token answer, one enqueued chunk per frame. Nothing is computed
 * per request beyond parsing the body.
 *
 * With `--idle`, streaming answers send their headers and then nothing,
 * never ending: the yardstick for the idle-stream memory measurement.
 *
 * With `--paced`, streaming answers send `max_tokens` frames the way a paced
 * server must (first at arrival + 100 ms, then every 20 ms, each on its own
 * absolute-deadline timer): the yardstick for token timing.
 *
 * A body with `input` (embeddings) gets a fixed 384-dimension embeddings answer.
 *
 *   deno run -A bench/baseline.ts <port> [--idle | --paced]
 */

const TOKENS = 100;
const WORD = " word";

const id = "chatcmpl-00000000-0000-0000-0000-000000000000";
const created = 1700000000;
const model = "m";

const COMPLETION = JSON.stringify({
  id,
  object: "chat.completion",
  created,
  model,
  choices: [{
    index: 0,
    message: { role: "assistant", content: WORD.repeat(TOKENS), tool_calls: [] },
    logprobs: null,
    finish_reason: "length",
    stop_reason: null,
  }],
  usage: {
    prompt_tokens: 12,
    total_tokens: 12 + TOKENS,
    completion_tokens: TOKENS,
    prompt_tokens_details: { cached_tokens: 0 },
  },
  prompt_logprobs: null,
  kv_transfer_params: null,
});

/** A fixed embeddings answer of the simulator's size (one input, 384 dimensions). */
const EMBEDDING = JSON.stringify({
  object: "list",
  data: [{
    object: "embedding",
    index: 0,
    embedding: Array.from({ length: 384 }, (_, i) => ((i * 37) % 1024) / 512 - 1),
  }],
  model,
  usage: { prompt_tokens: 7, total_tokens: 7 },
});

const encoder = new TextEncoder();

function chunk(delta: unknown, finish: string | null): Uint8Array {
  const frame = {
    id,
    object: "chat.completion.chunk",
    created,
    model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  };
  return encoder.encode(`data: ${JSON.stringify(frame)}\n\n`);
}

const FRAMES: Uint8Array[] = [chunk({ role: "assistant", content: "" }, null)];
for (let k = 0; k < TOKENS; k++) {
  FRAMES.push(chunk({ content: WORD }, k === TOKENS - 1 ? "length" : null));
}
FRAMES.push(encoder.encode("data: [DONE]\n\n"));

const JSON_HEADERS = { "content-type": "application/json" };
const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
};

const port = Number(Deno.args[0] ?? "8001");
const idle = Deno.args.includes("--idle");
const paced = Deno.args.includes("--paced");
const PACED_TTFT = 100;
const PACED_ITL = 20;

/** A paced SSE answer of `n` frames, each sent at its absolute deadline. */
function pacedStream(n: number): ReadableStream<Uint8Array> {
  const t0 = performance.now();
  const frame = FRAMES[1];
  let k = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  return new ReadableStream<Uint8Array>({
    start(c) {
      const tick = () => {
        c.enqueue(frame);
        if (++k === n) {
          c.enqueue(FRAMES[FRAMES.length - 1]);
          c.close();
          return;
        }
        const due = t0 + PACED_TTFT + k * PACED_ITL;
        timer = setTimeout(tick, Math.max(0, due - performance.now()));
      };
      timer = setTimeout(tick, PACED_TTFT);
    },
    cancel() {
      clearTimeout(timer);
    },
  });
}

Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: () => console.log(`baseline listening on 127.0.0.1:${port}`),
}, async (req) => {
  if (req.method === "GET") return new Response("ok");
  const body = await req.json() as { stream?: boolean; max_tokens?: number; input?: unknown };
  if (body.input !== undefined) return new Response(EMBEDDING, { headers: JSON_HEADERS });
  if (body.stream !== true) return new Response(COMPLETION, { headers: JSON_HEADERS });
  if (paced) return new Response(pacedStream(body.max_tokens ?? TOKENS), { headers: SSE_HEADERS });
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      if (idle) return;
      for (const f of FRAMES) c.enqueue(f);
      c.close();
    },
  });
  return new Response(stream, { headers: SSE_HEADERS });
});

/** POST /v1/completions: OpenAI text completions, streaming or not. */
import type { FinishReason } from "../lib/engine.ts";
import { type GenerationPlan, planGeneration } from "../lib/generation.ts";
import { type CompletionRequest, parseCompletionRequest, type Prompt } from "../lib/protocol.ts";
import type { Simulator } from "../lib/simulator.ts";
import {
  type ChunkFormat,
  collectPlans,
  SSE_DONE,
  streamPlans,
  usageOf,
} from "../lib/streaming.ts";
import { json, readJson, type RequestContext } from "./http.ts";
import {
  generationFlags,
  injectFailure,
  rejectEarly,
  SSE_HEADERS,
  usageJson,
  usageText,
} from "./serving_common.ts";

function promptInput(sim: Simulator, p: Prompt) {
  if ("ids" in p) return { promptTokens: p.ids.length, echoText: p.ids.join(",") };
  return { promptTokens: sim.tokenizer.count(p.text), echoText: p.text };
}

function promptText(p: Prompt): string {
  return "ids" in p ? p.ids.join(",") : p.text;
}

export async function completions(req: Request, ctx: RequestContext): Promise<Response> {
  const { sim } = ctx;
  rejectEarly(req, ctx);
  const body = parseCompletionRequest(
    await readJson(req, sim.config["max-request-body-size-mb"] * 1048576),
  );
  const model = sim.models.require(body.model);
  const held = injectFailure(ctx, body.model);
  if (held) return held;
  const flags = generationFlags(req);
  // vLLM runs each prompt as its own request; choices are numbered prompt-major.
  const plans = body.prompts.map((p) =>
    planGeneration(sim, body, promptInput(sim, p), model, flags)
  );
  const id = `cmpl-${ctx.requestId}`;
  const created = Math.floor(Date.now() / 1000);
  if (body.stream) {
    const fmt = completionChunks(id, created, body, body.includeUsage || body.continuousUsage);
    const stream = streamPlans(sim.engine, plans, fmt, { ...body, signal: () => req.signal });
    return new Response(stream, { headers: SSE_HEADERS });
  }
  const running = collectPlans(sim.engine, plans, ctx.clientGone);
  if (running) await running;
  return json(completionResponse(id, created, body, plans));
}

function completionResponse(
  id: string,
  created: number,
  body: CompletionRequest,
  plans: GenerationPlan[],
) {
  return {
    id,
    object: "text_completion",
    created,
    model: body.model,
    choices: plans.flatMap((plan, p) =>
      plan.choices.map((c, j) => ({
        index: p * body.n + j,
        text: (body.echo ? promptText(body.prompts[p]) : "") + c.text,
        logprobs: null,
        finish_reason: c.finishReason,
        stop_reason: null,
        prompt_logprobs: null,
      }))
    ),
    usage: usageJson(usageOf(plans)),
    kv_transfer_params: plans[0]?.kvTransferOut ?? null,
  };
}

function completionChunks(
  id: string,
  created: number,
  body: CompletionRequest,
  withUsage: boolean,
): ChunkFormat {
  const head = `data: {"id":${JSON.stringify(id)},"object":"text_completion",` +
    `"created":${created},"model":${JSON.stringify(body.model)},"choices":[`;
  const nullUsage = withUsage ? `,"usage":null` : "";
  const frame = (index: number, text: string, finish: FinishReason | null, usage: string) =>
    `${head}{"index":${index},"text":${JSON.stringify(text)},"logprobs":null,"finish_reason":${
      finish === null ? "null" : `"${finish}"`
    },"stop_reason":null}]${usage}}\n\n`;
  // With echo, the prompt is sent ahead of the first generated token.
  const echoOf = (index: number) =>
    body.echo ? promptText(body.prompts[Math.floor(index / body.n)]) : "";
  return {
    token(index, text, k, finish, usage) {
      const u = usage ? `,"usage":${usageText(usage)}` : nullUsage;
      return frame(index, k === 0 ? echoOf(index) + text : text, finish, u);
    },
    empty(index, finish) {
      return frame(index, echoOf(index), finish, nullUsage);
    },
    usage(u) {
      return `${head}],"usage":${usageText(u)}}\n\n`;
    },
    end: () => SSE_DONE,
  };
}

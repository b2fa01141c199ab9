/** POST /v1/completions: OpenAI text completions, streaming or not. */
import type { FinishReason } from "../lib/engine.ts";
import { type GenerationPlan, planGeneration } from "../lib/generation.ts";
import { type CompletionRequest, parseCompletionRequest, type Prompt } from "../lib/protocol.ts";
import type { Simulator } from "../lib/simulator.ts";
import { type ChunkFormat, SSE_DONE, usageOf } from "../lib/streaming.ts";
import type { RequestContext } from "./http.ts";
import {
  type GenerationEndpoint,
  serveGeneration,
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

const COMPLETIONS: GenerationEndpoint<CompletionRequest> = {
  idPrefix: "cmpl",
  parse: (body, cfg) => parseCompletionRequest(body, cfg["max-sequences-per-request"]),
  sequences: (body) => body.prompts.length * body.n,
  // vLLM runs each prompt as its own request; choices are numbered prompt-major.
  plan: (sim, body, model, flags) =>
    body.prompts.map((p) => planGeneration(sim, body, promptInput(sim, p), model, flags)),
  chunks: (id, created, body) =>
    completionChunks(id, created, body, body.includeUsage || body.continuousUsage),
  respond: (id, created, body, plans) =>
    JSON.stringify(completionResponse(id, created, body, plans)),
};

export function completions(req: Request, ctx: RequestContext): Promise<Response> {
  return serveGeneration(req, ctx, COMPLETIONS);
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
      plan.spec.lengths.map((len, j) => ({
        index: p * body.n + j,
        text: (body.echo ? promptText(body.prompts[p]) : "") + plan.text(j).take(len),
        logprobs: null,
        finish_reason: plan.spec.finishReasons[j],
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
  // A token frame is prefix + JSON text + suffix; the prefix per choice and
  // the usual suffix (no finish reason, no usage) are built once per answer.
  const prefixes: string[] = [];
  const prefix = (index: number) => prefixes[index] ??= `${head}{"index":${index},"text":`;
  const tail = (finish: FinishReason | null, usage: string) =>
    `,"logprobs":null,"finish_reason":${
      finish === null ? "null" : `"${finish}"`
    },"stop_reason":null}]${usage}}\n\n`;
  const plainTail = tail(null, nullUsage);
  const frame = (index: number, text: string, finish: FinishReason | null, usage: string) =>
    prefix(index) + JSON.stringify(text) +
    (finish === null && usage === nullUsage ? plainTail : tail(finish, usage));
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

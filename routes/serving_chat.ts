/** POST /v1/chat/completions: OpenAI chat completions, streaming or not. */
import type { FinishReason } from "../lib/engine.ts";
import { type GenerationPlan, planGeneration } from "../lib/generation.ts";
import { type ChatMessage, type ChatRequest, parseChatRequest } from "../lib/protocol.ts";
import { type ChunkFormat, SSE_DONE, usageOf } from "../lib/streaming.ts";
import type { RequestContext } from "./http.ts";
import { type GenerationEndpoint, serveGeneration, usageText } from "./serving_common.ts";

/** The prompt the tokenizer counts: a minimal chat template. */
export function renderChat(messages: readonly ChatMessage[]): string {
  let s = "";
  for (const m of messages) s += `<|${m.role}|>\n${m.text}\n`;
  return s + "<|assistant|>\n";
}

/** What echo mode answers: the last user message, else the last message. */
function lastUserText(messages: readonly ChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i].role === "user") return messages[i].text;
  }
  return messages.at(-1)?.text ?? "";
}

const CHAT: GenerationEndpoint<ChatRequest> = {
  idPrefix: "chatcmpl",
  parse: (body) => parseChatRequest(body),
  sequences: (body) => body.n,
  plan: (sim, body, model, flags) => [
    planGeneration(
      sim,
      body,
      {
        promptTokens: sim.tokenizer.count(renderChat(body.messages)),
        echoText: lastUserText(body.messages),
      },
      model,
      flags,
    ),
  ],
  chunks: (id, created, body) =>
    chatChunks(id, created, body.model, body.includeUsage || body.continuousUsage),
  respond: (id, created, body, plans) => chatResponseJson(id, created, body.model, plans[0]),
};

export function chatCompletions(req: Request, ctx: RequestContext): Promise<Response> {
  return serveGeneration(req, ctx, CHAT);
}

/**
 * The chat.completion body, written directly as JSON text: the same bytes
 * JSON.stringify gives for the object (same keys, same order), without
 * building the object first.
 */
function chatResponseJson(id: string, created: number, model: string, plan: GenerationPlan) {
  let choices = "";
  const { lengths, finishReasons } = plan.spec;
  for (let i = 0; i < plan.choices; i++) {
    const text = plan.text(i).take(lengths[i]);
    choices += `${i === 0 ? "" : ","}{"index":${i},"message":{"role":"assistant","content":${
      plan.jsonSafe ? `"${text}"` : JSON.stringify(text)
    },"tool_calls":[]},"logprobs":null,"finish_reason":${
      JSON.stringify(finishReasons[i])
    },"stop_reason":null}`;
  }
  return `{"id":${JSON.stringify(id)},"object":"chat.completion","created":${created},` +
    `"model":${JSON.stringify(model)},"choices":[${choices}],"usage":${
      usageText(usageOf([plan]))
    },"prompt_logprobs":null,"kv_transfer_params":${JSON.stringify(plan.kvTransferOut)}}`;
}

/** Chat chunks, built from a fixed prefix so each token costs one string concat. */
function chatChunks(id: string, created: number, model: string, withUsage: boolean): ChunkFormat {
  const head = `data: {"id":${JSON.stringify(id)},"object":"chat.completion.chunk",` +
    `"created":${created},"model":${JSON.stringify(model)},"choices":[`;
  const nullUsage = withUsage ? `,"usage":null` : "";
  const tail = (finish: FinishReason | null, usage: string) =>
    `,"logprobs":null,"finish_reason":${finish === null ? "null" : `"${finish}"`}}]${usage}}\n\n`;
  const frame = (index: number, delta: string, finish: FinishReason | null, usage: string) =>
    `${head}{"index":${index},"delta":${delta}${tail(finish, usage)}`;
  // A token frame is prefix + JSON text + suffix; the prefix per choice and
  // the usual suffix (no finish reason, no usage) are built once per answer.
  const prefixes: string[] = [];
  const prefix = (index: number) =>
    prefixes[index] ??= `${head}{"index":${index},"delta":{"content":`;
  const plainTail = "}" + tail(null, nullUsage);
  return {
    token(index, text, k, finish, usage) {
      const u = usage ? `,"usage":${usageText(usage)}` : nullUsage;
      const role = k === 0 ? frame(index, `{"role":"assistant","content":""}`, null, u) : "";
      const rest = finish === null && usage === null ? plainTail : "}" + tail(finish, u);
      return role + prefix(index) + JSON.stringify(text) + rest;
    },
    empty(index, finish) {
      return frame(index, `{"role":"assistant","content":""}`, finish, nullUsage);
    },
    usage(u) {
      return `${head}],"usage":${usageText(u)}}\n\n`;
    },
    end: () => SSE_DONE,
  };
}

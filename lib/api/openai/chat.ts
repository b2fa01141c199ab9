/**
 * OpenAI chat completions (`POST /v1/chat/completions`): the prompt of a
 * request, and its answer as a chat.completion body or chat.completion.chunk
 * frames. Frames are written from fixed prefixes, so a token costs one
 * string concatenation; tests/golden_test.ts pins the bytes.
 */
import { type ChatInputOptions, conversationInput } from "../../chat.ts";
import type { FinishReason } from "../../engine.ts";
import type { CompletedAnswer, OutputEncoder } from "../../serving/output.ts";
import { jsonString } from "../../serving/output.ts";
import type { Admitted, PendingInput } from "../../serving/pipeline.ts";
import { chatLogprob, chatLogprobs, LogprobWriter } from "../../serving/logprobs.ts";
import type { GeneratedCall } from "../../tools/calls.ts";
import type { Tokenizer } from "../../tokenizer.ts";
import { type AnswerMeta, SSE_DONE, stopReasonText, usageText } from "./common.ts";
import type { ChatRequest } from "./protocol.ts";

export function chatInput(
  body: ChatRequest,
  tokenizer: Tokenizer,
  opts: ChatInputOptions,
): PendingInput {
  return conversationInput(body, body.messages, body.toolDefs, tokenizer, opts);
}

export function chatId(meta: AnswerMeta): string {
  return `chatcmpl-${meta.requestId}`;
}

/** The chat.completion body, written directly as the JSON text of the object. */
export function chatResponse(
  meta: AnswerMeta,
  body: ChatRequest,
  admitted: Admitted,
  answer: CompletedAnswer,
): string {
  let choices = "";
  const k = body.logprobs;
  for (const c of answer.choices) {
    // Tool calls leave `content` out; logprobs only for a text that has tokens.
    const message = c.calls
      ? `{"role":"assistant","tool_calls":[${c.calls.map(callJson).join(",")}]}`
      : `{"role":"assistant","content":${jsonString(c.text, c.jsonSafe)},"tool_calls":[]}`;
    const logprobs = k !== undefined && c.pieces?.some((t) => t !== "")
      ? chatLogprobs(c.pieces, 0, k, admitted.logprobMemo)
      : "null";
    choices += `${c.index === 0 ? "" : ","}{"index":${c.index},"message":${message},` +
      `"logprobs":${logprobs},"finish_reason":"${c.finish}","stop_reason":${
        stopReasonText(c.stopReason)
      }}`;
  }
  return `{"id":${
    JSON.stringify(chatId(meta))
  },"object":"chat.completion","created":${meta.created},` +
    `"model":${JSON.stringify(body.model)},"choices":[${choices}],"usage":${
      usageText(answer.usage)
    },"prompt_logprobs":null,"kv_transfer_params":${
      JSON.stringify(admitted.plans[0].kvTransferOut)
    }}`;
}

/** chat.completion.chunk frames. */
export function chatEncoder(
  meta: AnswerMeta,
  body: ChatRequest,
  admitted: Admitted,
): OutputEncoder {
  const withUsage = body.includeUsage || body.continuousUsage;
  // Built-in sentences' tokens need no JSON escaping (JSON.stringify per token is ~5% of a stream).
  const safe = admitted.plans.every((p) => p.jsonSafe);
  const head = `data: {"id":${JSON.stringify(chatId(meta))},"object":"chat.completion.chunk",` +
    `"created":${meta.created},"model":${JSON.stringify(body.model)},"choices":[`;
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
  const top = body.logprobs;
  const lp = top === undefined ? null : new LogprobWriter(top, chatLogprob, admitted.logprobMemo);
  // With logprobs each token's frame carries its entry (none for an empty token).
  const lpTail = (text: string, k: number, finish: FinishReason | null, usage: string) =>
    `},"logprobs":${text === "" ? "null" : `{"content":[${lp!.entry(text, k)}]}`},"finish_reason":${
      finish === null ? "null" : `"${finish}"`
    }}]${usage}}\n\n`;
  return {
    start: () => "",
    token(index, text, k, finish, usage) {
      const u = usage ? `,"usage":${usageText(usage)}` : nullUsage;
      const role = k === 0 ? frame(index, `{"role":"assistant","content":""}`, null, u) : "";
      const rest = top !== undefined
        ? lpTail(text, k, finish, u)
        : finish === null && usage === null
        ? plainTail
        : "}" + tail(finish, u);
      return role + prefix(index) + jsonString(text, safe) + rest;
    },
    toolStart: (index) => frame(index, `{"role":"assistant"}`, null, nullUsage),
    // The reference: a frame per argument token, the name on a call's first
    // piece, finish_reason on the last piece of every call.
    toolPiece(index, calls, c, piece, _finish, usage) {
      const call = calls[c];
      const u = usage ? `,"usage":${usageText(usage)}` : nullUsage;
      const name = piece === 0 ? JSON.stringify(call.name) : "null";
      const delta = `{"tool_calls":[{"function":{"name":${name},"arguments":${
        JSON.stringify(call.pieces[piece])
      }},"id":"${TOOL_ID}${call.digits}","type":"function","index":${c}}]}`;
      return frame(index, delta, piece === call.pieces.length - 1 ? "tool_calls" : null, u);
    },
    // A choice with tokens ended in its last token's frame.
    // (a cache_threshold answer has no role chunk: an empty delta, api.md).
    choiceEnd: (index, finish, tokens) =>
      tokens > 0 ? "" : frame(
        index,
        finish === "cache_threshold" ? "{}" : `{"role":"assistant","content":""}`,
        finish,
        nullUsage,
      ),
    end: (u) => (body.includeUsage ? `${head}],"usage":${usageText(u)}}\n\n` : "") + SSE_DONE,
  };
}

const TOOL_ID = "chatcmpl-tool-";

/** A call in a chat message: `{function:{name, arguments}, id, type, index}`. */
function callJson(call: GeneratedCall, index: number): string {
  return `{"function":{"name":${JSON.stringify(call.name)},"arguments":${
    JSON.stringify(call.arguments)
  }},"id":"${TOOL_ID}${call.digits}","type":"function","index":${index}}`;
}

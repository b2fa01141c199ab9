/**
 * OpenAI text completions (`POST /v1/completions`): one engine request per
 * prompt, choices numbered prompt-major, and the answer as a text_completion
 * body or frames.
 */
import type { FinishReason } from "../../engine.ts";
import { type CompletedAnswer, jsonString, type OutputEncoder } from "../../serving/output.ts";
import type { PromptInput } from "../../serving/params.ts";
import { type Admitted, generationInput, type PendingInput } from "../../serving/pipeline.ts";
import type { Encoding, Tokenizer } from "../../tokenizer.ts";
import {
  byteLength,
  completionLogprobs,
  completionTop,
  LogprobWriter,
} from "../../serving/logprobs.ts";
import { type AnswerMeta, SSE_DONE, stopReasonText, usageText } from "./common.ts";
import type { CompletionRequest, Prompt } from "./protocol.ts";

function promptText(p: Prompt): string {
  return "ids" in p ? p.ids.join(",") : p.text;
}

export function completionInput(
  body: CompletionRequest,
  tokenizer: Tokenizer,
  withIds = false,
): PendingInput {
  return generationInput(
    body,
    body.prompts.map((p): PromptInput | Promise<PromptInput> => {
      if ("ids" in p) {
        return { promptTokens: p.ids.length, promptIds: p.ids, echoText: p.ids.join(",") };
      }
      if (withIds) {
        const input = (e: Encoding): PromptInput => ({
          promptTokens: e.ids.length,
          promptIds: e.ids,
          echoText: p.text,
        });
        const enc = tokenizer.encode(p.text, true);
        return enc instanceof Promise ? enc.then(input) : input(enc);
      }
      const input = (promptTokens: number): PromptInput => ({ promptTokens, echoText: p.text });
      const n = tokenizer.count(p.text, true);
      return n instanceof Promise ? n.then(input) : input(n);
    }),
  );
}

export function completionId(meta: AnswerMeta): string {
  return `cmpl-${meta.requestId}`;
}

/** The stop string or id that ended choice `index`, else null. */
function stopReasonOf(admitted: Admitted, n: number, index: number): string | number | null {
  return admitted.plans[Math.floor(index / n)]?.stopReasons?.[index % n] ?? null;
}

export function completionResponse(
  meta: AnswerMeta,
  body: CompletionRequest,
  admitted: Admitted,
  answer: CompletedAnswer,
): string {
  const k = body.logprobs;
  const choices = answer.choices.map((c) => {
    const text = (body.echo ? promptText(body.prompts[Math.floor(c.index / body.n)]) : "") +
      c.text;
    const logprobs = k !== undefined && c.pieces?.some((t) => t !== "")
      ? completionLogprobs(
        c.pieces,
        0,
        0,
        k,
        new LogprobWriter(k, completionTop, admitted.logprobMemo),
      )
      : "null";
    return `{"index":${c.index},"text":${
      jsonString(text, c.jsonSafe && !body.echo)
    },"logprobs":${logprobs},` +
      `"finish_reason":${JSON.stringify(c.finish)},"stop_reason":${
        stopReasonText(c.stopReason)
      },"prompt_logprobs":null}`;
  });
  return `{"id":${JSON.stringify(completionId(meta))},"object":"text_completion",` +
    `"created":${meta.created},"model":${JSON.stringify(body.model)},` +
    `"choices":[${choices.join(",")}],"usage":${usageText(answer.usage)},` +
    `"kv_transfer_params":${JSON.stringify(admitted.plans[0]?.kvTransferOut ?? null)}}`;
}

export function completionEncoder(
  meta: AnswerMeta,
  body: CompletionRequest,
  admitted: Admitted,
): OutputEncoder {
  const withUsage = body.includeUsage || body.continuousUsage;
  // Built-in sentences' tokens need no JSON escaping.
  const safe = admitted.plans.every((p) => p.jsonSafe);
  const head = `data: {"id":${JSON.stringify(completionId(meta))},"object":"text_completion",` +
    `"created":${meta.created},"model":${JSON.stringify(body.model)},"choices":[`;
  const nullUsage = withUsage ? `,"usage":null` : "";
  // A token frame is prefix + JSON text + suffix; the prefix per choice and
  // the usual suffix (no finish reason, no usage) are built once per answer.
  const prefixes: string[] = [];
  const prefix = (index: number) => prefixes[index] ??= `${head}{"index":${index},"text":`;
  const tail = (index: number, finish: FinishReason | null, usage: string, lp = "null") =>
    `,"logprobs":${lp},"finish_reason":${finish === null ? "null" : `"${finish}"`},"stop_reason":${
      finish === null ? "null" : stopReasonText(stopReasonOf(admitted, body.n, index))
    }}]${usage}}\n\n`;
  const plainTail = tail(0, null, nullUsage);
  const frame = (index: number, text: string, finish: FinishReason | null, usage: string) =>
    prefix(index) + jsonString(text, safe) +
    (finish === null && usage === nullUsage ? plainTail : tail(index, finish, usage));
  const top = body.logprobs;
  const tops = top === undefined
    ? null
    : new LogprobWriter(top, completionTop, admitted.logprobMemo);
  // With logprobs: each token's entry, at its running byte offset in the answer.
  const offsets: number[] = [];
  const lpFrame = (
    index: number,
    text: string,
    k: number,
    finish: FinishReason | null,
    u: string,
  ) => {
    const at = k === 0 ? 0 : offsets[index];
    offsets[index] = at + byteLength(text);
    const lp = text === "" ? "null" : completionLogprobs([text], k, at, top!, tops!);
    return prefix(index) + JSON.stringify(k === 0 ? echoOf(index) + text : text) +
      tail(index, finish, u, lp);
  };
  // With echo, the prompt is sent ahead of the first generated token.
  const echoOf = (index: number) =>
    body.echo ? promptText(body.prompts[Math.floor(index / body.n)]) : "";
  return {
    start: () => "",
    token(index, text, k, finish, usage) {
      const u = usage ? `,"usage":${usageText(usage)}` : nullUsage;
      if (top !== undefined) return lpFrame(index, text, k, finish, u);
      return frame(index, k === 0 ? echoOf(index) + text : text, finish, u);
    },
    choiceEnd: (index, finish, tokens) =>
      tokens > 0 ? "" : frame(index, echoOf(index), finish, nullUsage),
    end: (u) => (body.includeUsage ? `${head}],"usage":${usageText(u)}}\n\n` : "") + SSE_DONE,
  };
}

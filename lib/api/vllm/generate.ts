/**
 * vLLM's token-in/token-out endpoint (`POST /inference/v1/generate`), used
 * by llm-d's routing sidecar: token ids in, the answer's token ids out,
 * streamed or not (generate-and-embeddings.md).
 */
import type { FinishReason } from "../../engine.ts";
import { badRequest } from "../../errors.ts";
import type { CompletedAnswer, OutputEncoder } from "../../serving/output.ts";
import type { GenerationParams } from "../../serving/params.ts";
import type { Admitted, GenerationInput } from "../../serving/pipeline.ts";
import { tokenIdsAt } from "../../serving/plan.ts";
import type { Tokenizer } from "../../tokenizer.ts";
import { isObject, isTokenId, optBool, optObject, optString } from "../../validate.ts";
import { type AnswerMeta, SSE_DONE, usageText } from "../openai/common.ts";
import { parseKvTransfer } from "../openai/protocol.ts";

export interface GenerateRequest {
  params: GenerationParams;
  tokenIds: number[];
}

/** The reference's message for max_tokens ≤ 0. */
const BAD_MAX_TOKENS = "Max completion tokens and max tokens should be positive";

export function parseGenerateRequest(body: unknown): GenerateRequest {
  if (!isObject(body)) throw badRequest("The request body must be a JSON object.");
  const ids = body.token_ids;
  if (ids === undefined || ids === null) throw badRequest("Missing input token_ids", "token_ids");
  if (!Array.isArray(ids) || !ids.every(isTokenId)) {
    throw badRequest("'token_ids' must be an array of token ids.", "token_ids");
  }
  // vLLM's words for an empty prompt.
  if (ids.length === 0) throw badRequest("The decoder prompt cannot be empty", "token_ids");
  const sp = optObject(body, "sampling_params");
  if (!sp) throw badRequest("Missing sampling_params field", "sampling_params");
  const mt = sp.max_tokens;
  let maxTokens: number | undefined;
  if (mt !== undefined && mt !== null) {
    if (typeof mt !== "number" || !Number.isSafeInteger(mt)) {
      throw badRequest("'sampling_params.max_tokens' must be an integer.", "max_tokens");
    }
    if (mt <= 0) throw badRequest(BAD_MAX_TOKENS, "max_tokens");
    maxTokens = mt;
  }
  const ignoreEos = optBool(body, "ignore_eos") ?? false;
  if (ignoreEos && maxTokens === undefined) {
    throw badRequest(
      "Ignore_eos is true but max_completion_tokens (or max_tokens) is not set",
      "ignore_eos",
    );
  }
  const stream = optBool(body, "stream") ?? false;
  const so = optObject(body, "stream_options");
  // Root kv_transfer_params, else where vLLM sometimes puts them.
  const extra = optObject(sp, "extra_args");
  const kv = optObject(body, "kv_transfer_params") ??
    (extra ? optObject(extra, "kv_transfer_params") : undefined);
  return {
    tokenIds: ids as number[],
    params: {
      model: optString(body, "model") ?? "",
      stream,
      includeUsage: so ? optBool(so, "include_usage") ?? false : false,
      continuousUsage: false,
      maxTokens,
      ignoreEos,
      n: 1,
      kvTransfer: kv ? parseKvTransfer(kv) : undefined,
    },
  };
}

/** `displayName` answers a request that names no model (vLLM's model is optional here). */
export function generateInput(body: GenerateRequest, displayName: string): GenerationInput {
  body.params.model ||= displayName;
  return {
    params: body.params,
    prompts: [{
      promptTokens: body.tokenIds.length,
      promptIds: body.tokenIds,
      echoText: body.tokenIds.join(","),
    }],
  };
}

export function generateResponse(
  meta: AnswerMeta,
  admitted: Admitted,
  answer: CompletedAnswer,
  tokenizer: Tokenizer,
): string {
  const kv = admitted.plans[0].kvTransferOut;
  const c = answer.choices[0];
  const recorded = admitted.plans[0].recorded?.[0]?.answer;
  let ids: readonly number[] = [];
  if (c.tokens > 0 && recorded) {
    // A dataset's answer: its recorded ids, then the ids of any built-in padding.
    const own = Math.min(c.tokens, recorded.ids.length);
    const prefix = recorded.strings.slice(0, own).join("");
    const rest = c.tokens > own ? tokenizer.pieceIds(c.text.slice(prefix.length)) : [];
    ids = [...recorded.ids.slice(0, own), ...rest];
  } else if (c.tokens > 0) ids = tokenizer.pieceIds(c.text);
  const choice = `{"index":0,"finish_reason":"${c.finish}","token_ids":${JSON.stringify(ids)}}`;
  return `{${kv ? `"kv_transfer_params":${JSON.stringify(kv)},` : ""}"choices":[${choice}],` +
    `"request_id":${JSON.stringify(meta.requestId)},"ec_transfer_params":null}`;
}

/** `data:` frames, one token each; the last carries the finish reason. */
export function generateEncoder(
  meta: AnswerMeta,
  body: GenerateRequest,
  tokenizer: Tokenizer,
  admitted: Admitted,
): OutputEncoder {
  const idsOf = tokenIdsAt(admitted.plans[0], 0, tokenizer);
  const head = `data: {"request_id":${JSON.stringify(meta.requestId)},"choices":[`;
  const frame = (ids: readonly number[], finish: FinishReason | null) =>
    `${head}{"index":0,"finish_reason":${finish === null ? "null" : `"${finish}"`},` +
    `"token_ids":${JSON.stringify(ids)}}]}\n\n`;
  return {
    start: () => "",
    token: (_index, text, k, finish) => frame(idsOf(text, k), finish),
    choiceEnd: (_index, finish, tokens) => tokens > 0 ? "" : frame([], finish),
    end: (u) =>
      (body.params.includeUsage ? `${head}],"usage":${usageText(u)}}\n\n` : "") + SSE_DONE,
  };
}

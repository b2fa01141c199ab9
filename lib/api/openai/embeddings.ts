/**
 * OpenAI embeddings (`POST /v1/embeddings`): synthetic vectors from the
 * input's token ids (the reference's formula, generate-and-embeddings.md).
 * Each input is one prefill-only request in the engine, as in vLLM.
 */
import { badRequest } from "../../errors.ts";
import type { CompletedAnswer } from "../../serving/output.ts";
import type { GenerationInput, PendingInput } from "../../serving/pipeline.ts";
import type { GenerationParams } from "../../serving/params.ts";
import type { Encoding, Tokenizer } from "../../tokenizer.ts";
import { isObject, isTokenId, optString } from "../../validate.ts";

export interface EmbeddingRequest {
  /** The requested name; "" when absent (the first served name answers). */
  model: string;
  inputs: ({ text: string } | { ids: number[] })[];
  dimensions: number;
  base64: boolean;
  /** Each input's token ids, filled when the request is tokenized. */
  tokenIds: number[][];
}

const NO_INPUT = "input is required and must be a non-empty string or array";

/** The largest vector one answer writes (vLLM's largest models use 4 096-8 192). */
export const MAX_DIMENSIONS = 65_536;
/** Vectors × dimensions of one answer: ~50 MB of JSON at most. */
export const MAX_ELEMENTS = 1 << 22;

/**
 * `maxInputs`: --max-sequences-per-request; a longer input list is refused
 * before any input is looked at or tokenized.
 */
export function parseEmbeddingRequest(
  body: unknown,
  defaultDimensions: number,
  maxInputs = Infinity,
): EmbeddingRequest {
  if (!isObject(body)) throw badRequest("The request body must be a JSON object.");
  const model = optString(body, "model") ?? "";
  const raw = body.input;
  if (Array.isArray(raw) && raw.length > maxInputs && typeof raw[0] !== "number") {
    throw badRequest(
      `Too many inputs: ${raw.length}; at most ${maxInputs} per request ` +
        `(--max-sequences-per-request).`,
      "input",
    );
  }
  let inputs: EmbeddingRequest["inputs"];
  if (typeof raw === "string") inputs = [{ text: raw }];
  else if (!Array.isArray(raw) || raw.length === 0) throw badRequest(NO_INPUT, "input");
  else if (typeof raw[0] === "string") {
    // The first element decides the kind; a mixed array is refused.
    if (!raw.every((x) => typeof x === "string")) throw badRequest(NO_INPUT, "input");
    inputs = (raw as string[]).map((text) => ({ text }));
  } else if (typeof raw[0] === "number") {
    if (!raw.every((x) => typeof x === "number" && Number.isInteger(x))) {
      throw badRequest(NO_INPUT, "input");
    }
    inputs = [{ ids: (raw as number[]).map(clampId) }];
  } else if (Array.isArray(raw[0])) {
    if (
      !raw.every((a) =>
        Array.isArray(a) && a.every((x) => typeof x === "number" && Number.isInteger(x))
      )
    ) throw badRequest(NO_INPUT, "input");
    inputs = (raw as number[][]).map((a) => ({ ids: a.map(clampId) }));
  } else throw badRequest(NO_INPUT, "input");
  for (const i of inputs) {
    if ("text" in i && i.text === "") throw badRequest("input cannot be an empty string", "input");
  }
  const dims = body.dimensions;
  let dimensions = defaultDimensions;
  if (dims !== undefined && dims !== null) {
    if (typeof dims !== "number" || !Number.isSafeInteger(dims)) {
      throw badRequest("dimensions must be an integer", "dimensions");
    }
    if (dims < 1) throw badRequest("dimensions must be at least 1", "dimensions");
    if (dims > MAX_DIMENSIONS) {
      throw badRequest(`dimensions must be at most ${MAX_DIMENSIONS}`, "dimensions");
    }
    dimensions = dims;
  }
  if (inputs.length * dimensions > MAX_ELEMENTS) {
    throw badRequest(
      `This request asks for ${inputs.length} vectors of ${dimensions} dimensions; at most ` +
        `${MAX_ELEMENTS} elements per request.`,
      "dimensions",
    );
  }
  return {
    model,
    inputs,
    dimensions,
    base64: body.encoding_format === "base64",
    tokenIds: [],
  };
}

/** Negative token ids count as 0 (the reference clamps them). */
function clampId(x: number): number {
  return x < 0 ? 0 : isTokenId(x) ? x : 0xffffffff;
}

/** One prefill-only engine request per input. */
export function embeddingInput(
  body: EmbeddingRequest,
  tokenizer: Tokenizer,
  displayName: string,
): PendingInput {
  body.model ||= displayName;
  const encoded = body.inputs.map((i) => "ids" in i ? i.ids : tokenizer.encode(i.text, true));
  const params: GenerationParams = {
    model: body.model,
    stream: false,
    includeUsage: false,
    continuousUsage: false,
    ignoreEos: false,
    n: 1,
    prefillOnly: true,
  };
  const input = (ids: number[][]): GenerationInput => {
    body.tokenIds = ids;
    return {
      params,
      prompts: ids.map((t) => ({ promptTokens: t.length, promptIds: t, echoText: "" })),
    };
  };
  const idsOf = (e: number[] | Encoding) => Array.isArray(e) ? e : e.ids;
  if (!encoded.some((e) => e instanceof Promise)) {
    return input(encoded.map((e) => idsOf(e as number[] | Encoding)));
  }
  return Promise.all(encoded).then((all) => input(all.map(idsOf)));
}

/**
 * Element i of the vector of tokens t (length n, dimension d): the first n
 * from the ids mod 1024, the rest cycling through them mod 256, each mapped
 * onto [-1, 1); all zeros without tokens.
 */
export function embeddingVector(ids: readonly number[], d: number): Float32Array {
  const v = new Float32Array(d);
  const n = ids.length;
  if (n === 0) return v;
  for (let i = 0; i < d; i++) {
    v[i] = i < n ? (2 * (ids[i] % 1024)) / 1024 - 1 : (2 * (ids[i % n] % 256)) / 256 - 1;
  }
  return v;
}

/**
 * Every element is one of 1 024 + 256 values: their JSON texts, made once,
 * so an answer is table lookups rather than 384 number-to-string
 * conversions (which cost most of an embeddings request).
 */
const HEAD_TEXT = Array.from({ length: 1024 }, (_, k) => String((2 * k) / 1024 - 1));
const TAIL_TEXT = Array.from({ length: 256 }, (_, k) => String((2 * k) / 256 - 1));

/**
 * embeddingVector's JSON array text. Past the n token elements the vector
 * repeats with period n, so the text is the head, then one period's text
 * repeated (a native repeat, not d concatenations).
 */
export function embeddingJson(ids: readonly number[], d: number): string {
  const n = ids.length;
  if (d <= 0) return "[]";
  if (n === 0) return `[0${",0".repeat(d - 1)}]`;
  const headLen = Math.min(n, d);
  const head = new Array<string>(headLen);
  for (let i = 0; i < headLen; i++) head[i] = HEAD_TEXT[ids[i] % 1024];
  let out = "[" + head.join(",");
  const rest = d - headLen;
  if (rest > 0) {
    const period = new Array<string>(n);
    for (let i = 0; i < n; i++) period[i] = TAIL_TEXT[ids[i] % 256];
    const whole = Math.floor(rest / n);
    if (whole > 0) out += ("," + period.join(",")).repeat(whole);
    const part = rest - whole * n;
    if (part > 0) out += "," + period.slice(0, part).join(",");
  }
  return out + "]";
}

/** Little-endian float32 bytes, base64 (standard alphabet). */
function base64Of(v: Float32Array): string {
  const bytes = new Uint8Array(v.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < v.length; i++) view.setFloat32(i * 4, v[i], true);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

export function embeddingResponse(body: EmbeddingRequest, answer: CompletedAnswer): string {
  let data = "";
  for (let index = 0; index < body.tokenIds.length; index++) {
    const ids = body.tokenIds[index];
    const embedding = body.base64
      ? `"${base64Of(embeddingVector(ids, body.dimensions))}"`
      : embeddingJson(ids, body.dimensions);
    data += `${
      index === 0 ? "" : ","
    }{"object":"embedding","index":${index},"embedding":${embedding}}`;
  }
  const p = answer.usage.prompt;
  return `{"object":"list","data":[${data}],"model":${JSON.stringify(body.model)},` +
    `"usage":{"prompt_tokens":${p},"total_tokens":${p}}}`;
}

/**
 * The HTTP side of the generation pipeline, shared by every family: the
 * special request headers, failure injection, reading the body, then an SSE
 * stream (headers at once) or a JSON answer. A family brings its parser,
 * its OutputEncoder and its response body; lib/serving does the rest.
 */
import type { Config } from "../lib/config.ts";
import { ApiError } from "../lib/errors.ts";
import { failureError } from "../lib/failures.ts";
import type { CompletedAnswer, OutputEncoder } from "../lib/serving/output.ts";
import type { GenerationFlags } from "../lib/serving/params.ts";
import {
  admit,
  type Admitted,
  checkServing,
  completeAnswer,
  type GenerationInput,
  injectedFailure,
  type PendingInput,
  streamAnswer,
} from "../lib/serving/pipeline.ts";
import type { Simulator } from "../lib/simulator.ts";
import type { ChatInputOptions } from "../lib/chat.ts";
import type { AnswerMeta } from "../lib/api/openai/common.ts";
import { header, jsonText, readJson, type RequestContext } from "./http.ts";

/** One API family as the HTTP adapter sees it. */
export interface HttpFamily<B> {
  /** How errors name a request, before " (req id …)" (the reference's words). */
  label: string;
  /** Validates the JSON body (ApiError 400 on bad input). */
  parse(body: unknown, cfg: Config): B;
  /** The request as the pipeline takes it. */
  input(sim: Simulator, body: B): PendingInput;
  /** The streamed answer's events, written as SSE (absent: the family never streams). */
  encoder?(meta: AnswerMeta, body: B, admitted: Admitted): OutputEncoder;
  /** The JSON text of a complete answer. */
  respond(meta: AnswerMeta, body: B, admitted: Admitted, answer: CompletedAnswer): string;
  /** The special headers it honours (default: all of generationFlags). */
  flags?(req: Request): GenerationFlags;
}

export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
};

/**
 * The life of a generation request over HTTP. Each step that may wait
 * (a body still arriving, the render sidecar, pacing) returns a promise;
 * a zero-latency answer to a body already in hand is made with no promise
 * at all.
 */
export function serveGeneration<B>(
  req: Request,
  ctx: RequestContext,
  family: HttpFamily<B>,
): Response | Promise<Response> {
  rejectEarly(req, ctx);
  const held = injectFailure(ctx);
  if (held) return held;
  const raw = readJson(req, ctx);
  if (raw instanceof Promise) return raw.then((b) => withBody(req, ctx, family, b));
  return withBody(req, ctx, family, raw);
}

function withBody<B>(
  req: Request,
  ctx: RequestContext,
  family: HttpFamily<B>,
  raw: unknown,
): Response | Promise<Response> {
  const body = family.parse(raw, ctx.sim.config);
  const input = family.input(ctx.sim, body);
  // The in-process tokenizers answer at once: only the render sidecar is awaited.
  if (input instanceof Promise) return input.then((i) => answer(req, ctx, family, body, i));
  return answer(req, ctx, family, body, input);
}

function answer<B>(
  req: Request,
  ctx: RequestContext,
  family: HttpFamily<B>,
  body: B,
  input: GenerationInput,
): Response | Promise<Response> {
  const { sim } = ctx;
  const flags = (family.flags ?? generationFlags)(req);
  flags.label = `${family.label} (req id ${ctx.requestId})`;
  const admitted = admit(sim, input, flags);
  const meta: AnswerMeta = { requestId: ctx.requestId, created: Math.floor(Date.now() / 1000) };
  if (input.params.stream && family.encoder) {
    const stream = streamAnswer(sim, admitted, family.encoder(meta, body, admitted), {
      continuousUsage: input.params.continuousUsage,
      signal: () => req.signal, // a streamed body is cancelled on disconnect anyway
      arrival: ctx.arrival,
      // A long answer can be ended by the gRPC Abort RPC naming its request id.
      onLong: (abort) => {
        const release = ctx.holdConnection();
        const forget = ctx.abortable(abort);
        return () => {
          release();
          forget();
        };
      },
      id: meta.requestId,
    });
    return new Response(stream, { headers: SSE_HEADERS });
  }
  const answer = completeAnswer(sim, admitted, ctx.clientGone, ctx.arrival, ctx);
  // A zero-latency answer is complete already.
  if (answer instanceof Promise) {
    return answer.then((a) => jsonText(family.respond(meta, body, admitted, a)));
  }
  return jsonText(family.respond(meta, body, admitted, answer));
}

/** The prompt's token ids are needed: the KV cache's blocks, the dataset's prompt hash. */
export function needsPromptIds(sim: Simulator): boolean {
  return sim.kv !== null || sim.dataset !== null;
}

/** How a conversation's input is built on this simulator. */
export function chatInputOptions(sim: Simulator): ChatInputOptions {
  return {
    withIds: needsPromptIds(sim),
    skipToolValidation: sim.config["skip-tool-validation"],
    toolChecks: sim.toolChecks,
  };
}

/** Special request headers that steer generation (api.md). */
export function generationFlags(req: Request): GenerationFlags {
  return { forceCacheThreshold: parseBool(header(req, "x-cache-threshold-finish-reason")) };
}

/** Go's strconv.ParseBool truth values (api.md, "Special request headers"). */
export function parseBool(v: string | null): boolean {
  return v === "1" || v === "t" || v === "T" || v === "TRUE" || v === "true" || v === "True";
}

/**
 * Checks every generation endpoint makes before reading the body: 503 while
 * sleeping, then `X-Return-Error: <status>` (answer at once with that status;
 * a value that is not an integer 400–599 → 400). Throws ApiError.
 */
export function rejectEarly(req: Request, ctx: RequestContext): void {
  checkServing(ctx.sim);
  const raw = header(req, "x-return-error");
  if (raw === null) return;
  const v = raw.trim();
  const status = /^\d{3}$/.test(v) ? Number(v) : NaN;
  if (!(status >= 400 && status <= 599)) {
    throw new ApiError(
      400,
      `Invalid X-Return-Error header ${JSON.stringify(raw)}: must be an HTTP error status 400-599.`,
    );
  }
  throw new ApiError(status, `Simulated error requested by X-Return-Error: ${status}.`);
}

/**
 * Failure injection, as the reference simulator does it: on arrival, before
 * the body is read, with messages naming the served model (--model). Throws
 * the drawn failure's ApiError; for a `timeout` failure it returns a promise
 * that never resolves: it rejects when the client leaves or the server-side
 * bound passes. Returns undefined when the request goes on.
 */
export function injectFailure(ctx: RequestContext): Promise<never> | undefined {
  const { sim } = ctx;
  const type = injectedFailure(sim);
  if (type === null) return undefined;
  if (type === "timeout") return sim.held.hold(ctx.clientGone());
  throw failureError(type, sim.config.model);
}

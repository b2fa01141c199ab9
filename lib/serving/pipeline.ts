/**
 * The transport-neutral generation pipeline every API family runs through:
 * serving checks, failure injection, model resolution, the per-request
 * limits and planning (admit), then either a stream of the family's output
 * events or a complete answer once the last token would have been sent.
 * Nothing here knows HTTP: the routes (and later gRPC) bring the request,
 * its client-gone signal and an OutputEncoder.
 */
import type { Config } from "../config.ts";
import { ApiError, badRequest } from "../errors.ts";
import { drawFailure, type FailureType } from "../failures.ts";
import type { ResolvedModel } from "../models.ts";
import type { Simulator } from "../simulator.ts";
import { type CompletedAnswer, completedAnswer, type OutputEncoder } from "./output.ts";
import type { GenerationFlags, GenerationParams, PromptInput } from "./params.ts";
import { type GenerationPlan, OutputBudget, planGeneration } from "./plan.ts";
import { type AbortRegistry, collectPlans, type SignalSource, streamPlans } from "./stream.ts";
import { checkToolPolicy } from "../tools/calls.ts";
import type { ToolCheckCache } from "../tools/checks.ts";
import type { LogprobMemo } from "./logprobs.ts";
import type { ToolDef } from "../tools/tool.ts";
import { validateTools } from "../tools/validate.ts";

/** A parsed generation request: its parameters and its prompts, one engine request each. */
export interface GenerationInput {
  params: GenerationParams;
  prompts: readonly PromptInput[];
}

/** A request's input whose prompts may still be tokenizing (the render sidecar answers over HTTP). */
export type PendingInput = GenerationInput | Promise<GenerationInput>;

/**
 * The input of `prompts`, at once when every prompt is tokenized already
 * (the in-process tokenizers): the hot path never awaits.
 */
export function generationInput(
  params: GenerationParams,
  prompts: readonly (PromptInput | Promise<PromptInput>)[],
): PendingInput {
  if (!prompts.some((p) => p instanceof Promise)) {
    return { params, prompts: prompts as PromptInput[] };
  }
  return Promise.all(prompts).then((ready) => ({ params, prompts: ready }));
}

/**
 * The input `make` builds, once the request's tools pass validation
 * (tools-and-logprobs.md; none with --skip-tool-validation). Only the first
 * request with tools waits, while the validator loads.
 */
export function validatedInput(
  tools: readonly ToolDef[] | undefined,
  skip: boolean,
  make: () => PendingInput,
  memo?: ToolCheckCache,
): PendingInput {
  const checked = tools === undefined || skip ? undefined : validateTools(tools, memo);
  return checked instanceof Promise ? checked.then(make) : make();
}

/** A request the engine will run: its model and one plan per prompt. */
export interface Admitted {
  model: ResolvedModel;
  plans: GenerationPlan[];
  /** The pod's written logprob entries, shared by its answers. */
  logprobMemo: LogprobMemo;
}

/** 503 while sleeping: every generation family checks this first. */
export function checkServing(sim: Simulator): void {
  if (sim.sleeping) {
    throw new ApiError(503, "The server is sleeping; POST /wake_up to resume.");
  }
}

/** Failure injection's draw for one arriving request (null: it goes on). */
export function injectedFailure(sim: Simulator): FailureType | null {
  return drawFailure(sim.config, sim.rng);
}

/**
 * Resolves the model, applies the per-request limits and plans every
 * prompt. Throws ApiError (404 unknown model, 400 over a limit or the
 * context window) before anything is submitted.
 */
export function admit(
  sim: Simulator,
  input: GenerationInput,
  flags: GenerationFlags = {},
): Admitted {
  const cfg = sim.config;
  const { params, prompts } = input;
  const model = sim.models.require(params.model);
  if (params.stream && params.kvTransfer?.do_remote_decode === true) {
    throw badRequest("Prefill does not support streaming", "stream");
  }
  if (params.tools) checkToolPolicy(params.tools, flags.label ?? "request", sim.toolChecks);
  const sequences = prompts.length * params.n;
  checkSequences(sequences, cfg);
  const budget = new OutputBudget(cfg["max-output-tokens-per-request"], params.maxTokens);
  // With max_tokens the whole reservation is known before anything is drawn.
  if (params.maxTokens !== undefined) budget.take(sequences * params.maxTokens);
  const perPlan = params.maxTokens === undefined ? budget : undefined;
  const plans = prompts.map((p) => planGeneration(sim, params, p, model, flags, perPlan));
  return { model, plans, logprobMemo: sim.logprobMemo };
}

export interface StreamRun {
  /** Usage on every token event (continuous_usage_stats). */
  continuousUsage: boolean;
  signal: SignalSource;
  arrival: number;
  /** What the transport does while the answer outlives its submission. */
  onLong?: (abort: () => void) => () => void;
  /** For the log line of a dropped reader. */
  id: string;
}

/** The answer as a byte stream of the encoder's events; throws (429) before any byte. */
export function streamAnswer(
  sim: Simulator,
  admitted: Admitted,
  encoder: OutputEncoder,
  run: StreamRun,
): ReadableStream<Uint8Array> {
  return streamPlans(sim.engine, admitted.plans, encoder, {
    continuousUsage: run.continuousUsage,
    signal: run.signal,
    arrival: run.arrival,
    stallTimeoutMs: sim.config["stream-stall-timeout"],
    onStall: () => sim.log.info("dropped a client that stopped reading its stream", { id: run.id }),
    onLong: run.onLong,
  });
}

/**
 * Runs the request to its end and returns the complete answer: at once
 * (not a promise) for a zero-latency answer, else a promise that resolves
 * when its last token would have been sent and rejects when the client goes
 * away (its jobs are cancelled) or on shutdown.
 */
export function completeAnswer(
  sim: Simulator,
  admitted: Admitted,
  signal: SignalSource,
  arrival: number,
  abortable?: AbortRegistry,
): CompletedAnswer | Promise<CompletedAnswer> {
  const running = collectPlans(sim.engine, admitted.plans, signal, arrival, abortable);
  if (running === null) return completedAnswer(admitted.plans);
  return running.then(() => completedAnswer(admitted.plans));
}

/** --max-sequences-per-request: prompts × n. */
function checkSequences(sequences: number, cfg: Config): void {
  const max = cfg["max-sequences-per-request"];
  if (sequences <= max) return;
  throw badRequest(
    `This request asks for ${sequences} sequences (prompts × n); at most ${max} per request ` +
      `(--max-sequences-per-request).`,
    "n",
  );
}

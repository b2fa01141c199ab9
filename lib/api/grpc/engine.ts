/**
 * vLLM's gRPC engine service (grpc.md) as one more family of the pipeline:
 * Generate runs through admit and the engine like an HTTP request (queue,
 * latency, LoRA, KV cache, failure injection, metrics), its steps rendered
 * by the shared AnswerRenderer with an encoder that writes protobuf
 * messages instead of SSE text. The other RPCs read the pod's state.
 */
import { status as Code } from "@grpc/grpc-js";
import type {
  sendUnaryData,
  ServerUnaryCall,
  ServerWritableStream,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { Engine, FinishReason, Job, JobSink } from "../../engine.ts";
import { ApiError, badRequest } from "../../errors.ts";
import { failureError } from "../../failures.ts";
import type { OutputEncoder } from "../../serving/output.ts";
import type { GenerationParams, PromptInput } from "../../serving/params.ts";
import { admit, checkServing, injectedFailure } from "../../serving/pipeline.ts";
import { AnswerRenderer } from "../../serving/render.ts";
import { type GenerationPlan, tokenIdsAt } from "../../serving/plan.ts";
import type { Simulator } from "../../simulator.ts";
import { embeddingVector } from "../openai/embeddings.ts";

/** The gRPC code of a simulator error's HTTP status (grpc.md, "Errors"). */
export function grpcCode(status: number): number {
  switch (status) {
    case 400:
      return Code.INVALID_ARGUMENT;
    case 401:
      return Code.UNAUTHENTICATED;
    case 403:
      return Code.PERMISSION_DENIED;
    case 404:
      return Code.NOT_FOUND;
    case 409:
      return Code.ABORTED;
    case 429:
      return Code.RESOURCE_EXHAUSTED;
    case 500:
      return Code.INTERNAL;
    case 501:
      return Code.UNIMPLEMENTED;
    case 503:
      return Code.UNAVAILABLE;
    case 504:
      return Code.DEADLINE_EXCEEDED;
    default:
      return Code.UNKNOWN;
  }
}

/** A thrown error as a gRPC status error (anything that is not an ApiError is Internal). */
function grpcError(e: unknown): Error & { code: number; details: string } {
  const [code, details] = e instanceof ApiError
    ? [grpcCode(e.status), e.message]
    : [Code.INTERNAL, "Internal server error"];
  return Object.assign(new Error(details), { code, details });
}

interface TokenizedInput {
  original_text: string;
  input_ids: number[];
}

interface GenerateRequest {
  request_id: string;
  tokenized?: TokenizedInput | null;
  text?: string;
  input?: "tokenized" | "text";
  sampling_params?: { max_tokens?: number | null; ignore_eos?: boolean } | null;
  stream: boolean;
}

/** The service's handlers for one pod. */
export function engineHandlers(sim: Simulator): UntypedServiceImplementation {
  const inflight = sim.inflight;
  let lastReceive = 0;
  const received = () => lastReceive = Date.now() / 1000;
  return {
    Generate(call: ServerWritableStream<GenerateRequest, unknown>) {
      received();
      try {
        generate(sim, call);
      } catch (e) {
        // grpc-js sends a server stream's status when the call emits an error.
        call.emit("error", grpcError(e));
      }
    },
    Embed(
      call: ServerUnaryCall<{ tokenized?: TokenizedInput | null }, unknown>,
      cb: sendUnaryData<unknown>,
    ) {
      received();
      try {
        checkServing(sim);
        const ids = call.request.tokenized?.input_ids ?? [];
        if (ids.length === 0) throw badRequest("Missing input token ids", "tokenized");
        const d = sim.config["default-embedding-dimensions"];
        cb(null, {
          embedding: Array.from(embeddingVector(ids, d)),
          prompt_tokens: ids.length,
          embedding_dim: d,
        });
      } catch (e) {
        cb(grpcError(e));
      }
    },
    HealthCheck(_call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) {
      const why = sim.sleeping ? "sleeping" : !sim.isReady() ? "starting" : "";
      cb(null, { healthy: why === "", message: why });
    },
    Abort(call: ServerUnaryCall<{ request_ids: string[] }, unknown>, cb: sendUnaryData<unknown>) {
      received();
      for (const id of call.request.request_ids ?? []) inflight.abort(id);
      cb(null, {});
    },
    GetModelInfo(_call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) {
      cb(null, {
        model_path: sim.config.model,
        is_generation: true,
        max_context_length: sim.config["max-model-len"],
        // The built-in tokenizer has no vocabulary: 0, as the reference answers.
        vocab_size: sim.tokenizer.vocabSize ?? 0,
        supports_vision: false,
      });
    },
    GetServerInfo(_call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) {
      cb(null, {
        active_requests: sim.engine.runningCount + sim.engine.waitingCount,
        is_paused: sim.sleeping,
        last_receive_timestamp: lastReceive,
        uptime_seconds: (performance.now() - sim.startedAt) / 1000,
        server_type: "vllm-grpc",
      });
    },
  };
}

/** Generate: the request checked and planned, then its steps written as chunks and a complete. */
function generate(sim: Simulator, call: ServerWritableStream<GenerateRequest, unknown>): void {
  checkServing(sim);
  const failure = injectedFailure(sim);
  if (failure !== null && failure !== "timeout") throw failureError(failure, sim.config.model);
  const req = call.request;
  const id = req.request_id || crypto.randomUUID();
  const params: GenerationParams = {
    // The one base model, under its displayed name (grpc.md).
    model: sim.models.displayName,
    stream: req.stream,
    includeUsage: false,
    continuousUsage: false,
    ignoreEos: req.sampling_params?.ignore_eos ?? false,
    n: 1,
  };
  const max = req.sampling_params?.max_tokens;
  if (max !== undefined && max !== null) {
    if (max <= 0) throw badRequest("max_tokens must be at least 1, got 0.", "max_tokens");
    params.maxTokens = max;
  }
  const prompt = promptOf(sim, req);
  const admitted = admit(sim, { params, prompts: [prompt] }, {
    label: `generate request (req id ${id})`,
  });
  const plan = admitted.plans[0];
  const run = new GrpcRun(sim.engine, plan, call, sim, req.stream);
  const forget = sim.inflight.add(id, () => run.abort());
  call.on("cancelled", () => run.cancel());
  run.finished = forget;
  run.start();
}

function promptOf(sim: Simulator, req: GenerateRequest): PromptInput {
  if (req.input === "tokenized" || (req.tokenized && !req.text)) {
    const ids = req.tokenized?.input_ids ?? [];
    if (ids.length === 0) throw badRequest("The decoder prompt cannot be empty", "tokenized");
    return { promptTokens: ids.length, promptIds: ids, echoText: ids.join(",") };
  }
  if (!req.text) throw badRequest("Missing input: tokenized or text", "input");
  const enc = sim.tokenizer.encode(req.text, true);
  if (enc instanceof Promise) {
    throw new ApiError(501, "text input needs a tokenizer that answers at once over gRPC");
  }
  return { promptTokens: enc.ids.length, promptIds: enc.ids, echoText: req.text };
}

/** One Generate call on the engine: its steps become chunks (stream) or one complete. */
class GrpcRun implements JobSink {
  #job: Job | undefined;
  #done = false;
  readonly #renderer: AnswerRenderer;
  readonly #ids: number[] = [];
  finished: () => void = () => {};

  constructor(
    private readonly engine: Engine,
    private readonly plan: GenerationPlan,
    private readonly call: ServerWritableStream<GenerateRequest, unknown>,
    private readonly sim: Simulator,
    private readonly stream: boolean,
  ) {
    this.#renderer = new AnswerRenderer([plan], this.#encoder(), false);
  }

  start(): void {
    this.#job = this.engine.submit(this.plan.spec, this);
  }

  onStep(_job: Job, k: number): void {
    this.#renderer.step(0, k);
  }

  onDone(): void {
    this.#renderer.end(0);
  }

  onAbort(): void {
    this.#fail(Code.UNAVAILABLE, "server is shutting down");
  }

  /** The client went away: its job is cancelled, nothing more is written. */
  cancel(): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#job) this.engine.cancel(this.#job);
    this.finished();
  }

  /** Abort RPC: the job is cancelled and the call ends with finish_reason "abort". */
  abort(): void {
    if (this.#done) return;
    if (this.#job) this.engine.cancel(this.#job);
    this.#complete("abort", this.#ids.length, this.stream ? [] : this.#ids);
  }

  #complete(finish: string, completion: number, ids: number[]): void {
    if (this.#done) return;
    this.#done = true;
    const u = this.plan;
    this.call.write({
      complete: {
        output_ids: ids,
        finish_reason: finish,
        prompt_tokens: u.promptTokens,
        completion_tokens: this.stream ? 0 : completion,
        cached_tokens: u.spec.cachedTokens,
      },
    });
    this.call.end();
    this.finished();
  }

  #fail(code: number, details: string): void {
    if (this.#done) return;
    this.#done = true;
    this.call.emit("error", Object.assign(new Error(details), { code, details }));
    this.finished();
  }

  #encoder(): OutputEncoder {
    const idsOf = tokenIdsAt(this.plan, 0, this.sim.tokenizer);
    return {
      start: () => "",
      token: (_index, text, k) => {
        const ids = idsOf(text, k);
        for (const id of ids) this.#ids.push(id);
        if (this.stream && !this.#done) {
          this.call.write({
            chunk: {
              token_ids: ids,
              prompt_tokens: this.plan.promptTokens,
              completion_tokens: 1,
              cached_tokens: this.plan.spec.cachedTokens,
            },
          });
        }
        return "";
      },
      choiceEnd: (_index, finish: FinishReason, tokens) => {
        this.#complete(finish, tokens, this.stream ? [] : this.#ids);
        return "";
      },
      end: () => "",
    };
  }
}

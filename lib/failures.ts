/**
 * Failure injection (api.md "Failure injection"): with failure-injection-rate
 * r, r% of generation requests fail at once with one of the configured
 * failure-types. Draws come from the simulator's seeded RNG, so `--seed`
 * replays the same failures for the same request order.
 *
 * `timeout` (seed 004) does not answer at all: the request is held open until
 * the client gives up (its signal aborts, which frees everything at once) or
 * until TIMEOUT_HOLD_MS passes, when it answers 408 in the error shape.
 */
import { ApiError } from "./errors.ts";
import { FAILURE_TYPES } from "./options.ts";
import type { Config } from "./config.ts";
import type { Rng } from "./rng.ts";

export type FailureType = (typeof FAILURE_TYPES)[number];

/**
 * Types drawn when failure-types is empty: the six that answer. `timeout`
 * must be listed explicitly, so "all" never parks requests for minutes.
 */
export const DEFAULT_FAILURE_TYPES: readonly FailureType[] = FAILURE_TYPES.filter((t) =>
  t !== "timeout"
);

/** Server-side bound of a `timeout` failure: the request then answers 408. */
export const TIMEOUT_HOLD_MS = 5 * 60_000;

/** The error a failure type answers with, for the requested model name. */
export function failureError(type: Exclude<FailureType, "timeout">, model: string): ApiError {
  switch (type) {
    case "rate_limit":
      return new ApiError(
        429,
        `Rate limit reached for ${model} in organization org-xxx on requests per min (RPM): ` +
          `Limit 3, Used 3, Requested 1.`,
      );
    case "invalid_api_key":
      return new ApiError(401, "Incorrect API key provided.");
    case "context_length":
      return new ApiError(
        400,
        "This model's maximum context length is 4096 tokens. However, your messages resulted " +
          "in 4500 tokens.",
        "messages",
      );
    case "server_error":
      return new ApiError(503, "The server is overloaded or not ready yet.");
    case "invalid_request":
      return new ApiError(400, "Invalid request: missing required parameter 'model'.", "model");
    case "model_not_found":
      return new ApiError(404, `The model '${model}-nonexistent' does not exist`, "model");
  }
}

/**
 * Decides whether this request fails and how. Consumes no draw at rate 0, so
 * turning injection off leaves every other seeded stream as it was.
 */
export function drawFailure(cfg: Config, rng: Rng): FailureType | null {
  const rate = cfg["failure-injection-rate"];
  if (!(rate > 0)) return null;
  if (rate < 100 && rng.next() * 100 >= rate) return null;
  const types = cfg["failure-types"].length > 0
    ? cfg["failure-types"] as FailureType[]
    : DEFAULT_FAILURE_TYPES;
  return types.length === 1 ? types[0] : rng.pick(types);
}

const shuttingDown = () => new ApiError(503, "The server is shutting down.");

/**
 * The requests one simulator holds open for `timeout` failures (each
 * simulator owns one: nothing is shared between pods in a process).
 */
export class HeldRequests {
  readonly #releases = new Set<(reason: unknown) => void>();
  /** Shutting down: a new hold answers at once. */
  #closing = false;

  /** Requests held right now. */
  get size(): number {
    return this.#releases.size;
  }

  /**
   * Holds a request open without answering. Rejects with the abort reason as
   * soon as `signal` aborts (the client left; nothing is kept), with a 408
   * ApiError after `limitMs`, or with a 503 on releaseAll (shutdown).
   *
   * The caller's signal must cover every disconnect: Deno 2.9 reports them on
   * req.signal only for small requests, so routes pass RequestContext's
   * clientGone() (routes/disconnect.ts fills the gap).
   */
  hold(signal: AbortSignal, limitMs: number = TIMEOUT_HOLD_MS): Promise<never> {
    return new Promise<never>((_resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      if (this.#closing) return reject(shuttingDown());
      const release = (reason: unknown) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        this.#releases.delete(release);
        reject(reason);
      };
      const onAbort = () => release(signal.reason);
      const timer = setTimeout(() => {
        release(
          new ApiError(
            408,
            `Request timed out: simulated timeout failure held for ${limitMs / 1000}s.`,
          ),
        );
      }, limitMs);
      this.#releases.add(release);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Ends every held request, and every later hold at once (shutdown: the drain must not wait). */
  releaseAll(): void {
    this.#closing = true;
    for (const release of [...this.#releases]) release(shuttingDown());
  }
}

/**
 * The reference simulator's timing formulas (latency-and-scheduling.md):
 * prefill time by calculator, per-token decode time, and the load factor.
 * All values are milliseconds. Pure functions of the config snapshot, the
 * request and the current load; randomness comes from the caller's Rng.
 *
 * Under load a GPU-bound mean is multiplied by the load factor and so is its
 * std-dev: the jitter stays the same fraction of the mean (the ≤ 30% rule
 * keeps holding) whichever form is in use.
 */
import type { Config } from "./config.ts";
import { clampedNormal, type Rng } from "./rng.ts";

export type LatencyConfig = Pick<
  Config,
  | "latency-calculator"
  | "time-to-first-token"
  | "time-to-first-token-std-dev"
  | "inter-token-latency"
  | "inter-token-latency-std-dev"
  | "kv-cache-transfer-latency"
  | "kv-cache-transfer-latency-std-dev"
  | "prefill-overhead"
  | "prefill-time-per-token"
  | "prefill-time-std-dev"
  | "kv-cache-transfer-time-per-token"
  | "kv-cache-transfer-time-std-dev"
  | "time-factor-under-load"
  | "max-num-seqs"
>;

/** 1 with one request running, time-factor-under-load at max-num-seqs. */
export function loadFactor(cfg: LatencyConfig, running: number): number {
  const f = cfg["time-factor-under-load"];
  const max = cfg["max-num-seqs"];
  if (f === 1 || max <= 1) return 1;
  const r = Math.min(Math.max(running, 1), max);
  return 1 + (f - 1) * (r - 1) / (max - 1);
}

export interface PrefillInput {
  promptTokens: number;
  cachedTokens: number;
  /** P/D decode side: the KV cache is transferred instead of computed. */
  remotePrefill: boolean;
  /** Requests running now, this one included. */
  running: number;
}

function usesConstantForm(cfg: LatencyConfig, mean: number, sd: number): boolean {
  const calc = cfg["latency-calculator"];
  if (calc === "constant") return true;
  if (calc === "per-token") return false;
  return mean !== 0 || sd !== 0; // legacy "": constant wins when configured
}

/** Time from start of running to the first token. */
export function prefillMs(cfg: LatencyConfig, rng: Rng, p: PrefillInput): number {
  if (p.remotePrefill) {
    // KV transfer is network-bound: the load factor does not apply.
    const mean = cfg["kv-cache-transfer-latency"];
    const sd = cfg["kv-cache-transfer-latency-std-dev"];
    if (usesConstantForm(cfg, mean, sd)) return clampedNormal(rng, mean, sd);
    return clampedNormal(
      rng,
      p.promptTokens * cfg["kv-cache-transfer-time-per-token"],
      cfg["kv-cache-transfer-time-std-dev"],
    );
  }
  const lf = loadFactor(cfg, p.running);
  const mean = cfg["time-to-first-token"];
  const sd = cfg["time-to-first-token-std-dev"];
  // The load factor scales the GPU-bound means only; std-devs stay as
  // configured (the spec lists the means; the reference simulator agrees).
  if (usesConstantForm(cfg, mean, sd)) return clampedNormal(rng, mean * lf, sd);
  const uncached = Math.max(0, p.promptTokens - p.cachedTokens);
  const total = cfg["prefill-overhead"] + uncached * cfg["prefill-time-per-token"];
  return clampedNormal(rng, total * lf, cfg["prefill-time-std-dev"]);
}

/** Time between two output tokens, drawn per token. */
export function interTokenMs(cfg: LatencyConfig, rng: Rng, running: number): number {
  const mean = cfg["inter-token-latency"];
  if (mean === 0 && cfg["inter-token-latency-std-dev"] === 0) return 0;
  return clampedNormal(rng, mean * loadFactor(cfg, running), cfg["inter-token-latency-std-dev"]);
}

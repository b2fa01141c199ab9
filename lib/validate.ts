/**
 * Small checks for untrusted JSON. Each failure is a 400 that names the
 * field, in the error shape every endpoint shares.
 */
import { badRequest } from "./errors.ts";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function requireObject(v: unknown, what = "request body"): JsonObject {
  if (!isObject(v)) throw badRequest(`The ${what} must be a JSON object.`);
  return v;
}

export function optString(o: JsonObject, key: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw badRequest(`'${key}' must be a string.`, key);
  return v;
}

export function reqString(o: JsonObject, key: string): string {
  const v = optString(o, key);
  if (v === undefined) throw badRequest(`'${key}' is a required field.`, key);
  return v;
}

export function optBool(o: JsonObject, key: string): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw badRequest(`'${key}' must be a boolean.`, key);
  return v;
}

export function optNumber(
  o: JsonObject,
  key: string,
  min?: number,
  max?: number,
): number | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw badRequest(`'${key}' must be a number.`, key);
  }
  if ((min !== undefined && v < min) || (max !== undefined && v > max)) {
    throw badRequest(
      `'${key}' must be between ${min ?? "-inf"} and ${max ?? "inf"}, got ${v}.`,
      key,
    );
  }
  return v;
}

/** An integer ≥ min (vLLM: "max_tokens must be at least 1, got 0."). */
export function optInt(o: JsonObject, key: string, min: number): number | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v)) {
    throw badRequest(`'${key}' must be an integer.`, key);
  }
  if (v < min) throw badRequest(`${key} must be at least ${min}, got ${v}.`, key);
  return v;
}

export function optObject(o: JsonObject, key: string): JsonObject | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw badRequest(`'${key}' must be an object.`, key);
  return v;
}

export function isTokenId(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

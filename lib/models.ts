/**
 * The names the server answers to: served model names and LoRA adapters
 * (configured or loaded at run time). Requests resolve their `model` here.
 */
import type { LoraModule } from "./config.ts";
import { ApiError } from "./errors.ts";

export interface LoraAdapter {
  name: string;
  path: string;
  /** The model it adapts; the first served name when not given. */
  base?: string;
}

/** What a request's `model` field names. */
export interface ResolvedModel {
  /** The name as requested (echoed in responses). */
  name: string;
  /** Adapter name when it is a LoRA adapter, else null. */
  lora: string | null;
}

/** An entry of GET /v1/models. */
export interface ModelCard {
  id: string;
  object: "model";
  created: number;
  owned_by: "vllm";
  root: string;
  parent: string | null;
  max_model_len: number;
  permission: unknown[];
}

/** Longest adapter name accepted (vLLM's model names are paths; this is plenty). */
const MAX_LORA_NAME = 256;

/**
 * Why `name` cannot name a LoRA adapter, or null. vllm:lora_requests_info
 * lists running adapters comma-separated in one label, so a comma would make
 * it ambiguous; whitespace and control characters break logs and labels.
 */
export function loraNameProblem(name: string): string | null {
  if (name === "") return "must not be empty";
  if (name.length > MAX_LORA_NAME) return `must be at most ${MAX_LORA_NAME} characters`;
  if (/[\s,\p{Cc}]/u.test(name)) return "must not contain commas, whitespace or control characters";
  return null;
}

export class ModelRegistry {
  readonly #served: Set<string>;
  readonly #loras = new Map<string, LoraAdapter>();
  readonly created = Math.floor(Date.now() / 1000);

  constructor(
    readonly model: string,
    readonly servedNames: readonly string[],
    private readonly maxModelLen: number,
    private readonly maxCpuLoras: number,
    loras: readonly LoraModule[] = [],
  ) {
    this.#served = new Set(servedNames);
    for (const l of loras) {
      this.#loras.set(l.name, { name: l.name, path: l.path ?? l.name, base: l.base_model_name });
    }
  }

  /** The name reported in metrics: the first served name. */
  get displayName(): string {
    return this.servedNames[0] ?? this.model;
  }

  resolve(name: string): ResolvedModel | null {
    if (this.#served.has(name)) return { name, lora: null };
    if (this.#loras.has(name)) return { name, lora: name };
    return null;
  }

  /** Resolves or throws vLLM's 404 for an unknown model. */
  require(name: string): ResolvedModel {
    const m = this.resolve(name);
    if (m) return m;
    throw new ApiError(404, `The model \`${name}\` does not exist.`, "model");
  }

  get loras(): LoraAdapter[] {
    return [...this.#loras.values()];
  }

  list(): ModelCard[] {
    const card = (id: string, root: string, parent: string | null): ModelCard => ({
      id,
      object: "model",
      created: this.created,
      owned_by: "vllm",
      root,
      parent,
      max_model_len: this.maxModelLen,
      permission: [],
    });
    return [
      ...this.servedNames.map((n) => card(n, this.model, null)),
      ...this.loras.map((l) => card(l.name, l.path, l.base ?? this.displayName)),
    ];
  }

  loadLora(name: string, path: string): void {
    const problem = loraNameProblem(name);
    if (problem) {
      throw new ApiError(400, `Invalid LoRA adapter name '${name}': it ${problem}.`, "lora_name");
    }
    if (this.#served.has(name)) {
      throw new ApiError(
        400,
        `The lora adapter name '${name}' is a served model name.`,
        "lora_name",
      );
    }
    if (this.#loras.has(name)) {
      throw new ApiError(400, `The lora adapter '${name}' has already been loaded.`, "lora_name");
    }
    if (this.#loras.size >= this.maxCpuLoras) {
      throw new ApiError(
        400,
        `Cannot load LoRA adapter '${name}': the maximum number of LoRA adapters ` +
          `(max-cpu-loras ${this.maxCpuLoras}) is already loaded.`,
        "lora_name",
      );
    }
    this.#loras.set(name, { name, path });
  }

  unloadLora(name: string): void {
    if (!this.#loras.delete(name)) {
      throw new ApiError(404, `The lora adapter '${name}' cannot be found.`, "lora_name");
    }
  }
}

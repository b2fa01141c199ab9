/**
 * Chooses the tokenizer once at start-up (tokenizers.md, "Selection"), first
 * match wins, and says which in one log line:
 * 1. --force-dummy-tokenizer → built-in;
 * 2. --tokenizer naming a file or directory → Hugging Face in-process;
 * 3. the repo (--tokenizer, else --model) in the Hugging Face cache;
 * 4. a download of it from HF_ENDPOINT into that cache;
 * 5. --render-url given explicitly → the render sidecar;
 * 6. otherwise built-in.
 *
 * What is loaded is shared read-only; each simulator gets its own Tokenizer
 * from `create` (the built-in one keeps a per-simulator decode table).
 */

import type { LoadedConfig } from "../config.ts";
import type { Logger } from "../log.ts";
import type { Tokenizer, TokenizerKind } from "../tokenizer.ts";
import { BuiltinTokenizer } from "./builtin.ts";
import { downloadTokenizer, findCached, hubSettings, HubUnavailable, isRepoId } from "./hub.ts";
import type { ProgressFactory } from "../download.ts";
import {
  type HfFiles,
  HuggingFaceTokenizer,
  loadHfFiles,
  TokenizerLoadError,
} from "./huggingface.ts";
import { EncodeWorker } from "./offload.ts";
import { RenderTokenizer } from "./render_client.ts";

export { TokenizerLoadError };

export interface TokenizerChoice {
  kind: TokenizerKind;
  /** Where it came from, for the log line. */
  source: string;
  /** A tokenizer for one simulator. */
  create(): Tokenizer;
  /** Releases what the choice holds (the encoding worker) at shutdown. */
  close?(): void;
}

export const BUILTIN_CHOICE: TokenizerChoice = {
  kind: "built-in",
  source: "built-in",
  create: () => new BuiltinTokenizer(),
};

/** Looks like a filesystem path rather than a repo id. */
function pathLike(s: string): boolean {
  return s.startsWith("/") || s.startsWith("./") || s.startsWith("../") || s.startsWith("~") ||
    s.endsWith(".json") || s === "." || s === "..";
}

function statOf(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch {
    return null;
  }
}

/** A loaded tokenizer; its worker for long texts loads the same files when first needed. */
async function hfChoice(
  source: string,
  dir: string,
  file = `${dir}/tokenizer.json`,
): Promise<TokenizerChoice> {
  const files: HfFiles = await loadHfFiles(dir, file);
  const worker = new EncodeWorker(dir, file);
  return {
    kind: "huggingface",
    source,
    create: () => new HuggingFaceTokenizer(files, worker),
    close: () => worker.close(),
  };
}

/** A tokenizer file or directory: loaded, or a TokenizerLoadError naming it. */
function loadPath(path: string): Promise<TokenizerChoice> {
  const st = statOf(path);
  if (st === null) throw new TokenizerLoadError(`${path}: no such file or directory`);
  if (st.isDirectory) return hfChoice(path, path);
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  return hfChoice(path, dir, path);
}

export async function selectTokenizer(
  loaded: LoadedConfig,
  env: Record<string, string | undefined>,
  log: Logger,
  progress?: ProgressFactory,
): Promise<TokenizerChoice> {
  const choice = await choose(loaded, env, log, progress);
  log.info("tokenizer", { kind: choice.kind, source: choice.source });
  return choice;
}

async function choose(
  loaded: LoadedConfig,
  env: Record<string, string | undefined>,
  log: Logger,
  progress?: ProgressFactory,
): Promise<TokenizerChoice> {
  const cfg = loaded.config;
  if (cfg["force-dummy-tokenizer"]) return BUILTIN_CHOICE;
  const named = cfg.tokenizer;
  if (named !== "" && (statOf(named) !== null || pathLike(named))) {
    return await loadPath(named);
  }
  const repo = named || cfg.model;
  const revision = cfg.revision || "main";
  const hub = hubSettings(cfg["tokenizers-cache-dir"], env);
  if (isRepoId(repo)) {
    const cached = hub.cacheDir === null ? null : findCached(hub.cacheDir, repo, revision);
    if (cached !== null) return await hfChoice(`${cached} (cache)`, cached);
    if (hub.offline) {
      log.info("tokenizer not in the cache and HF_HUB_OFFLINE is set", { repo, revision });
    } else {
      try {
        const dir = await downloadTokenizer(hub, repo, revision, log, progress);
        return await hfChoice(`${hub.endpoint}/${repo}@${revision} → ${dir}`, dir);
      } catch (e) {
        if (!(e instanceof HubUnavailable)) throw e;
        log.info("no tokenizer from the hub", { repo, revision, reason: e.message });
      }
    }
  }
  if (loaded.given.has("render-url")) {
    const url = cfg["render-url"];
    return {
      kind: "render",
      source: url,
      create: () =>
        new RenderTokenizer({
          url: /^https?:\/\//.test(url) ? url : `http://${url}`,
          model: cfg.model,
          timeoutMs: cfg["render-timeout"],
          mmTimeoutMs: cfg["mm-render-timeout"],
        }),
    };
  }
  return BUILTIN_CHOICE;
}

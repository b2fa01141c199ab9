/**
 * Where a model's tokenizer files come from (tokenizers.md, "Hugging Face
 * cache layout and download"): the hub cache Python's huggingface_hub uses
 * (`models--org--name/refs/<revision>`, `snapshots/<commit>/`), filled from
 * `HF_ENDPOINT` when the files are not there. Each file is written to a
 * temporary name and renamed when complete, so an interrupted download
 * leaves nothing a later start would take for a tokenizer.
 */

import type { Logger } from "../log.ts";
import {
  defaultProgress,
  DownloadError,
  DownloadError as HubUnavailable,
  type ProgressFactory,
  saveBody,
  writeAtomically,
} from "../download.ts";

/** The files a tokenizer is made of; only the first is required. */
export const TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
] as const;

export interface HubSettings {
  /** The hub cache directory, or null when there is none (no HOME). */
  cacheDir: string | null;
  endpoint: string;
  token?: string;
  /** HF_HUB_OFFLINE: look in the cache only. */
  offline: boolean;
}

/** The hub settings of a configuration and environment. */
export function hubSettings(
  cacheDirOption: string,
  env: Record<string, string | undefined>,
): HubSettings {
  let cacheDir: string | null = cacheDirOption || env.HF_HUB_CACHE || null;
  if (!cacheDir && env.HF_HOME) cacheDir = `${env.HF_HOME}/hub`;
  if (!cacheDir && env.HOME) cacheDir = `${env.HOME}/.cache/huggingface/hub`;
  const offline = ["1", "true", "yes", "on"].includes((env.HF_HUB_OFFLINE ?? "").toLowerCase());
  return {
    cacheDir,
    endpoint: (env.HF_ENDPOINT || "https://huggingface.co").replace(/\/+$/, ""),
    token: env.HF_TOKEN || undefined,
    offline,
  };
}

/** `org/name` (or a legacy bare `name`): what the hub accepts as a model repo id. */
export function isRepoId(s: string): boolean {
  return /^[\w.-]+(\/[\w.-]+)?$/.test(s) && !s.includes("..") && !s.startsWith(".");
}

function repoDir(cacheDir: string, repo: string): string {
  return `${cacheDir}/models--${repo.replaceAll("/", "--")}`;
}

const COMMIT = /^[0-9a-f]{40}$/;

/** The snapshot directory holding `repo`'s tokenizer.json at `revision`, or null. */
export function findCached(cacheDir: string, repo: string, revision: string): string | null {
  const dir = repoDir(cacheDir, repo);
  let commit = revision;
  if (!COMMIT.test(revision)) {
    try {
      commit = Deno.readTextFileSync(`${dir}/refs/${revision}`).trim();
    } catch {
      return null;
    }
  }
  const snapshot = `${dir}/snapshots/${commit}`;
  try {
    return Deno.statSync(`${snapshot}/tokenizer.json`).isFile ? snapshot : null;
  } catch {
    return null;
  }
}

/** Why a download gave nothing (selection then moves on). */
export { DownloadError as HubUnavailable };

/** How long to wait for the hub to answer. */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Downloads `repo`'s tokenizer files at `revision` into the cache and
 * returns the snapshot directory. Throws HubUnavailable when the hub cannot
 * be reached, refuses (401/403/404), or the repo has no tokenizer.json.
 */
export async function downloadTokenizer(
  hub: HubSettings,
  repo: string,
  revision: string,
  log: Logger,
  progress: ProgressFactory = defaultProgress(log),
): Promise<string> {
  if (hub.cacheDir === null) throw new HubUnavailable("no cache directory (HF_HOME or HOME)");
  const dir = repoDir(hub.cacheDir, repo);
  let snapshot: string | null = null;
  let commit = revision;
  for (const file of TOKENIZER_FILES) {
    const url = `${hub.endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${file}`;
    const res = await get(url, hub.token);
    if (!res.ok) {
      await res.body?.cancel();
      if (file !== "tokenizer.json" && res.status === 404) continue;
      if (file === "tokenizer.json") {
        throw new HubUnavailable(`${url}: HTTP ${res.status}`);
      }
      // An optional file the hub will not give: the tokenizer works without it.
      log.warn("tokenizer file not downloaded", { url, status: res.status });
      continue;
    }
    if (snapshot === null) {
      const header = res.headers.get("x-repo-commit") ?? "";
      // Without the hub's commit header, the snapshot is named by the revision.
      if (COMMIT.test(header)) commit = header;
      snapshot = `${dir}/snapshots/${commit}`;
      await Deno.mkdir(snapshot, { recursive: true });
    }
    await saveBody(res, `${snapshot}/${file}`, file, progress);
  }
  if (snapshot === null) throw new HubUnavailable("no tokenizer.json");
  // The ref last: a revision points at a snapshot only once its files are complete.
  if (commit !== revision) {
    await Deno.mkdir(`${dir}/refs`, { recursive: true });
    await writeAtomically(`${dir}/refs/${revision}`, async (f) => {
      await f.write(new TextEncoder().encode(commit));
    });
  }
  return snapshot;
}

async function get(url: string, token?: string): Promise<Response> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  try {
    return await fetch(url, { headers, signal: AbortSignal.timeout(CONNECT_TIMEOUT_MS) });
  } catch (e) {
    throw new HubUnavailable(`${url}: ${(e as Error).message}`);
  }
}

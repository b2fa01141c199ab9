/**
 * The dataset at start-up (datasets.md, "Opening and start-up"): download
 * it when missing and a URL is given, open and check it, and say what
 * happened. A file another process holds locked is a warning and built-in
 * answers; anything else wrong stops the start.
 */
import type { Config } from "../config.ts";
import { defaultProgress, DownloadError, type ProgressFactory, saveBody } from "../download.ts";
import type { Logger } from "../log.ts";
import { Dataset, DatasetError, DatasetLocked } from "./dataset.ts";

/** A dataset that cannot be used: the start fails with this message. */
export class DatasetStartError extends Error {}

/** How long to wait for the dataset server to answer. */
const CONNECT_TIMEOUT_MS = 30_000;

/** The configured dataset, or null (none configured, or locked by another process). */
export async function openDataset(
  cfg: Config,
  log: Logger,
  progress: ProgressFactory = defaultProgress(log),
): Promise<Dataset | null> {
  const path = cfg["dataset-path"];
  if (path === "") return null;
  if (!exists(path)) {
    const url = cfg["dataset-url"];
    if (url === "") throw new DatasetStartError(`database file does not exist: ${path}`);
    log.info("downloading the dataset", { url, path });
    try {
      await download(url, path, progress);
    } catch (e) {
      throw new DatasetStartError(`dataset download from ${url} failed: ${(e as Error).message}`);
    }
  }
  try {
    const ds = Dataset.open(path, cfg["dataset-table-name"], cfg["dataset-in-memory"]);
    log.info("using dataset", { path, rows: ds.size, inMemory: cfg["dataset-in-memory"] });
    return ds;
  } catch (e) {
    if (e instanceof DatasetLocked) {
      log.warn(
        "the dataset is locked by another process; responses will be randomly generated from " +
          "preset text",
        { path, error: e.message },
      );
      return null;
    }
    if (e instanceof DatasetError) throw new DatasetStartError(e.message);
    throw e;
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw new DatasetStartError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

/** GET `url` into `path` (parent directories made); only a complete file appears there. */
async function download(url: string, path: string, progress: ProgressFactory): Promise<void> {
  let res: Response;
  // A bound on the answer's headers only: a large file may take its time (a stalled body fails).
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), CONNECT_TIMEOUT_MS);
  try {
    res = await fetch(url, { signal: ctrl.signal });
  } catch (e) {
    throw new DownloadError((e as Error).message);
  } finally {
    clearTimeout(timer);
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new DownloadError(`HTTP ${res.status}`);
  }
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
  if (dir !== "") await Deno.mkdir(dir, { recursive: true });
  await saveBody(res, path, path.slice(path.lastIndexOf("/") + 1), progress);
}

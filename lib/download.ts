/**
 * Downloads written safely: a file appears at its path only when complete
 * (written to a temporary name, renamed at the end, removed on failure),
 * a stalled transfer fails, and progress shows as a bar on a terminal or as
 * log lines otherwise. Used for tokenizer files and datasets.
 */
import type { Logger } from "./log.ts";

/** Why a download gave nothing. */
export class DownloadError extends Error {}

/** How long to wait for the next bytes of a body. */
const STALL_TIMEOUT_MS = 30_000;

/** Writes `path` through a temporary file renamed into place when complete. */
export async function writeAtomically(
  path: string,
  write: (f: Deno.FsFile) => Promise<void>,
): Promise<void> {
  const tmp = `${path}.${crypto.randomUUID()}.incomplete`;
  const f = await Deno.open(tmp, { write: true, createNew: true });
  try {
    await write(f);
    f.close();
    await Deno.rename(tmp, path);
  } catch (e) {
    try {
      f.close();
    } catch { /* closed already */ }
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** A download's progress display. */
export interface Progress {
  update(bytes: number): void;
  done(): void;
}
export type ProgressFactory = (file: string, total: number | null) => Promise<Progress>;

export async function saveBody(
  res: Response,
  path: string,
  file: string,
  progress: ProgressFactory,
): Promise<void> {
  const len = Number(res.headers.get("content-length"));
  const bar = await progress(file, Number.isFinite(len) && len > 0 ? len : null);
  const reader = res.body!.getReader();
  try {
    await writeAtomically(path, async (f) => {
      let got = 0;
      while (true) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const stalled = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new DownloadError(`${file}: no data for ${STALL_TIMEOUT_MS / 1000}s`)),
            STALL_TIMEOUT_MS,
          );
        });
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await Promise.race([reader.read(), stalled]);
        } catch (e) {
          throw e instanceof DownloadError
            ? e
            : new DownloadError(`${file}: ${(e as Error).message}`);
        } finally {
          clearTimeout(timer);
        }
        if (chunk.done) break;
        let off = 0;
        while (off < chunk.value.length) off += await f.write(chunk.value.subarray(off));
        got += chunk.value.length;
        bar.update(got);
      }
      if (Number.isFinite(len) && len > 0 && got !== len) {
        throw new DownloadError(`${file}: ended after ${got} of ${len} bytes`);
      }
    });
  } finally {
    bar.done();
    reader.releaseLock();
  }
}

/**
 * A progress bar on a terminal (cli-progress, loaded only then); otherwise
 * a log line at each quarter.
 */
export const defaultProgress = (log: Logger): ProgressFactory => async (file, total) => {
  if (Deno.stderr.isTerminal() && total !== null) {
    const { default: cliProgress } = await import("cli-progress");
    const { default: process } = await import("node:process");
    const bar = new cliProgress.SingleBar({
      format: `${file} [{bar}] {percentage}% {value}/{total} bytes`,
      stream: process.stderr,
    }, cliProgress.Presets.shades_classic);
    bar.start(total, 0);
    return { update: (n) => bar.update(n), done: () => bar.stop() };
  }
  let quarter = 0;
  let got = 0;
  return {
    update(n) {
      got = n;
      if (total === null) return;
      const q = Math.floor((n / total) * 4);
      if (q > quarter) {
        quarter = q;
        log.info("downloading", { file, percent: q * 25, bytes: n, total });
      }
    },
    done() {
      if (total === null) log.info("downloaded", { file, bytes: got });
    },
  };
};

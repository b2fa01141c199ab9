/**
 * The last line of defence: an error no caller caught (a timer callback, a
 * background task, the runtime's accept loop running out of descriptors)
 * is logged and the process goes on serving, instead of ending with every
 * connection it holds. Each distinct message is logged at most once a
 * minute, so a condition that repeats (EMFILE under a connection flood)
 * cannot flood the log either.
 */
import type { Logger } from "./log.ts";

const REPEAT_MS = 60_000;
/** Distinct messages remembered for the once-a-minute rule. */
const MAX_REMEMBERED = 100;

export function guardProcess(log: Logger): () => void {
  const lastLogged = new Map<string, number>();
  const report = (kind: string, err: unknown) => {
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    const now = performance.now();
    const last = lastLogged.get(message);
    if (last !== undefined && now - last < REPEAT_MS) return;
    if (lastLogged.size >= MAX_REMEMBERED) lastLogged.clear();
    lastLogged.set(message, now);
    log.error(`${kind}; the server keeps running`, { error: message });
  };
  const onError = (e: ErrorEvent) => {
    e.preventDefault();
    report("uncaught error", e.error ?? e.message);
  };
  const onRejection = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    report("unhandled promise rejection", e.reason);
  };
  globalThis.addEventListener("error", onError);
  globalThis.addEventListener("unhandledrejection", onRejection);
  return () => {
    globalThis.removeEventListener("error", onError);
    globalThis.removeEventListener("unhandledrejection", onRejection);
  };
}

/**
 * A Deno.serve listener that outlives the failure of its accept loop.
 *
 * When the process runs out of file descriptors (EMFILE, e.g. a flood of
 * idle connections), Deno 2.9's accept loop stops for good, closes the
 * listening socket and rejects `server.finished`; unobserved, that rejection
 * ends the process with every connection it holds. Here the failure is
 * logged, the old server goes on serving the connections it has, and once
 * the descriptor count is safely below the limit (the reaper closes idle and
 * silent connections, lib/net/reaper.ts) a new server takes the same port
 * and handler. Listening again while still at the limit is not tried: Deno
 * panics when some of its internals cannot get a descriptor.
 */
import type { Logger } from "../log.ts";

/** Descriptors kept free before listening again. */
export const HEADROOM = 64;
const RETRY_MS = 250;

/** Open descriptors and the soft limit, from /proc; null where unreadable. */
export function descriptorUse(): { open: number; limit: number } | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(Deno.readTextFileSync("/proc/self/limits"));
    let open = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) open++;
    return { open, limit: m && m[1] !== "unlimited" ? Number(m[1]) : Infinity };
  } catch {
    return null;
  }
}

export class SupervisedServer {
  #server: Deno.HttpServer<Deno.NetAddr>;
  /** Servers whose accept loop failed: they still serve their connections. */
  readonly #retired: Deno.HttpServer<Deno.NetAddr>[] = [];
  #stopping = false;
  #retry: ReturnType<typeof setTimeout> | undefined;

  /**
   * `start(port)` creates the server (`port` undefined the first time, then
   * the port it got); `port()` reads the port it listens on.
   */
  constructor(
    private readonly start: (port: number | undefined) => Deno.HttpServer<Deno.NetAddr>,
    private readonly port: () => number,
    private readonly log: Logger,
  ) {
    this.#server = start(undefined);
    this.#supervise(this.#server);
  }

  get server(): Deno.HttpServer<Deno.NetAddr> {
    return this.#server;
  }

  #supervise(server: Deno.HttpServer<Deno.NetAddr>): void {
    server.finished.then(undefined, (e) => this.#failed(server, e));
  }

  #failed(server: Deno.HttpServer<Deno.NetAddr>, e: unknown): void {
    if (this.#stopping || server !== this.#server) return;
    const use = descriptorUse();
    this.log.error(
      "the listener stopped accepting connections; it listens again once " +
        "descriptors are free",
      { port: this.port(), error: String(e), ...use },
    );
    this.#retired.push(server);
    this.#schedule();
  }

  #schedule(): void {
    // Not unref'd: the process must stay up until it listens again.
    this.#retry = setTimeout(() => this.#tryAgain(), RETRY_MS);
  }

  #tryAgain(): void {
    this.#retry = undefined;
    if (this.#stopping) return;
    const use = descriptorUse();
    if (use && use.open > use.limit - HEADROOM) return this.#schedule();
    try {
      const next = this.start(this.port());
      this.#server = next;
      this.#supervise(next);
      this.log.info("listening again", { port: this.port(), ...use });
    } catch {
      this.#schedule();
    }
  }

  /** Stops accepting and waits for in-flight requests (see main.ts for the deadline). */
  async shutdown(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#retry);
    await Promise.all([this.#server, ...this.#retired].map((s) => s.shutdown().catch(() => {})));
  }
}

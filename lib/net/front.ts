/**
 * The front door: HTTP/1.x, HTTP/2 REST and gRPC on one public port.
 *
 * `Deno.serve` answers HTTP/2 but cannot send the trailers gRPC ends every
 * call with, and it cannot be handed a connection someone else accepted. So
 * a worker thread (front_worker.ts) owns the public port and relays each
 * connection to one of two internal listeners of the pod on 127.0.0.1: its
 * Deno.serve for HTTP/1.x, its node:http2 server for HTTP/2. One worker
 * serves every pod of the process (descriptors and a thread are
 * process-wide resources, like the reaper's).
 */
import type { Logger } from "../log.ts";

/** A public listener the worker opens. */
export interface FrontListen {
  op: "listen";
  id: number;
  hostname: string;
  port: number;
  tls?: { cert: string; key: string };
  /** The pod's Deno.serve (HTTP/1.x) on 127.0.0.1. */
  http1Port: number;
  /** The pod's node:http2 server on 127.0.0.1. */
  h2Port: number;
  /** A connection that has not shown its protocol by then is closed (slowloris). */
  firstByteMs: number;
}

export type FrontCommand =
  | FrontListen
  | { op: "stop"; id: number }
  | { op: "drop"; id: number };

/** Descriptor use, where /proc tells it. */
type Use = { open?: number; limit?: number };

export type FrontEvent =
  | { op: "listening"; id: number; port: number }
  | { op: "error"; id: number; message: string }
  | { op: "stopped"; id: number }
  /** Stopped, and its last relayed connection has ended. */
  | { op: "drained"; id: number }
  /** Out of descriptors: the port is closed until enough are free. */
  | { op: "paused"; id: number; message: string } & Use
  | { op: "resumed"; id: number } & Use;

/** One public port, relayed by the front door. */
export interface FrontPort {
  readonly port: number;
  /** Stops accepting; relayed connections go on until their servers end them. */
  stop(): Promise<void>;
  /** Resolves once stopped and every relayed connection has ended (their last bytes delivered). */
  drained(): Promise<void>;
  /** Closes the relayed connections still open. */
  drop(): void;
  /** Done with the port (after stop and the drain): the thread ends with the last one. */
  release(): void;
}

export class FrontDoor {
  #worker: Worker | null = null;
  #next = 1;
  /** Who hears each port's events (the reply to a command, then paused/resumed). */
  readonly #listeners = new Map<number, (e: FrontEvent) => void>();
  /** Ports not yet released: the thread ends with the last one. */
  #open = 0;

  /**
   * Opens a public port; rejects when it cannot listen (port taken, bad
   * certificate). `log` hears when it pauses and resumes for descriptors.
   */
  async listen(
    spec: Omit<FrontListen, "op" | "id">,
    log: Logger,
  ): Promise<FrontPort> {
    const id = this.#next++;
    this.#open++;
    let port = spec.port;
    let answer: (e: FrontEvent) => void = () => {};
    this.#listeners.set(id, (e) => {
      if (e.op === "paused") {
        const { message, open, limit } = e;
        log.error(
          "the listener stopped accepting connections; it listens again once " +
            "descriptors are free",
          { port, error: message, open, limit },
        );
      } else if (e.op === "resumed") {
        log.info("listening again", { port, open: e.open, limit: e.limit });
      } else if (e.op === "drained") {
        drainedNow();
      } else answer(e);
    });
    const ask = (c: FrontCommand) =>
      new Promise<FrontEvent>((resolve) => {
        answer = resolve;
        this.#start().postMessage(c);
      });
    let drainedNow = () => {};
    const drained = new Promise<void>((r) => drainedNow = r);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#listeners.delete(id);
      drainedNow();
      this.#unhold();
    };
    const e = await ask({ op: "listen", id, ...spec });
    if (e.op !== "listening") {
      release();
      throw new Error(e.op === "error" ? e.message : "the front door stopped");
    }
    port = e.port;
    let stopped: Promise<unknown> | null = null;
    return {
      port,
      stop: async () => {
        await (stopped ??= ask({ op: "stop", id }));
      },
      drained: () => drained,
      drop: () => this.#worker?.postMessage({ op: "drop", id } satisfies FrontCommand),
      release,
    };
  }

  /**
   * Starts the thread ahead of the first port (its start-up overlaps the
   * caller's) and holds it until the returned function is called.
   */
  warm(): () => void {
    this.#start();
    this.#open++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#unhold();
    };
  }

  #unhold(): void {
    if (--this.#open === 0 && this.#worker) {
      this.#worker.terminate();
      this.#worker = null;
    }
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(new URL("./front_worker.ts", import.meta.url).href, {
      type: "module",
    });
    worker.onmessage = (m: MessageEvent<FrontEvent>) => this.#listeners.get(m.data.id)?.(m.data);
    worker.onerror = (e) => {
      // Never expected; what waits is answered, and the next port starts another.
      e.preventDefault();
      for (const [id, hear] of this.#listeners) hear({ op: "error", id, message: e.message });
      this.#worker = null;
    };
    return this.#worker = worker;
  }
}

/** The process's front door. */
export const processFront = new FrontDoor();

/**
 * KV events over ZMQ (kv-cache.md, "ZMQ publishing" and "Replay"): a PUB
 * socket that connects to `zmq-endpoint` (binds when its host is `*`),
 * three frames per message (topic, 8-byte big-endian seq from 1, msgpack
 * batch), batches sent at `event-batch-size` events or on a 1 s tick, and a
 * ROUTER on `kv-events-replay-endpoint` that resends the last batches.
 *
 * Nothing here is on a request's path: a request only appends its events to
 * a bounded queue (what overflows is dropped and counted in a warning).
 * Sends are serialized (the zeromq binding allows one at a time) and never
 * awaited by a request; a PUB socket drops what no subscriber takes.
 */
import type { Logger } from "../log.ts";
import type { KvEvent } from "./block_manager.ts";
import { encodeBatch, type EventFormat } from "./events.ts";
import { MsgpackWriter } from "./msgpack.ts";

/** The zeromq sockets used here (the binding is imported only when publishing). */
interface PubSocket {
  send(frames: (string | Uint8Array)[]): Promise<void>;
  connect(endpoint: string): void;
  bind(endpoint: string): Promise<void>;
  close(): void;
}
interface RouterSocket {
  send(frames: (string | Uint8Array)[]): Promise<void>;
  bind(endpoint: string): Promise<void>;
  receive(): Promise<Uint8Array[]>;
  close(): void;
}

/** `endpoint` with its port (the text after the last `:`) moved up by `offset`. */
export function offsetEndpoint(endpoint: string, offset: number): string {
  if (offset === 0) return endpoint;
  const m = /^(.*):(\d+)$/.exec(endpoint);
  return m ? `${m[1]}:${Number(m[2]) + offset}` : endpoint;
}

/** The port of an endpoint ending in `:<port>`, else null. */
export function endpointPort(endpoint: string): number | null {
  const m = /:(\d+)$/.exec(endpoint);
  return m ? Number(m[1]) : null;
}

export interface PublisherOptions {
  endpoint: string;
  /** Read at each send: the serving port is known only once listening. */
  topic: () => string;
  rank: number;
  batchSize: number;
  format: EventFormat;
  /** Events kept waiting at most (10 × kv-cache-size). */
  queueCap: number;
  /** 0: retry for ever; N: give up after N failed connection attempts. */
  maxConnectAttempts: number;
  replayEndpoint: string;
  replayQueueSize: number;
  log: Logger;
}

const TICK_MS = 1000;
const REPLAY_POLL_MS = 100;
const END_SEQ = new Uint8Array(8).fill(0xff);

function seqBytes(seq: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(seq));
  return b;
}

export class KvPublisher {
  readonly #w = new MsgpackWriter();
  #pending: KvEvent[] = [];
  #seq = 0;
  #sending = false;
  #dropped = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #pub: PubSocket | null = null;
  #router: RouterSocket | null = null;
  /** (seq, payload) of the last batches sent, oldest first. */
  readonly #replay: { seq: number; payload: Uint8Array; topic: string }[] = [];
  #closed = false;
  #replies: Promise<void> = Promise.resolve();
  #replayTimer: ReturnType<typeof setInterval> | undefined;

  private constructor(private readonly opts: PublisherOptions) {}

  /** Opens the sockets (connect in the background, bind where asked) and starts the tick. */
  static async start(opts: PublisherOptions): Promise<KvPublisher> {
    const p = new KvPublisher(opts);
    const zmq = await import("zeromq");
    const pub = new zmq.Publisher({ reconnectInterval: TICK_MS, sendHighWaterMark: 10_000 });
    const host = /^\w+:\/\/([^:/]*)/.exec(opts.endpoint)?.[1];
    if (host === "*") await pub.bind(opts.endpoint);
    else pub.connect(opts.endpoint);
    p.#pub = pub as unknown as PubSocket;
    if (opts.maxConnectAttempts > 0) p.#watchAttempts(pub.events, opts.maxConnectAttempts);
    if (opts.replayEndpoint !== "") {
      const router = new zmq.Router();
      try {
        await router.bind(opts.replayEndpoint);
        p.#router = router as unknown as RouterSocket;
        p.#serveReplay();
      } catch (e) {
        router.close();
        opts.log.error("KV events replay disabled: cannot bind", {
          endpoint: opts.replayEndpoint,
          error: String((e as Error)?.message ?? e),
        });
      }
    }
    p.#timer = setInterval(() => p.#flush(), TICK_MS);
    Deno.unrefTimer(p.#timer as unknown as number);
    return p;
  }

  /** Queues an event (a request's call: never blocks, never throws). */
  push(e: KvEvent): void {
    if (this.#closed) return;
    if (this.#pending.length >= this.opts.queueCap) {
      if (this.#dropped++ % 1000 === 0) {
        this.opts.log.warn("KV event queue full; events dropped", { dropped: this.#dropped });
      }
      return;
    }
    this.#pending.push(e);
    if (this.#pending.length >= this.opts.batchSize) {
      // Sent from a task of its own: the request that filled the batch goes on.
      queueMicrotask(() => this.#flush(true));
    }
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    clearInterval(this.#replayTimer);
    this.#pub?.close();
    this.#router?.close();
  }

  async #flush(bySize = false): Promise<void> {
    if (this.#sending || this.#closed || this.#pub === null) return;
    if (this.#pending.length === 0) return;
    if (bySize && this.#pending.length < this.opts.batchSize) return;
    if (bySize) {
      // The tick starts again after a size-triggered send.
      clearInterval(this.#timer);
      this.#timer = setInterval(() => this.#flush(), TICK_MS);
      Deno.unrefTimer(this.#timer as unknown as number);
    }
    const events = this.#pending;
    this.#pending = [];
    const ts = (performance.timeOrigin + performance.now()) / 1000;
    const payload = encodeBatch(this.#w, ts, events, this.opts.rank, this.opts.format);
    const seq = ++this.#seq; // a failed send uses up its number
    const topic = this.opts.topic();
    this.#sending = true;
    try {
      await this.#pub.send([topic, seqBytes(seq), payload]);
      this.#replay.push({ seq, payload, topic });
      if (this.#replay.length > this.opts.replayQueueSize) this.#replay.shift();
    } catch (e) {
      if (!this.#closed) {
        this.opts.log.warn("KV event batch not sent", { seq, error: String(e) });
      }
    } finally {
      this.#sending = false;
    }
    if (this.#pending.length >= this.opts.batchSize) this.#flush(true);
  }

  async #watchAttempts(events: AsyncIterable<{ type: string }>, max: number): Promise<void> {
    let failed = 0;
    try {
      for await (const e of events) {
        if (e.type === "connect") return;
        if (e.type === "connect:retry" && ++failed >= max) {
          this.opts.log.error("KV events: giving up connecting", {
            endpoint: this.opts.endpoint,
            attempts: failed,
          });
          this.#pub?.close();
          this.#pub = null;
          return;
        }
      }
    } catch {
      // the socket was closed
    }
  }

  /**
   * Answers `[identity, "", startSeq]` with every kept batch from startSeq,
   * then the end marker. The socket is polled (readable, every 100 ms)
   * rather than read with a waiting receive: with this binding under Deno a
   * receive that waits across a client's connection misses its message, and
   * a receive timeout blocks the thread.
   */
  #serveReplay(): void {
    const router = this.#router!;
    let busy = false;
    const timer = setInterval(async () => {
      if (busy || this.#closed) return;
      busy = true;
      try {
        while (!this.#closed && (router as unknown as { readable: boolean }).readable) {
          this.#answer(router, await router.receive());
        }
      } catch {
        // closed
      } finally {
        busy = false;
      }
    }, REPLAY_POLL_MS);
    Deno.unrefTimer(timer as unknown as number);
    this.#replayTimer = timer;
  }

  #answer(router: RouterSocket, frames: Uint8Array[]): void {
    if (frames.length !== 3 || frames[2].length < 8) return;
    const start = new DataView(frames[2].buffer, frames[2].byteOffset, 8).getBigUint64(0);
    const id = frames[0];
    const batches = this.#replay.filter((b) => BigInt(b.seq) >= start);
    // The binding sends one message at a time per socket, so replies queue
    // on one chain; a ROUTER drops what a slow client's queue cannot take
    // rather than wait for it, so no client holds up another.
    this.#replies = this.#replies.then(async () => {
      try {
        for (const b of batches) await router.send([id, "", b.topic, seqBytes(b.seq), b.payload]);
        await router.send([id, "", "", END_SEQ, new Uint8Array(0)]);
      } catch {
        // the client left, or the socket closed
      }
    });
  }
}

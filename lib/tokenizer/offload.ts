/**
 * Long texts are encoded in a worker (lib/tokenizer/hf_worker.ts): BPE costs
 * about 2 ms per 1 000 tokens in JavaScript, and far more for one long run
 * of letters, so a prompt of megabytes would otherwise hold the event loop
 * for seconds. One worker per loaded tokenizer, shared read-only by every
 * simulator of the process; started on the first long text.
 */
import { ApiError } from "../errors.ts";

/** Texts at least this long (characters) are encoded off the main thread. */
export const OFFLOAD_CHARS = 32 * 1024;

interface Reply {
  id: number;
  ids?: number[];
  error?: string;
}

export class EncodeWorker {
  #worker: Worker | null = null;
  #next = 0;
  readonly #pending = new Map<number, { resolve(ids: number[]): void; reject(e: Error): void }>();

  constructor(private readonly dir: string, private readonly file: string) {}

  encode(text: string, add: boolean): Promise<number[]> {
    const worker = this.#start();
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage({ id, text, add });
    });
  }

  /** Stops the worker (tests, shutdown); pending encodings fail. */
  close(): void {
    this.#fail("the tokenizer worker was stopped");
  }

  #start(): Worker {
    if (this.#worker !== null) return this.#worker;
    const worker = new Worker(new URL("./hf_worker.ts", import.meta.url).href, { type: "module" });
    worker.onmessage = (e: MessageEvent<Reply>) => {
      const job = this.#pending.get(e.data.id);
      if (!job) return;
      this.#pending.delete(e.data.id);
      if (e.data.ids) job.resolve(e.data.ids);
      else job.reject(new ApiError(500, `Failed to tokenize, ${e.data.error}`));
    };
    worker.onerror = (e) => {
      // A crashed worker fails what it held; the next long text starts another.
      e.preventDefault();
      this.#fail(`the tokenizer worker failed: ${e.message}`);
    };
    worker.postMessage({ type: "load", dir: this.dir, file: this.file });
    this.#worker = worker;
    return worker;
  }

  #fail(message: string): void {
    this.#worker?.terminate();
    this.#worker = null;
    for (const job of this.#pending.values()) {
      job.reject(new ApiError(500, `Failed to tokenize, ${message}`));
    }
    this.#pending.clear();
  }
}

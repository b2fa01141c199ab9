/**
 * Notices clients that hang up while their answer is still pending.
 *
 * Deno 2.9's own HTTP/1.1 server aborts `request.signal` on a disconnect only
 * when the whole request arrived in its first read (about 400 bytes on the
 * wire); for larger requests nothing fires until a response is written. A
 * non-streaming generation writes nothing for its whole simulated duration,
 * so such a client would keep its slot. (Streaming answers are unaffected:
 * their body stream is cancelled at once.)
 *
 * So, while at least one answer is pending, the kernel's TCP table
 * (/proc/net/tcp, /proc/net/tcp6) is read every so often: a watched request
 * whose client port has no ESTABLISHED connection to our port any more has
 * lost its client. Keying on the client port alone can only miss a
 * disconnect (another client sharing the port number), never invent one.
 * Where /proc is unreadable the watcher turns itself off.
 */

const TABLES = ["/proc/net/tcp", "/proc/net/tcp6"];
const ESTABLISHED = "01";
/** Poll period bounds; the period grows with the cost of a scan (large tables). */
const MIN_PERIOD_MS = 100;
const MAX_PERIOD_MS = 1000;

export interface Watch {
  signal: AbortSignal;
  /** Stops watching (the answer was sent). */
  release(): void;
}

export class DisconnectWatcher {
  readonly #port: number;
  readonly #watched = new Map<number, Set<AbortController>>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #period = MIN_PERIOD_MS;
  #disabled = false;

  constructor(port: number) {
    this.#port = port;
  }

  /** A signal that aborts if the client at `remotePort` disconnects. */
  watch(remotePort: number): Watch {
    const ctrl = new AbortController();
    if (this.#disabled) return { signal: ctrl.signal, release() {} };
    let set = this.#watched.get(remotePort);
    if (!set) this.#watched.set(remotePort, set = new Set());
    set.add(ctrl);
    this.#schedule();
    return {
      signal: ctrl.signal,
      release: () => {
        set.delete(ctrl);
        if (set.size === 0 && this.#watched.get(remotePort) === set) {
          this.#watched.delete(remotePort);
        }
      },
    };
  }

  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#watched.clear();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#watched.size === 0 || this.#disabled) return;
    this.#timer = setTimeout(() => this.#scan(), this.#period);
    // A pending watch must never keep the process alive on its own.
    Deno.unrefTimer(this.#timer);
  }

  async #scan(): Promise<void> {
    const started = performance.now();
    const open = new Set<number>();
    let readable = 0;
    for (const table of TABLES) {
      let text: string;
      try {
        text = await Deno.readTextFile(table);
      } catch {
        continue;
      }
      readable++;
      collectOpen(text, this.#port, open);
    }
    this.#timer = undefined;
    if (readable === 0) {
      this.#disabled = true;
      return;
    }
    for (const [port, ctrls] of this.#watched) {
      if (open.has(port)) continue;
      this.#watched.delete(port);
      for (const c of ctrls) c.abort(new DOMException("client disconnected", "AbortError"));
    }
    const cost = performance.now() - started;
    this.#period = Math.min(MAX_PERIOD_MS, Math.max(MIN_PERIOD_MS, cost * 20));
    this.#schedule();
  }
}

/**
 * Adds the client ports of ESTABLISHED connections to `localPort` from one
 * /proc/net/tcp* table ("sl local rem st ...", addresses as HEXIP:HEXPORT).
 */
export function collectOpen(table: string, localPort: number, out: Set<number>): void {
  let pos = table.indexOf("\n") + 1; // skip the header
  while (pos > 0 && pos < table.length) {
    const end = table.indexOf("\n", pos);
    const line = table.slice(pos, end < 0 ? table.length : end);
    pos = end + 1;
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[3] !== ESTABLISHED) continue;
    const local = parseInt(f[1].slice(f[1].lastIndexOf(":") + 1), 16);
    if (local !== localPort) continue;
    out.add(parseInt(f[2].slice(f[2].lastIndexOf(":") + 1), 16));
  }
}

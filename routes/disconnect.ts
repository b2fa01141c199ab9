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
 *
 * A live client must never be taken for gone, so a watch is judged only by
 * scans that began after it was registered (a connection accepted while the
 * table was being read may be missing from it), and only after two such
 * scans in a row miss its port (the kernel writes the table in pieces, and
 * a connection can slip between two of them while others open and close).
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

/** Scans in a row that must miss a port before its watches abort. */
const MISSES_TO_ABORT = 2;

interface Entry {
  ctrl: AbortController;
  /** Scans begun before the watch was registered: those cannot judge it. */
  registeredAfter: number;
  misses: number;
}

export class DisconnectWatcher {
  readonly #port: number;
  readonly #watched = new Map<number, Set<Entry>>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #period = MIN_PERIOD_MS;
  #disabled = false;
  #scansBegun = 0;

  constructor(port: number) {
    this.#port = port;
  }

  /** A signal that aborts if the client at `remotePort` disconnects. */
  watch(remotePort: number): Watch {
    const ctrl = new AbortController();
    if (this.#disabled) return { signal: ctrl.signal, release() {} };
    let set = this.#watched.get(remotePort);
    if (!set) this.#watched.set(remotePort, set = new Set());
    const entry: Entry = { ctrl, registeredAfter: this.#scansBegun, misses: 0 };
    set.add(entry);
    this.#schedule();
    return {
      signal: ctrl.signal,
      release: () => {
        set.delete(entry);
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
    const scan = this.beginScan();
    const open = new Set<number>();
    let readable = 0;
    let transient = false;
    for (const table of TABLES) {
      let text: string;
      try {
        text = await Deno.readTextFile(table);
      } catch (e) {
        // Out of descriptors (a connection flood) is no reason to stop watching.
        if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied)) {
          transient = true;
        }
        continue;
      }
      readable++;
      collectOpen(text, this.#port, open);
    }
    this.#timer = undefined;
    if (transient) return this.#schedule(); // judge nothing on a partial view
    if (readable === 0) {
      this.#disabled = true;
      return;
    }
    this.judge(open, scan);
    const cost = performance.now() - started;
    this.#period = Math.min(MAX_PERIOD_MS, Math.max(MIN_PERIOD_MS, cost * 20));
    this.#schedule();
  }

  /** Numbers a scan that is about to read the tables (from 1). */
  beginScan(): number {
    return ++this.#scansBegun;
  }

  /**
   * Applies one scan's findings (`open`: client ports with an ESTABLISHED
   * connection; `scan`: its number from beginScan). Public for tests.
   */
  judge(open: ReadonlySet<number>, scan: number): void {
    for (const [port, entries] of this.#watched) {
      for (const e of entries) {
        if (open.has(port)) e.misses = 0;
        else if (e.registeredAfter < scan && ++e.misses >= MISSES_TO_ABORT) {
          entries.delete(e);
          e.ctrl.abort(new DOMException("client disconnected", "AbortError"));
        }
      }
      if (entries.size === 0) this.#watched.delete(port);
    }
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

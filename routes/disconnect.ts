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
/** The state column of an ESTABLISHED connection: "01". */
const ESTABLISHED = [48, 49];
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

/**
 * The process's scans of the TCP tables: one read serves every watcher (a
 * fleet runs hundreds of pods, each with its own port and watcher), and
 * only while some watcher has watches.
 */
export class TableScanner {
  readonly #watchers = new Set<DisconnectWatcher>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #period = MIN_PERIOD_MS;
  disabled = false;

  /** `w` has watches: it is judged from the next scan on. */
  want(w: DisconnectWatcher): void {
    this.#watchers.add(w);
    this.#schedule();
  }

  drop(w: DisconnectWatcher): void {
    this.#watchers.delete(w);
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#watchers.size === 0 || this.disabled) return;
    this.#timer = setTimeout(() => this.#scan(), this.#period);
    // A pending watch must never keep the process alive on its own.
    Deno.unrefTimer(this.#timer);
  }

  async #scan(): Promise<void> {
    const started = performance.now();
    const active = [...this.#watchers];
    const scans = active.map((w) => w.beginScan());
    const open = new Map<number, Set<number>>(active.map((w) => [w.port, new Set()]));
    let readable = 0;
    let transient = false;
    for (const table of TABLES) {
      let text: Uint8Array;
      try {
        text = await Deno.readFile(table);
      } catch (e) {
        // Out of descriptors (a connection flood) is no reason to stop watching.
        if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied)) {
          transient = true;
        }
        continue;
      }
      readable++;
      collectOpenPorts(text, open);
    }
    this.#timer = undefined;
    if (transient) return this.#schedule(); // judge nothing on a partial view
    if (readable === 0) {
      this.disabled = true;
      for (const w of active) w.close();
      return;
    }
    active.forEach((w, i) => w.judge(open.get(w.port)!, scans[i]));
    for (const w of active) if (!w.busy) this.#watchers.delete(w);
    const cost = performance.now() - started;
    this.#period = Math.min(MAX_PERIOD_MS, Math.max(MIN_PERIOD_MS, cost * 20));
    this.#schedule();
  }
}

/** The process's scanner. */
export const processTables = new TableScanner();

export class DisconnectWatcher {
  readonly #port: number;
  readonly #watched = new Map<number, Set<Entry>>();
  #scansBegun = 0;

  constructor(port: number, private readonly tables: TableScanner = processTables) {
    this.#port = port;
  }

  /** The local port whose clients it watches. */
  get port(): number {
    return this.#port;
  }

  /** Whether any watch is registered. */
  get busy(): boolean {
    return this.#watched.size > 0;
  }

  /** A signal that aborts if the client at `remotePort` disconnects. */
  watch(remotePort: number): Watch {
    const ctrl = new AbortController();
    if (this.tables.disabled) return { signal: ctrl.signal, release() {} };
    let set = this.#watched.get(remotePort);
    if (!set) this.#watched.set(remotePort, set = new Set());
    const entry: Entry = { ctrl, registeredAfter: this.#scansBegun, misses: 0 };
    set.add(entry);
    this.tables.want(this);
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
    this.#watched.clear();
    this.tables.drop(this);
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
export function collectOpen(
  table: Uint8Array | string,
  localPort: number,
  out: Set<number>,
): void {
  collectOpenPorts(table, new Map([[localPort, out]]));
}

/**
 * collectOpen for several local ports at once: `wanted` maps each local port
 * to the set its clients' ports are added to.
 */
export function collectOpenPorts(
  table: Uint8Array | string,
  wanted: ReadonlyMap<number, Set<number>>,
): void {
  // Bytes, read by position: the tables run to thousands of lines, and a
  // scan runs on the main thread while answers are paced (no split(), no
  // half-megabyte strings for the collector to move).
  const b = typeof table === "string" ? new TextEncoder().encode(table) : table;
  const n = b.length;
  const hex = (from: number, to: number) => {
    let v = 0;
    for (let i = from; i < to; i++) {
      const c = b[i];
      v = v * 16 + (c <= 57 ? c - 48 : (c | 32) - 87);
    }
    return v;
  };
  let pos = b.indexOf(10) + 1; // skip the header
  while (pos > 0 && pos < n) {
    let end = b.indexOf(10, pos);
    if (end < 0) end = n;
    // "%4d: %08X:%04X %08X:%04X %02X ..." (32 hex digits for IPv6).
    const colon = b.indexOf(58, pos);
    const local = colon + 2;
    const len = b.indexOf(32, local) - local; // address:port
    const st = local + 2 * len + 2;
    if (
      colon > 0 && colon < end && len > 5 && st + 2 <= end &&
      b[st] === ESTABLISHED[0] && b[st + 1] === ESTABLISHED[1]
    ) {
      const out = wanted.get(hex(local + len - 4, local + len));
      if (out) {
        const remote = local + len + 1;
        out.add(hex(remote + len - 4, remote + len));
      }
    }
    pos = end + 1;
  }
}

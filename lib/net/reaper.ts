/**
 * Header, body and idle timeouts for Deno.serve, which has none of its own:
 * a connection that sends a request head a byte at a time, never finishes
 * its body, or sits idle, would otherwise be held for ever (slowloris).
 *
 * A front proxy that owns the sockets would keep only ~15% of the request
 * rate (docs/reliability.md), so nothing is added to the request path but a
 * few field writes: the router notes, per client connection, when a request
 * starts, when its body has been read and when its answer has gone out. Once
 * a second, the process's descriptors are listed (/proc/self/fd) and, for
 * each TCP connection to one of our listening ports, the kernel is asked
 * (getsockopt TCP_INFO through FFI) how long it has been since data last
 * moved. A connection that broke a rule is shut down (shutdown(2), not
 * close: the runtime still owns the descriptor, sees end-of-file and closes
 * it itself). The rules:
 *
 * - header: no request in flight, and bytes have arrived since the last
 *   answer (a head in progress) or the connection never made a request,
 *   for longer than the header timeout;
 * - idle: no request in flight and nothing received since the last answer
 *   for longer than the idle timeout (keep-alive);
 * - body: a request whose body has not been read this long after its head,
 *   or an upload refused mid-way (413), once its answer is out.
 *
 * Requests in flight otherwise never time out: long answers and streams are
 * the simulator's job. Connections are keyed by local and remote port; two
 * clients that share a port number on different hosts merge into one
 * record, which can only delay a timeout, never cause one.
 *
 * Linux only (the /proc and TCP_INFO layout); elsewhere, or without FFI, the
 * reaper is off and says so once.
 */

/** A connection's bookkeeping, written by the router. */
export interface ConnectionRecord {
  /** Requests in flight on the connection (more than one over HTTP/2). */
  inFlight: number;
  /** performance.now() of the last request start or answer end. */
  lastActive: number;
  /** performance.now() when a request whose body is still unread arrived, else NaN. */
  bodySince: number;
  /** Shut down once no request is in flight (an upload refused mid-way). */
  closeAsap: boolean;
}

export interface Timeouts {
  headerMs: number;
  bodyMs: number;
  idleMs: number;
}

/** The records of one listening port. */
export class ConnectionTable {
  readonly #byPeer = new Map<number, ConnectionRecord>();
  /**
   * `timeouts` is read at every scan (they follow the live config);
   * `onReap` hears of each connection this port's rules shut down.
   */
  constructor(
    readonly localPort: number,
    readonly timeouts: () => Timeouts,
    readonly onReap: (rule: Rule, c: ConnectionState) => void = () => {},
  ) {}

  /** A request arrived from `peerPort` (its body not read yet). */
  begin(peerPort: number, now: number): ConnectionRecord {
    let rec = this.#byPeer.get(peerPort);
    if (rec === undefined) {
      rec = { inFlight: 0, lastActive: now, bodySince: NaN, closeAsap: false };
      this.#byPeer.set(peerPort, rec);
    }
    rec.inFlight++;
    rec.lastActive = now;
    rec.bodySince = now;
    return rec;
  }

  get(peerPort: number): ConnectionRecord | undefined {
    return this.#byPeer.get(peerPort);
  }

  /** Forgets the records of connections that are gone (called by the reaper). */
  retain(alive: ReadonlySet<number>): void {
    for (const [peer, rec] of this.#byPeer) {
      if (rec.inFlight === 0 && !alive.has(peer)) this.#byPeer.delete(peer);
    }
  }

  get size(): number {
    return this.#byPeer.size;
  }
}

/** The body was read (or abandoned): the body rule no longer applies. */
export function bodyDone(rec: ConnectionRecord | undefined): void {
  if (rec) rec.bodySince = NaN;
}

/** The answer has gone out. */
export function requestDone(rec: ConnectionRecord | undefined, now: number): void {
  if (!rec) return;
  if (rec.inFlight > 0) rec.inFlight--;
  rec.lastActive = now;
  rec.bodySince = NaN;
}

/** What the scan learns about one connection. */
export interface ConnectionState {
  localPort: number;
  peerPort: number;
  /** ms since data last arrived / was last sent (TCP_INFO). */
  sinceRecv: number;
  sinceSent: number;
}

export type Rule = "header" | "idle" | "body";

/** Which rule a connection breaks at `now`, if any. */
export function brokenRule(
  c: ConnectionState,
  rec: ConnectionRecord | undefined,
  firstSeen: number,
  now: number,
  t: Timeouts,
): Rule | null {
  if (rec && rec.inFlight > 0) {
    return now - rec.bodySince > t.bodyMs ? "body" : null;
  }
  if (rec?.closeAsap) return "body";
  const quiet = now - (rec ? Math.max(rec.lastActive, firstSeen) : firstSeen);
  const receivedSince = c.sinceRecv < quiet;
  if (rec === undefined || receivedSince) return quiet > t.headerMs ? "header" : null;
  return quiet > t.idleMs && c.sinceSent > t.idleMs ? "idle" : null;
}

const IPPROTO_TCP = 6;
const TCP_INFO = 11;
const SHUT_RDWR = 2;
const TCP_ESTABLISHED = 1;
/** struct tcp_info offsets (linux/tcp.h): tcpi_last_data_sent, tcpi_last_data_recv. */
const LAST_DATA_SENT = 44;
const LAST_DATA_RECV = 52;
const SCAN_MS = 1000;

const LIBC = {
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
} as const;
type Libc = Deno.DynamicLibrary<typeof LIBC>["symbols"];

/** Port of a sockaddr_in / sockaddr_in6 (bytes 2-3, big-endian), or -1. */
function portOf(buf: Uint8Array, len: number): number {
  const family = buf[0] | (buf[1] << 8);
  return (family === 2 || family === 10) && len >= 4 ? (buf[2] << 8) | buf[3] : -1;
}

/**
 * One per process (processReaper): a single scan of the descriptor table
 * serves every listening port of every pod.
 */
export class Reaper {
  readonly #tables = new Set<ConnectionTable>();
  readonly #firstSeen = new Map<number, number>();
  #libc: Libc | null | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  readonly #addr = new Uint8Array(128);
  readonly #addrLen = new Uint32Array(1);
  readonly #info = new Uint8Array(256);
  readonly #infoLen = new Uint32Array(1);
  readonly #view = new DataView(this.#info.buffer);

  /** Why the reaper cannot run here, once it has tried; null while it can. */
  unavailable: string | null = null;

  /** Starts watching a port's connections; false when the reaper cannot run here. */
  add(table: ConnectionTable): boolean {
    if (this.#load() === null) return false;
    this.#tables.add(table);
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.scan(performance.now()), SCAN_MS);
      Deno.unrefTimer(this.#timer);
    }
    return true;
  }

  remove(table: ConnectionTable): void {
    this.#tables.delete(table);
    if (this.#tables.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      this.#firstSeen.clear();
    }
  }

  #load(): Libc | null {
    if (this.#libc !== undefined) return this.#libc;
    try {
      if (Deno.build.os !== "linux") throw new Error(`not on ${Deno.build.os}`);
      Deno.statSync("/proc/self/fd");
      this.#libc = Deno.dlopen("libc.so.6", LIBC).symbols;
    } catch (e) {
      this.#libc = null;
      this.unavailable = String(e);
    }
    return this.#libc;
  }

  /** One pass: shuts down every connection that broke a rule. Returns how many. */
  scan(now: number): number {
    const libc = this.#libc;
    if (!libc || this.#tables.size === 0) return 0;
    const byPort = new Map<number, ConnectionTable>();
    for (const t of this.#tables) byPort.set(t.localPort, t);
    const alive = new Map<ConnectionTable, Set<number>>();
    const seen = new Set<number>();
    let reaped = 0;
    let entries: Iterable<Deno.DirEntry>;
    try {
      entries = Deno.readDirSync("/proc/self/fd");
    } catch {
      return 0; // out of descriptors right now: try again next time
    }
    for (const e of entries) {
      const fd = Number(e.name);
      const c = this.#inspect(libc, fd);
      if (c === null) continue;
      const table = byPort.get(c.localPort);
      if (!table) continue;
      const key = c.localPort * 65536 + c.peerPort;
      seen.add(key);
      let first = this.#firstSeen.get(key);
      if (first === undefined) this.#firstSeen.set(key, first = now);
      let peers = alive.get(table);
      if (!peers) alive.set(table, peers = new Set());
      peers.add(c.peerPort);
      const rule = brokenRule(c, table.get(c.peerPort), first, now, table.timeouts());
      if (rule !== null && libc.shutdown(fd, SHUT_RDWR) === 0) {
        reaped++;
        table.onReap(rule, c);
      }
    }
    for (const t of this.#tables) t.retain(alive.get(t) ?? new Set());
    for (const key of this.#firstSeen.keys()) if (!seen.has(key)) this.#firstSeen.delete(key);
    return reaped;
  }

  /** An ESTABLISHED TCP connection's ports and idle times, or null for anything else. */
  #inspect(libc: Libc, fd: number): ConnectionState | null {
    const addr = this.#addr, len = this.#addrLen;
    len[0] = addr.length;
    if (libc.getsockname(fd, addr, len) !== 0) return null; // not a socket, or gone
    const localPort = portOf(addr, len[0]);
    if (localPort < 0) return null;
    len[0] = addr.length;
    if (libc.getpeername(fd, addr, len) !== 0) return null; // a listener
    const peerPort = portOf(addr, len[0]);
    this.#infoLen[0] = this.#info.length;
    if (libc.getsockopt(fd, IPPROTO_TCP, TCP_INFO, this.#info, this.#infoLen) !== 0) return null;
    if (this.#info[0] !== TCP_ESTABLISHED) return null;
    return {
      localPort,
      peerPort,
      sinceSent: this.#view.getUint32(LAST_DATA_SENT, true),
      sinceRecv: this.#view.getUint32(LAST_DATA_RECV, true),
    };
  }
}

/** The process's reaper: descriptors are a process-wide resource. */
export const processReaper = new Reaper();

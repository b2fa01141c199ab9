/**
 * Header, body and idle timeouts for Deno.serve, which has none of its own:
 * a connection that sends a request head a byte at a time, never finishes
 * its body, or sits idle, would otherwise be held for ever (slowloris).
 *
 * A front proxy on the main thread would keep only ~15% of the request
 * rate (docs/reliability.md), so nothing is added to the path of a quick
 * request. (The front door, lib/net/front.ts, accepts the API port and
 * relays nothing, so its connections are watched here as before.) Once a
 * second a worker thread lists the process's descriptors
 * (/proc/self/fd) and, for each TCP connection to one of our listening
 * ports, asks the kernel (getsockopt TCP_INFO through FFI) how long it has
 * been since data last arrived and since we last sent any. A connection
 * that broke a rule is shut down (shutdown(2), not close: the runtime still
 * owns the descriptor, sees end-of-file and closes it itself). The rules:
 *
 * - idle: nothing moved either way for the idle timeout (an idle keep-alive
 *   connection, one that never sent a byte, or a body that stalled);
 * - header: bytes keep arriving but we have sent nothing for the header
 *   timeout (a head sent a byte at a time: a complete head is answered at
 *   once, or belongs to a request that registered itself as long);
 * - body: a registered upload (chunked, or large) not read this long after
 *   its head, or an upload refused mid-way (413) once its answer is out.
 *
 * Requests that take longer than a moment register themselves (the router's
 * context does it for answers that wait or stream, and for large uploads):
 * while in flight they never time out, since long answers and streams are
 * the simulator's job. Connections are keyed by local and remote port; two
 * clients that share a port number on different hosts merge into one
 * record, which can only delay a timeout, never cause one.
 *
 * Linux only (the /proc and TCP_INFO layout); elsewhere, or without FFI, the
 * reaper is off and says so once.
 */

/** A connection's bookkeeping, written by the router. */
export interface ConnectionRecord {
  /** Registered requests in flight on the connection (more than one over HTTP/2). */
  inFlight: number;
  /** performance.now() when a registered upload that is still unread arrived, else NaN. */
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

  /**
   * A request from `peerPort` that will take a while (it waits, streams or
   * uploads a large body).
   */
  begin(peerPort: number): ConnectionRecord {
    let rec = this.#byPeer.get(peerPort);
    if (rec === undefined) {
      rec = { inFlight: 0, bodySince: NaN, closeAsap: false };
      this.#byPeer.set(peerPort, rec);
    }
    rec.inFlight++;
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
}

/** The registered request's answer has gone out. */
export function requestDone(rec: ConnectionRecord): void {
  if (rec.inFlight > 0) rec.inFlight--;
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
  now: number,
  t: Timeouts,
): Rule | null {
  if (rec && rec.inFlight > 0) return now - rec.bodySince > t.bodyMs ? "body" : null;
  if (rec?.closeAsap) return "body";
  if (c.sinceRecv > t.idleMs && c.sinceSent > t.idleMs) return "idle";
  if (c.sinceRecv < c.sinceSent && c.sinceSent > t.headerMs) return "header";
  return null;
}

const SHUT_RDWR = 2;
const SCAN_MS = 1000;

const LIBC = {
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
} as const;
type Libc = Deno.DynamicLibrary<typeof LIBC>["symbols"];

/** Fields per connection in a scan's result. */
const FIELDS = 5;

/**
 * Lists the process's ESTABLISHED TCP connections whose local port is in
 * `ports`, as [fd, localPort, peerPort, ms since data arrived, ms since
 * data was sent] × n. Self-contained (no outer names): it also runs as the
 * scan worker's body, serialised with toString().
 */
function scanConnections(libc: Libc, ports: ReadonlySet<number>): Int32Array {
  const addr = new Uint8Array(128);
  const len = new Uint32Array(1);
  const info = new Uint8Array(256);
  const infoLen = new Uint32Array(1);
  const view = new DataView(info.buffer);
  // sockaddr_in / sockaddr_in6: family (host order) then the port, big-endian.
  const portOf = () => {
    const family = addr[0] | (addr[1] << 8);
    return (family === 2 || family === 10) && len[0] >= 4 ? (addr[2] << 8) | addr[3] : -1;
  };
  const out: number[] = [];
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    const fd = Number(entry.name);
    len[0] = addr.length;
    if (libc.getsockname(fd, addr, len) !== 0) continue; // not a socket, or gone
    const local = portOf();
    if (!ports.has(local)) continue;
    len[0] = addr.length;
    if (libc.getpeername(fd, addr, len) !== 0) continue; // a listener
    const peer = portOf();
    infoLen[0] = info.length;
    // IPPROTO_TCP (6), TCP_INFO (11); tcpi_state 1 = ESTABLISHED.
    if (libc.getsockopt(fd, 6, 11, info, infoLen) !== 0 || info[0] !== 1) continue;
    // struct tcp_info: tcpi_last_data_sent at 44, tcpi_last_data_recv at 52.
    out.push(fd, local, peer, view.getUint32(52, true), view.getUint32(44, true));
  }
  return Int32Array.from(out);
}

/** The scan worker: listing thousands of descriptors stays off the main thread. */
function scanWorker(): void {
  const libc = Deno.dlopen("libc.so.6", {
    getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
    getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
    getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  }).symbols as unknown as Libc;
  const scope = self as unknown as {
    onmessage: (e: MessageEvent<number[]>) => void;
    postMessage(m: Int32Array | null, t?: Transferable[]): void;
  };
  scope.onmessage = (e) => {
    let found: Int32Array | null = null;
    try {
      found = scanConnections(libc, new Set(e.data));
    } catch { /* out of descriptors right now: nothing this time */ }
    scope.postMessage(found, found ? [found.buffer as ArrayBuffer] : []);
  };
}

const WORKER_SOURCE = `const scanConnections = ${scanConnections.toString()};\n(${scanWorker})();`;

/**
 * One per process (processReaper): a single scan of the descriptor table
 * serves every listening port of every pod. The listing runs on a worker
 * thread (~4 µs a descriptor, so ~40 ms at 10 000 streams); the main thread
 * only applies the rules to what it reports and shuts down the offenders.
 */
export class Reaper {
  readonly #tables = new Set<ConnectionTable>();
  #libc: Libc | null | undefined;
  #worker: Worker | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #addr = new Uint8Array(128);
  readonly #addrLen = new Uint32Array(1);
  /** Why the reaper cannot run here, once it has tried; null while it can. */
  unavailable: string | null = null;

  /** Starts watching a port's connections; false when the reaper cannot run here. */
  add(table: ConnectionTable): boolean {
    if (this.#load() === null) return false;
    this.#tables.add(table);
    // The worker starts with the first scan, a second from now: not during start-up.
    if (this.#worker === null && this.#timer === undefined) this.#schedule();
    return this.#libc !== null;
  }

  remove(table: ConnectionTable): void {
    this.#tables.delete(table);
    if (this.#tables.size === 0) this.#stop();
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

  #start(): Worker | null {
    try {
      // A data: URL, as lib/alarm.ts explains (compiled binaries and blob: URLs).
      const url = `data:text/javascript,${encodeURIComponent(WORKER_SOURCE)}`;
      const worker = new Worker(url, { type: "module" });
      worker.onmessage = (e: MessageEvent<Int32Array | null>) => {
        if (worker !== this.#worker) return;
        if (e.data) this.#apply(e.data, performance.now());
        this.#schedule();
      };
      worker.onerror = (e) => {
        e.preventDefault();
        this.#fail(String(e.message));
      };
      return this.#worker = worker;
    } catch (e) {
      this.#fail(String(e));
      return null;
    }
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#tables.size === 0) return;
      const ports = [...this.#tables].map((t) => t.localPort);
      (this.#worker ?? this.#start())?.postMessage(ports);
    }, SCAN_MS);
    Deno.unrefTimer(this.#timer);
  }

  #stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#worker?.terminate();
    this.#worker = null;
  }

  /** Without its worker the reaper is off for good (logged by each new listener). */
  #fail(why: string): void {
    this.#stop();
    this.#libc = null;
    this.unavailable = `the scan worker failed: ${why}`;
  }

  /** Applies the rules to one scan's connections (scanConnections' layout). */
  #apply(found: Int32Array, now: number): void {
    const libc = this.#libc;
    if (!libc) return;
    const byPort = new Map<number, ConnectionTable>();
    for (const t of this.#tables) byPort.set(t.localPort, t);
    const alive = new Map<ConnectionTable, Set<number>>();
    for (let i = 0; i < found.length; i += FIELDS) {
      const c: ConnectionState = {
        localPort: found[i + 1],
        peerPort: found[i + 2],
        sinceRecv: found[i + 3],
        sinceSent: found[i + 4],
      };
      const table = byPort.get(c.localPort);
      if (!table) continue;
      let peers = alive.get(table);
      if (!peers) alive.set(table, peers = new Set());
      peers.add(c.peerPort);
      const rule = brokenRule(c, table.get(c.peerPort), now, table.timeouts());
      const fd = found[i];
      // The descriptor may have been closed and reused since the worker looked.
      if (rule !== null && this.#same(libc, fd, c) && libc.shutdown(fd, SHUT_RDWR) === 0) {
        table.onReap(rule, c);
      }
    }
    for (const t of this.#tables) t.retain(alive.get(t) ?? new Set());
  }

  /** Whether `fd` is still the connection the scan reported. */
  #same(libc: Libc, fd: number, c: ConnectionState): boolean {
    const addr = this.#addr, len = this.#addrLen;
    const port = () => len[0] >= 4 ? (addr[2] << 8) | addr[3] : -1;
    len[0] = addr.length;
    if (libc.getsockname(fd, addr, len) !== 0 || port() !== c.localPort) return false;
    len[0] = addr.length;
    return libc.getpeername(fd, addr, len) === 0 && port() === c.peerPort;
  }
}

/** The process's reaper: descriptors are a process-wide resource. */
export const processReaper = new Reaper();

/**
 * Fuzz test: seeded, bounded requests against a vllm-sim CHILD PROCESS, so a
 * crash shows up as the child exiting. Invariants: no status ≥ 500 the test
 * did not ask for (X-Return-Error, or 503 while it had put the server to
 * sleep), no crash, no hang (every request has a deadline), the request
 * target alone picks the route (an odd Host header never does), and the
 * server is healthy afterwards.
 *
 * Per server set-up (plain; --api-key + sleep mode + small latencies):
 *   sweep    every route in routes/table.ts with its seed body, every wrong
 *            method, odd paths, one sleep/wake cycle (sequential);
 *   data     each field of the generation and LoRA bodies × a pool of wrong
 *            values, every X-Return-Error value, random multi-mutations (sane
 *            knobs, wrong values, special headers, broken bodies), 8 at a time;
 *   raw      HTTP/1.1 written to a socket: odd Host headers (compared with
 *            the same request under a normal Host), absolute-form and
 *            non-normalised targets, broken request lines and framing;
 *   huge     inputs that deserve a quick 4xx (slow or accepted: a warning);
 *   control  /admin/config keys and fake-metrics fields × wrong values, in
 *            batches that set each key once, each followed (after a few
 *            fake-metrics ticks) by reads and a reset; then random updates,
 *            /metrics renders, sleep/wake; then the configuration is restored;
 *   final    /health, a plain and a streamed chat completion, /metrics.
 * When the child dies, or a read fails after state changes, the updates
 * accepted just before (and the requests the child dropped) are replayed on
 * fresh children and bisected to name each culprit, within a time budget;
 * then the fuzz goes on with a fresh child.
 *
 * FUZZ_SEED=<n> replays a run's request set (the interleaving of concurrent
 * requests varies). Violations are grouped by kind, route, status and
 * answer, listing the (random-free) mutations that led there, each group
 * with its shortest reproduction.
 */
import assert from "node:assert/strict";
import {
  ADMIN_KEYS,
  FAKE_BUCKET_FIELDS,
  FAKE_COUNTER_FIELDS,
  FAKE_VALUE_FIELDS,
} from "../lib/options.ts";
import { ROUTES } from "../routes/table.ts";

// ---------- knobs ----------

const ROOT = new URL("..", import.meta.url).pathname;
const HOST = "127.0.0.1";
const MODEL = "fuzz-model";
const CONCURRENCY = 8;
/** Deadline of one fetch, body included. */
const DEADLINE_MS = 8_000;
/** Deadline of one raw-socket exchange. */
const RAW_DEADLINE_MS = 5_000;
/** Deadline of one huge request; it should be answered within QUICK_MS. */
const HUGE_DEADLINE_MS = 15_000;
const QUICK_MS = 2_000;
/** Most of an answer the test reads; the rest is cancelled. */
const MAX_BODY_BYTES = 4 << 20;
/** Child starts per server (first start, restarts after crashes, replays). */
const MAX_STARTS = 40;
/** Starts that replays leave for restarts after crashes. */
const RESERVED_STARTS = 10;
/** Time per server for naming culprits by replay; then crashes stay unnamed. */
const LOCALISE_BUDGET_MS = 12_000;
/**
 * The children re-evaluate fake metrics this often (default 100 ms), so a
 * bad value is used before another update replaces it.
 */
const FAKE_TICK = "10ms";
/** A few fake-metrics ticks. */
const SETTLE_MS = 30;
/** Several fake-metrics ticks (replays). */
const TICK_WAIT_MS = 150;
const RANDOM_DATA_CASES = 600;
const RANDOM_CONTROL_CASES = 250;
const REPORT_LINES = 40;

const SEED = fuzzSeed();
console.log(`fuzz seed ${SEED} (replay: FUZZ_SEED=${SEED} deno test -A tests/fuzz_test.ts)`);

function fuzzSeed(): number {
  const env = Deno.env.get("FUZZ_SEED");
  if (env === undefined || env.trim() === "") {
    return crypto.getRandomValues(new Uint32Array(1))[0];
  }
  const n = Number(env);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new Error(`FUZZ_SEED must be an integer in 0..2^32-1, got ${JSON.stringify(env)}`);
  }
  return n;
}

// ---------- seeded randomness ----------

/** mulberry32: small, fast, reproducible. */
class Rng {
  #a: number;
  constructor(seed: number) {
    this.#a = seed >>> 0;
  }
  next(): number {
    let t = (this.#a = (this.#a + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [xs[i], xs[j]] = [xs[j], xs[i]];
    }
    return xs;
  }
}

function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

// ---------- JSON with raw pieces ----------

/** JSON text spliced in as is: 1e999, -0, deep nesting, lone surrogates. */
class RawJson {
  constructor(readonly text: string) {}
}
type J = null | boolean | number | string | RawJson | J[] | { [key: string]: J };
type Obj = { [key: string]: J };

function toJson(v: J): string {
  if (v instanceof RawJson) return v.text;
  if (Array.isArray(v)) return `[${v.map(toJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}:${toJson(x)}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

const raw = (text: string) => new RawJson(text);
const deepArray = (depth: number) => raw("[".repeat(depth) + "]".repeat(depth));
const deepObject = (depth: number) => raw('{"a":'.repeat(depth) + "1" + "}".repeat(depth));
const LONG = "x".repeat(100_000);

interface Labeled {
  label: string;
  value: J;
}
const lab = (label: string, value: J): Labeled => ({ label, value });
const strings = (...xs: string[]) => xs.map((s) => lab(JSON.stringify(s), s));
const words = (s: string) => s.trim().split(/\s+/);

/** Wrong values for any field. */
const WEIRD: readonly Labeled[] = [
  lab("null", null),
  lab("[]", []),
  lab("{}", {}),
  ...strings("", "x", "5", "1ms"),
  lab("true", true),
  lab("false", false),
  lab("0", 0),
  lab("-1", -1),
  lab("1e999", raw("1e999")),
  lab("-1e999", raw("-1e999")),
  lab("1e300", raw("1e300")),
  lab("-0", raw("-0")),
  lab("1.5", raw("1.5")),
  lab("1e-320", raw("1e-320")),
  lab("2^31", 2 ** 31),
  lab("2^53+1", raw("9007199254740993")),
  lab("-2^53-1", raw("-9007199254740993")),
  lab("100KB string", LONG),
  lab("unicode+NUL", "h\u00e9\u0000\u202e\u{1f600}"),
  lab("lone surrogate", raw('"\\ud800x\\udfff"')),
  lab("deep array x10000", deepArray(10_000)),
  lab("deep array x100000", deepArray(100_000)),
  lab("deep object x5000", deepObject(5_000)),
  lab("[1e999,-1e999]", raw("[1e999,-1e999]")),
  lab("nested object", { a: { b: [1, "2", null] } }),
  lab("1000 ints", Array.from({ length: 1000 }, (_, i) => i)),
];

// ---------- cases and outcomes ----------

type Phase = "sweep" | "data" | "raw" | "huge" | "control" | "restore" | "final";
type Bytes = Uint8Array<ArrayBuffer>;
type Body = string | Bytes | { chunks: Bytes[] };

interface Case {
  phase: Phase;
  /** What was varied: short, free of random data. */
  what: string;
  method: string;
  /** Path and query as sent (fetch), or the request target (raw). */
  target: string;
  headers: Record<string, string>;
  body?: Body;
  /** Raw-socket request bytes for the child's port; fetch is used when absent. */
  raw?: (port: number) => Bytes;
  deadlineMs: number;
  /** The 5xx an X-Return-Error header asked for. */
  asked?: number;
  /** A 503 "sleeping" is a right answer here. */
  sleepingOk?: boolean;
  /** The server may close without an answer (malformed raw request, upload over the limit). */
  mayClose?: boolean;
  /** Huge input: should be answered within QUICK_MS, with a 4xx if want4xx. */
  quick?: boolean;
  want4xx?: boolean;
  /** Extra check of the answer: a complaint, or null. */
  check?: (o: Outcome) => { kind: string; key: string; what: string; detail: string } | null;
}

interface Outcome {
  status: number | null;
  contentType: string;
  body: string;
  /** The body was read to its end. */
  complete: boolean;
  ms: number;
  error: string | null;
  timedOut: boolean;
}

const enc = new TextEncoder();
const bytes = (s: string): Bytes => enc.encode(s);
const latin1 = (b: Uint8Array) => new TextDecoder("latin1").decode(b);
const errText = (e: unknown) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function short(s: string, max: number): string {
  const flat = s.replace(/\s+/g, " ");
  return flat.length <= max ? flat : `${flat.slice(0, max)}…(+${flat.length - max} chars)`;
}

function pathOf(target: string): string {
  const q = target.search(/[?#]/);
  return q < 0 ? target : target.slice(0, q);
}

function bodyInit(b: Body | undefined): BodyInit | undefined {
  if (b === undefined || typeof b === "string" || b instanceof Uint8Array) return b;
  const chunks = [...b.chunks];
  return new ReadableStream<Bytes>({
    pull(ctl) {
      const next = chunks.shift();
      if (next) ctl.enqueue(next);
      else ctl.close();
    },
  });
}

async function readBody(
  stream: ReadableStream<Uint8Array> | null,
): Promise<{ text: string; complete: boolean }> {
  if (!stream) return { text: "", complete: true };
  const dec = new TextDecoder();
  const reader = stream.getReader();
  let text = "";
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { text: text + dec.decode(), complete: true };
    total += value.byteLength;
    if (total > MAX_BODY_BYTES) {
      await reader.cancel();
      return { text, complete: false };
    }
    text += dec.decode(value, { stream: true });
  }
}

async function sendFetch(base: string, c: Case): Promise<Outcome> {
  const ac = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort();
  }, c.deadlineMs);
  const t0 = performance.now();
  const o: Outcome = {
    status: null,
    contentType: "",
    body: "",
    complete: false,
    ms: 0,
    error: null,
    timedOut: false,
  };
  try {
    const res = await fetch(base + c.target, {
      method: c.method,
      headers: c.headers,
      body: bodyInit(c.body),
      signal: ac.signal,
    });
    o.status = res.status;
    o.contentType = res.headers.get("content-type") ?? "";
    const { text, complete } = await readBody(res.body);
    o.body = text;
    o.complete = complete;
  } catch (e) {
    o.error = errText(e);
    o.timedOut = timedOut;
  } finally {
    clearTimeout(timer);
    o.ms = performance.now() - t0;
  }
  return o;
}

function concat(parts: Uint8Array[]): Bytes {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

function indexOfSeq(b: Uint8Array, seq: readonly number[], from = 0): number {
  outer: for (let i = from; i + seq.length <= b.length; i++) {
    for (let j = 0; j < seq.length; j++) if (b[i + j] !== seq[j]) continue outer;
    return i;
  }
  return -1;
}

const CRLF = [13, 10];
const CRLF2 = [13, 10, 13, 10];

/** A chunked body's payload, or null when it is cut short or malformed. */
function dechunk(b: Uint8Array): Uint8Array | null {
  const parts: Uint8Array[] = [];
  let i = 0;
  for (;;) {
    const eol = indexOfSeq(b, CRLF, i);
    if (eol < 0) return null;
    const size = parseInt(latin1(b.subarray(i, eol)).split(";")[0].trim(), 16);
    if (!Number.isFinite(size) || size < 0) return null;
    i = eol + 2;
    if (size === 0) return concat(parts);
    if (i + size > b.length) return null;
    parts.push(b.subarray(i, i + size));
    i += size + 2;
  }
}

/** The final answer in raw response bytes (1xx interim answers skipped). */
function parseRawAnswer(all: Uint8Array): Omit<Outcome, "ms" | "error" | "timedOut"> {
  let start = 0;
  for (;;) {
    const headEnd = indexOfSeq(all, CRLF2, start);
    const head = latin1(all.subarray(start, headEnd < 0 ? all.length : headEnd));
    const m = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(head);
    if (!m) return { status: null, contentType: "", body: "", complete: false };
    const status = Number(m[1]);
    if (status < 200 && headEnd >= 0) {
      start = headEnd + 4;
      continue;
    }
    const header = (name: string) =>
      new RegExp(`^${name}:[ \\t]*(.*)$`, "im").exec(head)?.[1]?.trim() ?? "";
    let payload: Uint8Array | null = headEnd < 0 ? new Uint8Array() : all.subarray(headEnd + 4);
    if (/chunked/i.test(header("transfer-encoding"))) payload = dechunk(payload);
    return {
      status,
      contentType: header("content-type"),
      body: payload ? new TextDecoder().decode(payload) : "",
      complete: payload !== null,
    };
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** One request over a fresh socket; the request asks the server to close after it. */
async function sendRaw(port: number, c: Case): Promise<Outcome> {
  const request = c.raw!(port);
  const t0 = performance.now();
  const parts: Uint8Array[] = [];
  let total = 0;
  let error: string | null = null;
  let timedOut = false;
  let conn: Deno.TcpConn | null = null;
  let closed = false;
  const close = () => {
    if (closed || !conn) return;
    closed = true;
    try {
      conn.close();
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    close();
  }, c.deadlineMs);
  try {
    conn = await Deno.connect({ hostname: HOST, port });
    if (timedOut) close();
    try {
      await writeAll(conn, request);
    } catch (e) {
      // The server may answer (and close) before reading everything.
      error = `write: ${errText(e)}`;
    }
    const buf = new Uint8Array(65536);
    while (total < MAX_BODY_BYTES) {
      const n = await conn.read(buf);
      if (n === null) break;
      parts.push(buf.slice(0, n));
      total += n;
    }
  } catch (e) {
    error ??= errText(e);
  } finally {
    clearTimeout(timer);
    close();
  }
  const answer = parseRawAnswer(concat(parts));
  return {
    ...answer,
    ms: performance.now() - t0,
    // A reset after a complete answer is the server closing, not a failure.
    error: answer.status !== null && answer.complete && !timedOut ? null : error,
    timedOut,
  };
}

// ---------- the child process ----------

interface Setup {
  name: string;
  args: string[];
  env: Record<string, string>;
  apiKey: string | null;
}

const SETUPS: readonly Setup[] = [
  { name: "plain", args: [], env: { VLLM_SERVER_DEV_MODE: "0" }, apiKey: null },
  {
    name: "api-key + sleep mode + latencies",
    args: words(
      "--api-key k --enable-sleep-mode --time-to-first-token 2ms --inter-token-latency 1ms",
    ),
    env: { VLLM_SERVER_DEV_MODE: "1" },
    apiKey: "k",
  },
];

function freePort(): number {
  const l = Deno.listen({ hostname: HOST, port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** How the children are started (without --port and --seed), for reproductions. */
function commandLine(setup: Setup): string {
  const env = Object.entries(setup.env).map(([k, v]) => `${k}=${v} `).join("");
  return `${env}deno run -A main.ts --model ${MODEL} --fake-metrics-refresh-interval ${FAKE_TICK} ` +
    setup.args.join(" ");
}

class Child {
  readonly port = freePort();
  readonly base = `http://${HOST}:${this.port}`;
  readonly #proc: Deno.ChildProcess;
  readonly #drained: Promise<unknown>;
  readonly status: Promise<Deno.CommandStatus>;
  exit: { at: number; status: Deno.CommandStatus } | null = null;
  #stderr = "";
  #stopping = false;

  constructor(setup: Setup) {
    this.#proc = new Deno.Command(Deno.execPath(), {
      args: [
        ...words(`run -A main.ts --model ${MODEL} --host ${HOST} --log-level warn`),
        ...["--port", String(this.port), "--seed", String(SEED)],
        ...["--fake-metrics-refresh-interval", FAKE_TICK, ...setup.args],
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1", ...setup.env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.status = this.#proc.status.then((status) => {
      if (!this.#stopping) this.exit = { at: performance.now(), status };
      return status;
    });
    this.#drained = Promise.all([
      this.#drain(this.#proc.stdout, () => {}),
      this.#drain(this.#proc.stderr, (s) => this.#stderr = (this.#stderr + s).slice(-16_384)),
    ]);
  }

  async #drain(stream: ReadableStream<Uint8Array>, keep: (s: string) => void): Promise<void> {
    const dec = new TextDecoder();
    for await (const chunk of stream) keep(dec.decode(chunk, { stream: true }));
  }

  get dead(): boolean {
    return this.exit !== null;
  }

  /** The error the child printed last (uncaught exception, error log), shortened. */
  lastError(): string {
    const lines = this.#stderr.split("\n").map((l) => l.trim()).filter((l) => l !== "");
    const err = lines.findLast((l) => /^error:|uncaught|panic/i.test(l)) ??
      lines.findLast((l) => /error/i.test(l)) ?? lines.at(-1) ?? "";
    return short(err, 140);
  }

  exitText(): string {
    const s = this.exit?.status;
    if (!s) return "running";
    return s.signal ? `signal ${s.signal}` : `code ${s.code}`;
  }

  /** Waits for GET /health 200; false if the child exits or takes over 30 s. */
  async ready(): Promise<boolean> {
    const until = performance.now() + 30_000;
    while (performance.now() < until && !this.dead) {
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), 1_000);
      try {
        const res = await fetch(`${this.base}/health`, { signal: ac.signal });
        await res.body?.cancel();
        if (res.status === 200) return true;
      } catch {
        // not listening yet
      } finally {
        clearTimeout(timer);
      }
      await sleep(50);
    }
    return false;
  }

  /** Ends the child (SIGTERM, then SIGKILL) and waits for its pipes to close. */
  async stop(): Promise<void> {
    if (!this.dead) {
      this.#stopping = true;
      try {
        this.#proc.kill("SIGTERM");
      } catch {
        // exited meanwhile
      }
      const done = await Promise.race([
        this.status.then(() => true),
        sleep(5_000).then(() => false),
      ]);
      if (!done) {
        try {
          this.#proc.kill("SIGKILL");
        } catch {
          // exited meanwhile
        }
      }
    }
    await this.status;
    await this.#drained;
  }
}

// ---------- violations ----------

const KIND_ORDER = words("crash 5xx hang misrouted no-answer bad-body after-fuzz coverage");

interface Group {
  kind: string;
  key: string;
  detail: string;
  repro: string;
  count: number;
  whats: Map<string, number>;
}

/** Violations grouped by kind + key + detail; each group lists the mutations seen. */
class Violations {
  readonly #groups = new Map<string, Group>();

  add(kind: string, key: string, what: string, detail: string, repro: string): void {
    const id = `${kind}\u0000${key}\u0000${detail}`;
    let g = this.#groups.get(id);
    if (!g) this.#groups.set(id, g = { kind, key, detail, repro, count: 0, whats: new Map() });
    g.count++;
    g.whats.set(what, (g.whats.get(what) ?? 0) + 1);
    // The shortest reproduction is the most useful one.
    if (repro.length < g.repro.length) g.repro = repro;
  }

  get size(): number {
    return this.#groups.size;
  }

  total(): number {
    return [...this.#groups.values()].reduce((n, g) => n + g.count, 0);
  }

  lines(): string[] {
    const groups = [...this.#groups.values()].sort((a, b) =>
      KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) || b.count - a.count ||
      a.key.localeCompare(b.key)
    );
    return groups.map((g) => {
      const whats = short([...g.whats.keys()].filter((w) => w !== "").join("; "), 160);
      return short(
        `[${g.kind}] ${g.key}${g.count > 1 ? ` (x${g.count})` : ""}` +
          `${g.detail ? `: ${g.detail}` : ""}${whats ? ` <- ${whats}` : ""} | e.g. ${g.repro}`,
        520,
      );
    });
  }
}

const DEFAULT_HEADERS = new Set(["content-type: application/json", "authorization: Bearer k"]);

function preview(b: Body | undefined): string {
  if (b === undefined) return "";
  if (typeof b === "string") return short(b, 160);
  if (b instanceof Uint8Array) {
    return `<${b.length} bytes: ${short(JSON.stringify(latin1(b.subarray(0, 80))), 90)}>`;
  }
  const n = b.chunks.reduce((s, c) => s + c.length, 0);
  return `<chunked upload, ${n} bytes: ${short(latin1(b.chunks[0] ?? new Uint8Array()), 60)}>`;
}

/** A reproduction: curl-like for fetch, the request text for raw (port 8000). */
function repro(c: Case): string {
  if (c.raw) return `raw ${short(JSON.stringify(latin1(c.raw(8000))), 200)}`;
  const hs = Object.entries(c.headers)
    .filter(([k, v]) => !DEFAULT_HEADERS.has(`${k}: ${v}`))
    .map(([k, v]) => ` -H '${k}: ${short(v, 40)}'`).join("");
  const body = c.body === undefined ? "" : ` body=${preview(c.body)}`;
  return `${c.method} ${short(c.target, 80)}${hs}${body}`;
}

/** A short, stable description of an answer body for grouping. */
function answerText(o: Outcome): string {
  if (o.body === "") return "(empty body)";
  try {
    const v = JSON.parse(o.body) as { error?: { message?: unknown } };
    if (typeof v.error?.message === "string") return short(v.error.message, 70);
  } catch {
    // not JSON
  }
  return short(o.body, 70);
}

// ---------- one fuzz run against one server set-up ----------

/** Handlers a POST can reach that change server state. */
const STATEFUL_PATHS = new Set(words(`
  /admin/config /fake_metrics /v1/load_lora_adapter /v1/unload_lora_adapter /sleep /wake_up
`));

const ROUTE_KEYS = new Set(ROUTES.map((r) => `${r.method} ${r.path}`));

class LocaliseStop extends Error {}

class FuzzRun {
  readonly violations = new Violations();
  readonly warnings = new Map<string, number>();
  readonly covered = new Set<string>();
  readonly statuses = new Map<string, number>();
  readonly b: Builder;
  requests = 0;
  child!: Child;
  #starts = 0;
  #gaveUp = false;
  #gate: Promise<void> | null = null;
  #budgetEnd = 0;
  #reported = new WeakSet<Child>();
  /** 2xx state-changing requests, oldest first, to name a culprit. */
  #updates: { at: number; child: Child; c: Case }[] = [];
  /** Updates before this were undone (reset, fresh child): not culprits. */
  #cleanAt = 0;
  /** When each GET path last answered 2xx. */
  #lastGoodRead = new Map<string, number>();
  #inflight = new Set<Case>();
  /** Requests that lost their connection when the child died, per child. */
  #lost = new Map<Child, Case[]>();

  constructor(readonly setup: Setup, readonly rng: Rng) {
    this.b = new Builder(setup, rng);
  }

  get gaveUp(): boolean {
    return this.#gaveUp;
  }

  /** The server's state was just reset: earlier updates cannot be culprits. */
  markClean(): void {
    this.#cleanAt = performance.now();
  }

  async start(): Promise<boolean> {
    if (this.#starts >= MAX_STARTS) {
      this.#gaveUp = true;
      return false;
    }
    this.#starts++;
    for (let attempt = 1;; attempt++) {
      this.child = new Child(this.setup);
      if (await this.child.ready()) return true;
      // Another process may have taken the free port in the meantime.
      if (attempt === 3 || !/cannot listen|in use/i.test(this.child.lastError())) break;
      this.#reported.add(this.child);
      await this.child.stop();
    }
    this.violations.add(
      "crash",
      "start-up",
      "",
      `no GET /health 200 (${this.child.exitText()}: ${this.child.lastError()})`,
      commandLine(this.setup),
    );
    this.#reported.add(this.child);
    await this.child.stop();
    this.#gaveUp = true;
    return false;
  }

  /** Sends one case (after crash handling, if due) and judges the answer. */
  async exec(c: Case): Promise<Outcome | null> {
    for (;;) {
      if (this.#gate) await this.#gate;
      else if (this.child.dead && !this.#gaveUp) {
        this.#gate = this.#exclusive(() => this.#afterCrash(c.phase));
      } else break;
    }
    if (this.#gaveUp) return null;
    const child = this.child;
    this.#inflight.add(c);
    const o = c.raw ? await sendRaw(child.port, c) : await sendFetch(child.base, c);
    this.#inflight.delete(c);
    this.requests++;
    if (o.error !== null && !o.timedOut && !child.dead) {
      // A crash shows as a connection error first and as the exit soon after.
      await Promise.race([child.status, sleep(250)]);
    }
    if (o.status === null && child.dead) {
      this.#lost.set(child, [...(this.#lost.get(child) ?? []), c].slice(-8));
    }
    this.#record(c, o, child);
    this.#judge(c, o, child.dead);
    const failedRead = c.phase === "control" && c.method === "GET" && o.status !== null &&
      o.status >= 500 && !(c.sleepingOk && o.status === 503);
    if (failedRead && !this.#gate && !child.dead) {
      const at = performance.now();
      this.#gate = this.#exclusive(() => this.#afterFailedRead(c, o, at));
    }
    return o;
  }

  /** Runs cases `limit` at a time. */
  async pool(cases: readonly Case[], limit = CONCURRENCY): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < cases.length && !this.#gaveUp) await this.exec(cases[next++]);
    };
    await Promise.all(Array.from({ length: limit }, worker));
  }

  /** Runs `fn` once the requests in flight are done; others wait for it. */
  async #exclusive(fn: () => Promise<void>): Promise<void> {
    try {
      while (this.#inflight.size > 0) await sleep(5);
      await fn();
    } finally {
      this.#gate = null;
    }
  }

  #record(c: Case, o: Outcome, child: Child): void {
    const key = String(o.status ?? (o.timedOut ? "timeout" : "error"));
    this.statuses.set(key, (this.statuses.get(key) ?? 0) + 1);
    if (o.status === null) return;
    const route = `${c.method} ${pathOf(c.target)}`;
    if (!c.raw && ROUTE_KEYS.has(route) && ![401, 404, 405].includes(o.status)) {
      this.covered.add(route);
    }
    if (c.method === "GET" && o.status < 300) {
      this.#lastGoodRead.set(pathOf(c.target), performance.now());
    }
    if (o.status < 300 && !c.raw && c.method === "POST" && STATEFUL_PATHS.has(pathOf(c.target))) {
      this.#updates.push({ at: performance.now(), child, c });
      if (this.#updates.length > 256) this.#updates.shift();
    }
  }

  #judge(c: Case, o: Outcome, died: boolean): void {
    const where = `${c.raw ? "raw " : ""}${c.method} ${short(pathOf(c.target), 50)}`;
    const add = (kind: string, key: string, detail: string) =>
      this.violations.add(kind, key, c.what, detail, repro(c));
    if (o.timedOut) {
      const got = o.status === null ? "no answer" : `status ${o.status}, body unfinished`;
      add("hang", where, `${got} after the ${c.deadlineMs} ms deadline`);
    } else if (o.error !== null && !died && !(c.mayClose && o.status === null)) {
      add("no-answer", where, short(o.error.replace(/https?:\/\/\S+/g, "<url>"), 80));
    }
    if (o.status === null) return;
    if (o.status >= 500) {
      const asked = c.asked === o.status;
      const sleeping = c.sleepingOk && o.status === 503 && /sleep/i.test(o.body);
      if (!asked && !sleeping) add("5xx", `${where} -> ${o.status}`, answerText(o));
    }
    const complaint = c.check?.(o);
    if (complaint) {
      this.violations.add(
        complaint.kind,
        complaint.key,
        complaint.what,
        complaint.detail,
        repro(c),
      );
    }
    if (!c.raw && o.complete && o.error === null) {
      const bad = badBody(o);
      if (bad) add("bad-body", `${where} -> ${o.status}`, bad);
    }
    if (c.quick && (o.ms > QUICK_MS || (c.want4xx && o.status < 400))) {
      const k = `${c.what}: ${o.status} after ${(o.ms / 1000).toFixed(1)} s` +
        (c.want4xx ? " (wanted a quick 4xx)" : " (wanted an answer within 2 s)");
      this.warnings.set(k, (this.warnings.get(k) ?? 0) + 1);
    }
  }

  /**
   * The child died: name the culprits among the updates it accepted last and
   * the requests it dropped, then go on with a fresh child.
   */
  async #afterCrash(phase: Phase): Promise<void> {
    const dead = this.child;
    await dead.status;
    const exitAt = dead.exit?.at ?? performance.now();
    const how = `${dead.exitText()}: ${dead.lastError()}`;
    // A dead child's updates were all answered before it died, whenever the
    // answer reached this process.
    const candidates = [
      ...this.#updatesOf(dead, Math.max(exitAt - 500, this.#cleanAt), Infinity),
      ...this.#lost.get(dead) ?? [],
    ];
    const seen = this.#reported.has(dead);
    this.#reported.add(dead);
    await dead.stop();
    const found = seen ? [] : await this.#localise(candidates);
    if (this.child === dead) await this.#fresh(false).catch(() => {});
    if (seen) return;
    for (const { culprit, shows } of found) {
      const c = culprit[0];
      this.violations.add(
        "crash",
        `child exits after ${c.method} ${pathOf(c.target)}`,
        culprit.map((x) => x.what).join(" + "),
        `${how}; replayed on a fresh child, it ${shows}`,
        culprit.map(repro).join(" ; then ") + "; then wait a fake-metrics tick",
      );
    }
    if (found.length === 0) {
      this.violations.add(
        "crash",
        `child exited during ${phase}`,
        "",
        how,
        candidates.length
          ? `not reproduced by replay; just before: ${candidates.slice(-3).map(repro).join(" ; ")}`
          : "no update accepted or request dropped just before",
      );
    }
  }

  /** A read failed in the control phase: name the updates that broke it. */
  async #afterFailedRead(read: Case, o: Outcome, at: number): Promise<void> {
    const lastGood = this.#lastGoodRead.get(pathOf(read.target)) ?? 0;
    const candidates = this.#updatesOf(this.child, Math.max(lastGood - 100, this.#cleanAt), at);
    for (const { culprit, shows } of await this.#localise(candidates, read)) {
      const c = culprit[0];
      this.violations.add(
        "5xx",
        `${read.method} ${pathOf(read.target)} -> ${o.status} after ${c.method} ${
          pathOf(c.target)
        }`,
        culprit.map((x) => x.what).join(" + "),
        `${answerText(o)}; replayed on a fresh child, it ${shows}`,
        culprit.map(repro).join(" ; then ") + `; then wait a tick; ${repro(read)}`,
      );
    }
  }

  #updatesOf(child: Child, from: number, to: number): Case[] {
    return this.#updates.filter((u) => u.child === child && u.at >= from && u.at <= to)
      .slice(-32).map((u) => u.c);
  }

  /**
   * Replays `candidates` on fresh children and bisects them down to each one
   * (or the few together) that crashes the child, or makes `read` fail;
   * `shows` says which. Empty when they do not reproduce it or the time
   * budget is spent; a replay leaves a fresh child.
   */
  async #localise(
    candidates: Case[],
    read?: Case,
  ): Promise<{ culprit: Case[]; shows: string }[]> {
    this.#budgetEnd ||= performance.now() + LOCALISE_BUDGET_MS;
    const found: { culprit: Case[]; shows: string }[] = [];
    if (candidates.length === 0 || performance.now() > this.#budgetEnd) return found;
    const send = (c: Case) => c.raw ? sendRaw(this.child.port, c) : sendFetch(this.child.base, c);
    let shows = "";
    const reproduces = async (subset: Case[]): Promise<boolean> => {
      await this.#fresh(true);
      for (const c of subset) await send(c);
      await Promise.race([this.child.status, sleep(TICK_WAIT_MS)]);
      if (this.child.dead) {
        shows = `crashes it (${this.child.exitText()})`;
        return true;
      }
      if (!read) return false;
      const o = await send(read);
      shows = `makes ${read.method} ${pathOf(read.target)} answer ${o.status}`;
      return o.status !== null && o.status >= 500;
    };
    try {
      let rest = candidates;
      // Each round names one culprit, then looks for more among the others.
      while (rest.length > 0 && found.length < 4 && await reproduces(rest)) {
        let set = rest;
        let setShows = shows;
        while (set.length > 1) {
          const half = set.slice(0, set.length >> 1);
          const other = set.slice(half.length);
          if (await reproduces(half)) set = half;
          else if (await reproduces(other)) set = other;
          else break; // it takes updates from both halves
          setShows = shows;
        }
        found.push({ culprit: set, shows: setShows });
        rest = rest.filter((c) => !set.includes(c));
      }
    } catch (e) {
      if (!(e instanceof LocaliseStop)) throw e;
    } finally {
      await this.#fresh(false).catch(() => {});
    }
    return found;
  }

  /** Replaces the child with a fresh one; the old one is not reported as crashed. */
  async #fresh(budgeted: boolean): Promise<void> {
    const spent = performance.now() > this.#budgetEnd ||
      this.#starts >= MAX_STARTS - RESERVED_STARTS;
    if (this.#gaveUp || (budgeted && spent)) throw new LocaliseStop();
    this.#reported.add(this.child);
    await this.child.stop();
    if (!(await this.start())) throw new LocaliseStop();
  }

  /** At the end: a child that died after its last request is a crash too. */
  async finish(): Promise<void> {
    if (!this.child) return;
    if (this.child.dead && !this.#reported.has(this.child)) {
      this.#reported.add(this.child);
      this.violations.add(
        "crash",
        "child exited after its last request",
        "",
        `${this.child.exitText()}: ${this.child.lastError()}`,
        "-",
      );
    }
    await this.child.stop();
  }
}

/** JSON answers must parse; SSE answers must be data frames ending in [DONE]. */
function badBody(o: Outcome): string | null {
  if (/json/i.test(o.contentType) && o.body !== "") {
    try {
      JSON.parse(o.body);
    } catch (e) {
      return `invalid JSON answer (${errText(e)})`;
    }
  }
  if (/event-stream/i.test(o.contentType) && o.status === 200) {
    const frames = o.body.split("\n\n").filter((f) => f !== "");
    for (const f of frames) {
      if (!f.startsWith("data: ")) return `SSE frame without "data: "`;
      const payload = f.slice(6);
      if (payload === "[DONE]") continue;
      try {
        JSON.parse(payload);
      } catch {
        return "SSE frame is not JSON";
      }
    }
    if (frames.at(-1) !== "data: [DONE]") return "SSE stream does not end with data: [DONE]";
  }
  return null;
}

// ---------- case builders ----------

const CHAT = "/v1/chat/completions";
const COMPLETIONS = "/v1/completions";
const LOAD = "/v1/load_lora_adapter";
const UNLOAD = "/v1/unload_lora_adapter";
const GENERATION = [CHAT, COMPLETIONS];

const ADMIN_SEED = (): Obj => ({ "time-to-first-token": "1ms" });

/** A chat tool with these parameters. */
function fn(parameters: J, name = "f"): Obj {
  return { type: "function", function: { name, description: "d", parameters } };
}

/** An object schema nested `depth` levels deep. */
function deepSchema(depth: number): Obj {
  let s: Obj = { type: "string" };
  for (let i = 0; i < depth; i++) s = { type: "object", properties: { a: s }, required: ["a"] };
  return s;
}

const SEEDS: Record<string, () => Obj> = {
  [CHAT]: () => ({ model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 5 }),
  [COMPLETIONS]: () => ({ model: MODEL, prompt: "hi", max_tokens: 5 }),
  [LOAD]: () => ({ lora_name: "a", lora_path: "/p" }),
  [UNLOAD]: () => ({ lora_name: "a" }),
  "/admin/config": ADMIN_SEED,
  "/fake_metrics": () => ({ "running-requests": 3 }),
};

/** Fields the systematic pass sets to each WEIRD value. */
const FIELDS: Record<string, readonly string[]> = {
  [CHAT]: words(`
    model messages max_tokens max_completion_tokens n stream stream_options ignore_eos seed
    cache_hit_threshold kv_transfer_params temperature logprobs top_logprobs tools tool_choice
  `),
  [COMPLETIONS]: words(`
    model prompt max_tokens n stream stream_options echo ignore_eos seed cache_hit_threshold
    kv_transfer_params suffix
  `),
  [LOAD]: ["lora_name", "lora_path", "base_model_name"],
  [UNLOAD]: ["lora_name", "lora_int_id"],
};

/** Structured variants of the nested fields. */
const NESTED: Record<string, readonly Labeled[]> = {
  tools: [
    lab("a weather tool", [fn({ type: "object", properties: { city: { type: "string" } } })]),
    lab("no parameters", [{ type: "function", function: { name: "f" } }]),
    lab("no function", [{ type: "function" }]),
    lab("null entry", [null]),
    lab("unknown type", [fn({ type: "date" })]),
    lab("null type", [fn({ type: "object", properties: { n: { type: "null" } } })]),
    lab("minItems > maxItems", [
      fn({
        type: "object",
        properties: { a: { type: "array", items: { type: "string" }, minItems: 9, maxItems: 1 } },
        required: ["a"],
      }),
    ]),
    lab("nested 400 deep", [fn(deepSchema(400))]),
    lab("huge minLength", [
      fn({
        type: "object",
        properties: { s: { type: "string", minLength: 1e9 } },
        required: ["s"],
      }),
    ]),
    lab("huge minItems", [
      fn({
        type: "object",
        properties: { a: { type: "array", items: { type: "integer" }, minItems: 1e9 } },
        required: ["a"],
      }),
    ]),
    lab(
      "200 tools",
      Array.from({ length: 200 }, (_, i) => fn({ type: "object", properties: {} }, `f${i}`)),
    ),
  ],
  tool_choice: [
    lab("required", "required"),
    lab("forced", { type: "function", function: { name: "f" } }),
    lab("forced unknown", { type: "function", function: { name: "zzz" } }),
    lab("no name", { type: "function" }),
    lab("odd type", { type: "magic" }),
    lab("number", 7),
  ],
  messages: [
    lab("no content", [{ role: "user" }]),
    lab("content null", [{ role: "user", content: null }]),
    lab("role 1", [{ role: 1, content: "hi" }]),
    lab("no role", [{ content: "hi" }]),
    lab("content {}", [{ role: "user", content: {} }]),
    lab("text part", [{ role: "user", content: [{ type: "text", text: "hi" }] }]),
    lab("text part no text", [{ role: "user", content: [{ type: "text" }] }]),
    lab("image part", [{
      role: "user",
      content: [{ type: "image_url", image_url: { url: "data:image/png;base64,AA" } }],
    }]),
    lab("image part no url", [{ role: "user", content: [{ type: "image_url" }] }]),
    lab("audio part", [{ role: "user", content: [{ type: "input_audio" }] }]),
    lab("part type 1", [{ role: "user", content: [{ type: 1 }] }]),
    lab("part null", [{ role: "user", content: [null] }]),
    lab("[null]", [null]),
    lab("[[]]", [[]]),
    lab("no user message", [{ role: "system", content: "s" }, { role: "assistant", content: "a" }]),
    lab("200 messages", Array.from({ length: 200 }, () => ({ role: "user", content: "hi" }))),
  ],
  prompt: [
    lab("[]", []),
    lab('[""]', [""]),
    lab("2 strings", ["a", "b"]),
    lab("token ids", [1, 2, 3]),
    lab("id arrays", [[1, 2], [3]]),
    lab("[[]]", [[]]),
    lab("[-1]", [-1]),
    lab("[1.5]", [raw("1.5")]),
    lab("[2^32]", [4294967296]),
    lab('[["a"]]', [["a"]]),
    lab('[1,"a"]', [1, "a"]),
    lab("[null]", [null]),
    lab("[1e999]", [raw("1e999")]),
  ],
  stream_options: [
    lab("include_usage", { include_usage: true }),
    lab("continuous_usage_stats", { continuous_usage_stats: true }),
    lab("both", { include_usage: true, continuous_usage_stats: true }),
    lab('include_usage "yes"', { include_usage: "yes" }),
    lab("include_usage null", { include_usage: null }),
  ],
  kv_transfer_params: [
    lab("remote decode", { do_remote_decode: true }),
    lab("remote prefill", { do_remote_prefill: true }),
    lab("odd block ids", { remote_block_ids: [1, "x", null, raw("1e999")] }),
    lab("remote_port -1", { remote_port: -1 }),
    lab("tp_size 0", { tp_size: 0 }),
    lab('do_remote_decode "true"', { do_remote_decode: "true" }),
  ],
};

const X_RETURN_ERROR = [
  ...words("400 404 429 500 503 599 600 399 abc 5e2 0503 -500"),
  "",
  " 503 ",
  "503, 503",
];

/** The 5xx the simulator reads from X-Return-Error (3 digits after trimming). */
function askedStatus(v: string): number | undefined {
  const t = v.trim();
  const n = /^\d{3}$/.test(t) ? Number(t) : NaN;
  return n >= 500 && n <= 599 ? n : undefined;
}

const CONTENT_TYPES = [
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data",
  "application/json; charset=utf-16",
  "application/json;;;",
  "",
];

const ODD_PATHS = [
  "//v1/models",
  "/%00",
  "/v1/chat/completions?x=1#y",
  "/v1/models/",
  "/V1/MODELS",
  "/v1/models%2F",
  "/health?%zz",
  "/%2e%2e/admin/config",
  "/v1/%2e%2e/admin/config",
  "/admin/config/",
  "/metrics?name[]=x",
  "/wake_up?tags=&tags=,,&tags=weights",
  "/" + "a".repeat(60_000),
  "/v1/" + "%41".repeat(10_000),
  "/\u00e9\u{1f600}",
  "/*",
];

const METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];

/** Admin keys and fake-metrics fields that get every value; the others get a sample. */
const FULL_ADMIN_KEYS = new Set(words(`
  time-to-first-token latency-calculator time-factor-under-load image-emission-rate
  failure-injection-rate failure-types
`));
const FAKE_FIELDS = [
  ...FAKE_VALUE_FIELDS,
  ...FAKE_BUCKET_FIELDS,
  ...FAKE_COUNTER_FIELDS,
  "loras",
  "request-success-total",
];
const FULL_FAKE_FIELDS = new Set(words(`
  running-requests kv-cache-usage ttft-buckets-values total-prompt-tokens loras
  request-success-total
`));
const SAMPLE = 8;

const ADMIN_VALUES: readonly Labeled[] = [
  ...WEIRD,
  ...strings("0", "100ms", "24h", "25h", "1e3", "-5ms", "constant", "per-token", "0.5"),
  ...strings("rate_limit,server_error"),
  lab("5", 5),
  lab("100", 100),
  lab("101", 101),
  lab('["rate_limit","timeout"]', ["rate_limit", "timeout"]),
  lab("fake-metrics object", { "running-requests": 1 }),
];

const FAKE_VALUES: readonly Labeled[] = [
  ...WEIRD,
  ...strings("ramp:0:10:1s", "oscillate:0:1:100ms", "squarewave:0:5:1s", "rampreset:0:3:1s"),
  ...strings("ramp:0:10:0s", "ramp:-5:10:1s", "ramp:0:1e999:1s", "oscillate:0:10:999999h"),
  ...strings("squarewave:1e308:1e308:1ms"),
  lab("5", 5),
  lab("0.5", 0.5),
  lab("[1,2,3]", [1, 2, 3]),
  lab("64 ones", Array.from({ length: 64 }, () => 1)),
  lab("65 ones", Array.from({ length: 65 }, () => 1)),
  lab("[-1]", [-1]),
  lab("lora entry", [{ running: "a", waiting: "", timestamp: 1 }]),
  lab("lora entry ts 1e999", [{ running: "a", waiting: "", timestamp: raw("1e999") }]),
  lab("lora entry running 1", [{ running: 1, timestamp: 1 }]),
  lab("{stop:1}", { stop: 1, length: 2 }),
  lab("{stop:1e999}", { stop: raw("1e999") }),
  lab("{stop:-1}", { stop: -1 }),
];

type RawOpts = {
  method: string;
  target: string;
  /** Host header values; default the child's address, null for none. */
  hosts?: string[] | null;
  body?: string;
  auth?: boolean;
  version?: string;
  extra?: string[];
  /** Raw text after the head instead of `body` (no Content-Length added). */
  tail?: string;
};

class Builder {
  constructor(readonly setup: Setup, readonly rng: Rng) {}

  headers(json: boolean): Record<string, string> {
    const h: Record<string, string> = {};
    if (json) h["content-type"] = "application/json";
    if (this.setup.apiKey) h.authorization = `Bearer ${this.setup.apiKey}`;
    return h;
  }

  req(phase: Phase, what: string, method: string, target: string, body?: Body): Case {
    const hasBody = body !== undefined && method !== "GET" && method !== "HEAD";
    return {
      phase,
      what,
      method,
      target,
      headers: this.headers(hasBody),
      body: hasBody ? body : undefined,
      deadlineMs: DEADLINE_MS,
    };
  }

  /** Every route with its seed body, every wrong method, odd paths; then a sleep cycle. */
  sweep(): Case[] {
    const out: Case[] = [];
    const byPath = new Map<string, Set<string>>();
    for (const r of ROUTES) {
      if (!byPath.has(r.path)) byPath.set(r.path, new Set());
      byPath.get(r.path)!.add(r.method);
      if (r.path === "/sleep") continue; // in the sleep cycle
      const seed = SEEDS[r.path];
      out.push(this.req("sweep", "seed body", r.method, r.path, seed ? toJson(seed()) : undefined));
    }
    for (const [path, methods] of byPath) {
      for (const m of METHODS) {
        if (!methods.has(m)) out.push(this.req("sweep", "wrong method", m, path, "{}"));
      }
    }
    for (const p of ODD_PATHS) {
      out.push(this.req("sweep", "odd path", "GET", p));
      out.push(this.req("sweep", "odd path", "POST", p, toJson(SEEDS[CHAT]())));
    }
    const asleep = (c: Case): Case => ({ ...c, sleepingOk: true });
    out.push(
      this.req("sweep", "seed body", "POST", "/sleep"),
      this.req("sweep", "asleep", "GET", "/is_sleeping"),
      asleep(this.req("sweep", "asleep", "GET", "/ready")),
      asleep(this.req("sweep", "asleep", "GET", "/health/ready")),
      asleep(this.req("sweep", "asleep", "POST", CHAT, toJson(SEEDS[CHAT]()))),
      asleep(this.req("sweep", "asleep", "POST", COMPLETIONS, toJson(SEEDS[COMPLETIONS]()))),
      this.req("sweep", "sleep again", "POST", "/sleep?level=2"),
      this.req("sweep", "tags", "POST", "/wake_up?tags=weights"),
      this.req("sweep", "seed body", "POST", "/wake_up"),
      this.req("sweep", "awake", "GET", "/is_sleeping"),
    );
    return out;
  }

  /** Each field of each data-plane body × each WEIRD value and nested variant, or absent. */
  systematicData(): Case[] {
    const out: Case[] = [];
    for (const path of [...GENERATION, LOAD, UNLOAD]) {
      for (const field of FIELDS[path]) {
        for (const v of [...WEIRD, ...(NESTED[field] ?? [])]) {
          const body = SEEDS[path]();
          body[field] = v.value;
          // stream_options is only read with stream: true.
          if (field === "stream_options") body.stream = true;
          out.push(this.req("data", `${field}=${v.label}`, "POST", path, toJson(body)));
        }
        const body = SEEDS[path]();
        delete body[field];
        out.push(this.req("data", `no ${field}`, "POST", path, toJson(body)));
      }
    }
    return out;
  }

  /** Every X-Return-Error value on both generation routes. */
  returnErrors(): Case[] {
    return GENERATION.flatMap((path) =>
      X_RETURN_ERROR.map((v) => {
        const what = `X-Return-Error ${JSON.stringify(v)}`;
        const c = this.req("data", what, "POST", path, toJson(SEEDS[path]()));
        c.headers["x-return-error"] = v;
        c.asked = askedStatus(v);
        return c;
      })
    );
  }

  randomData(n: number): Case[] {
    const out: Case[] = [];
    for (let i = 0; i < n; i++) {
      const r = this.rng.next();
      if (r < 0.6) out.push(this.randomGeneration(this.rng.pick(GENERATION)));
      else if (r < 0.7) out.push(this.randomLora());
      else if (r < 0.85) out.push(this.randomGet());
      else out.push(this.randomOdd());
    }
    return out;
  }

  randomGeneration(path: string): Case {
    const rng = this.rng;
    const body = SEEDS[path]();
    const what: string[] = [];
    const nested = path === CHAT ? "messages" : "prompt";
    // Sane knobs keep n * max_tokens small: real generation, quick.
    if (rng.chance(0.7)) {
      for (let k = rng.int(1, 3); k > 0; k--) {
        switch (rng.int(0, 6)) {
          case 0:
            body.n = rng.int(1, 8);
            what.push("n 1..8");
            break;
          case 1: {
            const key = path === CHAT && rng.chance(0.5) ? "max_completion_tokens" : "max_tokens";
            body[key] = rng.int(1, 16);
            what.push(`${key} 1..16`);
            break;
          }
          case 2: {
            body.stream = true;
            const so = rng.pick([null, ...NESTED.stream_options]);
            if (so) body.stream_options = so.value;
            what.push(so ? `stream, ${so.label}` : "stream");
            break;
          }
          case 3:
            body.ignore_eos = true;
            body.max_tokens = rng.int(1, 16);
            what.push("ignore_eos");
            break;
          case 4:
            body.seed = rng.int(0, 1000);
            what.push("seed");
            break;
          case 5: {
            const v = rng.pick(NESTED[nested]);
            body[nested] = v.value;
            what.push(`${nested}=${v.label}`);
            break;
          }
          case 6:
            body.model = rng.pick(["a", "b", "nope"]);
            what.push("model: LoRA or unknown");
            break;
        }
      }
    }
    if (rng.chance(0.5)) {
      for (let k = rng.int(1, 2); k > 0; k--) {
        const field = rng.pick(FIELDS[path]);
        if (rng.chance(0.2)) {
          delete body[field];
          what.push(`no ${field}`);
        } else {
          const v = rng.pick(WEIRD);
          body[field] = v.value;
          what.push(`${field}=${v.label}`);
        }
      }
    }
    const c = this.req("data", "", "POST", path, toJson(body));
    if (rng.chance(0.12)) this.breakBody(c, toJson(body), what);
    if (rng.chance(0.35)) this.oddHeader(c, what, true);
    c.what = what.length ? [...new Set(what)].join(", ") : "seed body";
    return c;
  }

  randomLora(): Case {
    const path = this.rng.pick([LOAD, LOAD, UNLOAD]);
    const body = SEEDS[path]();
    const name = this.rng.pick([lab("a", "a"), lab("b", "b"), lab(MODEL, MODEL), ...WEIRD]);
    body.lora_name = name.value;
    const what = [`lora_name=${name.label}`];
    const c = this.req("data", "", "POST", path, toJson(body));
    if (this.rng.chance(0.1)) this.breakBody(c, toJson(body), what);
    if (this.rng.chance(0.2)) this.oddHeader(c, what, false);
    c.what = what.join(", ");
    return c;
  }

  randomGet(): Case {
    const path = this.rng.pick(ROUTES.filter((r) => r.method === "GET").map((r) => r.path));
    const query = this.rng.pick([
      "",
      "?a=1&a=2",
      "?%zz",
      "?" + "q".repeat(10_000),
      "?tags=weights",
      "?level=2",
      "?name[]=x",
      "?\u00e9=\u{1f600}",
    ]);
    const what = [query === "" ? "plain" : "query string"];
    const c = this.req("data", "", "GET", path + query);
    if (this.rng.chance(0.3)) this.oddHeader(c, what, false);
    c.what = what.join(", ");
    return c;
  }

  randomOdd(): Case {
    const rng = this.rng;
    const chat = toJson(SEEDS[CHAT]());
    if (rng.chance(0.5)) {
      return this.req("data", "odd path", rng.pick(METHODS), rng.pick(ODD_PATHS), chat);
    }
    // A wrong method on a real path (never POST /sleep: sleeping is the control phase's).
    const r = rng.pick(ROUTES);
    const methods = METHODS.filter((m) => !ROUTE_KEYS.has(`${m} ${r.path}`));
    return this.req("data", "wrong method", rng.pick(methods), r.path, chat);
  }

  /** Replaces the body with a broken one. */
  breakBody(c: Case, text: string, what: string[]): void {
    const rng = this.rng;
    const choices: [string, () => Body][] = [
      ["empty body", () => ""],
      ["truncated JSON", () => text.slice(0, rng.int(1, Math.max(1, text.length - 1)))],
      ["body null", () => "null"],
      ["body []", () => "[]"],
      ["body 1e999", () => "1e999"],
      ['body "s"', () => '"s"'],
      ["body: deep array x100000", () => deepArray(100_000).text],
      ["body: deep object x100000", () => deepObject(100_000).text],
      ["BOM + JSON", () => "\ufeff" + text],
      ["invalid UTF-8", () => concat([bytes(text.slice(0, -2)), new Uint8Array([0xff, 0xfe])])],
      ["trailing garbage", () => text + "}x"],
      ["duplicate keys", () => text.replace(/^\{/, '{"model":1,"model":null,')],
      ["NaN literal", () => text.replace(/\}$/, ',"n":NaN}')],
      ["comment", () => "/* c */" + text],
      ["1 MB whitespace", () => " ".repeat(1 << 20) + text],
      ["form body", () => "a=1&b=2"],
      ["chunked upload", () => ({ chunks: [bytes(text.slice(0, 3)), bytes(text.slice(3))] })],
      ["chunked 5 MB", () => ({ chunks: Array.from({ length: 5 }, () => bytes(LONG.repeat(10))) })],
      ["5 MB body", () => text + " ".repeat(5 << 20)],
    ];
    const [label, make] = rng.pick(choices);
    c.body = make();
    // Past the body limit the server may answer 413 and close mid-upload;
    // fetch then reports the broken upload instead of the answer.
    c.mayClose = label.includes("5 MB");
    what.push(label);
  }

  /** Sets one special or odd header. */
  oddHeader(c: Case, what: string[], generation: boolean): void {
    const rng = this.rng;
    const r = rng.int(0, generation ? 6 : 4);
    if (r === 0 && this.setup.apiKey) {
      const v = rng.pick(["", "Bearer", "Bearer wrong", "bearer k", "Bearer k ", "Basic k"]);
      if (v === "") delete c.headers.authorization;
      else c.headers.authorization = v;
      what.push(`authorization ${JSON.stringify(v)}`);
    } else if (r <= 1) {
      const v = rng.pick(CONTENT_TYPES);
      if (v === "") delete c.headers["content-type"];
      else c.headers["content-type"] = v;
      what.push(`content-type ${JSON.stringify(v)}`);
    } else if (r === 2) {
      c.headers["x-request-id"] = rng.pick(["", "r".repeat(8_000), "a b\tc"]);
      what.push("odd x-request-id");
    } else if (r === 3) {
      c.headers["content-encoding"] = "gzip";
      what.push("content-encoding gzip");
    } else if (r === 4) {
      c.headers.accept = rng.pick(["text/event-stream", "*/*;q=x", ""]);
      what.push("odd accept");
    } else if (r === 5) {
      const v = rng.pick(X_RETURN_ERROR);
      c.headers["x-return-error"] = v;
      c.asked = askedStatus(v);
      what.push(`X-Return-Error ${JSON.stringify(v)}`);
    } else {
      const v = rng.pick(["true", "TRUE", "false", "1", ""]);
      c.headers["x-cache-threshold-finish-reason"] = v;
      what.push(`X-Cache-Threshold-Finish-Reason ${JSON.stringify(v)}`);
    }
  }

  /** Big inputs: most deserve a quick 4xx; the valid ones must still come back soon. */
  huge(): Case[] {
    const chat = (extra: Obj) => toJson({ ...SEEDS[CHAT](), ...extra });
    const comp = (extra: Obj) => toJson({ ...SEEDS[COMPLETIONS](), ...extra });
    const ids = (n: number) => `[${Array.from({ length: n }, (_, i) => i % 50_000).join(",")}]`;
    const his = (n: number) => Array.from({ length: n }, () => "hi");
    const list: [string, string, Body, boolean][] = [
      ["n=1025", CHAT, chat({ n: 1025 }), true],
      ["n=1e6", CHAT, chat({ n: 1_000_000 }), true],
      ["n=2^53+1", COMPLETIONS, comp({ n: raw("9007199254740993") }), true],
      ["max_tokens=2^31", CHAT, chat({ max_tokens: 2 ** 31 }), true],
      ["max_tokens=1e15", COMPLETIONS, comp({ max_tokens: 1e15 }), true],
      ["max_completion_tokens=1e15", CHAT, chat({ max_completion_tokens: 1e15 }), true],
      ["max_tokens=max-model-len", CHAT, chat({ max_tokens: 1024 }), true],
      ["prompt: 200k token ids", COMPLETIONS, comp({ prompt: raw(ids(200_000)) }), true],
      [
        "prompt: 300 x 1100 ids",
        COMPLETIONS,
        comp({ prompt: raw(`[${Array.from({ length: 300 }, () => ids(1100)).join(",")}]`) }),
        true,
      ],
      [
        "prompt: 20k strings, max_tokens 1024",
        COMPLETIONS,
        comp({ prompt: his(20_000), max_tokens: 1024 }),
        true,
      ],
      [
        "messages: 50k",
        CHAT,
        chat({ messages: Array.from({ length: 50_000 }, () => ({ role: "user", content: "hi" })) }),
        true,
      ],
      [
        "content: 3 MB",
        CHAT,
        chat({ messages: [{ role: "user", content: "hi ".repeat(1e6) }] }),
        true,
      ],
      ["body: 5 MB", CHAT, chat({ pad: "x".repeat(5 << 20) }), true],
      [
        "chunked body: 5 MB",
        COMPLETIONS,
        { chunks: [bytes('{"pad":"'), ...Array.from({ length: 50 }, () => bytes(LONG))] },
        true,
      ],
      // Valid, but big: an answer is due, not necessarily a 4xx.
      ["n=1024 x max_tokens=16", CHAT, chat({ n: 1024, max_tokens: 16 }), false],
      [
        "prompt: 2000 strings, max_tokens 1",
        COMPLETIONS,
        comp({ prompt: his(2000), max_tokens: 1 }),
        false,
      ],
    ];
    return list.map(([what, path, body, want4xx]) => ({
      ...this.req("huge", what, "POST", path, body),
      deadlineMs: HUGE_DEADLINE_MS,
      quick: true,
      want4xx,
      mayClose: what.includes("5 MB"),
    }));
  }

  /**
   * Each admin key and fake-metrics field × values (all values for some, a
   * sample for the rest), in batches that set each key at most once: no
   * update in a batch undoes another before the server has used it.
   */
  controlBatches(): Case[][] {
    const values = (full: boolean, all: readonly Labeled[]) =>
      this.rng.shuffle([...all]).slice(0, full ? all.length : SAMPLE);
    const columns: Case[][] = [];
    for (const key of ADMIN_KEYS) {
      // It replaces the fake-metrics fields: randomControl sends it.
      if (key === "fake-metrics") continue;
      columns.push(
        values(FULL_ADMIN_KEYS.has(key), ADMIN_VALUES).map((v) =>
          this.update(`admin ${key}=${v.label}`, "/admin/config", { [key]: v.value })
        ),
      );
    }
    for (const f of FAKE_FIELDS) {
      columns.push(
        values(FULL_FAKE_FIELDS.has(f), FAKE_VALUES).map((v) =>
          this.update(`fake ${f}=${v.label}`, "/fake_metrics", { [f]: v.value })
        ),
      );
    }
    const batches: Case[][] = [];
    for (let i = 0; columns.some((col) => i < col.length); i++) {
      batches.push(columns.flatMap((col) => i < col.length ? [col[i]] : []));
    }
    return batches;
  }

  update(what: string, path: string, body: Obj): Case {
    return this.req("control", what, "POST", path, toJson(body));
  }

  randomControl(n: number): Case[] {
    const rng = this.rng;
    const out: Case[] = [];
    const reads = ["/metrics", "/metrics", "/metrics", "/admin/config", "/health", "/is_sleeping"];
    for (let i = 0; i < n; i++) {
      const r = rng.next();
      if (r < 0.3) {
        out.push(this.req("control", "read", "GET", rng.pick(reads)));
      } else if (r < 0.38) {
        const path = rng.pick(["/ready", "/health/ready"]);
        out.push({ ...this.req("control", "readiness", "GET", path), sleepingOk: true });
      } else if (r < 0.46) {
        const target = rng.pick([
          "/sleep",
          "/sleep?level=2",
          "/sleep?level=999999999999999999999",
          "/wake_up",
          "/wake_up?tags=weights",
          "/wake_up?tags=kv_cache&tags=weights",
          "/wake_up?tags=" + "t,".repeat(5_000),
        ]);
        const body = rng.pick([undefined, "", "{}", "[[[", deepArray(10_000).text]);
        const what = target.includes("?") ? "query" : "plain";
        out.push(this.req("control", what, "POST", target, body));
      } else {
        const fake = r < 0.73;
        const path = fake ? "/fake_metrics" : "/admin/config";
        const body: Obj = fake ? SEEDS["/fake_metrics"]() : ADMIN_SEED();
        const what: string[] = [];
        const fields = fake ? FAKE_FIELDS : [...ADMIN_KEYS, "nope"];
        for (let k = rng.int(1, 3); k > 0; k--) {
          const f = rng.pick(fields);
          const v = rng.chance(0.4) ? lab("5", 5) : rng.pick(fake ? FAKE_VALUES : ADMIN_VALUES);
          body[f] = v.value;
          what.push(`${f}=${v.label}`);
        }
        if (!fake && rng.chance(0.3)) {
          const f = rng.pick(FAKE_FIELDS);
          const v = rng.pick(FAKE_VALUES);
          body["fake-metrics"] = { [f]: v.value };
          what.push(`fake-metrics {${f}: ${v.label}}`);
        }
        const c = this.update("", path, body);
        if (rng.chance(0.1)) this.breakBody(c, toJson(body), what);
        c.what = `${fake ? "fake" : "admin"} ${what.join(", ")}`;
        out.push(c);
      }
    }
    return out;
  }

  /** A raw HTTP/1.1 request for the child's port; it asks the server to close after it. */
  rawRequest(o: RawOpts): (port: number) => Bytes {
    return (port) => {
      const lines = [`${o.method} ${o.target} ${o.version ?? "HTTP/1.1"}`];
      for (const h of o.hosts === undefined ? [`${HOST}:${port}`] : o.hosts ?? []) {
        lines.push(`Host: ${h}`);
      }
      if (o.auth && this.setup.apiKey) lines.push(`Authorization: Bearer ${this.setup.apiKey}`);
      lines.push(...(o.extra ?? []), "Connection: close");
      if (o.body !== undefined) {
        lines.push("Content-Type: application/json", `Content-Length: ${bytes(o.body).length}`);
      }
      return bytes(lines.join("\r\n") + "\r\n\r\n" + (o.body ?? o.tail ?? ""));
    };
  }

  rawCase(what: string, o: RawOpts, mayClose = false): Case {
    return {
      phase: "raw",
      what,
      method: o.method,
      target: o.target,
      headers: {},
      raw: this.rawRequest(o),
      deadlineMs: RAW_DEADLINE_MS,
      mayClose,
    };
  }
}

// ---------- raw-socket cases ----------

/** An answer's shape: status and JSON keys (or first characters). */
function signature(o: Outcome): string {
  let shape = o.body.slice(0, 20);
  try {
    const v: unknown = JSON.parse(o.body);
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      shape = `{${Object.keys(v).sort().slice(0, 4).join(",")}}`;
    }
  } catch {
    // not JSON
  }
  return `${o.status} ${shape}`;
}

const ODD_HOSTS: [string, string[] | null][] = [
  ["Host: x/admin/config?", ["x/admin/config?"]],
  ["Host: x/version?", ["x/version?"]],
  ["Host: x/v1/models?", ["x/v1/models?"]],
  ["Host: x/fake_metrics#", ["x/fake_metrics#"]],
  ["Host: (empty)", [""]],
  ["Host: a b", ["a b"]],
  ["Host: [::1", ["[::1"]],
  ["Host: [zz]", ["[zz]"]],
  ["Host: x:99999", ["x:99999"]],
  ["Host: x:-1", ["x:-1"]],
  ["Host: u@x", ["u@x"]],
  ["Host: x\\y", ["x\\y"]],
  ["Host: %00", ["%00"]],
  ["Host: x%2Fy", ["x%2Fy"]],
  ["Host: x:1:2", ["x:1:2"]],
  ["Host: non-ASCII", ["h\u00e9st"]],
  ["Host: 10 KB", ["x".repeat(10_240)]],
  ["Host: good, then x/admin/config?", [HOST, "x/admin/config?"]],
  ["Host: x/admin/config?, then good", ["x/admin/config?", HOST]],
  ["no Host header", null],
  ["Host: localhost", ["localhost"]],
  ["Host: [::1]:8000", ["[::1]:8000"]],
];

/** Raw cases: odd Hosts against baselines, absolute-form, odd targets, broken framing. */
function rawCases(
  b: Builder,
): { baselines: [string, Case][]; cases: (base: Map<string, string>) => Case[] } {
  const admin = toJson(ADMIN_SEED());
  const chat = toJson(SEEDS[CHAT]());
  const targets: [string, RawOpts][] = [
    ["GET /version", { method: "GET", target: "/version" }],
    ["GET /nothing-here", { method: "GET", target: "/nothing-here" }],
    ["POST /nothing-here", { method: "POST", target: "/nothing-here", body: admin, auth: true }],
    ["GET /v1/models without key", { method: "GET", target: "/v1/models" }],
  ];
  const baselines = targets.map(([id, o]): [string, Case] => [id, b.rawCase("baseline", o)]);
  const cases = (base: Map<string, string>): Case[] => {
    /** Same answer as under a normal Host, or refused (400, 414, 421, 431). */
    const like = (id: string, c: Case): Case => {
      c.check = (o) => {
        const want = base.get(id);
        if (
          !want || o.status === null || o.status >= 500 || [400, 414, 421, 431].includes(o.status)
        ) {
          return null;
        }
        const got = signature(o);
        if (got === want) return null;
        return {
          kind: "misrouted",
          key: `raw ${id}`,
          what: `${c.what} -> ${got}`,
          detail: `the Host header picked another route (normal Host: ${want})`,
        };
      };
      return c;
    };
    const out: Case[] = [];
    for (const [label, hosts] of ODD_HOSTS) {
      for (const [id, o] of targets) out.push(like(id, b.rawCase(label, { ...o, hosts })));
    }
    const abs = (what: string, o: RawOpts, id?: string) => {
      const c = b.rawCase(what, { auth: true, ...o });
      out.push(id ? like(id, c) : c);
    };
    abs("absolute-form", { method: "GET", target: "http://evil/version" }, "GET /version");
    abs(
      "absolute-form",
      { method: "GET", target: "http://evil/nothing-here" },
      "GET /nothing-here",
    );
    abs(
      "absolute-form + Host: x/admin/config?",
      {
        method: "POST",
        target: "http://evil/nothing-here",
        hosts: ["x/admin/config?"],
        body: admin,
      },
      "POST /nothing-here",
    );
    abs("absolute-form", { method: "POST", target: "http://evil/admin/config", body: admin });
    abs("absolute-form, query", { method: "GET", target: "http://x/admin/config?/version" });
    abs(
      "authority-like path",
      { method: "GET", target: "//evil/admin/config" },
      "GET /nothing-here",
    );
    abs("absolute-form, no path", { method: "GET", target: "http://evil" });
    const misc = (what: string, o: RawOpts, mayClose = true) =>
      out.push(b.rawCase(what, o, mayClose));
    misc("dot segments", { method: "GET", target: "/v1/../admin/config" }, false);
    misc("dot segments", { method: "GET", target: "/admin/../v1/models" }, false);
    misc("encoded dot segments", { method: "GET", target: "/v1/%2e%2e/admin/config" }, false);
    misc("NUL escape", { method: "GET", target: "/%00" }, false);
    misc("query and fragment", {
      method: "POST",
      target: "/v1/chat/completions?x=1#y",
      body: chat,
      auth: true,
    }, false);
    misc("asterisk", { method: "OPTIONS", target: "*" });
    misc("asterisk", { method: "GET", target: "*" });
    misc("asterisk", { method: "POST", target: "*", body: chat });
    misc("100 KB path", { method: "GET", target: "/" + "a".repeat(100_000) });
    misc("HTTP/1.0 without Host", {
      method: "GET",
      target: "/health",
      version: "HTTP/1.0",
      hosts: null,
    }, false);
    misc("lowercase method", { method: "get", target: "/health" });
    misc("TRACE", { method: "TRACE", target: "/health" });
    misc("CONNECT", { method: "CONNECT", target: "127.0.0.1:1" });
    misc("unknown method", { method: "BREW", target: "/health" });
    misc("HTTP/2.0 on HTTP/1", { method: "GET", target: "/health", version: "HTTP/2.0" });
    misc("bad version", { method: "GET", target: "/health", version: "HTTP/9" });
    misc("space in target", { method: "GET", target: "/he alth" });
    misc("non-ASCII target", { method: "GET", target: "/h\u00e9" });
    misc("bad chunk size", {
      method: "POST",
      target: "/v1/completions",
      auth: true,
      extra: ["Transfer-Encoding: chunked", "Content-Type: application/json"],
      tail: "zz\r\n{}\r\n0\r\n\r\n",
    });
    misc("Content-Length and chunked", {
      method: "POST",
      target: "/admin/config",
      auth: true,
      extra: [
        "Transfer-Encoding: chunked",
        `Content-Length: ${admin.length}`,
        "Content-Type: application/json",
      ],
      tail: `${admin.length.toString(16)}\r\n${admin}\r\n0\r\n\r\n`,
    });
    misc("Content-Length: abc", {
      method: "POST",
      target: "/fake_metrics",
      auth: true,
      extra: ["Content-Length: abc"],
    });
    misc("two Content-Lengths", {
      method: "POST",
      target: "/v1/completions",
      auth: true,
      extra: ["Content-Length: 2", "Content-Length: 5"],
      tail: "{}",
    });
    misc("Expect: 100-continue", {
      method: "POST",
      target: "/v1/completions",
      body: toJson(SEEDS[COMPLETIONS]()),
      auth: true,
      extra: ["Expect: 100-continue"],
    }, false);
    misc("header without colon", { method: "GET", target: "/health", extra: ["NoColonHere"] });
    misc("obs-fold header", { method: "GET", target: "/health", extra: ["X-A: a", " folded"] });
    misc("200 headers", {
      method: "GET",
      target: "/health",
      extra: Array.from({ length: 200 }, (_, i) => `X-H${i}: v`),
    });
    misc("64 KB header", {
      method: "GET",
      target: "/health",
      extra: [`X-Big: ${"v".repeat(65_536)}`],
    });
    return out;
  };
  return { baselines, cases };
}

// ---------- the test ----------

async function fuzzServer(setup: Setup): Promise<FuzzRun> {
  const rng = new Rng(SEED ^ hash32(setup.name));
  const run = new FuzzRun(setup, rng);
  const b = run.b;
  const t0 = performance.now();
  const timings: string[] = [];
  const mark = (phase: string) => timings.push(`${phase} ${Math.round(performance.now() - t0)}ms`);
  try {
    if (!(await run.start())) return run;
    // The run-time settings at start, restored after the control phase.
    let snapshot: Obj | null = null;
    const config = await run.exec(b.req("restore", "snapshot", "GET", "/admin/config"));
    try {
      const all = JSON.parse(config?.body ?? "") as Obj;
      snapshot = Object.fromEntries(ADMIN_KEYS.map((k) => [k, all[k]]));
    } catch {
      // reported as bad-body
    }
    mark("start");

    // Sequential, so the sleep cycle at its end has the server to itself.
    for (const c of b.sweep()) await run.exec(c);
    mark("sweep");

    await run.pool(rng.shuffle([
      ...b.systematicData(),
      ...b.returnErrors(),
      ...b.randomData(RANDOM_DATA_CASES),
    ]));
    mark("data");

    const { baselines, cases } = rawCases(b);
    const base = new Map<string, string>();
    for (const [id, c] of baselines) {
      const o = await run.exec(c);
      if (o) base.set(id, signature(o));
    }
    await run.pool(cases(base));
    mark("raw");

    for (const c of b.huge()) await run.exec(c);
    mark("huge");

    // Control, first in batches, each followed by reads once the fake
    // metrics have been re-evaluated, then by a reset; then random updates.
    const reset = toJson(snapshot ?? { "fake-metrics": null });
    for (const batch of b.controlBatches()) {
      await run.pool(batch);
      await sleep(SETTLE_MS);
      await run.exec(b.req("control", "read after a batch", "GET", "/metrics"));
      await run.exec(b.req("control", "read after a batch", "GET", "/admin/config"));
      await run.exec(b.req("control", "reset", "POST", "/admin/config", reset));
      run.markClean();
    }
    await run.pool(b.randomControl(RANDOM_CONTROL_CASES));
    // Restore, then give the fake metrics a tick to settle.
    await run.exec(b.req("restore", "wake up", "POST", "/wake_up"));
    if (snapshot) {
      const c = b.req(
        "restore",
        "start configuration",
        "POST",
        "/admin/config",
        toJson(snapshot),
      );
      c.check = (o) =>
        o.status === 200 ? null : {
          kind: "after-fuzz",
          key: "POST /admin/config with GET /admin/config's values",
          what: "",
          detail: `answered ${o.status}: ${answerText(o)}`,
        };
      await run.exec(c);
    }
    await sleep(TICK_WAIT_MS);
    mark("control");

    await finalChecks(run);
    mark("final");
  } finally {
    await run.finish();
    const statuses = [...run.statuses].sort().map(([s, n]) => `${s}:${n}`).join(" ");
    console.log(`[${setup.name}] ${run.requests} requests; ${timings.join(", ")}; ${statuses}`);
    for (const [w, n] of run.warnings) console.log(`  warning${n > 1 ? ` (x${n})` : ""}: ${w}`);
  }
  return run;
}

async function finalChecks(run: FuzzRun): Promise<void> {
  const b = run.b;
  const expect = (c: Case, test: (o: Outcome) => string | null): Case => {
    c.check = (o) => {
      const bad = o.status === null ? null : test(o);
      return bad ? { kind: "after-fuzz", key: c.what, what: "", detail: bad } : null;
    };
    return c;
  };
  const health = expect(
    b.req("final", "GET /health after the fuzz", "GET", "/health"),
    (o) => o.status === 200 ? null : `answered ${o.status}`,
  );
  health.deadlineMs = 3_000;
  const chat = SEEDS[CHAT]();
  const checks = [
    health,
    expect(b.req("final", "chat after the fuzz", "POST", CHAT, toJson(chat)), (o) => {
      if (o.status !== 200) return `answered ${o.status}: ${answerText(o)}`;
      const v = JSON.parse(o.body) as { choices?: { message?: { content?: unknown } }[] };
      return typeof v.choices?.[0]?.message?.content === "string" ? null : "no message content";
    }),
    expect(
      b.req(
        "final",
        "streamed chat after the fuzz",
        "POST",
        CHAT,
        toJson({ ...chat, stream: true }),
      ),
      (o) =>
        o.status === 200 && o.body.endsWith("data: [DONE]\n\n") ? null : `answered ${o.status}`,
    ),
    expect(
      b.req("final", "GET /metrics after the fuzz", "GET", "/metrics"),
      (o) => o.status === 200 ? null : `answered ${o.status}`,
    ),
  ];
  for (const c of checks) {
    const o = await run.exec(c);
    if (o && o.status === null) {
      run.violations.add("after-fuzz", c.what, "", short(o.error ?? "no answer", 80), repro(c));
    }
  }
  if (run.gaveUp) return;
  for (const key of ROUTE_KEYS) {
    if (!run.covered.has(key)) {
      run.violations.add("coverage", key, "", "no request got past routing to this handler", "-");
    }
  }
}

function report(run: FuzzRun): string {
  const lines = run.violations.lines();
  const head = `${run.violations.total()} violation(s) in ${lines.length} group(s) on the ` +
    `${run.setup.name} server (seed ${SEED}; replay with FUZZ_SEED=${SEED}); server: ` +
    `${commandLine(run.setup)}${run.setup.apiKey ? "; requests carry its key" : ""}; ` +
    "raw requests are shown for port 8000:";
  if (run.gaveUp) {
    lines.unshift(
      `[stopped] a child did not start or ${MAX_STARTS} starts were used; the rest did not run`,
    );
  }
  const shown = lines.slice(0, REPORT_LINES - 2);
  if (lines.length > shown.length) shown.push(`... and ${lines.length - shown.length} more groups`);
  return [head, ...shown].join("\n");
}

for (const setup of SETUPS) {
  Deno.test(`fuzz: ${setup.name} server`, async () => {
    const run = await fuzzServer(setup);
    assert.equal(run.violations.size, 0, report(run));
  });
}

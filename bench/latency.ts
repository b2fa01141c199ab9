/**
 * Latency-accuracy benchmark (latency-and-scheduling.md, "Targets").
 *
 * vllm-sim runs in this process (startServers, port 0, TTFT 100 ms, ITL
 * 20 ms). The load generator runs in separate processes so that it
 * does not share the server's event loop: it opens N keep-alive TCP
 * connections, then sends N streaming completions (200 tokens, ignore_eos)
 * and timestamps every SSE frame as it arrives. Each token's schedule is
 * measured on the client's clock: send time + 100 ms + k·20 ms.
 *
 * Stream starts are spread at 2 000 a second (over at least one inter-token
 * interval), the way independent clients arrive; all N streams are open at
 * once for most of the run. The load generator is bench/stream_client.c when
 * there is a C compiler. The server-side pacing error (token emitted vs its
 * absolute deadline, via an EngineObserver) is reported next to the client
 * figures.
 *
 *   deno run -A bench/latency.ts            # standalone (add deno task start's --v8-flags)
 *   LAT_N=1000 deno run -A bench/latency.ts # only some concurrency levels
 *   LAT_BARE=0 / LAT_STAMP=read / LAT_CLIENT=deno  # no bare row / read-time arrivals / Deno client
 *   LAT_TOKENS=1000                          # longer answers (default 200)
 *   LAT_ARGS="--no-grpc"                     # extra simulator flags (space-separated)
 *   import { latencyBench } from "./latency.ts"  # from the suite runner
 */
import { startServers } from "../main.ts";

const TTFT = 100;
const ITL = 20;
const TOKENS = Number(Deno.env.get("LAT_TOKENS") ?? "200");
const CONCURRENCY = (Deno.env.get("LAT_N") ?? "1,100,1000").split(",").map(Number);
/**
 * Stream starts are spread at this pace (2 000 new requests per second), and
 * over at least one ITL, so admission bursts do not masquerade as pacing
 * error; every stream lasts ~4.1 s, so all N are open together for most of it.
 */
const RAMP_MS_PER_STREAM = 0.5;
/**
 * Warm-up per load-generator process before the measured run (bench/
 * stream_client.c does the same): ~2 s of short streams, 600 requests and
 * 6 000 tokens per process. With only a handful, a stream's request is
 * handled by barely compiled code (~0.8 ms from read to response head here),
 * which shows as lateness of the whole stream; with 120 requests per process
 * V8 was still compiling ~150 functions of the request path (Maglev, then
 * TurboFan) during the measured ramp (--trace-opt).
 */
const WARM_ROUNDS = 6;
const WARM_STREAMS = 100;
const WARM_TOKENS = 10;

export interface Stats {
  p50: number;
  p99: number;
  max: number;
}

function stats(values: Float64Array | number[]): Stats {
  const a = Float64Array.from(values).sort();
  if (a.length === 0) return { p50: NaN, p99: NaN, max: NaN };
  const at = (q: number) => a[Math.min(a.length - 1, Math.floor(q * a.length))];
  return { p50: at(0.5), p99: at(0.99), max: a[a.length - 1] };
}

export interface ClientResult {
  streams: number;
  completed: number;
  /** |arrival − schedule| of every token, ms. */
  tokenErr: Stats;
  /** |last-token arrival − schedule| per stream, ms. */
  drift: Stats;
  /** Signed mean of arrival − schedule, ms (positive: late). */
  meanSigned: number;
  /** |median error| per stream: lateness fixed at request intake, ms. */
  offset: Stats;
  /** |error − its stream's median| per token: pacing jitter, ms. */
  jitter: Stats;
  /** Request sent → first byte of the response (its head), ms: intake. */
  head: Stats;
}

// ---------------------------------------------------------------- client side

/** One streaming completion over a raw keep-alive connection. */
async function runStream(
  conn: Deno.Conn,
  request: Uint8Array,
  tokens: number,
  errs: number[],
  drifts: number[],
  offsets: number[],
  jitter: number[],
  heads: number[],
): Promise<{ signed: number; n: number; ok: boolean }> {
  const buf = new Uint8Array(64 * 1024);
  const mine: number[] = []; // this stream's signed errors
  const sent = performance.now();
  await conn.write(request);
  let frames = 0; // SSE frames seen ("\n\n"-terminated): tokens, then [DONE]
  let prevNl = false;
  let heard = false;
  let signed = 0;
  for (;;) {
    const n = await conn.read(buf);
    const now = performance.now();
    if (n === null) break;
    if (!heard) {
      heard = true;
      heads.push(now - sent);
    }
    let got = 0;
    for (let i = 0; i < n; i++) {
      const nl = buf[i] === 10;
      if (nl && prevNl) {
        got++;
        prevNl = false;
      } else prevNl = nl;
    }
    for (let j = 0; j < got; j++) {
      const k = frames++;
      if (k >= tokens) continue; // [DONE]
      const err = now - (sent + TTFT + k * ITL);
      signed += err;
      mine.push(err);
      errs.push(Math.abs(err));
      if (k === tokens - 1) drifts.push(Math.abs(err));
    }
    if (frames > tokens) break;
  }
  splitOffset(mine, offsets, jitter);
  return { signed, n: Math.min(frames, tokens), ok: frames > tokens };
}

/**
 * Splits one stream's signed errors into its offset (their median: how late
 * the whole stream runs, fixed when the request was taken in) and each
 * token's jitter around it.
 */
function splitOffset(mine: number[], offsets: number[], jitter: number[]): void {
  if (mine.length === 0) return;
  const offset = Float64Array.from(mine).sort()[mine.length >> 1];
  offsets.push(Math.abs(offset));
  for (const e of mine) jitter.push(Math.abs(e - offset));
}

/** Over how long the stream starts are spread, ms. */
export function rampMs(streams: number): number {
  return Math.max(ITL, streams * RAMP_MS_PER_STREAM);
}

function requestBytes(u: URL, tokens: number): Uint8Array {
  const body = JSON.stringify({
    model: "bench-model",
    prompt: "hello",
    max_tokens: tokens,
    ignore_eos: true,
    stream: true,
  });
  return new TextEncoder().encode(
    `POST /v1/completions HTTP/1.1\r\nhost: ${u.host}\r\ncontent-type: application/json\r\n` +
      `content-length: ${body.length}\r\n\r\n${body}`,
  );
}

async function connectAll(u: URL, n: number): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < n; i++) {
    conns.push(await Deno.connect({ hostname: u.hostname, port: Number(u.port) }));
  }
  return conns;
}

function closeAll(conns: Deno.Conn[]): void {
  for (const c of conns) {
    try {
      c.close();
    } catch { /* already closed */ }
  }
}

/** What one load-generator process measured (raw, merged by the parent). */
interface ClientPart {
  errs: number[];
  drifts: number[];
  /** |median signed error| of each stream. */
  offsets: number[];
  /** |error − its stream's median| of each token. */
  jitter: number[];
  /** Request sent → first response byte, per stream. */
  heads: number[];
  signed: number;
  tokens: number;
  completed: number;
}

/**
 * Load-generator process `rank` of `procs`: runs streams rank, rank+procs, …
 * of `streams`, starting stream i at startEpoch + i·gap (epoch ms, shared by
 * all processes).
 */
async function clientMain(
  url: string,
  streams: number,
  rank: number,
  procs: number,
  startEpoch: number,
): Promise<ClientPart> {
  const u = new URL(url);
  const mine: number[] = [];
  for (let i = rank; i < streams; i += procs) mine.push(i);
  // Warm-up: WARM_ROUNDS rounds of WARM_STREAMS short streams, so the
  // server's request path is compiled (not interpreted) when measuring.
  for (let round = 0; round < WARM_ROUNDS; round++) {
    const warm = await connectAll(u, WARM_STREAMS);
    await Promise.all(
      warm.map((c) => runStream(c, requestBytes(u, WARM_TOKENS), WARM_TOKENS, [], [], [], [], [])),
    );
    closeAll(warm);
  }
  // Connect first so connection set-up does not shift any stream's schedule.
  const conns = await connectAll(u, mine.length);
  const request = requestBytes(u, TOKENS);
  const errs: number[] = [];
  const drifts: number[] = [];
  const offsets: number[] = [];
  const jitter: number[] = [];
  const heads: number[] = [];
  const gap = streams > 1 ? rampMs(streams) / streams : 0;
  const t0 = startEpoch - performance.timeOrigin;
  const runs: Promise<{ signed: number; n: number; ok: boolean }>[] = [];
  for (let j = 0; j < mine.length; j++) {
    const wait = t0 + mine[j] * gap - performance.now();
    if (wait >= 3) await new Promise((r) => setTimeout(r, wait - 2));
    runs.push(runStream(conns[j], request, TOKENS, errs, drifts, offsets, jitter, heads));
  }
  const results = await Promise.all(runs);
  // Connections stay open until every load generator is done (see
  // stream_client.c): closing hundreds at once costs the server a few ms.
  const end = t0 + rampMs(streams) + TTFT + TOKENS * ITL + 300 - performance.now();
  if (end > 0) await new Promise((r) => setTimeout(r, end));
  closeAll(conns);
  const part: ClientPart = {
    errs,
    drifts,
    offsets,
    jitter,
    heads,
    signed: 0,
    tokens: 0,
    completed: 0,
  };
  for (const r of results) {
    part.signed += r.signed;
    part.tokens += r.n;
    if (r.ok) part.completed++;
  }
  return part;
}

// ---------------------------------------------------------------- server side

/** Load-generator processes per run: reading 50 000 frames/s is a core's work. */
const procsFor = (streams: number) => streams >= 100 ? 2 : 1;

let compiled: Promise<string | null> | undefined;

/**
 * The load generator in C (bench/stream_client.c, built with `cc` once per
 * run): the same measurement as the Deno client in this file, at a fraction
 * of its CPU, which matters with server and clients sharing two cores. Null
 * (use the Deno client) when there is no C compiler or LAT_CLIENT=deno.
 */
function cClient(): Promise<string | null> {
  return compiled ??= (async () => {
    if (Deno.env.get("LAT_CLIENT") === "deno") return null;
    const bin = `${await Deno.makeTempDir()}/stream_client`;
    const src = new URL("./stream_client.c", import.meta.url).pathname;
    try {
      const out = await new Deno.Command("cc", { args: ["-O2", "-o", bin, src] }).output();
      return out.success ? bin : null;
    } catch {
      return null; // no cc
    }
  })();
}

/**
 * What a frame's arrival time is (LAT_STAMP): "kernel", the kernel's receive
 * timestamp of its bytes at the client's socket (SO_TIMESTAMPNS; C client
 * only), or "read", when the client's read returned. On a shared 2-core
 * machine the clients wait for a CPU ~14 µs per wake-up on average and far
 * longer at times; "read" counts that as the server's lateness.
 */
const STAMP = Deno.env.get("LAT_STAMP") === "read" ? "read" : "kernel";

/** Which load generator runClients uses, and how it stamps arrivals. */
export async function clientName(): Promise<string> {
  return await cClient()
    ? `bench/stream_client.c (C, epoll; arrival = ${
      STAMP === "kernel" ? "kernel receive timestamp, SO_TIMESTAMPNS" : "read time"
    })`
    : "Deno subprocess (raw sockets; arrival = read time)";
}

async function runClients(url: string, streams: number): Promise<ClientResult> {
  const procs = procsFor(streams);
  // Leave time for the processes to start, warm up and connect.
  const startEpoch = Date.now() + WARM_ROUNDS * (TTFT + WARM_TOKENS * ITL + 150) + streams;
  const bin = await cClient();
  const u = new URL(url);
  const parts = await Promise.all(Array.from({ length: procs }, async (_, rank) => {
    const shared = [String(streams), String(rank), String(procs), String(startEpoch)];
    const out = await new Deno.Command(bin ?? Deno.execPath(), {
      args: bin
        ? [u.hostname, u.port, ...shared, String(TTFT), String(ITL), String(TOKENS), STAMP]
        : ["run", "-A", import.meta.filename!, "--client", url, ...shared],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    if (!out.success) throw new Error(`load generator failed (exit ${out.code})`);
    return JSON.parse(new TextDecoder().decode(out.stdout)) as ClientPart;
  }));
  const errs = parts.flatMap((p) => p.errs);
  const drifts = parts.flatMap((p) => p.drifts);
  const signed = parts.reduce((a, p) => a + p.signed, 0);
  const tokens = parts.reduce((a, p) => a + p.tokens, 0);
  return {
    streams,
    completed: parts.reduce((a, p) => a + p.completed, 0),
    tokenErr: stats(errs),
    drift: stats(drifts),
    meanSigned: tokens > 0 ? signed / tokens : NaN,
    offset: stats(parts.flatMap((p) => p.offsets)),
    jitter: stats(parts.flatMap((p) => p.jitter)),
    head: stats(parts.flatMap((p) => p.heads)),
  };
}

const fmt = (x: number) => Number.isFinite(x) ? x.toFixed(2) : "n/a";

/** One concurrency level's figures (ms). */
export interface LatencyRow extends ClientResult {
  /** Emission time vs the token's absolute deadline, on the server. */
  serverErr: Stats;
}

/** One table row's cells after "streams". */
function cells(r: ClientResult, server: Stats | null): string {
  const srv = server ? `${fmt(server.p50)} | ${fmt(server.p99)}` : "— | —";
  return `${r.completed}/${r.streams} | ${fmt(r.tokenErr.p50)} | ${fmt(r.tokenErr.p99)} | ` +
    `${fmt(r.drift.p50)} | ${fmt(r.drift.p99)} | ${fmt(r.drift.max)} | ${fmt(r.meanSigned)} | ` +
    `${fmt(r.offset.p50)} | ${fmt(r.offset.p99)} | ${fmt(r.jitter.p99)} | ` +
    `${fmt(r.head.p50)} | ${fmt(r.head.p99)} | ${srv} |`;
}

/** Runs the clients against bench/baseline.ts --paced (a subprocess). */
async function pacedBaseline(streams: number): Promise<ClientResult> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./baseline.ts", import.meta.url).pathname,
      String(port),
      "--paced",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    // Wait for its "listening" line.
    const reader = child.stdout.getReader();
    await reader.read();
    reader.releaseLock();
    child.stdout.cancel();
    return await runClients(`http://127.0.0.1:${port}/v1/completions`, streams);
  } finally {
    child.kill();
    await child.status;
  }
}

/** Runs the benchmark and returns a markdown table of the results. */
export async function latencyBench(): Promise<string> {
  return (await latencyRun()).markdown;
}

/** Runs the benchmark: the markdown table and the figures behind it. */
export async function latencyRun(
  opts: { args?: string[]; levels?: number[]; bare?: boolean } = {},
): Promise<
  { markdown: string; rows: LatencyRow[]; bare: ClientResult | null }
> {
  const running = await startServers([
    "--model",
    "bench-model",
    "--time-to-first-token",
    `${TTFT}ms`,
    "--inter-token-latency",
    `${ITL}ms`,
    "--max-num-seqs",
    "2000",
    "--max-model-len",
    "100000",
    "--seed",
    "1",
    ...(opts.args ?? (Deno.env.get("LAT_ARGS") ?? "").split(" ").filter((a) => a !== "")),
  ], { port: 0, quiet: true, env: {} });
  const levels = opts.levels ?? CONCURRENCY;
  const sim = running.ranks[0].sim;
  // Server-side pacing error: emission time vs the token's absolute deadline.
  let serverErrs: number[] = [];
  sim.engine.observers.push({
    token(job, _k, now) {
      serverErrs.push(Math.abs(now - job.nextAt));
    },
  });
  const rows: string[] = [];
  const figures: LatencyRow[] = [];
  try {
    for (const n of levels) {
      serverErrs = [];
      const r = await runClients(running.url, n);
      const s = stats(serverErrs);
      figures.push({ ...r, serverErr: s });
      rows.push(`| ${n} | ${cells(r, s)}`);
    }
  } finally {
    await running.shutdown();
  }
  // The yardstick: a bare Deno.serve pacing the same streams (one timer per
  // stream, nothing else), measured by the same clients at the largest level.
  const top = Math.max(...levels);
  const bare = (opts.bare ?? Deno.env.get("LAT_BARE") !== "0") ? await pacedBaseline(top) : null;
  if (bare) rows.push(`| ${top}, bare Deno.serve | ${cells(bare, null)}`);
  const markdown = [
    `### Latency accuracy (TTFT ${TTFT} ms, ITL ${ITL} ms, ${TOKENS} tokens, streaming completions)`,
    "",
    `Load generator: ${await clientName()}, separate processes (two from 100 streams up), ` +
    "raw keep-alive HTTP/1.1 connections opened " +
    `before the run; stream starts spread over max(${ITL} ms, N × ${RAMP_MS_PER_STREAM} ms). Errors are |arrival − schedule| in ms ` +
    "on the client's clock, schedule = send time + TTFT + k·ITL. Targets at 1000 streams: " +
    "token p50 ≤ 1, p99 ≤ 5, last-token drift ≤ 2. The last row is the yardstick: a bare " +
    "Deno.serve (bench/baseline.ts --paced) sending the same frames on one absolute-deadline " +
    "timer per stream, measured by the same clients. Stream offset: the median error of " +
    "each stream (how late the whole stream runs: set when its request is taken in); " +
    "jitter: each token's distance from its stream's median (pacing); head: request sent → " +
    "first response byte (intake).",
    "",
    "| streams | completed | token err p50 | token err p99 | drift p50 | drift p99 | drift max " +
    "| mean signed err | stream offset p50 | stream offset p99 | jitter p99 " +
    "| head p50 | head p99 | server err p50 | server err p99 |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: " +
    "| ---: | ---: |",
    ...rows,
    "",
  ].join("\n");
  return { markdown, rows: figures, bare };
}

if (import.meta.main) {
  if (Deno.args[0] === "--client") {
    const [url, streams, rank, procs, startEpoch] = Deno.args.slice(1);
    const part = await clientMain(
      url,
      Number(streams),
      Number(rank),
      Number(procs),
      Number(startEpoch),
    );
    console.log(JSON.stringify(part));
  } else {
    console.log(await latencyBench());
  }
}

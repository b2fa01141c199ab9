/**
 * vllm-sim entry point: parse the configuration, build one simulator per
 * data-parallel rank, start the HTTP listeners, and drain in-flight requests
 * on SIGINT/SIGTERM. `startServers` is also what the tests use (port 0).
 */
import { ConfigError, configToJSON, HelpRequested, helpText, loadConfig } from "./lib/config.ts";
import type { LoadedConfig } from "./lib/config.ts";
import { Logger } from "./lib/log.ts";
import { SupervisedServer } from "./lib/net/listener.ts";
import { type FrontPort, frontUnavailable, openFront } from "./lib/net/front.ts";
import { createH2Server, type GrpcStreamHandler, type H2Server } from "./lib/net/h2_server.ts";
import type { GrpcService } from "./lib/api/grpc/service.ts";
import { ConnectionTable, processReaper } from "./lib/net/reaper.ts";
import { guardProcess } from "./lib/process_guard.ts";
import { type FleetTarget, loggerFor, podSeed, Simulator } from "./lib/simulator.ts";
import type { KvPublisher as Publisher } from "./lib/kv/publisher.ts";
import {
  selectTokenizer,
  type TokenizerChoice,
  TokenizerLoadError,
} from "./lib/tokenizer/select.ts";
import { DisconnectWatcher } from "./routes/disconnect.ts";
import { createRouter, type ServeHandler } from "./routes/router.ts";
import type { Dataset } from "./lib/dataset/dataset.ts";
import type { PodGroup } from "./lib/fleet.ts";
import { METRICS_PORT_ROUTES, ROUTES } from "./routes/table.ts";

export interface RunningRank {
  sim: Simulator;
  port: number;
  url: string;
  /** Its Deno.serve listener (started again if its accept loop fails), with --no-grpc. */
  listener?: SupervisedServer;
  /** Watches pending answers' connections (routes/disconnect.ts). */
  watcher: DisconnectWatcher;
  /** Its connections' bookkeeping for the timeouts (lib/net/reaper.ts), where they run. */
  connections?: ConnectionTable;
  /** Its KV events' ZMQ publisher, with --enable-kvcache and a zmq-endpoint. */
  publisher?: Publisher;
  /** Its pod in a fleet (--pods), from 0, and the pod's name (POD_NAME-<pod>) there. */
  pod: number;
  podName?: string;
  /** Its gRPC-only port, with --grpc-port: every connection goes to its HTTP/2 server. */
  grpcPort?: FrontPort;
  /** Its port, HTTP/1.x, HTTP/2 and gRPC told apart (lib/net/front.ts), unless gRPC is off. */
  front?: FrontPort;
  /** Its HTTP/2 server, fed by the front door. */
  h2?: H2Server;
  /** Its gRPC service, once loaded. */
  grpcService?: Promise<GrpcService>;
}

export interface Running {
  ranks: RunningRank[];
  /** Rank 0's base URL, e.g. http://127.0.0.1:8000. */
  url: string;
  /** Stops accepting, lets in-flight requests finish, then closes. */
  shutdown(): Promise<void>;
}

export interface StartOptions {
  env?: Record<string, string | undefined>;
  /** Overrides the configured port (tests pass 0 for a free one). */
  port?: number;
  /** Silences the access/start-up logging (tests). */
  quiet?: boolean;
}

/** A listener that could not start (port taken, bad certificate, ...). */
export class StartupError extends Error {}

type Tls = { cert: string; key: string } | undefined;

function tlsOptions(cfg: LoadedConfig["config"]): Tls {
  if (!cfg["ssl-certfile"] || !cfg["ssl-keyfile"]) return undefined;
  try {
    return {
      cert: Deno.readTextFileSync(cfg["ssl-certfile"]),
      key: Deno.readTextFileSync(cfg["ssl-keyfile"]),
    };
  } catch (e) {
    throw new StartupError(`cannot read --ssl-certfile/--ssl-keyfile: ${(e as Error).message}`);
  }
}

/**
 * The header, body and idle timeouts a pod's config sets, read at every
 * scan; undefined where the reaper cannot run (nothing is then recorded).
 */
function connectionTable(sim: Simulator, port: number): ConnectionTable | undefined {
  const table = new ConnectionTable(port, () => ({
    headerMs: sim.config["header-timeout"],
    bodyMs: sim.config["body-timeout"],
    idleMs: sim.config["idle-timeout"],
  }), (rule, c) => sim.log.debug("closed a connection", { rule, port, client: c.peerPort }));
  if (processReaper.add(table)) return table;
  sim.log.warn("header, body and idle timeouts are off here", {
    reason: processReaper.unavailable,
  });
  return undefined;
}

/** Deno.serve's onError: only a failure that is not the client's doing is an ERROR. */
function onError(sim: Simulator) {
  return (e: unknown) => {
    // A body broken off on purpose (a 413 that closes its connection, a
    // stalled reader dropped) is the client's doing, not a server error.
    const aborted = e instanceof DOMException && e.name === "AbortError";
    sim.log[aborted ? "debug" : "error"]("request failed", { error: String(e) });
    return new Response(null, { status: 500 });
  };
}

/**
 * A rank's listener. With gRPC (the default, not in --mm-encoder-only
 * mode) the front door (lib/net/front.ts) accepts the port: HTTP/2
 * connections go to the rank's node:http2 server (gRPC and HTTP/2 REST),
 * HTTP/1.x ones to Deno's own server after their first request. Otherwise
 * a Deno.serve listens on the port.
 */
async function listen(
  loaded: LoadedConfig,
  rank: number,
  port: number,
  tls: Tls,
  env: Record<string, string | undefined>,
  opts: StartOptions,
  tokenizer: TokenizerChoice,
  dataset: Dataset | null,
  /** Its pod's name in a fleet (log lines carry it). */
  podName?: string,
): Promise<RunningRank> {
  const cfg = loaded.config;
  // Log lines name their pod in a fleet and their rank among several (data-parallel.md).
  const context: Record<string, unknown> = {};
  if (podName !== undefined) context.pod = podName;
  if (cfg["data-parallel-size"] > 1) context.rank = rank;
  const log = opts.quiet
    ? new Logger("error")
    : Object.keys(context).length > 0
    ? loggerFor(cfg, context)
    : undefined;
  const sim = new Simulator(loaded, log, rank, tokenizer.create());
  sim.dataset = dataset;
  sim.devMode = env.VLLM_SERVER_DEV_MODE === "1";
  const scheme = tls ? "https" : "http";
  const unavailable = cfg.grpc && !cfg["mm-encoder-only"] ? frontUnavailable() : null;
  if (unavailable) {
    sim.log.warn("gRPC is off: the API port is Deno.serve's alone", { reason: unavailable });
  }
  const fronted = cfg.grpc && !cfg["mm-encoder-only"] && !unavailable;
  // Answers 503 until the port is known (the router reports it in x-inference-port).
  let handler: ServeHandler = () => Promise.resolve(new Response(null, { status: 503 }));
  const rr: RunningRank = { sim, port: 0, url: "", watcher: null!, pod: 0 };
  if (fronted) {
    // HTTP/2 requests have no Deno.serve connection: no watcher, no reaper record.
    let rest: ServeHandler = handler;
    rr.h2 = createH2Server((req) => rest(req), lazyGrpc(rr));
    rr.front = openFront({
      hostname: cfg.host,
      port,
      tls,
      http1: (req, info) => handler(req, info),
      onError: onError(sim),
      h2: rr.h2,
      firstByteMs: cfg["idle-timeout"],
      watchHangUp: (client) => rr.watcher.watch(client.port),
      log: sim.log,
    });
    rr.port = rr.front.port;
    rest = createRouter(sim, ROUTES, rr.port, podIds(env), {});
  } else {
    const served = await serveHttp(
      sim,
      { hostname: cfg.host, port, tls },
      (req, info) => handler(req, info),
    );
    rr.listener = served.listener;
    rr.port = served.port;
  }
  sim.port = rr.port;
  rr.watcher = new DisconnectWatcher(rr.port);
  rr.connections = connectionTable(sim, rr.port);
  handler = createRouter(sim, ROUTES, rr.port, podIds(env), {
    watcher: rr.watcher,
    connections: rr.connections,
  });
  rr.url = `${scheme}://${sim.reachableHost}:${rr.port}`;
  if (!opts.quiet) {
    sim.log.info("listening", { rank, address: `${scheme}://${cfg.host}:${rr.port}` });
  }
  return rr;
}

function podIds(env: Record<string, string | undefined>) {
  return { podName: env.POD_NAME, podNamespace: env.POD_NAMESPACE };
}

/** A Deno.serve that outlives accept failures; resolves once it listens. */
function serveHttp(
  sim: Simulator,
  where: { hostname: string; port: number; tls?: Tls },
  handler: ServeHandler,
): Promise<{ listener: SupervisedServer; port: number }> {
  return new Promise((resolve, reject) => {
    let port = 0;
    try {
      const listener = new SupervisedServer(
        (again) =>
          Deno.serve({
            hostname: where.hostname,
            port: again ?? where.port,
            ...where.tls,
            onListen: (addr) => {
              if (again !== undefined) return;
              port = (addr as Deno.NetAddr).port;
              queueMicrotask(() => resolve({ listener, port }));
            },
            onError: onError(sim),
          }, (req, info) => handler(req, info)),
        () => port,
        sim.log,
      );
    } catch (e) {
      reject(e);
    }
  });
}

/**
 * The rank's gRPC service, loaded with @grpc/grpc-js on the first gRPC
 * stream (or at start with --grpc-port): a plain start does not load it.
 */
function lazyGrpc(rr: RunningRank): GrpcStreamHandler {
  return (stream, headers) => {
    rr.grpcService ??= import("./lib/api/grpc/service.ts").then((m) => m.grpcService(rr.sim));
    rr.grpcService.then((svc) => svc.handle(stream, headers), (e) => {
      rr.sim.log.error("gRPC service failed to start", { error: String(e) });
      stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "13" }, {
        endStream: true,
      });
    });
  };
}

/** --metrics-port: a second listener serving only one rank's GET /metrics (rank i on port + i). */
function serveMetrics(
  sim: Simulator,
  hostname: string,
  port: number,
  tls: Tls,
  env: Record<string, string | undefined>,
  opts: StartOptions,
): { listener: SupervisedServer; connections?: ConnectionTable } {
  const connections = connectionTable(sim, port);
  const handler = createRouter(sim, METRICS_PORT_ROUTES, port, {
    podName: env.POD_NAME,
    podNamespace: env.POD_NAMESPACE,
  }, { connections });
  const listener = new SupervisedServer(
    () =>
      Deno.serve({
        hostname,
        port,
        ...tls,
        onListen: (addr) => {
          if (!opts.quiet) {
            sim.log.info("metrics listening", { address: `${hostname}:${addr.port}` });
          }
        },
        onError: onError(sim),
      }, handler),
    () => port,
    sim.log,
  );
  return { listener, connections };
}

export async function startServers(argv: string[], opts: StartOptions = {}): Promise<Running> {
  const env = opts.env ?? Deno.env.toObject();
  const loaded = loadConfig(argv, env);
  const cfg = loaded.config;
  checkKvSettings(cfg, env);
  const log = loggerFor(cfg);
  if (!opts.quiet) {
    for (const w of loaded.warnings) log.warn(w);
    log.info("configuration", configToJSON(cfg));
    log.info(loaded.seedGiven ? "seed" : "seed (from start time; pass --seed to replay)", {
      seed: cfg.seed,
    });
  }
  const basePort = opts.port ?? cfg.port;
  const tls = tlsOptions(cfg);
  // The pods to run: --pods alike ones, or a fleet file's groups, each group
  // with its own configuration, tokenizer and dataset (shared by its pods).
  const specs: PodGroup[] = cfg.fleet
    ? (await import("./lib/fleet.ts")).readFleetFile(cfg.fleet)
    : [{ name: env.POD_NAME ?? "vllm-sim", pods: cfg.pods, args: [] }];
  const groups: Group[] = [];
  const closeGroups = () => {
    for (const g of groups) {
      g.tokenizer.close?.();
      g.dataset?.close();
    }
  };
  try {
    for (const spec of specs) {
      const gl = spec.args.length > 0 ? loadConfig([...argv, ...spec.args], env) : loaded;
      checkKvSettings(gl.config, env);
      let tokenizer: TokenizerChoice;
      try {
        tokenizer = await selectTokenizer(gl, env, opts.quiet ? new Logger("error") : log);
      } catch (e) {
        if (e instanceof TokenizerLoadError) throw new StartupError(`tokenizer: ${e.message}`);
        throw e;
      }
      const group: Group = { spec, loaded: gl, tokenizer, dataset: null };
      groups.push(group);
      group.dataset = await startDataset(
        gl.config,
        opts.quiet ? new Logger("error") : log,
        tokenizer,
      );
    }
  } catch (e) {
    closeGroups();
    throw e;
  }
  const ranks: RunningRank[] = [];
  const metrics: ReturnType<typeof serveMetrics>[] = [];
  const shutdown = async () => {
    for (const r of ranks) r.sim.held.releaseAll(); // `timeout` failures would hold the drain
    // No new connections; gRPC refuses new calls from now on (Unavailable)
    // and lets running ones end.
    await Promise.all(ranks.flatMap((r) => [r.front?.stop(), r.grpcPort?.stop()]));
    for (const r of ranks) r.grpcService?.then((s) => s.refuseNew(), () => {});
    const drained = Promise.all([
      ...ranks.map((r) => r.listener?.shutdown()),
      ...ranks.flatMap((r) => [r.front?.drained(), r.grpcPort?.drained(), r.h2?.drain()]),
      ...metrics.map((m) => m.listener.shutdown()),
    ]);
    if (!await settlesWithin(drained, cfg["shutdown-timeout"])) {
      // Past the deadline: end every answer still running. A connection
      // that is still uploading is left to the process exit.
      log.warn("shutdown-timeout passed; ending the requests still in flight", {
        running: ranks.reduce((n, r) => n + r.sim.engine.runningCount, 0),
        waiting: ranks.reduce((n, r) => n + r.sim.engine.waitingCount, 0),
      });
      for (const r of ranks) r.sim.engine.abortAll();
      await settlesWithin(drained, 1000);
      for (const r of ranks) {
        r.h2?.force();
        r.front?.drop();
        r.grpcPort?.drop();
      }
    }
    for (const r of ranks) {
      r.publisher?.close();
      r.sim.engine.timers.clear();
      r.sim.metrics.close();
      r.watcher.close();
      if (r.connections) processReaper.remove(r.connections);
    }
    for (const m of metrics) if (m.connections) processReaper.remove(m.connections);
    closeGroups();
  };
  const single = cfg["data-parallel-rank"] !== undefined;
  const count = single ? 1 : cfg["data-parallel-size"];
  let port = basePort;
  try {
    // A fleet (--pods, --fleet): pod p's ranks follow pod p-1's ports, each
    // pod its own simulators with its own seed and name; one pod is the plain case.
    const fleet = groups.length > 1 || groups[0].spec.pods > 1;
    let p = 0;
    for (const g of groups) {
      for (let i = 0; i < g.spec.pods; i++, p++) {
        const pod = fleet
          ? podIdentity(g.loaded, env, p, `${g.spec.name}-${i}`)
          : { loaded: g.loaded, env };
        for (let k = 0; k < count; k++) {
          const rank = single ? cfg["data-parallel-rank"]! : k;
          // Port 0 asks the OS for a free port per rank.
          port = basePort === 0 ? 0 : basePort + p * count + k;
          const r = await listen(
            pod.loaded,
            rank,
            port,
            tls,
            pod.env,
            opts,
            g.tokenizer,
            g.dataset,
            fleet ? pod.env.POD_NAME : undefined,
          );
          r.pod = p;
          if (fleet) r.podName = pod.env.POD_NAME;
          ranks.push(r);
        }
      }
    }
    for (const r of ranks) {
      r.publisher = await kvPublisher(r.sim, {
        ...env,
        ...(r.podName ? { POD_NAME: r.podName } : {}),
      }, r.pod * count);
    }
    const targets = fleetTargets(ranks);
    for (const r of ranks) r.sim.fleet = targets;
    if (cfg["sd-file"]) writeSdFile(cfg["sd-file"], targets);
    if (cfg["grpc-port"] !== undefined) {
      // Rank i of this process on port + i (with --data-parallel-rank, the one rank on port).
      for (const [i, r] of ranks.entries()) {
        if (!r.h2) continue; // no gRPC in --mm-encoder-only mode, nor with --no-grpc
        port = cfg["grpc-port"] + i;
        // gRPC only: HTTP/1.x connections are closed there.
        r.grpcPort = openFront({
          hostname: cfg.host,
          port,
          tls,
          http1: () => Promise.resolve(new Response(null, { status: 404 })),
          onError: onError(r.sim),
          h2: r.h2,
          serveHttp1: false,
          firstByteMs: cfg["idle-timeout"],
          log: r.sim.log,
        });
        if (!opts.quiet) {
          r.sim.log.info("gRPC listening", { rank: r.sim.rank, port: r.grpcPort.port });
        }
      }
    }
    if (cfg["metrics-port"] !== undefined) {
      for (const [i, r] of ranks.entries()) {
        port = cfg["metrics-port"] + i;
        metrics.push(serveMetrics(r.sim, cfg.host, port, tls, env, opts));
      }
    }
  } catch (e) {
    // Whatever did start is closed again: no half-started server lingers.
    await shutdown();
    throw new StartupError(`cannot listen on ${cfg.host}:${port}: ${(e as Error).message}`);
  }
  return { ranks, url: ranks[0].url, shutdown };
}

/**
 * The dataset every rank answers from (read-only, so shared), opened only
 * when one is configured: node:sqlite is not loaded otherwise. Not used in
 * --mm-encoder-only mode (nothing is downloaded either).
 */
async function startDataset(
  cfg: LoadedConfig["config"],
  log: Logger,
  tokenizer: TokenizerChoice,
): Promise<Dataset | null> {
  if (cfg["dataset-path"] === "" || cfg["mm-encoder-only"]) return null;
  const { openDataset, DatasetStartError } = await import("./lib/dataset/open.ts");
  try {
    return await openDataset(cfg, log);
  } catch (e) {
    if (e instanceof DatasetStartError) {
      tokenizer.close?.();
      throw new StartupError(`dataset: ${e.message}`);
    }
    throw e;
  }
}

/**
 * Pod p of a fleet: its own seed (engine ids and answers of its own) and
 * name (<group>-<i>; with --pods the group is POD_NAME, else "vllm-sim"),
 * which its headers and log lines carry.
 */
function podIdentity(
  loaded: LoadedConfig,
  env: Record<string, string | undefined>,
  p: number,
  name: string,
): { loaded: LoadedConfig; env: Record<string, string | undefined> } {
  const config = { ...loaded.config, seed: podSeed(loaded.config.seed, p) };
  return { loaded: { ...loaded, config }, env: { ...env, POD_NAME: name } };
}

/** A group of alike pods: its configuration, and the tokenizer and dataset its pods share. */
interface Group {
  spec: PodGroup;
  loaded: LoadedConfig;
  tokenizer: TokenizerChoice;
  dataset: Dataset | null;
}

/** Prometheus service-discovery targets: one group per pod, its ranks' ports (file_sd and http_sd share the format). */
function fleetTargets(ranks: RunningRank[]): FleetTarget[] {
  const groups = new Map<number, FleetTarget>();
  for (const r of ranks) {
    let g = groups.get(r.pod);
    if (!g) {
      g = {
        targets: [],
        labels: { pod: r.podName ?? "", model: r.sim.config.model, pod_index: String(r.pod) },
      };
      groups.set(r.pod, g);
    }
    g.targets.push(`${r.sim.reachableHost}:${r.port}`);
  }
  return [...groups.values()];
}

/** --sd-file: written whole under another name, then renamed (Prometheus never reads half a file). */
function writeSdFile(path: string, fleet: FleetTarget[]): void {
  const tmp = `${path}.tmp-${Deno.pid}`;
  Deno.writeTextFileSync(tmp, JSON.stringify(fleet, null, 2) + "\n");
  Deno.renameSync(tmp, path);
}

/** The KV events' requirements: POD_IP names the pod in the topic; the offset ports must not collide. */
function checkKvSettings(
  cfg: LoadedConfig["config"],
  env: Record<string, string | undefined>,
): void {
  checkKvPorts(cfg);
  if (cfg["enable-kvcache"] && !env.POD_IP) {
    throw new ConfigError(
      "enable-kvcache",
      "IP should be defined in the environment (POD_IP) for KV cache to work",
    );
  }
}

/**
 * Rank r publishes on the ZMQ port + r and replays on the replay port + r:
 * the two ranges must not overlap (kv-cache.md, "Replay").
 */
function checkKvPorts(cfg: LoadedConfig["config"]): void {
  const zmq = cfg["zmq-endpoint"];
  const replay = cfg["kv-events-replay-endpoint"];
  const z = /:(\d+)$/.exec(zmq);
  const r = /:(\d+)$/.exec(replay);
  if (!cfg["enable-kvcache"] || !z || !r) return;
  // Every rank of every pod takes an offset port in both ranges.
  const size = cfg["data-parallel-size"] * cfg.pods;
  if (Math.abs(Number(z[1]) - Number(r[1])) < size) {
    throw new ConfigError(
      "kv-events-replay-endpoint",
      `zmq-endpoint (${zmq}) and kv-events-replay-endpoint (${replay}) ports collide once offset by data-parallel rank`,
    );
  }
}

/**
 * A rank's KV event publisher: its ZMQ and replay ports are the configured
 * ones moved up by its rank; its topic names its serving port.
 */
async function kvPublisher(
  sim: Simulator,
  env: Record<string, string | undefined>,
  podOffset = 0,
): Promise<Publisher | undefined> {
  const cfg = sim.config;
  if (sim.kv === null || cfg["zmq-endpoint"] === "") return undefined;
  const { KvPublisher, offsetEndpoint } = await import("./lib/kv/publisher.ts");
  const publisher = await KvPublisher.start({
    endpoint: offsetEndpoint(cfg["zmq-endpoint"], podOffset + sim.rank),
    topic: () => `kv@${env.POD_IP}:${sim.port}@${cfg.model}`,
    rank: sim.rank,
    batchSize: cfg["event-batch-size"],
    format: cfg["use-vllm-map-event-format"] ? "map" : "array",
    queueCap: Math.max(16, 10 * cfg["kv-cache-size"]),
    maxConnectAttempts: cfg["zmq-max-connect-attempts"],
    replayEndpoint: cfg["kv-events-replay-endpoint"]
      ? offsetEndpoint(cfg["kv-events-replay-endpoint"], podOffset + sim.rank)
      : "",
    replayQueueSize: cfg["kv-events-replay-queue-size"],
    log: sim.log,
  });
  sim.onKvEvent = (e) => publisher.push(e);
  return publisher;
}

/** Whether `p` settles within `ms`; the timer never outlives the answer. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([p.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function main(): Promise<void> {
  if (Deno.args[0] === "dataset-tool") {
    const { runDatasetTool } = await import("./lib/dataset/tool.ts");
    Deno.exit(await runDatasetTool(Deno.args.slice(1), Deno.env.toObject()));
  }
  let running: Running;
  try {
    running = await startServers(Deno.args);
  } catch (e) {
    if (e instanceof HelpRequested) {
      console.log(helpText());
      Deno.exit(0);
    }
    if (e instanceof ConfigError) {
      console.error(`vllm-sim: ${e.message}`);
      console.error("Run with --help to list the options.");
      Deno.exit(1);
    }
    if (e instanceof StartupError) {
      console.error(`vllm-sim: ${e.message}`);
      Deno.exit(1);
    }
    throw e;
  }
  guardProcess(running.ranks[0].sim.log);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) Deno.exit(130); // a second signal exits at once
    stopping = true;
    const log = running.ranks[0].sim.log;
    log.info("draining in-flight requests", { signal });
    await running.shutdown();
    log.info("stopped");
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
}

if (import.meta.main) await main();

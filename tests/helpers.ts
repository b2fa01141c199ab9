/** Test harness: start vllm-sim in-process on a free port. */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { type Running, startServers, StartupError } from "../main.ts";

export interface TestServer extends AsyncDisposable {
  url: string;
  running: Running;
  client: OpenAI;
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
  close(): Promise<void>;
}

export async function startSim(
  args: string[] = [],
  env: Record<string, string | undefined> = {},
): Promise<TestServer> {
  const argv = args.includes("--model") ? args : ["--model", "test-model", ...args];
  const running = await startServers(argv, { port: 0, env, quiet: true });
  const url = running.url;
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "sk-test", maxRetries: 0 });
  const close = () => running.shutdown();
  return {
    url,
    running,
    client,
    post: (path, body, headers = {}) =>
      fetch(url + path, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: typeof body === "string" ? body : JSON.stringify(body),
      }),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Reads an SSE body into its `data:` payloads. */
export async function sseEvents(res: Response): Promise<string[]> {
  const text = await res.text();
  return text.split("\n\n").filter((f) => f.length > 0).map((f) => {
    if (!f.startsWith("data: ")) throw new Error(`bad SSE frame: ${JSON.stringify(f)}`);
    return f.slice(6);
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `cond` until it holds; fails the test (naming `what`) after
 * `timeoutMs`. Returns how long it took, in ms.
 */
export async function waitFor(
  cond: () => boolean,
  timeoutMs = 3000,
  what = "condition",
): Promise<number> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
  return performance.now() - t0;
}

/**
 * Runs `start`, whose arguments name ports picked with freePort(), again
 * (picking again) when one of them was taken before the simulator listened:
 * its own port-0 listener, or another test, can be given a port just freed.
 */
export async function retryPortInUse<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await start();
    } catch (e) {
      if (attempt >= 5 || !(e instanceof StartupError) || !/in use/i.test(e.message)) throw e;
    }
  }
}

/** A port that was free a moment ago (for child processes that need a fixed one). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export interface ChildSim {
  child: Deno.ChildProcess;
  url: string;
  /** Resolves with the first stderr line matching `re` (fails after `timeoutMs`). */
  line(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Every stderr line so far. */
  lines: string[];
  /** Resident memory of the child in MiB (/proc). */
  rssMiB(): number;
  /** SIGKILL (if still running) and wait for every pipe to close. */
  close(): Promise<void>;
}

/**
 * Runs main.ts as a child process on a free port and waits until it listens.
 * `shell` wraps the command (e.g. "ulimit -n 256; exec") when given.
 */
export async function spawnSim(
  args: string[],
  opts: { shell?: string; env?: Record<string, string> } = {},
): Promise<ChildSim> {
  const port = freePort();
  const deno = [Deno.execPath(), "run", "-A", "main.ts", "--port", String(port), ...args];
  const cmd = opts.shell
    ? new Deno.Command("bash", {
      args: ["-c", `${opts.shell} "$@"`, "sh", ...deno],
      cwd: new URL("..", import.meta.url),
      stdout: "null",
      stderr: "piped",
      env: opts.env,
    })
    : new Deno.Command(deno[0], {
      args: deno.slice(1),
      cwd: new URL("..", import.meta.url),
      stdout: "null",
      stderr: "piped",
      env: opts.env,
    });
  const child = cmd.spawn();
  const lines: string[] = [];
  const done = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const part of child.stderr) {
      buf += dec.decode(part, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    }
  })();
  const line = async (re: RegExp, timeoutMs = 30000) => {
    const t0 = performance.now();
    for (;;) {
      const hit = lines.find((l) => re.test(l));
      if (hit) return hit;
      if (performance.now() - t0 > timeoutMs) throw new Error(`no ${re} in:\n${lines.join("\n")}`);
      await sleep(20);
    }
  };
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const close = async () => {
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }
    await status;
    await done;
  };
  try {
    await line(/listening/);
  } catch (e) {
    await close();
    throw e;
  }
  const rssMiB = () => {
    const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${child.pid}/status`));
    return m ? Number(m[1]) / 1024 : NaN;
  };
  return { child, url: `http://127.0.0.1:${port}`, line, lines, rssMiB, close };
}

/**
 * One raw HTTP/1.1 exchange: writes `request` as is and returns what the
 * server sends until it closes or `timeoutMs` passes (for requests fetch
 * cannot make: odd Host headers, partial uploads).
 */
export async function rawHttp(
  url: string,
  request: string | Uint8Array,
  timeoutMs = 5000,
): Promise<{ text: string; closed: boolean }> {
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  let text = "";
  let closed = false;
  try {
    const bytes = typeof request === "string" ? new TextEncoder().encode(request) : request;
    await conn.write(bytes);
    const buf = new Uint8Array(65536);
    const dec = new TextDecoder();
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) {
        closed = true;
        break;
      }
      text += dec.decode(buf.subarray(0, n), { stream: true });
    }
  } catch { /* closed by the timer */ }
  clearTimeout(timer);
  try {
    conn.close();
  } catch { /* already closed */ }
  return { text, closed };
}

export interface ErrorAnswer {
  error: { message: string; type: string; param: string | null; code: number };
}

/** POSTs `body` and checks the error's status and exact message. */
export async function expectError(
  s: TestServer,
  path: string,
  body: unknown,
  status: number,
  message: string | RegExp,
): Promise<ErrorAnswer> {
  const res = await s.post(path, body);
  const e = await res.json() as ErrorAnswer;
  assert.equal(res.status, status, JSON.stringify(e));
  if (typeof message === "string") assert.equal(e.error.message, message);
  else assert.match(e.error.message, message);
  assert.equal(e.error.code, status);
  return e;
}

/** Test harness: start vllm-sim in-process on a free port. */
import OpenAI from "openai";
import { type Running, startServers } from "../main.ts";

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

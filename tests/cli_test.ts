/** The command line as a user meets it: exit codes, messages, --help, docs. */
import assert from "node:assert/strict";
import { loadConfig, optionsMarkdown } from "../lib/config.ts";
import { startServers, StartupError } from "../main.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("cli: bad flags and values exit 1 naming the option", async () => {
  const cases: [string[], RegExp][] = [
    [["--model", "m", "--bogus", "1"], /--bogus/],
    [["--model", "m", "--port", "abc"], /--port/],
    [["--model", "m", "--port", "70000"], /--port/],
    [["--model", "m", "--mode", "loud"], /--mode/],
    [["--model", "m", "--time-to-first-token", "-5ms"], /--time-to-first-token/],
    [
      ["--model", "m", "--inter-token-latency", "10ms", "--inter-token-latency-std-dev", "5ms"],
      /inter-token-latency-std-dev/,
    ],
    [[], /--model/],
  ];
  const results = await Promise.all(cases.map(([args]) => run(args)));
  results.forEach((r, i) => {
    assert.equal(r.code, 1, `${cases[i][0].join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, cases[i][1]);
  });
});

Deno.test("cli: --help lists every option and exits 0", async () => {
  const r = await run(["--help"]);
  assert.equal(r.code, 0);
  for (
    const flag of [
      "--model",
      "--max-num-seqs",
      "--time-to-first-token",
      "--lora-modules",
      "--fake-metrics",
      "--enable-kvcache",
    ]
  ) {
    assert.ok(r.stdout.includes(flag), flag);
  }
});

Deno.test("docs/options.md is generated from the option table and current", async () => {
  const docs = await Deno.readTextFile(new URL("../docs/options.md", import.meta.url));
  assert.equal(docs, optionsMarkdown(), "run `deno task docs`");
});

Deno.test("manifests/config.yaml is a valid configuration", () => {
  const path = new URL("../manifests/config.yaml", import.meta.url).pathname;
  const c = loadConfig(["--config", path], {}).config;
  assert.equal(c.model, "Qwen/Qwen2.5-1.5B-Instruct");
  assert.equal(c["time-to-first-token"], 200);
});

Deno.test("options whose feature is not built yet are accepted with a warning", () => {
  const { warnings } = loadConfig(["--model", "m", "--omni", "--self-signed-certs"], {});
  assert.ok(warnings.some((w) => w.startsWith("--omni") && /not implemented/.test(w)));
  assert.ok(warnings.some((w) => w.startsWith("--self-signed-certs") && /not implemented/.test(w)));
  const live = loadConfig(["--model", "m", "--grpc-port", "9000"], {}).warnings;
  assert.deepEqual(live, [], "--grpc-port is built");
  const quiet = loadConfig(["--model", "m", "--max-num-seqs", "3"], {}).warnings;
  assert.deepEqual(quiet, []);
});

Deno.test("cli: a port in use exits 1 with a clear message", async () => {
  const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const r = await run([
      "--model",
      "m",
      "--host",
      "127.0.0.1",
      "--port",
      String(blocker.addr.port),
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /vllm-sim: cannot listen on 127\.0\.0\.1:\d+/);
    assert.doesNotMatch(r.stderr, /at .*main\.ts/, "no stack trace");
  } finally {
    blocker.close();
  }
});

Deno.test("a failed start closes the ranks that did start", async () => {
  // Find two adjacent free ports, then take the second one. They are drawn
  // below Linux's ephemeral range (32768+): there, after a busy run (a
  // benchmark left 22 000 client sockets in TIME_WAIT), the neighbour of a
  // port-0 port was taken 20 times in a row.
  let base = 0;
  let blocker: Deno.Listener | undefined;
  for (let tries = 0; tries < 100 && !blocker; tries++) {
    base = 20000 + 2 * Math.floor(Math.random() * 6000);
    try {
      Deno.listen({ hostname: "127.0.0.1", port: base }).close();
      blocker = Deno.listen({ hostname: "127.0.0.1", port: base + 1 });
    } catch {
      // taken; try another pair
    }
  }
  assert.ok(blocker, "found a free port pair");
  try {
    await assert.rejects(
      () =>
        startServers(["--model", "m", "--host", "127.0.0.1", "--data-parallel-size", "2"], {
          port: base,
          quiet: true,
          env: {},
        }),
      StartupError,
    );
    // Rank 0 was closed again: its port can be taken.
    const again = Deno.listen({ hostname: "127.0.0.1", port: base });
    again.close();
  } finally {
    blocker!.close();
  }
});

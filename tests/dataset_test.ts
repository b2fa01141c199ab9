/**
 * Datasets (datasets.md): answers from recorded conversations, the start-up
 * cases, the download, and the dataset tool that builds them.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { runDatasetTool } from "../lib/dataset/tool.ts";
import { Logger } from "../lib/log.ts";
import { BuiltinTokenizer } from "../lib/tokenizer/builtin.ts";
import { freePort, startSim, type TestServer } from "./helpers.ts";

const FIXTURES = new URL("./fixtures/dataset/", import.meta.url).pathname;
const SAMPLE = `${FIXTURES}sample.sqlite3`;
const SOURCE = JSON.parse(Deno.readTextFileSync(`${FIXTURES}conversations.json`)) as {
  id: string;
  conversations: { from: string; value: string }[];
}[];
const quiet = new Logger("error");

/** The gpt answer to the first human turn of conversation `id`. */
function answerOf(id: string, turn = 0): { q: string; a: string } {
  const c = SOURCE.find((x) => x.id === id)!.conversations;
  return { q: c[turn * 2].value, a: c[turn * 2 + 1].value };
}

async function sha256Hex(ids: readonly number[]): Promise<string> {
  const bytes = new Uint8Array(ids.length * 4);
  ids.forEach((id, i) => new DataView(bytes.buffer).setUint32(i * 4, id, true));
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}

const b64ToHex = (s: string) =>
  Array.from(atob(s), (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");

function withDataset(extra: string[] = []): Promise<TestServer> {
  return startSim(["--dataset-path", SAMPLE, "--seed", "3", ...extra]);
}

Deno.test("dataset: a recorded prompt gets its recorded answer (chat, text and token ids)", async () => {
  for (const mode of [[], ["--dataset-in-memory"]]) {
    await using s = await withDataset(mode);
    const haiku = answerOf("haiku");
    const chat = await s.client.chat.completions.create({
      model: "test-model",
      messages: [{ role: "user", content: haiku.q }],
    });
    assert.equal(chat.choices[0].message.content, haiku.a, `chat ${mode}`);
    assert.equal(chat.choices[0].finish_reason, "stop");
    // The second turn: the whole conversation so far is the prompt.
    const t2 = answerOf("haiku", 1);
    const chat2 = await s.client.chat.completions.create({
      model: "test-model",
      messages: [
        { role: "user", content: haiku.q },
        { role: "assistant", content: haiku.a },
        { role: "user", content: t2.q },
      ],
    });
    assert.equal(chat2.choices[0].message.content, t2.a);
    const rice = answerOf("recipe");
    const text = await s.client.completions.create({ model: "test-model", prompt: rice.q });
    assert.equal(text.choices[0].text, rice.a);
    assert.equal(text.usage!.completion_tokens, new BuiltinTokenizer().count(rice.a));
    // A token-id prompt: the same ids, the same answer.
    const ids = (await (await s.post("/tokenize", { model: "test-model", prompt: rice.q })).json())
      .tokens;
    const byIds = await s.client.completions.create({ model: "test-model", prompt: ids });
    assert.equal(byIds.choices[0].text, rice.a);
    // Streamed: the recorded token strings are the pieces.
    const stream = await s.client.chat.completions.create({
      model: "test-model",
      messages: [{ role: "user", content: haiku.q }],
      stream: true,
    });
    let streamed = "";
    for await (const c of stream) streamed += c.choices[0]?.delta.content ?? "";
    assert.equal(streamed, haiku.a);
  }
});

Deno.test("dataset: limits, ignore_eos padding and finish reasons", async () => {
  await using s = await withDataset();
  const rice = answerOf("recipe");
  // A hit longer than max_tokens is cut: finish_reason length.
  const cut = await s.client.completions.create({
    model: "test-model",
    prompt: rice.q,
    max_tokens: 5,
  });
  assert.equal(cut.usage!.completion_tokens, 5);
  assert.equal(cut.choices[0].finish_reason, "length");
  assert.ok(rice.a.startsWith(cut.choices[0].text));
  // A cut answer leaves the recording whole for the next request.
  const whole = await s.client.completions.create({ model: "test-model", prompt: rice.q });
  assert.equal(whole.choices[0].text, rice.a);
  // ignore_eos with a shorter hit: padded with built-in text to exactly max_tokens.
  const yes = answerOf("short");
  const padded = await s.post("/v1/completions", {
    model: "test-model",
    prompt: yes.q,
    max_tokens: 40,
    ignore_eos: true,
  });
  const p = await padded.json();
  assert.equal(p.usage.completion_tokens, 40);
  assert.equal(p.choices[0].finish_reason, "length");
  assert.ok(p.choices[0].text.startsWith(yes.a) && p.choices[0].text.length > yes.a.length);
  // Misses: a recorded answer within the limit (stop), or one cut to it.
  for (let seed = 0; seed < 20; seed++) {
    const miss = await s.client.completions.create({
      model: "test-model",
      prompt: `never recorded ${seed}`,
      max_tokens: 12,
      seed,
    });
    const tokens = miss.usage!.completion_tokens;
    assert.ok(tokens <= 12);
    assert.equal(miss.choices[0].finish_reason, tokens === 12 ? "length" : "stop");
    const recorded = SOURCE.flatMap((c) => c.conversations.map((t) => t.value));
    assert.ok(
      recorded.some((a) => a.startsWith(miss.choices[0].text)),
      `a recorded answer: ${miss.choices[0].text}`,
    );
  }
  // A miss with ignore_eos: exactly max_tokens.
  const exact = await s.post("/v1/completions", {
    model: "test-model",
    prompt: "never recorded",
    max_tokens: 7,
    ignore_eos: true,
  });
  const e = await exact.json();
  assert.equal(e.usage.completion_tokens, 7);
  assert.equal(e.choices[0].finish_reason, "length");
  // The same seed, the same answer.
  const again = async () =>
    (await s.client.completions.create({
      model: "test-model",
      prompt: "never recorded",
      max_tokens: 12,
      seed: 42,
    })).choices[0].text;
  assert.equal(await again(), await again());
});

/** A dataset file in a temporary directory, made by `fill`. */
function tempDb(fill: (db: DatabaseSync) => void): string {
  const path = `${Deno.makeTempDirSync()}/ds.sqlite3`;
  const db = new DatabaseSync(path);
  fill(db);
  db.close();
  return path;
}

async function startError(args: string[]): Promise<string> {
  try {
    const s = await startSim(args);
    await s.close();
  } catch (e) {
    return (e as Error).message;
  }
  return "(started)";
}

Deno.test("dataset: start-up failures name the problem", async () => {
  const dir = Deno.makeTempDirSync();
  const cases: [string, string[], RegExp][] = [
    ["missing file", ["--dataset-path", `${dir}/nope.sqlite3`], /nope\.sqlite3/],
    ["url without path", ["--dataset-url", "http://127.0.0.1:1/x"], /dataset-path is required/],
    ["echo mode", ["--mode", "echo", "--dataset-path", SAMPLE], /cannot be defined in echo mode/],
    [
      "not SQLite",
      [
        "--dataset-path",
        (Deno.writeTextFileSync(`${dir}/t.txt`, "hello ".repeat(200)), `${dir}/t.txt`),
      ],
      /not a SQLite database/,
    ],
    [
      "no table",
      ["--dataset-path", tempDb((db) => db.exec("CREATE TABLE other (x INTEGER)"))],
      /no table `llmd`/,
    ],
    [
      "a column of the wrong type",
      [
        "--dataset-path",
        tempDb((db) =>
          db.exec(
            "CREATE TABLE llmd (id INTEGER PRIMARY KEY, prompt_hash TEXT, gen_tokens JSON, n_gen_tokens INTEGER)",
          )
        ),
      ],
      /column prompt_hash has incorrect type: expected BLOB, got TEXT/,
    ],
    [
      "a missing column",
      [
        "--dataset-path",
        tempDb((db) =>
          db.exec("CREATE TABLE llmd (id INTEGER PRIMARY KEY, prompt_hash BLOB, gen_tokens JSON)")
        ),
      ],
      /missing expected column in llmd table: n_gen_tokens/,
    ],
    [
      "an empty table",
      [
        "--dataset-path",
        tempDb((db) =>
          db.exec(
            "CREATE TABLE llmd (id INTEGER PRIMARY KEY, prompt_hash BLOB NOT NULL, gen_tokens JSON NOT NULL, n_gen_tokens INTEGER NOT NULL)",
          )
        ),
      ],
      /Dataset is empty/,
    ],
    ["another table name", ["--dataset-path", SAMPLE, "--dataset-table-name", "x"], /no table `x`/],
  ];
  for (const [what, args, re] of cases) {
    assert.match(await startError(args), re, what);
  }
  // The process: exit 1 and the message on stderr (the dataset tool's help: exit 0).
  const run = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "main.ts", ...args],
      cwd: new URL("../", import.meta.url).pathname,
      env: { HF_HUB_OFFLINE: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
  const runs: [string[], number, RegExp][] = [
    [
      ["--model", "m", "--dataset-path", `${dir}/nope.sqlite3`],
      1,
      /database file does not exist: .*nope\.sqlite3/,
    ],
    [["--model", "m", "--dataset-path", `${dir}/t.txt`], 1, /not a SQLite database/],
    [
      ["--model", "m", "--mode", "echo", "--dataset-path", SAMPLE],
      1,
      /cannot be defined in echo mode/,
    ],
    [["dataset-tool", "--help"], 0, /--input-file/],
    [["dataset-tool", "--model", "m"], 1, /--input-file is required/],
  ];
  const outs = await Promise.all(runs.map(([args]) => run(args)));
  runs.forEach(([args, code, re], i) => {
    const text = new TextDecoder().decode(outs[i].stderr) +
      new TextDecoder().decode(outs[i].stdout);
    assert.equal(outs[i].code, code, args.join(" "));
    assert.match(text, re, args.join(" "));
  });
});

Deno.test("dataset: a file another process holds locked: a warning and built-in answers", async () => {
  const copy = `${Deno.makeTempDirSync()}/locked.sqlite3`;
  Deno.copyFileSync(SAMPLE, copy);
  const holder = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { DatabaseSync } from "node:sqlite";
       const db = new DatabaseSync(${JSON.stringify(copy)});
       db.exec("BEGIN EXCLUSIVE");
       db.exec("DELETE FROM llmd WHERE id < 0");
       console.log("locked");
       await new Promise((r) => setTimeout(r, 60000));`,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const reader = holder.stdout.getReader();
    const { value } = await reader.read();
    assert.match(new TextDecoder().decode(value), /locked/);
    reader.releaseLock();
    await using s = await startSim(["--dataset-path", copy]);
    assert.equal(s.running.ranks[0].sim.dataset, null);
    const haiku = answerOf("haiku");
    const r = await s.client.chat.completions.create({
      model: "test-model",
      messages: [{ role: "user", content: haiku.q }],
    });
    assert.notEqual(r.choices[0].message.content, haiku.a, "built-in text, not the recording");
  } finally {
    holder.kill();
    await holder.stdout.cancel().catch(() => {});
    await holder.status;
  }
});

Deno.test("dataset: downloaded from --dataset-url when missing; failures leave no file", async () => {
  const bytes = Deno.readFileSync(SAMPLE);
  const port = freePort();
  const server = Deno.serve({ port, hostname: "127.0.0.1", onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/ok.sqlite3") return new Response(bytes);
    return new Response("no", { status: 404 });
  });
  // A raw server that claims the whole length, sends half and hangs up.
  const raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const rawUrl = `http://127.0.0.1:${(raw.addr as Deno.NetAddr).port}`;
  const serveHalf = (async () => {
    for await (const conn of raw) {
      await conn.read(new Uint8Array(4096));
      const head =
        `HTTP/1.1 200 OK\r\ncontent-length: ${bytes.length}\r\nconnection: close\r\n\r\n`;
      await conn.write(new TextEncoder().encode(head));
      await conn.write(bytes.slice(0, bytes.length >> 1));
      conn.close();
    }
  })().catch(() => {});
  try {
    const dir = Deno.makeTempDirSync();
    const url = `http://127.0.0.1:${port}`;
    // Complete: parent directories made, the recorded answers served.
    const target = `${dir}/a/b/ds.sqlite3`;
    {
      await using s = await startSim([
        "--dataset-path",
        target,
        "--dataset-url",
        `${url}/ok.sqlite3`,
      ]);
      const rice = answerOf("recipe");
      const r = await s.client.completions.create({ model: "test-model", prompt: rice.q });
      assert.equal(r.choices[0].text, rice.a);
      assert.deepEqual(Deno.readFileSync(target), bytes);
    }
    for (
      const [name, from, re] of [
        ["half", `${rawUrl}/half.sqlite3`, /failed/],
        ["missing", `${url}/missing.sqlite3`, /HTTP 404/],
      ] as const
    ) {
      const path = `${dir}/${name}/ds.sqlite3`;
      const msg = await startError(["--dataset-path", path, "--dataset-url", from]);
      assert.match(msg, re, name);
      let left: string[] = [];
      try {
        left = [...Deno.readDirSync(`${dir}/${name}`)].map((e) => e.name);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      assert.deepEqual(left, [], `${name}: nothing left behind`);
    }
  } finally {
    raw.close();
    await serveHalf;
    await server.shutdown();
  }
});

Deno.test("dataset tool: rows and hashes as the server computes them; refuses to overwrite", async () => {
  const out = Deno.makeTempDirSync();
  const args = [
    "--model",
    "test-model",
    "--local-path",
    FIXTURES,
    "--input-file",
    "conversations.json",
    "--output-path",
    out,
    "--output-file",
    "built",
    "--table-name",
    "convos",
    "--force-dummy-tokenizer",
  ];
  assert.equal(await runDatasetTool(args, {}, quiet), 0);
  const rows = JSON.parse(Deno.readTextFileSync(`${out}/built.json`));
  // Two rows per (human, gpt) turn; the haiku conversation stops at its out-of-order turn.
  const turns = SOURCE.reduce((n, c) => {
    let t = 0;
    for (let i = 0; i + 1 < c.conversations.length; i += 2) {
      if (c.conversations[i].from !== "human" || c.conversations[i + 1].from !== "gpt") break;
      t++;
    }
    return n + t;
  }, 0);
  assert.equal(rows.length, 2 * turns);
  // Each row's hash is what the server computes for that prompt (via /tokenize), by WebCrypto.
  await using s = await startSim();
  const tok = async (body: unknown) => (await (await s.post("/tokenize", body)).json()).tokens;
  const weather = SOURCE[0].conversations;
  const completionIds = await tok({ model: "test-model", prompt: weather[0].value });
  assert.equal(b64ToHex(rows[0].prompt_hash), await sha256Hex(completionIds));
  const chatIds = await tok({
    model: "test-model",
    messages: [
      { role: "user", content: weather[0].value },
      { role: "assistant", content: weather[1].value },
      { role: "user", content: weather[2].value },
    ],
  });
  assert.equal(
    b64ToHex(rows[3].prompt_hash),
    await sha256Hex(chatIds),
    "the second turn's chat row",
  );
  const gen = rows[0].gen_tokens;
  assert.equal(gen.Strings.join(""), weather[1].value);
  assert.equal(rows[0].n_gen_tokens, gen.Tokens.length);
  assert.deepEqual(gen.Tokens, await tok({ model: "test-model", prompt: weather[1].value }));
  // The SQLite file holds the same rows, in the named table, gen_tokens as bytes.
  const db = new DatabaseSync(`${out}/built.sqlite3`, { readOnly: true });
  const stored = db.prepare("SELECT prompt_hash, gen_tokens, n_gen_tokens FROM convos ORDER BY id")
    .all() as { prompt_hash: Uint8Array; gen_tokens: Uint8Array; n_gen_tokens: number }[];
  db.close();
  assert.equal(stored.length, rows.length);
  assert.equal(
    b64ToHex(btoa(String.fromCharCode(...stored[3].prompt_hash))),
    b64ToHex(rows[3].prompt_hash),
  );
  assert.deepEqual(JSON.parse(new TextDecoder().decode(stored[0].gen_tokens)), gen);
  assert.match(Deno.readTextFileSync(`${out}/built.md`), /convos/);
  // Existing outputs are never overwritten; --max-records bounds the conversations read.
  assert.equal(await runDatasetTool(args, {}, quiet), 1);
  const two = args.map((a) => a === "built" ? "few" : a).concat("--max-records", "2");
  assert.equal(await runDatasetTool(two, {}, quiet), 0);
  assert.equal(JSON.parse(Deno.readTextFileSync(`${out}/few.json`)).length, 2 * 2 + 2);
  // From a Hugging Face dataset repo (HF_ENDPOINT, HF_TOKEN as bearer).
  let auth: string | null = null;
  const hub = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    auth = req.headers.get("authorization");
    const ok = new URL(req.url).pathname === "/datasets/org/convos/resolve/main/conversations.json";
    return ok
      ? new Response(Deno.readFileSync(`${FIXTURES}conversations.json`))
      : new Response("no", { status: 404 });
  });
  try {
    const endpoint = `http://127.0.0.1:${hub.addr.port}`;
    const fromHub = [
      "--model",
      "m",
      "--hf-repo",
      "org/convos",
      "--input-file",
      "conversations.json",
    ];
    const env = { HF_ENDPOINT: endpoint, HF_TOKEN: "secret" };
    const outArgs = ["--output-path", out, "--output-file", "hub", "--force-dummy-tokenizer"];
    assert.equal(await runDatasetTool([...fromHub, ...outArgs], env, quiet), 0);
    assert.equal(auth, "Bearer secret");
    assert.equal(JSON.parse(Deno.readTextFileSync(`${out}/hub.json`)).length, rows.length);
    const missing = [...fromHub.slice(0, -1), "nope.json", ...outArgs.slice(0, 3), "hub2"];
    assert.equal(await runDatasetTool(missing, env, quiet), 1);
  } finally {
    await hub.shutdown();
  }
  // Bad invocations.
  assert.equal(await runDatasetTool(["--model", "m"], {}, quiet), 1);
  assert.equal(
    await runDatasetTool(
      ["--model", "m", "--input-file", "x.json", "--local-path", "/nonexistent"],
      {},
      quiet,
    ),
    1,
  );
});

Deno.test("dataset: generate returns the recorded token ids (then the padding's)", async () => {
  // A recording whose ids are not the built-in tokenizer's: only the dataset can give them.
  const prompt = [11, 12, 13];
  const bytes = new Uint8Array(prompt.length * 4);
  prompt.forEach((id, i) => new DataView(bytes.buffer).setUint32(i * 4, id, true));
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const path = tempDb((db) => {
    db.exec(
      "CREATE TABLE llmd (id INTEGER PRIMARY KEY, prompt_hash BLOB NOT NULL, gen_tokens JSON NOT NULL, n_gen_tokens INTEGER NOT NULL)",
    );
    // gen_tokens as TEXT with lower-case keys: readers accept both.
    db.prepare("INSERT INTO llmd (prompt_hash, gen_tokens, n_gen_tokens) VALUES (?, ?, 3)").run(
      hash,
      JSON.stringify({ tokens: [101, 102, 103], strings: ["a ", "b ", "c"] }),
    );
  });
  await using s = await startSim(["--dataset-path", path]);
  const gen = (extra: Record<string, unknown>) =>
    s.post("/inference/v1/generate", {
      token_ids: prompt,
      sampling_params: { max_tokens: 5 },
      ...extra,
    });
  const whole = await (await gen({})).json();
  assert.deepEqual(whole.choices[0].token_ids, [101, 102, 103]);
  assert.equal(whole.choices[0].finish_reason, "stop");
  const frames = (await (await gen({ stream: true })).text()).split("\n\n")
    .filter((f) => f.startsWith("data: {"))
    .map((f) => JSON.parse(f.slice(6)));
  assert.deepEqual(frames.flatMap((f) => f.choices[0]?.token_ids ?? []), [101, 102, 103]);
  // ignore_eos: padded to max_tokens; the padding's ids follow the recorded ones.
  const padded = await (await gen({ ignore_eos: true })).json();
  assert.equal(padded.choices[0].token_ids.length, 5);
  assert.deepEqual(padded.choices[0].token_ids.slice(0, 3), [101, 102, 103]);
  assert.equal(padded.choices[0].finish_reason, "length");
  // The same recording as text on completions (token-id prompt).
  const text = await s.client.completions.create({ model: "test-model", prompt });
  assert.equal(text.choices[0].text, "a b c");
});

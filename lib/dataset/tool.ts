/**
 * `vllm-sim dataset-tool` (datasets.md, "The dataset tool"): a ShareGPT-style
 * JSON file of conversations becomes a dataset: for each (human, gpt) turn a
 * completions row (the human text's ids) and a chat row (the conversation so
 * far, rendered as the server renders a chat request), both answering with
 * the gpt text's tokens. It tokenizes with the server's own tokenizer
 * selection, so a dataset built with the same options matches the server's
 * prompt hashes; the reference needs a running render sidecar for this.
 */
import { DatabaseSync } from "node:sqlite";
import { type ChatMessage, chatPrompt, textMessage } from "../chat.ts";
import { loadConfig } from "../config.ts";
import { Logger } from "../log.ts";
import type { Tokenizer } from "../tokenizer.ts";
import { flattenMessages } from "../tokenizer/builtin.ts";
import { selectTokenizer } from "../tokenizer/select.ts";
import { createTableSql, quoteId } from "./dataset.ts";
import { promptHash } from "./hash.ts";

/** A bad invocation or input: printed, exit 1. */
export class ToolError extends Error {}

interface ToolFlags {
  model: string;
  "hf-repo": string;
  "local-path": string;
  "input-file": string;
  "output-path": string;
  "output-file": string;
  "table-name": string;
  "max-records": string;
  "render-url": string;
  "render-timeout": string;
  "mm-render-timeout": string;
  tokenizer: string;
  revision: string;
  "tokenizers-cache-dir": string;
  "force-dummy-tokenizer": string;
}

const DEFAULTS: ToolFlags = {
  model: "",
  "hf-repo": "",
  "local-path": "",
  "input-file": "",
  "output-path": ".",
  "output-file": "inference-sim-dataset",
  "table-name": "llmd",
  "max-records": "10000",
  "render-url": "",
  "render-timeout": "5s",
  "mm-render-timeout": "30s",
  tokenizer: "",
  revision: "main",
  "tokenizers-cache-dir": "",
  "force-dummy-tokenizer": "",
};

export const TOOL_HELP = `vllm-sim dataset-tool: builds a dataset from a ShareGPT-style JSON file

  --model M               model whose tokenizer is used (required)
  --local-path DIR        directory holding --input-file
  --hf-repo ORG/NAME      Hugging Face dataset repo to download --input-file from (HF_TOKEN)
  --input-file NAME       input file name, with extension (required)
  --output-path DIR       output directory (default: the current directory)
  --output-file NAME      output name without extension (default: inference-sim-dataset)
  --table-name NAME       table to create (default: llmd)
  --max-records N         source conversations to read (default: 10000)
  --tokenizer, --revision, --tokenizers-cache-dir, --force-dummy-tokenizer, --render-url,
  --render-timeout, --mm-render-timeout: the tokenizer, chosen as the server chooses it

Writes <output-file>.sqlite3, .json and .md; refuses to overwrite them.`;

function parseFlags(args: string[]): ToolFlags {
  const flags = { ...DEFAULTS };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("--")) throw new ToolError(`unexpected argument ${a}`);
    let name = a.slice(2);
    let value: string | undefined;
    const eq = name.indexOf("=");
    if (eq >= 0) [name, value] = [name.slice(0, eq), name.slice(eq + 1)];
    if (!(name in DEFAULTS)) throw new ToolError(`unknown flag --${name}`);
    if (value === undefined) {
      if (name === "force-dummy-tokenizer") value = "true";
      else {
        value = args[++i];
        if (value === undefined) throw new ToolError(`--${name} needs a value`);
      }
    }
    flags[name as keyof ToolFlags] = value;
  }
  if (flags.model === "") throw new ToolError("--model is required");
  if (flags["input-file"] === "") throw new ToolError("--input-file is required");
  if ((flags["hf-repo"] === "") === (flags["local-path"] === "")) {
    throw new ToolError("exactly one of --hf-repo and --local-path is required");
  }
  const max = Number(flags["max-records"]);
  if (!Number.isSafeInteger(max) || max < 1) {
    throw new ToolError(`--max-records must be a positive integer, got ${flags["max-records"]}`);
  }
  return flags;
}

/** One source conversation. */
interface SourceRecord {
  id?: unknown;
  conversations?: unknown;
}

/** A row of the dataset, as written to the .json file. */
export interface OutputRecord {
  prompt_hash: string;
  n_gen_tokens: number;
  gen_tokens: { Tokens: number[]; Strings: string[] };
  input_text: string;
  generated: string;
}

/** Runs the tool; returns the process's exit code. */
export async function runDatasetTool(
  args: string[],
  env: Record<string, string | undefined>,
  log = new Logger("info"),
): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(TOOL_HELP);
    return 0;
  }
  let flags: ToolFlags;
  try {
    flags = parseFlags(args);
    const out = `${flags["output-path"].replace(/\/+$/, "") || "."}/${flags["output-file"]}`;
    const files = { db: `${out}.sqlite3`, json: `${out}.json`, card: `${out}.md` };
    for (const f of Object.values(files)) {
      if (exists(f)) throw new ToolError(`output file already exists: ${f}`);
    }
    const source = await readSource(flags, env);
    const tokenizer = await toolTokenizer(flags, env, log);
    const chosen = source.slice(0, Number(flags["max-records"]));
    const records = toRecords(chosen, tokenizer, await recordProgress(chosen.length, log));
    await Deno.mkdir(flags["output-path"], { recursive: true });
    writeSqlite(files.db, flags["table-name"], records);
    await Deno.writeTextFile(files.json, JSON.stringify(records, null, 2));
    await Deno.writeTextFile(files.card, card(flags, records.length, source.length));
    log.info("dataset written", { rows: records.length, ...files });
    return 0;
  } catch (e) {
    if (e instanceof ToolError) {
      console.error(`vllm-sim dataset-tool: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The source conversations, from the local directory or the Hugging Face dataset repo. */
async function readSource(
  flags: ToolFlags,
  env: Record<string, string | undefined>,
): Promise<SourceRecord[]> {
  let text: string;
  if (flags["local-path"] !== "") {
    const path = `${flags["local-path"].replace(/\/+$/, "")}/${flags["input-file"]}`;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      throw new ToolError(`failed to read file ${path}: ${(e as Error).message}`);
    }
  } else {
    const endpoint = (env.HF_ENDPOINT || "https://huggingface.co").replace(/\/+$/, "");
    const url = `${endpoint}/datasets/${flags["hf-repo"]}/resolve/main/${flags["input-file"]}`;
    const headers: Record<string, string> = {};
    if (env.HF_TOKEN) headers.authorization = `Bearer ${env.HF_TOKEN}`;
    let res: Response;
    try {
      res = await fetch(url, { headers });
    } catch (e) {
      throw new ToolError(`download of ${url} failed: ${(e as Error).message}`);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new ToolError(`download of ${url} failed: HTTP ${res.status}`);
    }
    text = await res.text();
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ToolError(`unmarshal: ${(e as Error).message}`);
  }
  if (!Array.isArray(json)) throw new ToolError("unmarshal: the input is not a JSON array");
  return json as SourceRecord[];
}

/** The server's tokenizer selection, from the tool's flags. */
async function toolTokenizer(
  flags: ToolFlags,
  env: Record<string, string | undefined>,
  log: Logger,
): Promise<Tokenizer> {
  const argv = ["--model", flags.model, "--revision", flags.revision];
  for (const k of ["tokenizer", "tokenizers-cache-dir", "render-url"] as const) {
    if (flags[k] !== "") argv.push(`--${k}`, flags[k]);
  }
  argv.push("--render-timeout", flags["render-timeout"]);
  argv.push("--mm-render-timeout", flags["mm-render-timeout"]);
  if (flags["force-dummy-tokenizer"] === "true") argv.push("--force-dummy-tokenizer");
  try {
    const choice = await selectTokenizer(loadConfig(argv, env), env, log);
    return choice.create();
  } catch (e) {
    throw new ToolError(`tokenizer: ${(e as Error).message}`);
  }
}

const SYNC = "the dataset tool needs a tokenizer that answers at once";

function sync<T>(v: T | Promise<T>): T {
  if (v instanceof Promise) throw new ToolError(SYNC);
  return v;
}

/**
 * Two rows per (human, gpt) turn, reading each conversation until a turn
 * with an unexpected role.
 */
export function toRecords(
  source: readonly SourceRecord[],
  tokenizer: Tokenizer,
  progress: RecordProgress = { tick() {}, done() {} },
): OutputRecord[] {
  const out: OutputRecord[] = [];
  for (const rec of source) {
    progress.tick();
    const turns = Array.isArray(rec?.conversations) ? rec.conversations : [];
    const messages: ChatMessage[] = [];
    for (let i = 0; i + 1 < turns.length; i += 2) {
      const [q, a] = [turns[i], turns[i + 1]];
      if (q?.from !== "human" || a?.from !== "gpt") break;
      if (typeof q.value !== "string" || typeof a.value !== "string") break;
      messages.push(textMessage("user", q.value));
      const answer = answerTokens(a.value, tokenizer);
      const completion = sync(tokenizer.encode(q.value, true)).ids;
      out.push(row(completion, q.value, a.value, answer));
      const chat = sync(chatPrompt(messages, tokenizer, undefined, {}, true)).promptIds!;
      out.push(row(chat, flattenMessages(messages), a.value, answer));
      messages.push(textMessage("assistant", a.value));
    }
  }
  progress.done();
  return out;
}

/** The answer's ids and their strings (the output pieces the server streams). */
function answerTokens(text: string, tokenizer: Tokenizer): { Tokens: number[]; Strings: string[] } {
  const enc = sync(tokenizer.encode(text, false));
  let strings = tokenizer.pieces(text);
  if (strings.length !== enc.ids.length) strings = tokenizer.tokenStrings(enc);
  return { Tokens: [...enc.ids], Strings: strings };
}

function row(
  ids: readonly number[],
  input: string,
  generated: string,
  gen: { Tokens: number[]; Strings: string[] },
): OutputRecord {
  return {
    prompt_hash: btoa(String.fromCharCode(...promptHash(ids))),
    n_gen_tokens: gen.Tokens.length,
    gen_tokens: gen,
    input_text: input,
    generated,
  };
}

/** The rows in the format the server reads (gen_tokens as the JSON's UTF-8 bytes, as the reference stores it). */
function writeSqlite(path: string, table: string, records: readonly OutputRecord[]): void {
  const db = new DatabaseSync(path);
  try {
    db.exec(createTableSql(table));
    const insert = db.prepare(
      `INSERT INTO ${quoteId(table)} (prompt_hash, gen_tokens, n_gen_tokens) VALUES (?, ?, ?)`,
    );
    const utf8 = new TextEncoder();
    db.exec("BEGIN");
    for (const r of records) {
      const hash = Uint8Array.from(atob(r.prompt_hash), (c) => c.charCodeAt(0));
      insert.run(hash, utf8.encode(JSON.stringify(r.gen_tokens)), r.n_gen_tokens);
    }
    db.exec("COMMIT");
  } catch (e) {
    db.close();
    Deno.removeSync(path);
    throw e;
  }
  db.close();
}

function card(flags: ToolFlags, rows: number, conversations: number): string {
  const source = flags["hf-repo"] !== ""
    ? `Hugging Face dataset ${flags["hf-repo"]}, file ${flags["input-file"]}`
    : `local file ${flags["input-file"]}`;
  return `# Dataset Card

## Overview

Recorded conversations in the tokenized form vllm-sim (and llm-d-inference-sim) answer from.

## Tokenization Model
${flags.model}${flags.tokenizer ? ` (tokenizer ${flags.tokenizer})` : ""}

## Source Dataset
${source}: ${
    Math.min(conversations, Number(flags["max-records"]))
  } conversations read, ${rows} rows.

## SQLite Database Schema

Table \`${flags["table-name"]}\`:

| Column | Data Type | Description |
| :--- | :--- | :--- |
| \`id\` | INTEGER PRIMARY KEY | row id |
| \`prompt_hash\` | BLOB NOT NULL | SHA-256 of the prompt's token ids (4-byte little-endian each) |
| \`gen_tokens\` | JSON NOT NULL | \`{"Tokens": [ids], "Strings": [token strings]}\` |
| \`n_gen_tokens\` | INTEGER NOT NULL | number of answer tokens |
`;
}

/** Progress over the source records. */
export interface RecordProgress {
  tick(): void;
  done(): void;
}

/** A bar on a terminal (cli-progress, loaded only then); otherwise a log line per 10%. */
async function recordProgress(total: number, log: Logger): Promise<RecordProgress> {
  if (Deno.stderr.isTerminal()) {
    const { default: cliProgress } = await import("cli-progress");
    const { default: process } = await import("node:process");
    const bar = new cliProgress.SingleBar({
      format: "converting [{bar}] {percentage}% {value}/{total} conversations",
      stream: process.stderr,
    }, cliProgress.Presets.shades_classic);
    bar.start(total, 0);
    let n = 0;
    return { tick: () => bar.update(++n), done: () => bar.stop() };
  }
  let n = 0;
  let next = 0.1;
  return {
    tick() {
      n++;
      if (total > 0 && n / total >= next) {
        log.info("converting", { records: n, of: total });
        next += 0.1;
      }
    },
    done: () => log.info("converted", { records: n }),
  };
}

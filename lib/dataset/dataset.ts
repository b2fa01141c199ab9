/**
 * Answers from a SQLite file of recorded conversations (datasets.md): the
 * reference's file format, looked up by the SHA-256 of the prompt's token
 * ids, rows chosen by the spec's rules with the simulator's seeded
 * generator. At open the prompt hashes and answer lengths are read once into
 * memory, so a request costs two map or binary-search lookups and one
 * primary-key read: nothing scans the table on the request path.
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { Rng } from "../rng.ts";

/** What a dataset file is checked against: its columns' declared types (PRAGMA table_info). */
export const COLUMNS = {
  id: "INTEGER",
  prompt_hash: "BLOB",
  gen_tokens: "JSON",
  n_gen_tokens: "INTEGER",
} as const;

/** The table the dataset tool creates. */
export function createTableSql(table: string): string {
  return `CREATE TABLE IF NOT EXISTS ${quoteId(table)} (id INTEGER PRIMARY KEY, ` +
    `prompt_hash BLOB NOT NULL, gen_tokens JSON NOT NULL, n_gen_tokens INTEGER NOT NULL)`;
}

/** A table name as an SQL identifier. */
export function quoteId(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Tokens of recently read answers kept parsed (about 20 MB of strings at most). */
const CACHED_TOKENS = 1 << 20;

/** A file that is not a dataset: the message names the problem. */
export class DatasetError extends Error {}
/** Another connection holds the file locked (a writer, or the reference's exclusive lock). */
export class DatasetLocked extends Error {}

/** One recorded answer: token ids and their strings, the same length. */
export interface RecordedAnswer {
  ids: number[];
  strings: string[];
}

/** An answer for a request: a recorded one cut to the limit, and how many tokens to pad. */
export interface DatasetPick {
  answer: RecordedAnswer;
  /** Built-in tokens to append (ignore_eos with a shorter answer). */
  pad: number;
}

export class Dataset {
  readonly #db: DatabaseSync;
  readonly #read: StatementSync;
  /** Prompt hash (32 bytes as a latin-1 string) → [rowid, length, rowid, length, …]. */
  readonly #byHash = new Map<string, number[]>();
  /** Every row's answer length, ascending, and its rowid at the same index. */
  readonly #lengths: Float64Array;
  readonly #rowids: Float64Array;
  /** Recently read answers by rowid, oldest first. */
  readonly #recent = new Map<number, RecordedAnswer>();
  #recentTokens = 0;

  private constructor(db: DatabaseSync, table: string) {
    this.#db = db;
    const t = quoteId(table);
    const rows: [number, number][] = [];
    const scan = db.prepare(`SELECT rowid AS r, prompt_hash AS h, n_gen_tokens AS n FROM ${t}`);
    for (const row of scan.iterate()) {
      const { r, h, n } = row as { r: number; h: unknown; n: unknown };
      const len = typeof n === "number" && n >= 0 ? n : 0;
      rows.push([len, r]);
      if (!(h instanceof Uint8Array)) continue;
      const key = hashKey(h);
      const bucket = this.#byHash.get(key);
      if (bucket) bucket.push(r, len);
      else this.#byHash.set(key, [r, len]);
    }
    rows.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    this.#lengths = Float64Array.from(rows, (x) => x[0]);
    this.#rowids = Float64Array.from(rows, (x) => x[1]);
    this.#read = db.prepare(`SELECT gen_tokens AS g FROM ${t} WHERE rowid = ?`);
  }

  /**
   * Opens `path` read-only and checks it (in memory: a copy of the table).
   * Throws DatasetError for a file that is not a dataset (or an empty one),
   * DatasetLocked when another connection holds it.
   */
  static open(path: string, table: string, inMemory: boolean): Dataset {
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path, { readOnly: true });
      // A lock fails at once: a read waiting on it would stall every request.
      db.exec("PRAGMA busy_timeout = 0");
    } catch (e) {
      throw classify(e, path);
    }
    try {
      checkSchema(db, table, path);
      if (inMemory) {
        const mem = new DatabaseSync(":memory:");
        try {
          mem.exec(`ATTACH DATABASE ${sqlString(path)} AS source`);
          mem.exec(createTableSql(table));
          mem.exec(`INSERT INTO main.${quoteId(table)} SELECT * FROM source.${quoteId(table)}`);
          mem.exec("DETACH DATABASE source");
          mem.exec(`CREATE INDEX IF NOT EXISTS prompt_hash_idx ON ${quoteId(table)} (prompt_hash)`);
        } catch (e) {
          mem.close();
          throw classify(e, path);
        }
        db.close();
        db = mem;
      }
      const ds = new Dataset(db, table);
      if (ds.size === 0) throw new DatasetError("Dataset is empty");
      return ds;
    } catch (e) {
      if (db.isOpen) db.close();
      throw e instanceof DatasetError || e instanceof DatasetLocked ? e : classify(e, path);
    }
  }

  get size(): number {
    return this.#lengths.length;
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }

  /**
   * The answer for a prompt (datasets.md, "Selection"): `max` is the
   * request's token limit. Null only when the chosen row is unreadable.
   */
  pick(hash: Uint8Array, max: number, ignoreEos: boolean, rng: Rng): DatasetPick | null {
    const bucket = this.#byHash.get(hashKey(hash));
    let rowid: number;
    if (bucket) {
      // Which rows qualify (spec table), counted first so nothing is allocated.
      let exact = 0, fits = 0;
      for (let i = 1; i < bucket.length; i += 2) {
        if (bucket[i] === max) exact++;
        if (bucket[i] <= max) fits++;
      }
      const longer = bucket.length / 2 - fits;
      const want: (n: number) => boolean = ignoreEos
        ? (exact ? (n) => n === max : longer ? (n) => n > max : (n) => n <= max)
        : (fits ? (n) => n <= max : (n) => n > max);
      const count = ignoreEos ? (exact || longer || fits) : (fits || longer);
      let k = rng.pickIndex(count);
      rowid = bucket[0];
      for (let i = 0; i < bucket.length; i += 2) {
        if (want(bucket[i + 1]) && k-- === 0) {
          rowid = bucket[i];
          break;
        }
      }
    } else {
      // Rows of at most `max` tokens (exactly `max` with ignore_eos), else any row.
      const hi = upperBound(this.#lengths, max);
      const lo = ignoreEos ? lowerBound(this.#lengths, max) : 0;
      rowid = this.#rowids[hi > lo ? lo + rng.pickIndex(hi - lo) : rng.pickIndex(this.size)];
    }
    let answer = this.#cached(rowid);
    if (answer === null) return null;
    // Cut to the limit on a copy: the cached answer stays whole.
    if (answer.ids.length > max) {
      answer = { ids: answer.ids.slice(0, max), strings: answer.strings.slice(0, max) };
    }
    return { answer, pad: ignoreEos ? max - answer.ids.length : 0 };
  }

  /**
   * Row `rowid`'s answer, from the cache of recently read ones (a read and
   * parse costs ~12 µs through node:sqlite; repeated prompts are common).
   * The oldest read is dropped first.
   */
  #cached(rowid: number): RecordedAnswer | null {
    // First in, first out: a hit costs one lookup, no reordering.
    const hit = this.#recent.get(rowid);
    if (hit !== undefined) return hit;
    const answer = this.#answer(rowid);
    if (answer === null) return null;
    this.#recentTokens += answer.ids.length;
    this.#recent.set(rowid, answer);
    while (this.#recentTokens > CACHED_TOKENS && this.#recent.size > 1) {
      const [oldest, a] = this.#recent.entries().next().value!;
      this.#recent.delete(oldest);
      this.#recentTokens -= a.ids.length;
    }
    return answer;
  }

  /** Row `rowid`'s gen_tokens: `{"Tokens":[…],"Strings":[…]}`, keys in any case, TEXT or BLOB. */
  #answer(rowid: number): RecordedAnswer | null {
    let row: { g: unknown } | undefined;
    try {
      row = this.#read.get(rowid) as { g: unknown } | undefined;
    } catch {
      return null; // locked by a writer since: this answer is built-in text
    }
    if (row === undefined) return null;
    const raw = row.g instanceof Uint8Array ? new TextDecoder().decode(row.g) : row.g;
    if (typeof raw !== "string") return null;
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      return null;
    }
    if (typeof json !== "object" || json === null) return null;
    let ids: unknown, strings: unknown;
    for (const [k, v] of Object.entries(json)) {
      const key = k.toLowerCase();
      if (key === "tokens") ids = v;
      else if (key === "strings") strings = v;
    }
    if (!Array.isArray(ids) || !Array.isArray(strings)) return null;
    const n = Math.min(ids.length, strings.length);
    const out: RecordedAnswer = { ids: [], strings: [] };
    for (let i = 0; i < n; i++) {
      const id = ids[i], s = strings[i];
      if (typeof id !== "number" || typeof s !== "string") return null;
      out.ids.push(id);
      out.strings.push(s);
    }
    return out;
  }
}

/** The table and its columns, with the declared types the format fixes. */
function checkSchema(db: DatabaseSync, table: string, path: string): void {
  const cols = db.prepare(`PRAGMA table_info(${quoteId(table)})`).all() as {
    name: string;
    type: string;
  }[];
  if (cols.length === 0) {
    throw new DatasetError(`${path}: no table \`${table}\` (--dataset-table-name)`);
  }
  const found = new Map(cols.map((c) => [c.name, c.type]));
  for (const [name, type] of Object.entries(COLUMNS)) {
    const got = found.get(name);
    if (got === undefined) {
      throw new DatasetError(`${path}: missing expected column in ${table} table: ${name}`);
    }
    if (got !== type) {
      throw new DatasetError(
        `${path}: column ${name} has incorrect type: expected ${type}, got ${got || "(none)"}`,
      );
    }
  }
}

/** SQLite's errors at open as the start-up's words. */
function classify(e: unknown, path: string): Error {
  const msg = (e as Error).message ?? String(e);
  if (/locked|busy/i.test(msg)) return new DatasetLocked(`${path}: ${msg}`);
  if (/not a database|file is encrypted|malformed/i.test(msg)) {
    return new DatasetError(`${path} is not a SQLite database (${msg})`);
  }
  return new DatasetError(`${path}: ${msg}`);
}

function sqlString(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/** 32 bytes as a short latin-1 string: a compact map key. */
function hashKey(h: Uint8Array): string {
  return String.fromCharCode.apply(null, Array.from(h));
}

/** First index whose value is ≥ x. */
function lowerBound(a: Float64Array, x: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index whose value is > x. */
function upperBound(a: Float64Array, x: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

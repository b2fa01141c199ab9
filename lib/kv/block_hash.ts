/**
 * Block hashes of a prompt (kv-cache.md, "Block hashing"): only full blocks
 * of `block-size` tokens, each hash chained on its parent's.
 *
 * - `fnv64a-cbor` (default, the reference's, from llm-d's ChunkedTokenDatabase):
 *   FNV-1a 64 of canonical CBOR `[parent, tokens, extra]`, the chain rooted at
 *   FNV-1a 64 of CBOR `[FNV-1a 64(seed), null, model]`.
 * - `sha256_cbor` (current vLLM): SHA-256 of CBOR `[parent digest, tokens,
 *   extra_keys]` from NONE_HASH = SHA-256(CBOR(seed)); events carry the
 *   digest's last 8 bytes as a uint64.
 */
import { createHash } from "node:crypto";
import { CborWriter } from "./cbor.ts";

export type HashAlgo = "fnv64a-cbor" | "sha256_cbor";
export const HASH_ALGOS: readonly HashAlgo[] = ["fnv64a-cbor", "sha256_cbor"];

/** A multimodal item's placeholder in the prompt and its identifier. */
export interface MmItem {
  offset: number;
  length: number;
  hash: string;
}

/** What besides the tokens enters a block's hash. */
export interface BlockExtras {
  /** The LoRA adapter's name (sha256_cbor only: fnv64a-cbor roots the chain at the model). */
  lora?: string;
  /** Multimodal items, by placeholder offset. */
  mm?: readonly MmItem[];
  /** The request's cache_salt (sha256_cbor, first block only). */
  cacheSalt?: string;
}

/**
 * One block: the cache key and the value events carry. The key is a short
 * string of the hash's 16-bit units (cheap to make and to look up); the
 * BigInt the wire needs is made only for an event.
 */
export class BlockHash {
  constructor(
    /** Unique per block content and chain (with the model, the cache key). */
    readonly key: string,
    /** The uint64 on the wire, as 32-bit halves. */
    readonly hi: number,
    readonly lo: number,
  ) {}

  /** The uint64 on the wire. */
  get wire(): bigint {
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }
}

/** The key of a 64-bit value: its four 16-bit units as a string. */
function key64(hi: number, lo: number): string {
  return String.fromCharCode(hi >>> 16, hi & 0xffff, lo >>> 16, lo & 0xffff);
}

const FNV64_OFFSET_HI = 0xcbf29ce4;
const FNV64_OFFSET_LO = 0x84222325;

/** FNV-1a 64 of `bytes`, as [hi, lo] 32-bit halves (no BigInt on the way). */
export function fnv1a64(bytes: Uint8Array, out: [number, number] = [0, 0]): [number, number] {
  let hi = FNV64_OFFSET_HI;
  let lo = FNV64_OFFSET_LO;
  for (let i = 0; i < bytes.length; i++) {
    lo = (lo ^ bytes[i]) >>> 0;
    // (hi, lo) × 0x100000001b3 mod 2^64: lo·0x1b3 + ((hi·0x1b3 + lo·0x100) << 32).
    const low = lo * 0x1b3;
    const carry = (low / 0x100000000) >>> 0; // low < 2^41: the quotient's integer part
    hi = (Math.imul(hi, 0x1b3) + ((lo << 8) >>> 0) + carry) >>> 0;
    lo = low >>> 0;
  }
  out[0] = hi;
  out[1] = lo;
  return out;
}

/** The items overlapping [start, end), by offset: a block's multimodal identifiers. */
function overlapping(mm: readonly MmItem[] | undefined, start: number, end: number): string[] {
  if (!mm || mm.length === 0) return [];
  const out: string[] = [];
  for (const it of mm) if (it.offset + it.length > start && it.offset < end) out.push(it.hash);
  return out;
}

export class BlockHasher {
  readonly #w = new CborWriter();
  readonly #roots = new Map<string, [number, number]>();
  readonly #seedHash: [number, number];
  readonly #noneHash: Uint8Array;

  constructor(readonly algo: HashAlgo, private readonly seed: string) {
    this.#seedHash = fnv1a64(new TextEncoder().encode(seed));
    this.#noneHash = sha256(this.#w.reset().text(seed).bytes());
  }

  /** The chain's root for `model` (fnv64a-cbor). */
  root(model: string): [number, number] {
    let r = this.#roots.get(model);
    if (r === undefined) {
      const [hi, lo] = this.#seedHash;
      r = fnv1a64(this.#w.reset().array(3).uint64(hi, lo).null().text(model).bytes());
      // Models are the served names and adapters: a small set, but bounded anyway.
      if (this.#roots.size > 4096) this.#roots.clear();
      this.#roots.set(model, r);
    }
    return r;
  }

  /** SHA-256(CBOR(seed)): sha256_cbor's parent of the first block. */
  get noneHash(): Uint8Array {
    return this.#noneHash;
  }

  /** The hashes of the full blocks of `tokens`. */
  hashes(
    tokens: readonly number[],
    blockSize: number,
    model: string,
    extras: BlockExtras = {},
  ): BlockHash[] {
    const blocks = Math.floor(tokens.length / blockSize);
    return this.algo === "fnv64a-cbor"
      ? this.#fnv(tokens, blockSize, blocks, model, extras)
      : this.#sha(tokens, blockSize, blocks, extras);
  }

  #tokens(tokens: readonly number[], start: number, blockSize: number): void {
    this.#w.array(blockSize);
    for (let t = start; t < start + blockSize; t++) this.#w.uint(tokens[t]);
  }

  #fnv(
    tokens: readonly number[],
    blockSize: number,
    blocks: number,
    model: string,
    extras: BlockExtras,
  ): BlockHash[] {
    const out: BlockHash[] = new Array(blocks);
    let [hi, lo] = this.root(model);
    const h: [number, number] = [0, 0];
    for (let b = 0; b < blocks; b++) {
      const start = b * blockSize;
      const w = this.#w.reset().array(3).uint64(hi, lo);
      this.#tokens(tokens, start, blockSize);
      const ids = overlapping(extras.mm, start, start + blockSize);
      if (ids.length === 0) w.null();
      else {
        w.array(ids.length);
        for (const id of ids) w.map(1).text("Hash").text(id);
      }
      fnv1a64(w.bytes(), h);
      [hi, lo] = h;
      out[b] = new BlockHash(key64(hi, lo), hi, lo);
    }
    return out;
  }

  #sha(
    tokens: readonly number[],
    blockSize: number,
    blocks: number,
    extras: BlockExtras,
  ): BlockHash[] {
    const out: BlockHash[] = new Array(blocks);
    let parent = this.#noneHash;
    for (let b = 0; b < blocks; b++) {
      const start = b * blockSize;
      const w = this.#w.reset().array(3).bytesOf(parent);
      this.#tokens(tokens, start, blockSize);
      const keys: string[] = [];
      if (extras.lora) keys.push(extras.lora);
      keys.push(...overlapping(extras.mm, start, start + blockSize));
      if (b === 0 && extras.cacheSalt) keys.push(extras.cacheSalt);
      if (keys.length === 0) w.null();
      else {
        w.array(keys.length);
        for (const k of keys) w.text(k);
      }
      parent = sha256(w.bytes());
      const view = new DataView(parent.buffer, parent.byteOffset, parent.byteLength);
      // The full digest is the key; events carry its last 8 bytes.
      let key = "";
      for (let i = 0; i < 32; i += 2) key += String.fromCharCode(view.getUint16(i));
      out[b] = new BlockHash(key, view.getUint32(24), view.getUint32(28));
    }
    return out;
  }
}

function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

export function hex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

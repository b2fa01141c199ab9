/**
 * Fast seeded pseudo-random number generator (xoshiro128**), seeded through
 * splitmix64 from a 64-bit seed.
 *
 * The seed may be a `number` (including values above 2^53, such as a start time
 * in nanoseconds; non-integers are truncated, non-finite values become 0) or a
 * `bigint` (reduced modulo 2^64). BigInt arithmetic is used only once, while
 * seeding; every draw afterwards is plain 32-bit integer arithmetic.
 */

const MASK64 = (1n << 64n) - 1n;
const GOLDEN64 = 0x9e3779b97f4a7c15n;
const INV_2_32 = 1 / 4294967296;

/** Converts a seed to an unsigned 64-bit BigInt without losing precision. */
function seedToBigInt(seed: number | bigint): bigint {
  if (typeof seed === "bigint") return BigInt.asUintN(64, seed);
  if (!Number.isFinite(seed)) return 0n;
  // Every double above 2^53 is an integer, so BigInt() is exact there.
  return BigInt.asUintN(64, BigInt(Math.trunc(seed)));
}

/** splitmix64 step on BigInt state; returns [newState, output]. */
function splitmix64(state: bigint): [bigint, bigint] {
  const s = (state + GOLDEN64) & MASK64;
  let z = s;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  z = z ^ (z >> 31n);
  return [s, z];
}

/** The four 32-bit state words for a seed (splitmix64, twice). */
function seedState(seed: number | bigint): readonly [number, number, number, number] {
  let s = seedToBigInt(seed);
  let out: bigint;
  [s, out] = splitmix64(s);
  const a = Number(out & 0xffffffffn);
  const b = Number(out >> 32n);
  [s, out] = splitmix64(s);
  return [a, b, Number(out & 0xffffffffn), Number(out >> 32n)];
}

const ZERO_SEED_STATE = seedState(0);

/**
 * A seed for a sub-stream of `seed` named by `salt` and `index` (e.g. the
 * engine id of data-parallel rank r): distinct for every index, since
 * GOLDEN64 is odd, and exact for seeds past 2^53, where `seed + index` as a
 * double would lose the index.
 */
export function derivedSeed(seed: number | bigint, salt: number, index: number): bigint {
  const base = seedToBigInt(seed) ^ (BigInt(salt >>> 0) << 32n);
  return (base + BigInt(index) * GOLDEN64) & MASK64;
}

/** 32-bit finaliser (murmur3 fmix32 variant) used to derive forked streams. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Deterministic seeded PRNG. Not cryptographically secure. */
export class Rng {
  #a = 0;
  #b = 0;
  #c = 0;
  #d = 0;

  constructor(seed: number | bigint) {
    // fork() builds every request's stream from seed 0: skip the BigInt work.
    const state = seed === 0 ? ZERO_SEED_STATE : seedState(seed);
    this.#a = state[0];
    this.#b = state[1];
    this.#c = state[2];
    this.#d = state[3];
    this.#fixZero();
  }

  #fixZero(): void {
    if ((this.#a | this.#b | this.#c | this.#d) === 0) this.#a = 0x9e3779b9;
  }

  /** Next raw unsigned 32-bit value. */
  nextU32(): number {
    const a = this.#a;
    const b = this.#b;
    let c = this.#c;
    let d = this.#d;
    const x = Math.imul(b, 5);
    const result = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    this.#b = b ^ c;
    this.#a = a ^ d;
    this.#c = c ^ t;
    this.#d = (d << 11) | (d >>> 21);
    return result;
  }

  /** Uniform float in [0, 1) with 32 bits of resolution. */
  next(): number {
    return this.nextU32() * INV_2_32;
  }

  /** Uniform integer in [lo, hi] (both inclusive). Returns lo when hi < lo. */
  int(lo: number, hi: number): number {
    if (hi <= lo) return lo;
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** Normal draw (Box–Muller; consumes two 32-bit values per call). */
  normal(mean: number, sd: number): number {
    const u1 = 1 - this.next(); // (0, 1]
    const u2 = this.next();
    return mean + sd * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** Uniformly picks one element. Throws on an empty array. */
  pick<T>(arr: readonly T[]): T {
    return arr[this.pickIndex(arr.length)];
  }

  /** The index `pick` would choose in an array of `length` (same draw). */
  pickIndex(length: number): number {
    if (length === 0) throw new RangeError("Rng.pick: empty array");
    return Math.floor(this.next() * length);
  }

  /** A copy that draws exactly what this stream will draw next. */
  clone(): Rng {
    const c = new Rng(0);
    c.#a = this.#a;
    c.#b = this.#b;
    c.#c = this.#c;
    c.#d = this.#d;
    return c;
  }

  /**
   * Derives an independent stream deterministically: consumes four values
   * from this stream and scrambles them into the child's state.
   */
  fork(): Rng {
    const child = new Rng(0);
    child.#a = mix32(this.nextU32() ^ 0x243f6a88);
    child.#b = mix32(this.nextU32() ^ 0x85a308d3);
    child.#c = mix32(this.nextU32() ^ 0x13198a2e);
    child.#d = mix32(this.nextU32() ^ 0x03707344);
    child.#fixZero();
    return child;
  }
}

/**
 * Normal draw clamped to [0.3·mean, 1.7·mean]. With sd ≤ 0 (or a non-finite
 * sd) returns `mean` exactly without consuming a draw.
 */
export function clampedNormal(rng: Rng, mean: number, sd: number): number {
  if (!(sd > 0) || !Number.isFinite(sd)) return mean;
  const v = rng.normal(mean, sd);
  const a = 0.3 * mean;
  const b = 1.7 * mean;
  const lo = a < b ? a : b;
  const hi = a < b ? b : a;
  return v < lo ? lo : v > hi ? hi : v;
}

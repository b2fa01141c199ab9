// Go time.ParseDuration-style durations, in milliseconds (float).
// A bare number (string or number) is milliseconds: the reference simulator's
// older, deprecated form, still accepted.

// Accumulated in nanoseconds, divided once, so "10ns" is exactly 1e-5 ms.
const UNIT_NS: Record<string, number> = {
  ns: 1,
  us: 1e3,
  "µs": 1e3, // U+00B5 micro sign (what Go prints)
  "μs": 1e3, // U+03BC Greek mu
  ms: 1e6,
  s: 1e9,
  m: 6e10,
  h: 3.6e12,
};

const BARE_NUMBER = /^\+?(\d+(\.\d*)?|\.\d+)$/;
const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

export class DurationError extends Error {}

/** Parses "100ms", "1.5s", "1m30s", "750us" or a bare millisecond count. */
export function parseDuration(input: string | number): number {
  if (typeof input === "number") {
    if (!Number.isFinite(input)) throw new DurationError("a duration must be a finite number");
    if (input < 0) throw new DurationError(`negative duration ${input}`);
    return input;
  }
  const s = input.trim();
  if (s === "") throw new DurationError("empty duration");
  if (s.startsWith("-")) throw new DurationError(`negative duration "${input}"`);
  if (BARE_NUMBER.test(s)) return Number(s);
  const body = s.startsWith("+") ? s.slice(1) : s;
  let ns = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < body.length) {
    const m = PART.exec(body);
    if (!m) {
      throw new DurationError(
        `invalid duration "${input}" (use e.g. 100ms, 1.5s, 750us, 2m, 1h)`,
      );
    }
    ns += Number(m[1]) * UNIT_NS[m[2]];
  }
  return ns / 1e6;
}

/** Digits of n / 10^places without float noise, trailing zeros trimmed. */
function fixed(n: number, places: number): string {
  const div = 10 ** places;
  const int = Math.floor(n / div);
  const frac = (n % div).toString().padStart(places, "0").replace(/0+$/, "");
  return frac ? `${int}.${frac}` : `${int}`;
}

/** Go-like canonical form: "0s", "750us", "250ms", "1.5s", "1m30s", "1h0m0s". */
export function formatDuration(ms: number): string {
  const ns = Math.round(ms * 1e6);
  if (ns === 0) return "0s";
  if (ns < 0) return "-" + formatDuration(-ms);
  if (ns < 1e3) return `${ns}ns`;
  if (ns < 1e6) return `${fixed(ns, 3)}us`;
  if (ns < 1e9) return `${fixed(ns, 6)}ms`;
  const h = Math.floor(ns / 3.6e12);
  const m = Math.floor((ns % 3.6e12) / 6e10);
  const s = `${fixed(ns % 6e10, 9)}s`;
  if (h > 0) return `${h}h${m}m${s}`;
  if (m > 0) return `${m}m${s}`;
  return s;
}

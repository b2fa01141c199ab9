/**
 * Leveled logging to stderr, text or JSON lines. klog's `-v N` maps onto the
 * same levels (1 warning, 2 info, 4 debug, 5 trace).
 */

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";
const RANK: Record<LogLevel, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };

export function levelFromVerbosity(v: number): LogLevel {
  if (v >= 5) return "trace";
  if (v >= 4) return "debug";
  if (v >= 2) return "info";
  if (v >= 1) return "warn";
  return "error";
}

export class Logger {
  #min: number;
  constructor(
    level: LogLevel = "info",
    readonly format: "text" | "json" = "text",
    /** Fields every line carries (a fleet's pod). */
    readonly context?: Record<string, unknown>,
  ) {
    this.#min = RANK[level];
  }
  enabled(level: LogLevel): boolean {
    return RANK[level] >= this.#min;
  }
  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    if (RANK[level] < this.#min) return;
    if (this.context) fields = { ...this.context, ...fields };
    const ts = new Date().toISOString();
    let line: string;
    if (this.format === "json") {
      line = JSON.stringify({ ts, level, msg, ...fields });
    } else {
      const extra = fields
        ? " " + Object.entries(fields).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ")
        : "";
      line = `${ts} ${level.toUpperCase().padEnd(5)} ${msg}${extra}`;
    }
    console.error(line);
  }
  trace(msg: string, fields?: Record<string, unknown>): void {
    this.log("trace", msg, fields);
  }
  debug(msg: string, fields?: Record<string, unknown>): void {
    this.log("debug", msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.log("info", msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.log("warn", msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.log("error", msg, fields);
  }
}

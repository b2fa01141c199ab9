/**
 * A fleet file (--fleet): groups of simulated pods in one process, each
 * group with its own options on top of the command line's.
 *
 *   groups:
 *     - name: llama            # pods llama-0, llama-1, …
 *       pods: 30
 *       options:               # option names as on the command line
 *         model: meta-llama/Llama-3.1-8B-Instruct
 *         time-to-first-token: 200ms
 *     - name: qwen
 *       pods: 20
 *       options: { model: Qwen/Qwen2.5-1.5B-Instruct, failure-injection-rate: 10 }
 *
 * A group's options become command-line arguments after the process's own,
 * so the option table checks them as it checks flags.
 */
import YAML from "yaml";
import { ConfigError } from "./config.ts";

export interface PodGroup {
  /** Pod names are `<name>-<i>`. */
  name: string;
  pods: number;
  /** The group's options as command-line arguments. */
  args: string[];
}

/** Options that shape the process (its ports, its pods), not one group. */
const PROCESS_WIDE = new Set([
  "fleet",
  "pods",
  "config",
  "port",
  "host",
  "data-parallel-size",
  "data-parallel-rank",
  "metrics-port",
  "grpc-port",
  "sd-file",
  "ssl-certfile",
  "ssl-keyfile",
  "shutdown-timeout",
]);

const NAME = /^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$/;

function bad(path: string, msg: string): never {
  throw new ConfigError("fleet", `--fleet ${path}: ${msg}`);
}

/** The option map of a group as arguments: lists spread, booleans as --name=value. */
function toArgs(path: string, group: string, options: Record<string, unknown>): string[] {
  const args: string[] = [];
  for (const [k, v] of Object.entries(options)) {
    if (!/^[a-z][a-z0-9-_]*$/i.test(k)) bad(path, `group ${group}: bad option name "${k}"`);
    if (PROCESS_WIDE.has(k)) bad(path, `group ${group}: --${k} is the process's, not a group's`);
    if (Array.isArray(v)) {
      args.push(`--${k}`, ...v.map((x) => typeof x === "object" ? JSON.stringify(x) : String(x)));
    } else if (typeof v === "boolean") {
      args.push(`--${k}=${v}`);
    } else if (v !== null && typeof v === "object") {
      args.push(`--${k}`, JSON.stringify(v));
    } else {
      args.push(`--${k}`, String(v));
    }
  }
  return args;
}

/** Reads and checks a fleet file (ConfigError naming --fleet for any problem). */
export function readFleetFile(path: string): PodGroup[] {
  let doc: unknown;
  try {
    doc = YAML.parse(Deno.readTextFileSync(path));
  } catch (e) {
    bad(path, (e as Error).message);
  }
  const groups = (doc as { groups?: unknown } | null)?.groups;
  if (!Array.isArray(groups) || groups.length === 0) bad(path, "needs a non-empty `groups` list");
  const seen = new Set<string>();
  return groups.map((g, i): PodGroup => {
    if (g === null || typeof g !== "object" || Array.isArray(g)) {
      bad(path, `group ${i} is not a map`);
    }
    const { name, pods, options, ...rest } = g as Record<string, unknown>;
    const extra = Object.keys(rest);
    if (extra.length > 0) bad(path, `group ${i}: unknown key ${extra.join(", ")}`);
    if (typeof name !== "string" || !NAME.test(name)) {
      bad(path, `group ${i}: name must be a DNS label (lowercase letters, digits, '-')`);
    }
    if (seen.has(name)) bad(path, `group name ${name} is used twice`);
    seen.add(name);
    if (!Number.isInteger(pods) || (pods as number) < 1 || (pods as number) > 4096) {
      bad(path, `group ${name}: pods must be an integer from 1 to 4096`);
    }
    if (
      options !== undefined &&
      (options === null || typeof options !== "object" || Array.isArray(options))
    ) {
      bad(path, `group ${name}: options must be a map of option names to values`);
    }
    return {
      name,
      pods: pods as number,
      args: toArgs(path, name, (options ?? {}) as Record<string, unknown>),
    };
  });
}

/**
 * manifests/: every Kubernetes object validates against the Kubernetes (and
 * Prometheus Operator) schemas, and every simulator command line in them,
 * with the configuration and fleet files their ConfigMaps mount, is one the
 * option table accepts; the Dockerfile's default command too.
 */
import assert from "node:assert/strict";
import YAML from "yaml";
import { loadConfig } from "../lib/config.ts";
import { readFleetFile } from "../lib/fleet.ts";

const DIR = new URL("../manifests/", import.meta.url);

// deno-lint-ignore no-explicit-any
type Obj = any;

/** The model class that validates an object of this apiVersion and kind. */
function validator(apiVersion: string, kind: string): Promise<(o: Obj) => void> {
  const load = async (mod: Promise<Record<string, unknown>>, name: string) => {
    const C = (await mod)[name] as new (o: Obj) => { validate(): void };
    return (o: Obj) => new C(o).validate();
  };
  switch (`${apiVersion}/${kind}`) {
    case "apps/v1/Deployment":
      return load(import("kubernetes-models/apps/v1/Deployment"), "Deployment");
    case "v1/Service":
      return load(import("kubernetes-models/v1/Service"), "Service");
    case "v1/ConfigMap":
      return load(import("kubernetes-models/v1/ConfigMap"), "ConfigMap");
    case "monitoring.coreos.com/v1/PodMonitor":
      return load(
        import("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor"),
        "PodMonitor",
      );
    default:
      throw new Error(`no schema for ${apiVersion} ${kind}`);
  }
}

async function manifests(): Promise<[string, Obj[]][]> {
  const out: [string, Obj[]][] = [];
  for await (const e of Deno.readDir(DIR)) {
    if (!e.name.endsWith(".yaml") || e.name === "config.yaml") continue;
    const text = await Deno.readTextFile(new URL(e.name, DIR));
    out.push([e.name, YAML.parseAllDocuments(text).map((d) => d.toJS()).filter((d) => d)]);
  }
  return out.sort((a, b) => a[0].localeCompare(b[0]));
}

Deno.test("manifests: every object validates against its Kubernetes schema", async () => {
  const all = await manifests();
  const names = all.map(([n]) => n);
  for (
    const want of [
      "data-parallel.yaml",
      "deployment.yaml",
      "fleet.yaml",
      "pd.yaml",
      "podmonitor.yaml",
    ]
  ) {
    assert.ok(names.includes(want), `manifests/${want}`);
  }
  for (const [name, docs] of all) {
    assert.ok(docs.length > 0, name);
    for (const o of docs) {
      const validate = await validator(o.apiVersion, o.kind);
      assert.doesNotThrow(() => validate(o), `${name}: ${o.kind} ${o.metadata?.name}`);
    }
  }
  // The schemas do refuse a broken object (the check can fail).
  const validate = await validator("apps/v1", "Deployment");
  assert.throws(() =>
    validate({
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "x" },
      spec: { selector: {}, template: { spec: { containers: [{ name: 5 }] } } },
    })
  );
});

Deno.test("manifests: every simulator command line is one the option table accepts", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let checked = 0;
    for (const [name, docs] of await manifests()) {
      const maps = new Map<string, Record<string, string>>();
      for (const o of docs) if (o.kind === "ConfigMap") maps.set(o.metadata.name, o.data ?? {});
      for (const o of docs) {
        if (o.kind !== "Deployment") continue;
        const pod = o.spec.template.spec;
        // Files the pod mounts from its ConfigMaps, written where the test can read them.
        const files = new Map<string, string>();
        for (const c of pod.containers) {
          for (const m of c.volumeMounts ?? []) {
            const vol = pod.volumes.find((v: Obj) => v.name === m.name);
            const data = maps.get(vol?.configMap?.name);
            assert.ok(data, `${name}: ConfigMap of volume ${m.name}`);
            for (const [key, text] of Object.entries(data)) {
              const local = `${dir}/${name}-${key}`;
              await Deno.writeTextFile(local, text);
              files.set(`${m.mountPath}/${key}`, local);
            }
          }
          const args: string[] = (c.args ?? []).map((a: string) => files.get(a) ?? a);
          const env = { POD_IP: "10.0.0.1" };
          assert.doesNotThrow(() => loadConfig(args, env), `${name}: ${c.name} ${args.join(" ")}`);
          const fleet = args.indexOf("--fleet");
          if (fleet >= 0) {
            for (const g of readFleetFile(args[fleet + 1])) {
              assert.doesNotThrow(
                () => loadConfig([...args, ...g.args], env),
                `${name}: group ${g.name}`,
              );
            }
          }
          checked++;
        }
      }
    }
    assert.ok(checked >= 5, `${checked} command lines checked`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Dockerfile: non-root distroless image of the compiled binary; its command is valid", async () => {
  const text = await Deno.readTextFile(new URL("../Dockerfile", import.meta.url));
  assert.match(text, /^FROM gcr\.io\/distroless\/[^\n]*:nonroot$/m);
  assert.match(text, /deno task compile/);
  assert.match(text, /^EXPOSE 8000/m);
  const cmd = /^CMD (\[.*\])$/m.exec(text);
  assert.ok(cmd, "a CMD");
  assert.doesNotThrow(() => loadConfig(JSON.parse(cmd[1]), {}));
});

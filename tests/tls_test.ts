/** HTTPS with --ssl-certfile/--ssl-keyfile, on the API port and the metrics port. */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startServers } from "../main.ts";
import { freePort, retryPortInUse } from "./helpers.ts";

async function selfSigned(dir: string): Promise<{ cert: string; key: string }> {
  const cert = `${dir}/cert.pem`;
  const key = `${dir}/key.pem`;
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      // A leaf, not a CA: rustls refuses a CA certificate as the server's.
      "-addext",
      "basicConstraints=critical,CA:FALSE",
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return { cert, key };
}

Deno.test({
  name: "ssl-certfile/ssl-keyfile serve HTTPS, metrics port included",
  // openssl makes the throwaway certificate; without it there is nothing to test with.
  ignore:
    (await new Deno.Command("sh", { args: ["-c", "command -v openssl"] }).output()).code !== 0,
  async fn() {
    const dir = await Deno.makeTempDir();
    const { cert, key } = await selfSigned(dir);
    let metricsPort = 0;
    const running = await retryPortInUse(() =>
      startServers([
        "--model",
        "m",
        "--host",
        "127.0.0.1",
        "--ssl-certfile",
        cert,
        "--ssl-keyfile",
        key,
        "--metrics-port",
        String(metricsPort = freePort()),
      ], { port: 0, quiet: true, env: {} })
    );
    const client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(cert)] });
    try {
      assert.match(running.url, /^https:\/\//);
      const models = await fetch(`${running.url}/v1/models`, { client });
      assert.equal(models.status, 200);
      assert.equal((await models.json()).data[0].id, "m");
      const metrics = await fetch(`https://127.0.0.1:${metricsPort}/metrics`, { client });
      assert.equal(metrics.status, 200);
      assert.match(await metrics.text(), /vllm:num_requests_running/);
    } finally {
      client.close();
      await running.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "TLS: gRPC (ALPN h2), HTTPS/1.1 and HTTP/2 REST on one port",
  ignore:
    (await new Deno.Command("sh", { args: ["-c", "command -v openssl"] }).output()).code !== 0,
  async fn() {
    const grpc = await import("@grpc/grpc-js");
    const { engineService } = await import("../lib/api/grpc/codec.ts");
    const dir = await Deno.makeTempDir();
    const { cert, key } = await selfSigned(dir);
    const running = await startServers(
      ["--model", "m", "--host", "127.0.0.1", "--ssl-certfile", cert, "--ssl-keyfile", key],
      { port: 0, quiet: true, env: {} },
    );
    const pem = await Deno.readTextFile(cert);
    const h1 = Deno.createHttpClient({ caCerts: [pem], http2: false });
    const h2 = Deno.createHttpClient({ caCerts: [pem], http1: false });
    const Engine = grpc.makeGenericClientConstructor(engineService(), "VllmEngine");
    // deno-lint-ignore no-explicit-any
    const c: any = new Engine(
      `localhost:${running.ranks[0].port}`,
      grpc.credentials.createSsl(Buffer.from(pem)),
    );
    try {
      const health = await new Promise<{ healthy: boolean }>((resolve, reject) =>
        c.HealthCheck({}, (e: Error | null, r: { healthy: boolean }) => e ? reject(e) : resolve(r))
      );
      assert.equal(health.healthy, true);
      const done = await new Promise<{ complete?: { finish_reason: string } }[]>(
        (resolve, reject) => {
          const got: { complete?: { finish_reason: string } }[] = [];
          const call = c.Generate({
            request_id: "tls",
            tokenized: { input_ids: [1, 2, 3] },
            sampling_params: { max_tokens: 3, ignore_eos: true },
            stream: true,
          });
          call.on("data", (m: { complete?: { finish_reason: string } }) => got.push(m));
          call.on("end", () => resolve(got));
          call.on("error", reject);
        },
      );
      assert.equal(done.length, 4, "three chunks and the complete");
      assert.equal(done[3].complete?.finish_reason, "length");
      for (const client of [h1, h2]) {
        const models = await fetch(`${running.url}/v1/models`, { client });
        assert.equal(models.status, 200);
        assert.equal((await models.json()).data[0].id, "m");
      }
    } finally {
      c.close();
      h1.close();
      h2.close();
      await running.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** HTTPS with --ssl-certfile/--ssl-keyfile, on the API port and the metrics port. */
import assert from "node:assert/strict";
import { startServers } from "../main.ts";

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
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const metricsPort = probe.addr.port;
    probe.close();
    const running = await startServers([
      "--model",
      "m",
      "--host",
      "127.0.0.1",
      "--ssl-certfile",
      cert,
      "--ssl-keyfile",
      key,
      "--metrics-port",
      String(metricsPort),
    ], { port: 0, quiet: true, env: {} });
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

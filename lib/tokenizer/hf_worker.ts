/**
 * A worker that encodes long texts with a model's tokenizer, so a prompt of
 * megabytes (seconds of BPE) never stalls the event loop that answers every
 * other request (lib/tokenizer/offload.ts sends it work).
 *
 * Messages in: `{type:"load", dir, file}` once, then `{id, text, add}`.
 * Out: `{id, ids}` or `{id, error}`.
 */
/// <reference lib="deno.worker" />
import { loadHfFiles } from "./huggingface.ts";

interface Load {
  type: "load";
  dir: string;
  file: string;
}
interface Job {
  id: number;
  text: string;
  add: boolean;
}

let ready: ReturnType<typeof loadHfFiles> | null = null;

self.onmessage = async (e: MessageEvent<Load | Job>) => {
  const m = e.data;
  if ("type" in m) {
    ready = loadHfFiles(m.dir, m.file);
    ready.catch(() => {}); // reported with the first job
    return;
  }
  try {
    if (ready === null) throw new Error("tokenizer not loaded");
    const files = await ready;
    const ids = files.tokenizer.encode(m.text, { add_special_tokens: m.add }).ids;
    self.postMessage({ id: m.id, ids });
  } catch (err) {
    self.postMessage({ id: m.id, error: String((err as Error)?.message ?? err) });
  }
};

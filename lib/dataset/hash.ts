/**
 * The dataset's prompt hash (datasets.md): SHA-256 over the prompt's token
 * ids, each a 4-byte little-endian uint32.
 */
import { createHash } from "node:crypto";

export function promptHash(ids: readonly number[]): Uint8Array {
  const buf = new Uint8Array(ids.length * 4);
  const view = new DataView(buf.buffer);
  for (let i = 0; i < ids.length; i++) view.setUint32(i * 4, ids[i], true);
  return new Uint8Array(createHash("sha256").update(buf).digest());
}

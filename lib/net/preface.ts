/**
 * Telling a cleartext connection's protocol from its first bytes: HTTP/2
 * clients with prior knowledge (gRPC's h2c) open with a fixed 24-byte
 * preface (RFC 9113, 3.4); anything else is taken for HTTP/1.x.
 */
export const H2_PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** "h2" or "http1" once the bytes decide it, "more" while they are a strict prefix of the preface. */
export function classify(bytes: Uint8Array, length = bytes.length): "h2" | "http1" | "more" {
  const k = Math.min(length, H2_PREFACE.length);
  for (let i = 0; i < k; i++) {
    if (bytes[i] !== H2_PREFACE[i]) return "http1";
  }
  return length >= H2_PREFACE.length ? "h2" : "more";
}

/**
 * The few canonical CBOR shapes block hashing needs (RFC 7049 canonical
 * form: shortest heads, definite lengths), written straight into a reused
 * buffer. A general library (cborg, the tests' oracle) spends ~7 µs on one
 * block: 440 µs for a 1 000-token prompt, more than the whole request.
 */
import { ByteWriter } from "./byte_writer.ts";

export class CborWriter extends ByteWriter {
  /** A head: major type and an unsigned argument below 2^53. */
  #head(major: number, n: number): void {
    this.room(9);
    const m = major << 5;
    const b = this.buf;
    if (n < 24) b[this.len++] = m | n;
    else if (n < 0x100) {
      b[this.len++] = m | 24;
      b[this.len++] = n;
    } else if (n < 0x10000) {
      b[this.len++] = m | 25;
      this.view.setUint16(this.len, n);
      this.len += 2;
    } else if (n < 0x100000000) {
      b[this.len++] = m | 26;
      this.view.setUint32(this.len, n);
      this.len += 4;
    } else {
      b[this.len++] = m | 27;
      this.view.setUint32(this.len, Math.floor(n / 0x100000000));
      this.view.setUint32(this.len + 4, n >>> 0);
      this.len += 8;
    }
  }

  uint(n: number): this {
    this.#head(0, n);
    return this;
  }

  /** An unsigned 64-bit integer given as two 32-bit halves, in its shortest form. */
  uint64(hi: number, lo: number): this {
    if (hi === 0) return this.uint(lo);
    this.room(9);
    this.buf[this.len++] = 27;
    this.view.setUint32(this.len, hi);
    this.view.setUint32(this.len + 4, lo);
    this.len += 8;
    return this;
  }

  array(n: number): this {
    this.#head(4, n);
    return this;
  }

  map(n: number): this {
    this.#head(5, n);
    return this;
  }

  null(): this {
    this.room(1);
    this.buf[this.len++] = 0xf6;
    return this;
  }

  bytesOf(data: Uint8Array): this {
    this.#head(2, data.length);
    this.room(data.length);
    this.buf.set(data, this.len);
    this.len += data.length;
    return this;
  }

  text(s: string): this {
    const data = new TextEncoder().encode(s);
    this.#head(3, data.length);
    this.room(data.length);
    this.buf.set(data, this.len);
    this.len += data.length;
    return this;
  }
}

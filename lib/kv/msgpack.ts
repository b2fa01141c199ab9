/**
 * The msgpack the KV events are written in (kv-cache.md, "Encoding rules"):
 * shortest headers for strings, arrays, maps and small integers, but fixed
 * widths where consumers expect them: block hashes always uint64 (0xcf),
 * token ids always uint32 (0xce), the timestamp always float64 (0xcb).
 *
 * Written here rather than with a library: @msgpack/msgpack and msgpackr
 * choose every number's width themselves, with only process-wide switches
 * (all bigints as 64-bit, all numbers as floats), so a uint32 token id next
 * to a shortest-form block size cannot be asked for without overriding
 * their private encoder methods. The tests decode with @msgpack/msgpack.
 */
import { ByteWriter } from "./byte_writer.ts";

export class MsgpackWriter extends ByteWriter {
  readonly #text = new TextEncoder();

  /** A copy of the bytes written since the last reset. */
  override bytes(): Uint8Array {
    return this.buf.slice(0, this.len);
  }

  #u8(b: number): void {
    this.room(1);
    this.buf[this.len++] = b;
  }

  /** A header: the fix form below `fixLimit`, else 8/16/32-bit lengths. */
  #header(n: number, fix: number, fixLimit: number, c8: number | null, c16: number, c32: number) {
    this.room(5);
    if (n < fixLimit) this.buf[this.len++] = fix | n;
    else if (c8 !== null && n < 0x100) {
      this.buf[this.len++] = c8;
      this.buf[this.len++] = n;
    } else if (n < 0x10000) {
      this.buf[this.len++] = c16;
      this.view.setUint16(this.len, n);
      this.len += 2;
    } else {
      this.buf[this.len++] = c32;
      this.view.setUint32(this.len, n);
      this.len += 4;
    }
  }

  array(n: number): this {
    this.#header(n, 0x90, 16, null, 0xdc, 0xdd);
    return this;
  }

  map(n: number): this {
    this.#header(n, 0x80, 16, null, 0xde, 0xdf);
    return this;
  }

  str(s: string): this {
    const data = this.#text.encode(s);
    this.#header(data.length, 0xa0, 32, 0xd9, 0xda, 0xdb);
    this.room(data.length);
    this.buf.set(data, this.len);
    this.len += data.length;
    return this;
  }

  nil(): this {
    this.#u8(0xc0);
    return this;
  }

  /** A non-negative integer below 2^32 in its shortest form. */
  uint(n: number): this {
    this.room(5);
    if (n < 0x80) this.buf[this.len++] = n;
    else if (n < 0x100) {
      this.buf[this.len++] = 0xcc;
      this.buf[this.len++] = n;
    } else if (n < 0x10000) {
      this.buf[this.len++] = 0xcd;
      this.view.setUint16(this.len, n);
      this.len += 2;
    } else this.uint32(n);
    return this;
  }

  /** Always 0xce and 4 bytes. */
  uint32(n: number): this {
    this.room(5);
    this.buf[this.len++] = 0xce;
    this.view.setUint32(this.len, n);
    this.len += 4;
    return this;
  }

  /** Always 0xcf and 8 bytes. */
  uint64(n: bigint): this {
    this.room(9);
    this.buf[this.len++] = 0xcf;
    this.view.setBigUint64(this.len, n);
    this.len += 8;
    return this;
  }

  /** Always 0xcb and 8 bytes. */
  float64(x: number): this {
    this.room(9);
    this.buf[this.len++] = 0xcb;
    this.view.setFloat64(this.len, x);
    this.len += 8;
    return this;
  }
}

/** A growable byte buffer the wire writers (CBOR, msgpack) write into and reuse. */
export class ByteWriter {
  protected buf: Uint8Array;
  protected view: DataView;
  protected len = 0;

  constructor(size = 256) {
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
  }

  reset(): this {
    this.len = 0;
    return this;
  }

  /** The bytes written since the last reset (a view, valid until the next write). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }

  /** Makes room for `n` more bytes. */
  protected room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
}

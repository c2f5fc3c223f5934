// A chain's buffers taken as one byte stream: virtio 1.x lets the driver split a request anywhere
// (no framing assumptions), so devices address "bytes 16..527 of the readable part", not descriptors.

/** Views covering bytes [offset, offset+length) of the concatenation of `bufs` (fewer at the end). */
export function slices(bufs: readonly Uint8Array[], offset: number, length: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = offset;
  let left = length;
  for (const b of bufs) {
    if (left <= 0) break;
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    const n = Math.min(b.length - skip, left);
    out.push(b.subarray(skip, skip + n));
    left -= n;
    skip = 0;
  }
  return out;
}

/** A copy of bytes [offset, offset+length) of the stream (shorter when the stream ends first). */
export function gather(bufs: readonly Uint8Array[], offset: number, length: number): Uint8Array {
  const parts = slices(bufs, offset, length);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Writes `bytes` at `offset` of the stream; returns how many fit. */
export function scatter(bufs: readonly Uint8Array[], offset: number, bytes: Uint8Array): number {
  let at = 0;
  for (const p of slices(bufs, offset, bytes.length)) {
    p.set(bytes.subarray(at, at + p.length));
    at += p.length;
  }
  return at;
}

// Parses what a benchmark guest writes to the debug port: per loop, 'S', then 'E' and a 4-byte
// little-endian checksum, with the time (and, on the interpreter, the retired count) at 'S' and 'E'.

export interface Phase {
  startMs: number;
  endMs: number;
  startRetired: number;
  endRetired: number;
  checksum: number;
}

export class DebugStream {
  readonly phases: Phase[] = [];
  private current: Partial<Phase> & { bytes?: number[] } = {};
  /** bytes that did not fit the protocol (a guest bug, shown in the report) */
  readonly stray: number[] = [];

  push(byte: number, nowMs: number, retired = Number.NaN): void {
    const c = this.current;
    if (c.bytes) {
      c.bytes.push(byte);
      if (c.bytes.length === 4) {
        const [a, b, d, e] = c.bytes as [number, number, number, number];
        this.phases.push({
          startMs: c.startMs!,
          endMs: c.endMs!,
          startRetired: c.startRetired!,
          endRetired: c.endRetired!,
          checksum: (a | (b << 8) | (d << 16) | (e << 24)) >>> 0,
        });
        this.current = {};
      }
    } else if (byte === 0x53 && c.startMs === undefined) {
      c.startMs = nowMs;
      c.startRetired = retired;
    } else if (byte === 0x45 && c.startMs !== undefined) {
      c.endMs = nowMs;
      c.endRetired = retired;
      c.bytes = [];
    } else {
      this.stray.push(byte);
    }
  }
}

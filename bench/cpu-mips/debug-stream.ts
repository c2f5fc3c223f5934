// Parses what a benchmark guest writes to the debug port: per loop, 'S', then 'E' and a 4-byte
// little-endian checksum, with the time (and, on the interpreter, the retired count) at 'S' and 'E'.
// The system-code guests report an unexpected interrupt or exception as '!' and two dwords (the top
// of the handler's stack: error code and RIP, or RIP and CS).

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
  /** '!' reports: the two dwords at the top of the unexpected event's stack */
  readonly unexpected: [number, number][] = [];
  #bang: number[] | undefined;

  push(byte: number, nowMs: number, retired = Number.NaN): void {
    const c = this.current;
    if (this.#bang) {
      this.#bang.push(byte);
      if (this.#bang.length === 8) {
        const v = new DataView(Uint8Array.from(this.#bang).buffer);
        this.unexpected.push([v.getUint32(0, true), v.getUint32(4, true)]);
        this.#bang = undefined;
      }
    } else if (c.bytes) {
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
    } else if (byte === 0x21) {
      this.#bang = [];
    } else {
      this.stray.push(byte);
    }
  }
}

/** the first '!' report as text, or undefined */
export function unexpectedText(stream: DebugStream): string | undefined {
  const u = stream.unexpected[0];
  if (!u) return undefined;
  const h = (v: number) => `0x${v.toString(16)}`;
  return `unexpected interrupt/exception in the guest (stack: ${h(u[0])} ${h(u[1])}: error code and RIP, or RIP and CS)`;
}

// Whatever a guest does to a device's ports, the device must not throw: hardware has no
// exceptions to give. Random access sequences against every device.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CmosRtc,
  DebugConsole,
  DebugExit,
  type Device,
  FwCfg,
  I8042,
  I8254,
  I8259Pair,
  PostPort,
  Uart16550,
} from "../../lib/devices/index.js";
import { attach } from "./helpers.js";

const ram = {
  bytes: new Uint8Array(0x1000),
  read(gpa: number, len: number): Uint8Array {
    if (gpa + len > this.bytes.length) throw new RangeError("not RAM");
    return this.bytes.slice(gpa, gpa + len);
  },
  write(gpa: number, data: Uint8Array): void {
    if (gpa + data.length > this.bytes.length) throw new RangeError("not RAM");
    this.bytes.set(data, gpa);
  },
};

const makers: [string, () => Device][] = [
  ["uart", () => new Uart16550()],
  ["debugcon", () => new DebugConsole()],
  ["debug-exit", () => new DebugExit()],
  ["post", () => new PostPort()],
  ["i8042", () => new I8042()],
  ["cmos", () => new CmosRtc({ timeSource: "clock", memoryBytes: 64 << 20 })],
  ["i8259", () => new I8259Pair()],
  ["i8254", () => new I8254()],
  ["fw_cfg", () => new FwCfg({ dmaMemory: ram, files: { "etc/x": new Uint8Array(8) } })],
];

const op = fc.record({
  write: fc.boolean(),
  range: fc.nat(),
  offset: fc.nat(),
  size: fc.constantFrom(1, 2, 4),
  value: fc.nat({ max: 0xffffffff }),
  advanceNs: fc.nat({ max: 5_000_000 }),
});

describe("guest accesses never throw", () => {
  for (const [name, make] of makers) {
    it(name, () => {
      fc.assert(
        fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
          const dev = make();
          const h = attach(dev);
          for (const o of ops) {
            const ri = o.range % dev.ranges.length;
            const r = dev.ranges[ri]!;
            const off = o.offset % r.length;
            h.clock.advance(o.advanceNs);
            if (o.write) dev.write(off, o.size, o.value, ri);
            else {
              const v = dev.read(off, o.size, ri);
              expect(Number.isInteger(v) && v >= 0 && v < 2 ** (8 * o.size)).toBe(true);
            }
            const wait = dev.poll?.(h.clock.ns);
            if (wait !== undefined) expect(wait).toBeGreaterThan(0);
          }
        }),
        { numRuns: 150 },
      );
    });
  }
});

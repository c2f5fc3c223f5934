import { describe, expect, it } from "vitest";
import { Bus, getLe, putLe } from "../../lib/vmm/bus.js";
import { BusConflictError, UnhandledAccessError } from "../../lib/vmm/errors.js";

describe("Bus", () => {
  it("routes reads and writes to the claim with the offset inside it", () => {
    const bus = new Bus("io", 0x10000);
    const writes: [number, number, number][] = [];
    bus.claim({
      name: "dev",
      base: 0x3f8,
      length: 8,
      read: (off, size) => 0x10 + off + size,
      write: (off, size, v) => writes.push([off, size, v]),
    });
    expect(bus.read(0x3fd, 1)).toBe(0x10 + 5 + 1);
    expect(bus.write(0x3f8, 1, 0x41)).toBe(true);
    expect(writes).toEqual([[0, 1, 0x41]]);
  });

  it("rejects overlapping claims in the same direction and names the holder", () => {
    const bus = new Bus("io", 0x10000);
    bus.claim({ name: "uart", base: 0x3f8, length: 8, read: () => 0, write: () => {} });
    let err: unknown;
    try {
      bus.claim({ name: "other", base: 0x3ff, length: 2, read: () => 0 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BusConflictError);
    expect((err as BusConflictError).holder).toBe("uart");
    expect((err as Error).message).toMatch(/overlaps uart/);
    // adjacent is fine
    expect(() => bus.claim({ name: "next", base: 0x400, length: 1, read: () => 0 })).not.toThrow();
  });

  it("lets a read-only and a write-only claim share a port", () => {
    const bus = new Bus("io", 0x10000);
    bus.claim({ name: "in", base: 0x60, length: 1, read: () => 0x55 });
    bus.claim({ name: "out", base: 0x60, length: 1, write: () => {} });
    expect(bus.read(0x60, 1)).toBe(0x55);
    expect(bus.write(0x60, 1, 1)).toBe(true);
    expect(() => bus.claim({ name: "in2", base: 0x60, length: 1, read: () => 0 })).toThrow(BusConflictError);
  });

  it("rejects ranges past the end of the bus and empty ranges", () => {
    const bus = new Bus("io", 0x10000);
    expect(() => bus.claim({ name: "x", base: 0xffff, length: 2, read: () => 0 })).toThrow(/exceeds/);
    expect(() => bus.claim({ name: "x", base: 0x10, length: 0, read: () => 0 })).toThrow(BusConflictError);
    expect(() => bus.claim({ name: "x", base: 0x10, length: 1 })).toThrow(/neither/);
  });

  it("reads all-ones per size from unclaimed addresses and counts them", () => {
    const bus = new Bus("io", 0x10000);
    const seen: unknown[] = [];
    bus.onUnhandled = (a) => seen.push(a);
    for (const size of [1, 2, 4, 8]) {
      const out = new Uint8Array(8);
      expect(bus.readInto(0x1234, size, out)).toBe(false);
      expect([...out.subarray(0, size)].every((b) => b === 0xff)).toBe(true);
      expect([...out.subarray(size)].every((b) => b === 0)).toBe(true);
    }
    expect(bus.write(0x80, 1, 0x12)).toBe(false);
    expect(bus.unhandledReads).toBe(4);
    expect(bus.unhandledWrites).toBe(1);
    expect(seen.at(-1)).toEqual({ space: "io", address: 0x80, size: 1, write: true, value: 0x12 });
  });

  it("strict mode turns unclaimed accesses into UnhandledAccessError", () => {
    const bus = new Bus("mmio", 2 ** 52);
    bus.strict = true;
    expect(() => bus.read(0xfee00000, 4)).toThrow(UnhandledAccessError);
    expect(() => bus.write(0xfec00000, 4, 1)).toThrow(
      /strict mode: 4-byte write of 0x1 to unregistered MMIO address 0xfec00000/,
    );
  });

  it("releasing a claim frees the range", () => {
    const bus = new Bus("io", 0x10000);
    const release = bus.claim({ name: "a", base: 0x70, length: 2, read: () => 1 });
    expect(bus.read(0x70, 1)).toBe(1);
    release();
    expect(bus.read(0x70, 1)).toBeUndefined();
    bus.claim({ name: "b", base: 0x70, length: 2, read: () => 2 });
    expect(bus.read(0x71, 1)).toBe(2);
  });

  it("little-endian helpers round-trip values up to 8 bytes", () => {
    const b = new Uint8Array(8);
    putLe(b, 0, 4, 0xdeadbeef);
    expect([...b.subarray(0, 4)]).toEqual([0xef, 0xbe, 0xad, 0xde]);
    expect(getLe(b, 0, 4)).toBe(0xdeadbeef);
    putLe(b, 0, 8, 2 ** 40 + 5);
    expect(getLe(b, 0, 8)).toBe(2 ** 40 + 5);
    putLe(b, 0, 2, 0x1234);
    expect(getLe(b, 0, 2)).toBe(0x1234);
  });
});

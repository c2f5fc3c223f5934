import { describe, expect, it } from "vitest";
import { GuestMemory, GuestMemoryError } from "../../lib/vmm/memory.js";

describe("GuestMemory", () => {
  it("reads back what it writes, little-endian, across widths", () => {
    const m = new GuestMemory();
    m.addRegion(0, new Uint8Array(0x2000));
    m.writeU64(0x1ff8, 0x1122334455667788n);
    expect(m.readU32(0x1ff8)).toBe(0x55667788);
    expect(m.readU16(0x1ffe)).toBe(0x1122);
    expect(m.readU64(0x1ff8)).toBe(0x1122334455667788n);
  });
  it("rejects overlapping and unaligned regions and non-RAM accesses", () => {
    const m = new GuestMemory();
    m.addRegion(0x1000, new Uint8Array(0x1000));
    expect(() => m.addRegion(0x1000, new Uint8Array(0x1000))).toThrow(GuestMemoryError);
    expect(() => m.addRegion(0x2100, new Uint8Array(0x1000))).toThrow(/page-aligned/);
    expect(() => m.readU8(0x2000)).toThrow(/not RAM/);
    expect(() => m.view(0x1ffe, 4)).toThrow(GuestMemoryError);
  });
});

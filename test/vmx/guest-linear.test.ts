// Side-effect-free guest-linear reads at VM exit: the guest's paging modes, entries with NX set
// (bit 63: the entry's high half must not swamp its address bits), and EPT beneath.
import { describe, expect, it } from "vitest";
import { EptBuilder, GuestLinearReader, HostMemory } from "../../lib/vmx/index.js";
import { FakeCpu } from "./fake-cpu.js";

const NX = 1n << 63n;

function longMode() {
  const mem = new HostMemory();
  const ram = mem.allocate(1 << 20);
  const at = (gpa: number) => ram.hpa + gpa;
  // PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000; linear 0x5000 -> 0x9000, NX everywhere
  mem.writeU64(at(0x1000), 0x2000n | 3n | NX);
  mem.writeU64(at(0x2000), 0x3000n | 3n | NX);
  mem.writeU64(at(0x3000), 0x4000n | 3n | NX);
  mem.writeU64(at(0x4000 + 5 * 8), 0x9000n | 3n | NX);
  // a 2-MiB page at linear 0x200000 -> 0x0, with NX
  mem.writeU64(at(0x3000 + 8), 0x83n | NX);
  mem.writeU8(at(0x9123), 0xab);
  const cpu = new FakeCpu();
  cpu.setControl("cr0", 0x80000011n);
  cpu.setControl("cr4", 0x20n);
  cpu.setControl("cr3", 0x1000n);
  cpu.setControl("efer", 0x500n);
  const ept = new EptBuilder(mem);
  ept.map(0, ram.hpa, 1 << 20);
  return { mem, ram, cpu, ept };
}

describe("GuestLinearReader", () => {
  it("4-level paging through EPT, with NX set in every entry", () => {
    const { mem, cpu, ept } = longMode();
    const reader = new GuestLinearReader(mem, cpu, ept.eptp);
    expect(reader.translate(0x5123)).toBe(0x9123);
    expect(reader.translate(0x200000 + 0x9123)).toBe(0x9123);
    expect([...reader.read(0x5123, 1)!]).toEqual([0xab]);
    expect(reader.translate(0x6000)).toBeUndefined();
  });

  it("a read crossing into an unmapped page gives nothing", () => {
    const { mem, cpu, ept } = longMode();
    const reader = new GuestLinearReader(mem, cpu, ept.eptp);
    expect(reader.read(0x5ffe, 2)).toHaveLength(2);
    expect(reader.read(0x5fff, 2)).toBeUndefined();
  });

  it("32-bit paging with a 4-MiB page, and no paging at all", () => {
    const mem = new HostMemory();
    const ram = mem.allocate(1 << 20);
    mem.writeU32(ram.hpa + 0x1000 + 1 * 4, 0x83); // PDE[1]: 4-MiB page at 0
    const cpu = new FakeCpu();
    cpu.setControl("cr0", 0x80000011n);
    cpu.setControl("cr4", 0x10n);
    // without EPT guest-physical is host-physical: the directory sits in host memory
    cpu.setControl("cr3", BigInt(ram.hpa + 0x1000));
    cpu.setControl("efer", 0n);
    expect(new GuestLinearReader(mem, cpu, undefined).translate(0x400000 + 0x1234)).toBe(0x1234);
    cpu.setControl("cr0", 0x11n);
    expect(new GuestLinearReader(mem, cpu, undefined).translate(0x1234)).toBe(0x1234);
  });
});

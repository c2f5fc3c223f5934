// Page faults with the architectural CR2 and error code, permission bits, NX, A/D bits, TLB flush
// on INVLPG/CR3, in 4-level and 32-bit paging.
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { CODE, type Guest, hex, loggedVector, makeGuest, PML4, r32, r64, SEL } from "./guest.js";

const PT = 0x30000;

function w64(ram: Uint8Array, a: number, v: bigint): void {
  for (let i = 0; i < 8; i++) ram[a + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

/** long-mode guest whose 0x400000..0x5fffff uses 4 KiB pages from PT */
function long4k(code: string): Guest {
  const g = makeGuest("long", hex(code));
  w64(g.ram, PML4 + 0x2000 + 2 * 8, BigInt(PT | 7));
  w64(g.ram, PT + 0 * 8, 0x400000n | 7n); // user RW
  w64(g.ram, PT + 1 * 8, 0x401000n); // not present
  w64(g.ram, PT + 2 * 8, 0x402000n | 5n); // read-only
  w64(g.ram, PT + 3 * 8, (1n << 63n) | 0x403000n | 7n); // NX
  w64(g.ram, PT + 4 * 8, 0x404000n | 3n); // supervisor only
  g.cpu.setControl("efer", 0xd00n); // LME LMA NXE
  g.cpu.setControl("cr0", 0x80010011n); // PG WP PE
  return g;
}

/** [vector, error code, pushed RIP] from the exception frame of the handler stub */
function frame(g: Guest, withCode: boolean): [number, number, bigint] {
  const rsp = Number(g.cpu.getGpr(4));
  const code = withCode ? r32(g.ram, rsp) : -1;
  const rip = r64(g.ram, rsp + (withCode ? 8 : 0));
  return [loggedVector(g), code, rip];
}

describe("4-level paging faults", () => {
  it("not-present read: #PF, CR2, error code 0, RIP at the instruction", () => {
    const g = long4k("48 8b 04 25 08 10 40 00 f4");
    g.cpu.setGpr(0, 0x1111n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(frame(g, true)).toEqual([14, 0, BigInt(CODE)]);
    expect(g.cpu.getControl("cr2")).toBe(0x401008n);
    expect(g.cpu.getGpr(0)).toBe(0x1111n);
  });
  it("write to a read-only page with CR0.WP: error code P|W", () => {
    const g = long4k("c7 04 25 00 20 40 00 01 00 00 00 f4");
    expect(g.run()).toBe(StopReason.Halted);
    expect(frame(g, true)).toEqual([14, 3, BigInt(CODE)]);
    expect(g.cpu.getControl("cr2")).toBe(0x402000n);
    expect(r32(g.ram, 0x402000)).toBe(0);
  });
  it("user read of a supervisor page: error code P|U, delivered on the TSS stack", () => {
    const g = long4k("48 8b 04 25 00 40 40 00 f4");
    g.cpu.setSegment(1, { selector: SEL.ucode64, base: 0n, limit: 0xffffffff, ar: 0xa0fb });
    g.cpu.setSegment(2, { selector: SEL.udata32, base: 0n, limit: 0xffffffff, ar: 0xc0f3 });
    expect(g.cpu.cpl).toBe(3);
    g.cpu.setGpr(4, 0x7000n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(frame(g, true)).toEqual([14, 5, BigInt(CODE)]);
    const rsp = Number(g.cpu.getGpr(4));
    // frame: code, rip, cs, rflags, rsp, ss on the ring-0 stack
    expect(rsp + 48).toBe(0x8f000 - 0x1000);
    expect(r64(g.ram, rsp + 16)).toBe(BigInt(SEL.ucode64));
    expect(r64(g.ram, rsp + 32)).toBe(0x7000n);
    expect(g.cpu.cpl).toBe(0);
  });
  it("instruction fetch from an NX page: error code P|I", () => {
    const g = long4k("48 c7 c0 00 30 40 00 ff e0");
    expect(g.run()).toBe(StopReason.Halted);
    expect(frame(g, true)).toEqual([14, 0x11, 0x403000n]);
    expect(g.cpu.getControl("cr2")).toBe(0x403000n);
  });
  it("sets accessed and dirty bits", () => {
    const g = long4k("48 8b 04 25 10 00 40 00 c7 04 25 20 00 40 00 05 00 00 00 f4");
    expect(g.run()).toBe(StopReason.Halted);
    expect(r32(g.ram, PT) & 0x60).toBe(0x60);
    expect(r32(g.ram, 0x400020)).toBe(5);
  });
  it("keeps a translation until INVLPG", () => {
    // mov eax,[0x400010]; (host remaps the page) ; mov eax,[0x400010] ; invlpg [0x400010]; mov eax,[0x400010]; hlt
    const g = long4k(
      "8b 04 25 10 00 40 00 f4 8b 04 25 10 00 40 00 f4 0f 01 3c 25 10 00 40 00 8b 04 25 10 00 40 00 f4",
    );
    g.ram[0x400010] = 0x11;
    g.ram[0x410010] = 0x22;
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(0)).toBe(0x11n);
    w64(g.ram, PT, 0x410000n | 7n);
    g.cpu.activity = 0;
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(0)).toBe(0x11n); // stale TLB entry, as on hardware
    g.cpu.activity = 0;
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(0)).toBe(0x22n);
  });
});

describe("32-bit paging", () => {
  function paged32(code: string): Guest {
    const g = makeGuest("prot32", hex(code));
    const pd = 0x60000;
    const pt = 0x61000;
    const w = (a: number, v: number) => {
      g.ram[a] = v;
      g.ram[a + 1] = v >> 8;
      g.ram[a + 2] = v >> 16;
      g.ram[a + 3] = v >> 24;
    };
    w(pd, 0x83); // 4 MiB page at 0
    w(pd + 4, pt | 3);
    w(pt + 0x1000 / 0x400, 0); // 0x401000 not present
    w(pt + 4 * 0x123, 0x5000 | 3); // 0x523000 -> 0x5000
    g.cpu.setControl("cr4", 0x10n);
    g.cpu.setControl("cr3", BigInt(pd));
    g.cpu.setControl("cr0", 0x80000011n);
    return g;
  }
  it("not-present PTE under a 4 KiB table: #PF with CR2", () => {
    const g = paged32("a1 04 10 40 00 f4");
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(14);
    expect(g.cpu.getControl("cr2")).toBe(0x401004n);
    const esp = Number(g.cpu.getGpr(4));
    expect(r32(g.ram, esp)).toBe(0);
    expect(r32(g.ram, esp + 4)).toBe(CODE);
  });
  it("translates through a 4 MiB page and a 4 KiB page", () => {
    // mov eax,[0x123456] ; mov dword [0x1000],7 ; hlt -- then read through 0x523000 -> 0x5000
    const g = paged32("a1 56 34 12 00 c7 05 00 10 00 00 07 00 00 00 f4");
    g.ram[0x123456] = 0x5a;
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(0)).toBe(0x5an);
    expect(r32(g.ram, 0x1000)).toBe(7);
  });
});

// Segment limit and type checks on data and stack accesses outside 64-bit mode: the faulting
// access raises #GP(0) / #SS(0) before anything changes, and flat segments are never checked.
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { CODE, type Guest, hex, loggedVector, makeGuest, r32, SEL } from "./guest.js";

const ES = 0;
const CS = 1;
const SS = 2;

function withSeg(g: Guest, seg: number, limit: number, ar: number, selector: number = SEL.data32): void {
  g.cpu.setSegment(seg, { selector, base: 0n, limit, ar });
}
/** error code and faulting EIP from the handler's frame (no privilege change) */
function frame(g: Guest): { err: number; eip: number } {
  const esp = Number(g.cpu.getGpr(4));
  return { err: r32(g.ram, esp), eip: r32(g.ram, esp + 4) };
}

describe("protected mode data segments", () => {
  // mov eax, es:[ebx] ; hlt
  const load = hex("26 8b 03 f4");
  it("a read within the limit works; one that crosses the limit is #GP(0) with EAX unchanged", () => {
    const ok = makeGuest("prot32", load);
    withSeg(ok, ES, 0xfff, 0xc093);
    ok.ram.set([0x78, 0x56, 0x34, 0x12], 0xffc);
    ok.cpu.setGpr(3, 0xffcn);
    expect(ok.run()).toBe(StopReason.Halted);
    expect(loggedVector(ok)).toBe(-1);
    expect(Number(ok.cpu.getGpr(0))).toBe(0x12345678);

    const bad = makeGuest("prot32", load);
    withSeg(bad, ES, 0xfff, 0xc093);
    bad.cpu.setGpr(3, 0xffen);
    bad.cpu.setGpr(0, 0xabcn);
    expect(bad.run()).toBe(StopReason.Halted);
    expect(loggedVector(bad)).toBe(13);
    expect(frame(bad)).toEqual({ err: 0, eip: CODE });
    expect(Number(bad.cpu.getGpr(0))).toBe(0xabc);
  });
  it("a write to a read-only data segment is #GP(0) and memory is unchanged; reads work", () => {
    // mov es:[ebx], eax ; hlt
    const g = makeGuest("prot32", hex("26 89 03 f4"));
    withSeg(g, ES, 0xffffffff, 0xc091);
    g.cpu.setGpr(3, 0x4000n);
    g.cpu.setGpr(0, 0x11223344n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    expect(frame(g)).toEqual({ err: 0, eip: CODE });
    expect(r32(g.ram, 0x4000)).toBe(0);

    const r = makeGuest("prot32", load);
    withSeg(r, ES, 0xffffffff, 0xc091);
    r.ram.set([1, 2, 3, 4], 0x4000);
    r.cpu.setGpr(3, 0x4000n);
    expect(r.run()).toBe(StopReason.Halted);
    expect(loggedVector(r)).toBe(-1);
    expect(Number(r.cpu.getGpr(0))).toBe(0x04030201);
  });
  it("expand-down segments allow only offsets above the limit", () => {
    const low = makeGuest("prot32", load);
    withSeg(low, ES, 0xfff, 0xc097);
    low.cpu.setGpr(3, 0x800n);
    expect(low.run()).toBe(StopReason.Halted);
    expect(loggedVector(low)).toBe(13);
    expect(frame(low).err).toBe(0);

    const high = makeGuest("prot32", load);
    withSeg(high, ES, 0xfff, 0xc097);
    high.ram.set([9, 0, 0, 0], 0x2000);
    high.cpu.setGpr(3, 0x2000n);
    expect(high.run()).toBe(StopReason.Halted);
    expect(loggedVector(high)).toBe(-1);
    expect(Number(high.cpu.getGpr(0))).toBe(9);
  });
  it("a null selector in ES is #GP(0) on use", () => {
    const g = makeGuest("prot32", load);
    g.cpu.setSegment(ES, { selector: 0, base: 0n, limit: 0, ar: 0x10000 });
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    expect(frame(g)).toEqual({ err: 0, eip: CODE });
  });
  it("loading a null selector with MOV ES and then using it is #GP(0) at the use", () => {
    // xor eax, eax ; mov es, ax ; mov eax, es:[ebx]
    const g = makeGuest("prot32", hex("31 c0 8e c0 26 8b 03 f4"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    expect(frame(g)).toEqual({ err: 0, eip: CODE + 4 });
  });
  it("reading through an execute-only CS is #GP(0)", () => {
    // mov eax, cs:[ebx]
    const g = makeGuest("prot32", hex("2e 8b 03 f4"));
    withSeg(g, CS, 0xffffffff, 0xc099, SEL.code32);
    g.cpu.setGpr(3, 0x4000n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    expect(frame(g)).toEqual({ err: 0, eip: CODE });
  });
  it("a hot loop over a limited SS faults at the exact element (cached and compiled blocks included)", () => {
    // mov ecx, 1000 ; L: mov eax, [ebp+0] (SS) ; add ebp, 4 ; dec ecx ; jnz L ; hlt   (at CPL 3)
    const g = makeGuest("prot32", hex("b9 e8 03 00 00 8b 45 00 83 c5 04 49 75 f7 f4"));
    g.cpu.setSegment(CS, { selector: SEL.ucode32, base: 0n, limit: 0xffffffff, ar: 0xc0fb });
    g.cpu.setSegment(SS, { selector: SEL.udata32, base: 0n, limit: 0x7ff, ar: 0xc0f3 });
    g.cpu.setGpr(4, 0x700n);
    expect(g.run(100000)).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(12);
    expect(Number(g.cpu.getGpr(5))).toBe(0x800);
    expect(Number(g.cpu.getGpr(1))).toBe(1000 - 0x200);
    const esp = Number(g.cpu.getGpr(4));
    expect([r32(g.ram, esp), r32(g.ram, esp + 4)]).toEqual([0, CODE + 5]);
  });
});

describe("string instructions", () => {
  it("REP STOSD stops with #GP(0) at the first element beyond ES's limit, earlier ones stored", () => {
    // mov ecx, 8 ; rep stosd ; hlt
    const g = makeGuest("prot32", hex("b9 08 00 00 00 f3 ab f4"));
    withSeg(g, ES, 0x400f, 0xc093);
    g.cpu.setGpr(7, 0x4000n);
    g.cpu.setGpr(0, 0x55aa55aan);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    expect(frame(g)).toEqual({ err: 0, eip: CODE + 5 });
    expect([r32(g.ram, 0x400c), r32(g.ram, 0x4010)]).toEqual([0x55aa55aa, 0]);
    expect(Number(g.cpu.getGpr(7))).toBe(0x4010);
    expect(Number(g.cpu.getGpr(1))).toBe(4);
  });
});

describe("stack segment", () => {
  it("a push below an expand-up SS limit at CPL 3 is #SS(0) with ESP unchanged", () => {
    // push eax ; hlt
    const g = makeGuest("prot32", hex("50 f4"));
    g.cpu.setSegment(CS, { selector: SEL.ucode32, base: 0n, limit: 0xffffffff, ar: 0xc0fb });
    g.cpu.setSegment(SS, { selector: SEL.udata32, base: 0n, limit: 0x6ffd, ar: 0xc0f3 });
    g.cpu.setGpr(4, 0x7000n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(12);
    const esp = Number(g.cpu.getGpr(4));
    // error code, EIP, CS, EFLAGS, ESP, SS
    expect([r32(g.ram, esp), r32(g.ram, esp + 4), r32(g.ram, esp + 16)]).toEqual([0, CODE, 0x7000]);
  });
  it("a pop above the limit is #SS(0); within it works", () => {
    // pop eax ; hlt
    const g = makeGuest("prot32", hex("58 f4"));
    g.cpu.setSegment(CS, { selector: SEL.ucode32, base: 0n, limit: 0xffffffff, ar: 0xc0fb });
    g.cpu.setSegment(SS, { selector: SEL.udata32, base: 0n, limit: 0x7001, ar: 0xc0f3 });
    g.cpu.setGpr(4, 0x7000n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(12);
    expect(r32(g.ram, Number(g.cpu.getGpr(4)) + 16)).toBe(0x7000);
  });
});

describe("real mode", () => {
  it("a 32-bit address beyond the 64 KiB limit is #GP", () => {
    // mov ax, [edi] (a32) ; hlt
    const g = makeGuest("real", hex("67 8b 07 f4"));
    g.cpu.setGpr(7, 0x10000n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
  });
  it("unreal mode (a 4 GiB limit kept from protected mode) reaches above 64 KiB", () => {
    const g = makeGuest("real", hex("67 8b 07 f4"));
    g.cpu.setSegment(3, { selector: 0, base: 0n, limit: 0xffffffff, ar: 0x93 });
    g.ram.set([0x34, 0x12], 0x30000);
    g.cpu.setGpr(7, 0x30000n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(Number(g.cpu.getGpr(0) & 0xffffn)).toBe(0x1234);
  });
});

describe("64-bit mode", () => {
  it("has no limit checks", () => {
    // mov eax, es:[rbx]
    const g = makeGuest("long", hex("26 8b 03 f4"));
    g.cpu.setSegment(ES, { selector: SEL.data32, base: 0n, limit: 0xff, ar: 0xc091 });
    g.ram.set([5, 0, 0, 0], 0x4000);
    g.cpu.setGpr(3, 0x4000n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(Number(g.cpu.getGpr(0))).toBe(5);
  });
});

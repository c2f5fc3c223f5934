// Exceptions and interrupts in each mode: IVT delivery in real mode, IDT gates in protected and
// long mode, error codes, #UD counting, double fault and triple fault.
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { CODE, hex, IDT, loggedVector, makeGuest, r32, r64, SEL, TSS } from "./guest.js";

describe("real mode", () => {
  it("INT n goes through the IVT and pushes FLAGS, CS, IP", () => {
    const g = makeGuest("real", hex("cd 05 f4"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(5);
    const sp = Number(g.cpu.getGpr(4) & 0xffffn);
    expect(g.ram[sp] | (g.ram[sp + 1] << 8)).toBe(2); // IP after INT 5
    expect(g.ram[sp + 2] | (g.ram[sp + 3] << 8)).toBe(CODE >> 4);
  });
  it("divide error is #DE (vector 0) with IP at the DIV", () => {
    const g = makeGuest("real", hex("31 c9 b8 05 00 f6 f1 f4"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(0);
    const sp = Number(g.cpu.getGpr(4) & 0xffffn);
    expect(g.ram[sp] | (g.ram[sp + 1] << 8)).toBe(5);
  });
});

describe("protected mode", () => {
  it("CLI at CPL 3 with IOPL 0 is #GP(0)", () => {
    const g = makeGuest("prot32", hex("fa f4"));
    g.cpu.setSegment(1, { selector: SEL.ucode32, base: 0n, limit: 0xffffffff, ar: 0xc0fb });
    g.cpu.setSegment(2, { selector: SEL.udata32, base: 0n, limit: 0xffffffff, ar: 0xc0f3 });
    g.cpu.setGpr(4, 0x7000n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    const esp = Number(g.cpu.getGpr(4));
    // error code, EIP, CS, EFLAGS, ESP, SS (ring change through the TSS)
    expect([
      r32(g.ram, esp),
      r32(g.ram, esp + 4),
      r32(g.ram, esp + 8),
      r32(g.ram, esp + 16),
      r32(g.ram, esp + 20),
    ]).toEqual([0, CODE, SEL.ucode32, 0x7000, SEL.udata32]);
  });
  it("port I/O at CPL 3 is checked against the TSS I/O permission bitmap", () => {
    const ports: number[] = [];
    const g = makeGuest("prot32", hex("b0 01 e6 80 e6 81 f4"), { portOut: (port) => ports.push(port) });
    g.cpu.setSegment(1, { selector: SEL.ucode32, base: 0n, limit: 0xffffffff, ar: 0xc0fb });
    g.cpu.setSegment(2, { selector: SEL.udata32, base: 0n, limit: 0xffffffff, ar: 0xc0f3 });
    g.cpu.setSegment(7, { selector: SEL.tss, base: BigInt(TSS), limit: 0x68 + 0x20, ar: 0x8b });
    g.ram[TSS + 0x66] = 0x68;
    g.ram[TSS + 0x68 + 0x10] = 0x02; // port 0x81 denied, 0x80 allowed
    g.cpu.setGpr(4, 0x7000n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(ports).toEqual([0x80]);
    expect(loggedVector(g)).toBe(13);
    expect(r32(g.ram, Number(g.cpu.getGpr(4)) + 4)).toBe(CODE + 4);
  });
  it("loading a selector beyond the GDT limit is #GP(selector)", () => {
    const g = makeGuest("prot32", hex("66 b8 30 12 8e d8 f4"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    expect(r32(g.ram, Number(g.cpu.getGpr(4)))).toBe(0x1230);
  });
  it("#GP whose gate is not present becomes a double fault", () => {
    const g = makeGuest("prot32", hex("66 b8 34 12 8e d8 f4"));
    g.ram[IDT + 13 * 8 + 5] &= 0x7f;
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(8);
    expect(r32(g.ram, Number(g.cpu.getGpr(4)))).toBe(0);
  });
});

describe("long mode", () => {
  it("unimplemented opcodes raise #UD and are counted; UD2 is not counted", () => {
    const g = makeGuest("long", hex("90 0f 0f c0 00 f4"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(6);
    expect(r64(g.ram, Number(g.cpu.getGpr(4)))).toBe(BigInt(CODE + 1));
    expect(g.cpu.udCounts[0x10f]).toBe(1);
    expect(g.cpu.udTotal).toBe(1);
    const g2 = makeGuest("long", hex("0f 0b"));
    expect(g2.run()).toBe(StopReason.Halted);
    expect(loggedVector(g2)).toBe(6);
    expect(g2.cpu.udTotal).toBe(0);
  });
  it("INT3 pushes the address after it", () => {
    const g = makeGuest("long", hex("cc f4"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(3);
    expect(r64(g.ram, Number(g.cpu.getGpr(4)))).toBe(BigInt(CODE + 1));
  });
  it("IRETQ to ring 3, then INT3 through a DPL-0 gate is #GP(vector*8+2)", () => {
    const g = makeGuest("long", hex("6a 3b 68 00 70 00 00 68 02 02 00 00 6a 43 68 15 00 01 00 48 cf cc f4"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    const rsp = Number(g.cpu.getGpr(4));
    expect(r64(g.ram, rsp)).toBe(BigInt(3 * 8 + 2));
    expect(r64(g.ram, rsp + 8)).toBe(BigInt(CODE + 0x15));
    expect(r64(g.ram, rsp + 16)).toBe(BigInt(SEL.ucode64));
    expect(r64(g.ram, rsp + 32)).toBe(0x7000n);
  });
  it("an exception with no usable IDT escalates to a triple fault (shutdown)", () => {
    const g = makeGuest("long", hex("0f 0b"));
    g.cpu.setIdtr({ base: BigInt(IDT), limit: 0 });
    expect(g.run()).toBe(StopReason.Shutdown);
    expect(g.cpu.activity).toBe(2);
    expect(g.hooks.lastExit).toEqual({ kind: "triple-fault" });
    expect(g.cpu.getRip()).toBe(BigInt(CODE));
  });
  it("an exception can be turned into an exit before delivery", () => {
    const g = makeGuest("long", hex("0f 0b"), { event: (v) => v === 6 });
    expect(g.run()).toBe(StopReason.Exit);
    expect(g.hooks.lastExit).toEqual({ kind: "event", vector: 6, errorCode: undefined });
    expect(g.cpu.getRip()).toBe(BigInt(CODE));
  });
});

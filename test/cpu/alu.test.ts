// Integer instructions: results and flags of ALU, multiply/divide, shifts, bit operations and
// atomics, hand-assembled (bytes produced once with binutils `as`).
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { hex, loggedVector, type Mode, makeGuest, r64 } from "./guest.js";

const ARITH = 0x8d5n;

function run(mode: Mode, code: string) {
  const g = makeGuest(mode, hex(code));
  expect(g.run()).toBe(StopReason.Halted);
  return g;
}

describe("ALU and flags", () => {
  it("add 32-bit wraps with CF ZF PF AF", () => {
    const g = run("prot32", "b8 ff ff ff ff 83 c0 01 9c 5a f4");
    expect(g.cpu.getGpr(0)).toBe(0n);
    expect(g.cpu.getGpr(2) & ARITH).toBe(0x55n);
  });
  it("sub 64-bit borrows: CF SF AF, no PF", () => {
    const g = run("long", "48 c7 c0 05 00 00 00 48 c7 c3 07 00 00 00 48 29 d8 9c 5a f4");
    expect(g.cpu.getGpr(0)).toBe(0xfffffffffffffffen);
    expect(g.cpu.getGpr(2) & ARITH).toBe(0x91n);
  });
  it("adc 64-bit carries through the high half", () => {
    const g = run("long", "48 c7 c0 ff ff ff ff f9 48 83 d0 00 9c 5a f4");
    expect(g.cpu.getGpr(0)).toBe(0n);
    expect(g.cpu.getGpr(2) & ARITH).toBe(0x55n);
  });
  it("imul 64-bit overflow sets CF and OF", () => {
    const g = run("long", "48 b8 00 00 00 00 01 00 00 00 48 0f af c0 9c 5a f4");
    expect(g.cpu.getGpr(0)).toBe(0n);
    expect(g.cpu.getGpr(2) & 0x801n).toBe(0x801n);
  });
  it("mul 64-bit gives the 128-bit product in rdx:rax", () => {
    const g = run("long", "48 b8 89 67 45 23 01 00 00 00 48 bb 21 43 65 87 09 00 00 00 48 f7 e3 f4");
    const p = 0x123456789n * 0x987654321n;
    expect(g.cpu.getGpr(0)).toBe(p & 0xffffffffffffffffn);
    expect(g.cpu.getGpr(2)).toBe(p >> 64n);
  });
  it("div 64-bit divides rdx:rax", () => {
    const g = run("long", "48 c7 c2 01 00 00 00 48 c7 c0 00 00 00 00 48 c7 c3 03 00 00 00 48 f7 f3 f4");
    expect(g.cpu.getGpr(0)).toBe((1n << 64n) / 3n);
    expect(g.cpu.getGpr(2)).toBe((1n << 64n) % 3n);
  });
  it("idiv 32-bit truncates toward zero", () => {
    const g = run("prot32", "b8 f9 ff ff ff 99 b9 02 00 00 00 f7 f9 f4");
    expect(g.cpu.getGpr(0) & 0xffffffffn).toBe(0xfffffffdn);
    expect(g.cpu.getGpr(2) & 0xffffffffn).toBe(0xffffffffn);
  });
  it("div by zero raises #DE with RIP at the instruction", () => {
    const g = makeGuest("prot32", hex("31 c9 f7 f1 f4"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(0);
    // the handler stub frame: EIP pushed = the DIV instruction (CODE + 2)
    const esp = Number(g.cpu.getGpr(4));
    expect(Number(r64(g.ram, esp) & 0xffffffffn)).toBe(0x10002);
  });
  it("rotates, shifts, double shifts and bit scans", () => {
    const g = run(
      "long",
      "48 b8 01 00 00 00 00 00 00 80 48 d1 c0 48 89 c3 b9 00 00 00 80 c1 f9 1f ba 78 56 34 12 0f a4 ca 08 be f0 00 00 00 0f bc fe 44 0f bd c6 f3 4c 0f b8 c8 f3 4c 0f bc d6 f3 4c 0f bd de f4",
    );
    const r = (i: number) => g.cpu.getGpr(i);
    expect(r(3)).toBe(3n);
    expect(r(1)).toBe(0xffffffffn);
    expect(r(2)).toBe(0x345678ffn);
    expect(r(7)).toBe(4n);
    expect(r(8)).toBe(7n);
    expect(r(9)).toBe(2n);
    expect(r(10)).toBe(4n);
    expect(r(11)).toBe(56n);
  });
  it("bt/bts with a register bit offset address beyond the operand", () => {
    const g = run(
      "long",
      "48 c7 04 25 00 00 05 00 00 00 00 00 b8 46 00 00 00 0f ab 04 25 00 00 05 00 0f 92 c3 48 0f ba 24 25 00 00 05 00 06 0f 93 c7 48 8b 0c 25 08 00 05 00 f4",
    );
    expect(g.cpu.getGpr(3) & 0xffffn).toBe(0x0100n);
    expect(g.cpu.getGpr(1)).toBe(0x40n);
  });
  it("cmpxchg, xadd, bswap", () => {
    const g = run(
      "long",
      "48 c7 04 25 00 00 05 00 05 00 00 00 b8 05 00 00 00 b9 09 00 00 00 f0 0f b1 0c 25 00 00 05 00 0f 94 c3 b8 01 00 00 00 0f b1 0c 25 00 00 05 00 0f 94 c7 ba 03 00 00 00 0f c1 14 25 00 00 05 00 0f c9 f4",
    );
    expect(g.cpu.getGpr(3) & 0xffffn).toBe(0x0001n);
    expect(g.cpu.getGpr(0)).toBe(9n);
    expect(r64(g.ram, 0x50000)).toBe(12n);
    expect(g.cpu.getGpr(2)).toBe(9n);
    expect(g.cpu.getGpr(1)).toBe(0x09000000n);
  });
  it("negative displacements, RIP-relative and 32-bit LEA in 64-bit mode", () => {
    const g = makeGuest(
      "long",
      hex(
        "48 c7 c7 2b 20 10 00 48 8d 77 f5 48 c7 c3 f0 ff ff ff 8b 83 10 00 05 00 48 8d 0d 00 ff ff ff 8d 97 d4 df df ff f4",
      ),
    );
    g.ram.set([0x78, 0x56, 0x34, 0x12], 0x50000);
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(6)).toBe(0x102020n);
    expect(g.cpu.getGpr(0)).toBe(0x12345678n);
    expect(g.cpu.getGpr(1)).toBe(BigInt(0x10000 + 31 - 0x100));
    expect(g.cpu.getGpr(2)).toBe(0xffefffffn);
  });
});

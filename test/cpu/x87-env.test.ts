// FNSTENV/FLDENV and FNSAVE/FRSTOR on the interpreter in every mode: the 14/28-byte and 94/108-byte
// images in the real-mode and protected-mode layouts (SDM Vol. 1 Figures 8-9 to 8-12), what FNSAVE
// and FNSTENV leave behind, and faults that come before anything is written (segment limit, page).

import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { fxImage } from "../../lib/cpu/x87.js";
import { type F80, toF80 } from "../../lib/cpu/x87-regs.js";
import { EXC_LOG, type Guest, le32, type Mode, makeGuest, PML4, r32 } from "./guest.js";

const DATA = 0x5000;
const u16 = (ram: Uint8Array, a: number) => ram[a]! | (ram[a + 1]! << 8);
const vector = (g: Guest) => r32(g.ram, EXC_LOG) | 0;
const f80Bytes = ([lo, hi, se]: F80) => [...le32(lo), ...le32(hi), se & 0xff, se >> 8];

/** op /reg with an absolute operand in the mode's default addressing */
function abs(mode: Mode, op: number, reg: number, addr: number, pre: number[] = []): number[] {
  if (mode === "real") return [...pre, op, (reg << 3) | 6, addr & 0xff, (addr >> 8) & 0xff];
  if (mode === "prot32") return [...pre, op, (reg << 3) | 5, ...le32(addr)];
  return [...pre, op, (reg << 3) | 4, 0x25, ...le32(addr)];
}

/** fld1; fldz; fldpi; fchs: ST0 = -pi, ST1 = 0, ST2 = 1 (TOP 5), then `body`, then hlt */
function guest(mode: Mode, body: number[]): Guest {
  const code = [0xdb, 0xe3, 0xd9, 0xe8, 0xd9, 0xee, 0xd9, 0xeb, 0xd9, 0xe0, ...body, 0xf4];
  return makeGuest(mode, code);
}

function run(g: Guest): void {
  expect(g.run()).toBe(StopReason.Halted);
}

describe("FNSTENV and FNSAVE images", () => {
  for (const mode of ["real", "prot32", "long"] as const) {
    const o32 = mode === "real" ? [0x66] : [];
    const o16 = mode === "real" ? [] : [0x66];

    it(`${mode}: the 28-byte environment, reserved halves all ones, pointers zero; FNSTENV masks all`, () => {
      const g = guest(mode, [...abs(mode, 0xd9, 6, DATA, o32), ...abs(mode, 0xd9, 7, DATA + 0x40)]);
      run(g);
      const d = (o: number) => r32(g.ram, DATA + o);
      expect(d(0)).toBe(0xffff037f);
      expect(d(4)).toBe((0xffff0000 | (5 << 11)) >>> 0);
      // R5 valid (-pi), R6 zero, R7 valid (1), R0-R4 empty
      expect(d(8)).toBe((0xffff0000 | 0b00_01_00_11_11_11_11_11) >>> 0);
      // real mode: FIP[15:0] and FDP[15:0] beside reserved halves; protected: FCS/FDS are zero
      expect([d(12), d(16), d(20), d(24)]).toEqual(
        mode === "real" ? [0xffff0000, 0, 0xffff0000, 0] : [0, 0, 0, 0xffff0000],
      );
      expect(u16(g.ram, DATA + 0x40)).toBe(0x37f);
    });

    it(`${mode}: the 14-byte environment with a 16-bit operand size`, () => {
      const g = guest(mode, abs(mode, 0xd9, 6, DATA, o16));
      run(g);
      const words = Array.from({ length: 7 }, (_, k) => u16(g.ram, DATA + 2 * k));
      expect(words).toEqual([0x37f, 5 << 11, 0b00_01_00_11_11_11_11_11, 0, 0, 0, 0]);
      expect(g.ram[DATA + 14]).toBe(0);
      expect(g.cpu.fpuCw).toBe(0x37f);
    });

    it(`${mode}: FNSAVE (94 and 108 bytes) stores ST0-7 and reinitialises; FRSTOR brings it all back`, () => {
      for (const [pre, env] of [
        [o16, 14],
        [o32, 28],
      ] as const) {
        const g = guest(mode, [
          ...abs(mode, 0xd9, 7, DATA + 0x200), // fnstcw: 0x37f before
          ...abs(mode, 0xdd, 6, DATA, pre),
          ...abs(mode, 0xdd, 7, DATA + 0x202), // fnstsw after FNSAVE: 0
          ...abs(mode, 0xdd, 4, DATA, pre),
        ]);
        const before = afterPrologue(g);
        run(g);
        const st = (k: number) => Array.from(g.ram.subarray(DATA + env + 10 * k, DATA + env + 10 * k + 10));
        // ST0 = -pi as 80 bits (from a double), ST1 = +0, ST2 = 1.0
        expect(st(0)).toEqual(f80Bytes(toF80(-Math.PI)));
        expect(st(1)).toEqual(new Array(10).fill(0));
        expect(st(2)).toEqual([0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
        expect(u16(g.ram, DATA + 0x202)).toBe(0);
        expect(Array.from(fxImage(g.cpu).subarray(0, 112))).toEqual(Array.from(before.subarray(0, 112)));
        expect(g.cpu.fpuTop).toBe(5);
      }
    });
  }

  it("FLDENV takes only the empty tags from the tag word and keeps the registers", () => {
    const mode = "long";
    const g = guest(mode, abs(mode, 0xd9, 4, DATA));
    g.ram.set([...le32(0x27f), ...le32(3 << 11), ...le32(0xffff & ~(3 << 6))], DATA); // R3 "valid"
    run(g);
    expect([g.cpu.fpuCw, g.cpu.fpuTop, g.cpu.fpuTag & 0xff]).toEqual([0x27f, 3, 1 << 3]);
  });
});

/** the FXSAVE image the guest will have right after its prologue (fld1; fldz; fldpi; fchs) */
function afterPrologue(g: Guest): Uint8Array {
  const save = g.cpu.getExtendedState();
  const rip = g.cpu.getRip();
  // run the prologue alone: 5 instructions
  for (let k = 0; k < 5; k++) g.cpu.run(1);
  const img = fxImage(g.cpu);
  g.cpu.setExtendedState(save);
  g.cpu.setRip(rip);
  return img;
}

describe("faults before the first byte is written", () => {
  it("real mode: an image that passes the 64 KiB limit is #GP and writes nothing", () => {
    const g = guest("real", abs("real", 0xdd, 6, 0xffc0, [0x66]));
    run(g);
    expect(vector(g)).toBe(13);
    expect(g.ram.subarray(0xffc0, 0x10000).every((b) => b === 0)).toBe(true);
  });

  it("long mode: an image that crosses into a non-present page is #PF and writes nothing", () => {
    const g = guest("long", abs("long", 0xdd, 6, 0x3fffc0));
    // the 2-MiB page at 4 MiB is not present
    g.ram.fill(0, PML4 + 0x2000 + 8 * 2, PML4 + 0x2000 + 8 * 3);
    run(g);
    expect(vector(g)).toBe(14);
    expect(g.cpu.getControl("cr2")).toBe(0x400000n);
    expect(g.ram.subarray(0x3fffc0, 0x400000).every((b) => b === 0)).toBe(true);
    // nothing changed: FNSAVE's reinitialisation did not happen either
    expect(g.cpu.fpuTop).toBe(5);
  });

  it("a store that faults leaves FSW alone (no PE and ES to turn into #MF when it runs again)", () => {
    // fldcw [DATA] (PE unmasked); fist dword [0x400000] of -pi: inexact, to a non-present page
    const g = guest("long", [...abs("long", 0xd9, 5, DATA), ...abs("long", 0xdb, 2, 0x400000)]);
    g.ram.set([0x5f, 0x03], DATA);
    g.ram.fill(0, PML4 + 0x2000 + 8 * 2, PML4 + 0x2000 + 8 * 3);
    run(g);
    expect(vector(g)).toBe(14);
    expect(g.cpu.fpuSw & 0xff).toBe(0);
  });

  it("FRSTOR reads the whole image before it changes a register", () => {
    const g = guest("long", abs("long", 0xdd, 4, 0x3fffc0));
    g.ram.fill(0, PML4 + 0x2000 + 8 * 2, PML4 + 0x2000 + 8 * 3);
    run(g);
    expect(vector(g)).toBe(14);
    expect([g.cpu.fpuCw, g.cpu.fpuTop, g.cpu.fpuTag & 0xff]).toEqual([0x37f, 5, 0xe0]);
  });
});

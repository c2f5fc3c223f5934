// x87 control/status handling and arithmetic, FXSAVE layout, and the SSE2 integer/scalar subset.
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { hex, makeGuest, r32, r64 } from "./guest.js";

function f64bytes(v: number): number[] {
  return Array.from(new Uint8Array(new Float64Array([v]).buffer));
}
function readF64(ram: Uint8Array, a: number): number {
  return new Float64Array(ram.slice(a, a + 8).buffer)[0];
}

describe("x87", () => {
  it("FNINIT, FLDCW/FNSTCW, FLD/FADD/FSTP, FILD/FISTP, FNSTSW, FXSAVE", () => {
    const g = makeGuest(
      "long",
      hex(`db e3 d9 3c 25 00 00 05 00 66 c7 04 25 02 00 05 00 7f 0c d9 2c 25 02 00 05 00 d9 3c 25 04 00 05 00
       dd 04 25 10 00 05 00 dc 04 25 18 00 05 00 dd 1c 25 20 00 05 00 db 04 25 28 00 05 00 db 1c 25 2c 00 05 00
       df e0 0f ae 04 25 00 01 05 00 f4`),
    );
    g.ram.set(f64bytes(1.5), 0x50010);
    g.ram.set(f64bytes(2.25), 0x50018);
    g.ram.set([0xf9, 0xff, 0xff, 0xff], 0x50028);
    g.cpu.setGpr(0, 0xffffn);
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.ram[0x50000] | (g.ram[0x50001] << 8)).toBe(0x37f);
    expect(g.ram[0x50004] | (g.ram[0x50005] << 8)).toBe(0xc7f);
    expect(readF64(g.ram, 0x50020)).toBe(3.75);
    expect(r32(g.ram, 0x5002c) | 0).toBe(-7);
    expect(g.cpu.getGpr(0) & 0xffffn).toBe(0n);
    expect(g.ram[0x50100] | (g.ram[0x50101] << 8)).toBe(0xc7f);
    expect(r32(g.ram, 0x50118)).toBe(0x1f80);
  });
  it("FXRSTOR of 80-bit reals near the bottom of the double range keeps them exact", () => {
    // fxrstor [0x50000]; fstp qword [0x50200]; fstp qword [0x50208]; hlt
    const g = makeGuest("long", hex("0f ae 0c 25 00 00 05 00 dd 1c 25 00 02 05 00 dd 1c 25 08 02 05 00 f4"));
    const img = 0x50000;
    g.ram.set([0x7f, 0x03, 0, 0, 0x03], img); // FCW 0x37f, TOP 0, R0 and R1 valid
    g.ram.set([0x80, 0x1f], img + 24); // MXCSR
    const real = (k: number, mantissaHi: number, exponent: number) => {
      g.ram.set([0, 0, 0, 0, ...[0, 8, 16, 24].map((s) => (mantissaHi >>> s) & 0xff)], img + 32 + 16 * k);
      g.ram.set([exponent & 0xff, exponent >> 8], img + 40 + 16 * k);
    };
    real(0, 0xc0000000, 16383 - 1020); // 1.5 * 2^-1020: a normal double
    real(1, 0x80000000, 16383 - 1070); // 2^-1070: a denormal double
    expect(g.run()).toBe(StopReason.Halted);
    expect(readF64(g.ram, 0x50200)).toBe(1.5 * 2 ** -1020);
    expect(readF64(g.ram, 0x50208)).toBe(2 ** -1070);
  });
});

describe("SSE2", () => {
  it("moves, PADDD, PCMPEQB/PMOVMSKB, PSHUFD, scalar double, conversions", () => {
    const g = makeGuest(
      "long",
      hex(`f3 0f 6f 04 25 00 00 05 00 66 0f 6f 0c 25 10 00 05 00 66 0f fe c1 66 0f ef d2 66 0f 74 d0 66 0f d7 c2
       66 0f 70 d8 1b f3 0f 7f 1c 25 20 00 05 00 f2 0f 10 24 25 30 00 05 00 f2 0f 58 e4 f2 48 0f 2c dc
       66 48 0f 7e c1 66 0f 60 ed f4`),
    );
    g.cpu.setControl("cr4", 0x220n);
    const dw = (a: number, vals: number[]) => {
      for (let i = 0; i < vals.length; i++) {
        const v = vals[i];
        g.ram.set([v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff], a + 4 * i);
      }
    };
    dw(0x50000, [1, 2, 3, 4]);
    dw(0x50010, [0x10, 0x20, 0x30, -4]);
    g.ram.set(f64bytes(2.5), 0x50030);
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(0)).toBe(0xfeeen);
    expect([r32(g.ram, 0x50020), r32(g.ram, 0x50024), r32(g.ram, 0x50028), r32(g.ram, 0x5002c)]).toEqual([
      0, 0x33, 0x22, 0x11,
    ]);
    expect(g.cpu.getGpr(3)).toBe(5n);
    expect(g.cpu.getGpr(1)).toBe(0x0000002200000011n);
    expect(r64(g.ram, 0x50020)).toBe(0x3300000000n);
  });
  it("SSE without CR4.OSFXSR is #UD", () => {
    const g = makeGuest("long", hex("66 0f ef d2 f4"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(r32(g.ram, 0x9000)).toBe(6);
  });
});

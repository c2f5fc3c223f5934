// MMX in a guest: the aliasing with the x87 registers as FXSAVE/FXRSTOR and x87 loads see it,
// EMMS and the tag word, the CR0.EM/#UD, CR0.TS/#NM and pending-exception/#MF checks, MASKMOVQ's
// segment, MOVQ2DQ/MOVDQ2Q, the state surviving a vCPU migration, encodings that are #UD, and the
// lengths of every generated MMX form against iced-x86. (Semantics of each instruction against
// the host CPU: mmx-differential.test.ts.)

import fc from "fast-check";
import { Decoder, DecoderOptions, Mnemonic } from "iced-x86";
import { describe, expect, it } from "vitest";
import { Interpreter, instructionLength, StopReason } from "../../lib/cpu/index.js";
import { fxImage } from "../../lib/cpu/x87.js";
import { hex, loggedVector, makeGuest, r64 } from "./guest.js";
import { mmxForms } from "./support/insn-forms-mmx.js";

const DATA = 0x50000;

function w64(ram: Uint8Array, a: number, v: bigint): void {
  for (let i = 0; i < 8; i++) ram[a + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}
function r16(ram: Uint8Array, a: number): number {
  return ram[a] | (ram[a + 1] << 8);
}
/** an FXSAVE register slot as [significand, sign/exponent] */
function st(ram: Uint8Array, image: number, k: number): [bigint, number] {
  return [r64(ram, image + 32 + 16 * k), r16(ram, image + 40 + 16 * k)];
}
function paddw(a: bigint, b: bigint): bigint {
  let r = 0n;
  for (let i = 0n; i < 64n; i += 16n) r |= (((a >> i) + (b >> i)) & 0xffffn) << i;
  return r;
}

describe("MMX and the x87 state", () => {
  it("mm registers are the x87 registers' significands: FXSAVE, EMMS, FXRSTOR, an x87 store", () => {
    // fninit; fld1; movq mm0, [DATA]; paddw mm0, [DATA+8]; movq [DATA+0x10], mm0; movd mm3, eax;
    // fxsave [DATA+0x100]; emms; fxsave [DATA+0x300]; fxrstor [DATA+0x100]; movq rbx, mm0;
    // movq rcx, mm3; fstp qword [DATA+0x20]; hlt
    const g = makeGuest(
      "long",
      hex(`db e3 d9 e8 0f 6f 04 25 00 00 05 00 0f fd 04 25 08 00 05 00 0f 7f 04 25 10 00 05 00 0f 6e d8
       0f ae 04 25 00 01 05 00 0f 77 0f ae 04 25 00 03 05 00 0f ae 0c 25 00 01 05 00 48 0f 7e c3
       48 0f 7e d9 dd 1c 25 20 00 05 00 f4`),
    );
    const a = 0x7fff0001fffe1234n;
    const b = 0x0001000200030000n;
    const sum = paddw(a, b);
    w64(g.ram, DATA, a);
    w64(g.ram, DATA + 8, b);
    g.cpu.setGpr(0, 0xffffffff_deadbeefn);
    expect(g.run()).toBe(StopReason.Halted);
    expect(r64(g.ram, DATA + 0x10)).toBe(sum);
    // after MMX: TOP 0, every register valid; mm0/mm3 with sign and exponent all ones; FLD1's
    // register (R7, ST7 now) untouched
    const img = DATA + 0x100;
    expect(r16(g.ram, img + 2) & 0x3800).toBe(0);
    expect(g.ram[img + 4]).toBe(0xff);
    expect(st(g.ram, img, 0)).toEqual([sum, 0xffff]);
    expect(st(g.ram, img, 3)).toEqual([0xdeadbeefn, 0xffff]);
    expect(st(g.ram, img, 7)).toEqual([1n << 63n, 0x3fff]);
    // EMMS: all tags empty, the contents stay
    const emptied = DATA + 0x300;
    expect(g.ram[emptied + 4]).toBe(0);
    expect(st(g.ram, emptied, 0)).toEqual([sum, 0xffff]);
    // FXRSTOR brings the MMX values back bit for bit
    expect(g.cpu.getGpr(3)).toBe(sum);
    expect(g.cpu.getGpr(1)).toBe(0xdeadbeefn);
    // to the x87 an MMX value with the integer bit and a non-zero fraction is a NaN
    expect(Number.isNaN(new Float64Array(g.ram.slice(DATA + 0x20, DATA + 0x28).buffer)[0])).toBe(true);
    // FSTP popped the register FXRSTOR had made valid
    expect(g.cpu.fpuTop).toBe(1);
  });

  it("the MMX state survives a migration through ExtendedState", () => {
    // movd mm5, eax; psllq mm5, 40; hlt
    const g = makeGuest("long", hex("0f 6e e8 0f 73 f5 28 f4"));
    g.cpu.setGpr(0, 0xabcdefn);
    expect(g.run()).toBe(StopReason.Halted);
    const other = new Interpreter();
    other.setExtendedState(g.cpu.getExtendedState());
    expect(fxImage(other)).toEqual(fxImage(g.cpu));
    const image = fxImage(other);
    const dv = new DataView(image.buffer);
    expect(dv.getBigUint64(32 + 16 * 5, true)).toBe(0xabcdefn << 40n);
  });

  it("CR0.EM: MMX instructions and EMMS raise #UD (x87 ones #NM)", () => {
    for (const [code, vector] of [
      ["0f 6f c1 f4", 6], // movq mm0, mm1
      ["0f 77 f4", 6], // emms
      ["d9 e8 f4", 7], // fld1
    ] as const) {
      const g = makeGuest("long", hex(code));
      g.cpu.setControl("cr0", 0x80000015n);
      g.run();
      expect(loggedVector(g), code).toBe(vector);
    }
  });

  it("CR0.TS: #NM before anything changes", () => {
    for (const code of ["0f fc c1 f4", "0f 77 f4"]) {
      const g = makeGuest("long", hex(code));
      g.cpu.setControl("cr0", 0x80000019n);
      g.cpu.fpuTop = 5;
      g.cpu.fpuTag = 0x20;
      g.run();
      expect(loggedVector(g), code).toBe(7);
      expect([g.cpu.fpuTop, g.cpu.fpuTag]).toEqual([5, 0x20]);
    }
  });

  it("a pending x87 exception: #MF with CR0.NE, before the TOP/tag change", () => {
    for (const code of ["0f fc c1 f4", "0f 77 f4"]) {
      const g = makeGuest("long", hex(code));
      g.cpu.setControl("cr0", 0x80000031n);
      g.cpu.fpuCw = 0x37e; // invalid-operation unmasked
      g.cpu.fpuSw = 0x8081 | (3 << 11); // IE, ES, B
      g.cpu.fpuTop = 3;
      g.run();
      expect(loggedVector(g), code).toBe(16);
      expect(g.cpu.fpuTop).toBe(3);
    }
    // no exception pending: paddb runs
    const g = makeGuest("long", hex("0f fc c1 f4"));
    g.cpu.setControl("cr0", 0x80000031n);
    g.cpu.fpuTop = 3;
    expect(g.run()).toBe(StopReason.Halted);
    expect([loggedVector(g), g.cpu.fpuTop, g.cpu.fpuTag & 0xff]).toEqual([-1, 0, 0xff]);
  });

  it("a memory operand past the segment limit: #GP before the TOP/tag change", () => {
    for (const code of ["26 0f 6f 05 fc 0f 00 00", "26 0f 7f 05 fc 0f 00 00", "26 0f fc 05 f9 0f 00 00"]) {
      // movq mm0, es:[0xffc]; movq es:[0xffc], mm0; paddb mm0, es:[0xff9]: past a 0xfff limit
      const g = makeGuest("prot32", hex(`${code} f4`));
      g.cpu.setSegment(0, { selector: 0x10, base: 0n, limit: 0xfff, ar: 0x4093 });
      g.cpu.fpuTop = 4;
      g.run();
      expect(loggedVector(g), code).toBe(13);
      expect([g.cpu.fpuTop, g.cpu.fpuTag], code).toEqual([4, 0]);
    }
  });

  it("MASKMOVQ stores the selected bytes at DS:RDI, or at a segment override's base", () => {
    // movq mm0, [DATA]; movq mm1, [DATA+8]; maskmovq mm0, mm1; fs maskmovq mm0, mm1; hlt
    const g = makeGuest(
      "long",
      hex("0f 6f 04 25 00 00 05 00 0f 6f 0c 25 08 00 05 00 0f f7 c1 64 0f f7 c1 f4"),
    );
    const data = 0x8877665544332211n;
    const mask = 0x80ff007f00800001n; // top bits set in bytes 2, 6, 7
    w64(g.ram, DATA, data);
    w64(g.ram, DATA + 8, mask);
    g.cpu.setGpr(7, BigInt(DATA + 0x40));
    g.cpu.setSegment(4, { selector: 0, base: 0x1000n, limit: 0xffffffff, ar: 0xc093 });
    g.ram.fill(0xee, DATA + 0x40, DATA + 0x48);
    g.ram.fill(0xee, DATA + 0x1040, DATA + 0x1048);
    expect(g.run()).toBe(StopReason.Halted);
    const byte = (v: bigint, i: number) => Number((v >> BigInt(8 * i)) & 0xffn);
    const expected = Array.from({ length: 8 }, (_, i) => (byte(mask, i) & 0x80 ? byte(data, i) : 0xee));
    expect(expected.filter((b) => b !== 0xee)).toHaveLength(3);
    expect(Array.from(g.ram.subarray(DATA + 0x40, DATA + 0x48))).toEqual(expected);
    expect(Array.from(g.ram.subarray(DATA + 0x1040, DATA + 0x1048))).toEqual(expected);
  });

  it("MOVQ2DQ and MOVDQ2Q move between the two register files", () => {
    // movq mm2, [DATA]; movq2dq xmm9, mm2; movdq2q mm4, xmm10; movq rax, mm4; hlt
    const g = makeGuest("long", hex("0f 6f 14 25 00 00 05 00 f3 44 0f d6 ca f2 41 0f d6 e2 48 0f 7e e0 f4"));
    g.cpu.setControl("cr4", 0x220n);
    w64(g.ram, DATA, 0x0123456789abcdefn);
    g.cpu.xmm.set([1, 2, 3, 4], 9 * 4);
    g.cpu.xmm.set([0x11111111, 0x22222222, 5, 6], 10 * 4);
    expect(g.run()).toBe(StopReason.Halted);
    expect(Array.from(g.cpu.xmm.subarray(36, 40)).map((v) => v >>> 0)).toEqual([
      0x89abcdef, 0x01234567, 0, 0,
    ]);
    expect(g.cpu.getGpr(0)).toBe(0x2222222211111111n);
  });

  it("encodings without an MMX form raise #UD, not counted as unimplemented", () => {
    for (const code of [
      "0f 6c c1", // punpcklqdq exists only for xmm
      "0f 73 d9 01", // psrldq (/3) likewise
      "0f d6 c1", // movq xmm/m64, xmm needs 66
      "0f e7 c1", // movntq to a register
      "0f c5 00 01", // pextrw from memory
      "0f 71 00 01", // shift group with a memory operand
      "f0 0f fc c1", // LOCK paddb
      "f0 0f 7f 00", // LOCK movq to memory
    ]) {
      const g = makeGuest("long", hex(`${code} f4`));
      g.run();
      expect(loggedVector(g), code).toBe(6);
      expect(g.cpu.udTotal, code).toBe(0);
    }
  });
});

describe("MMX encodings", () => {
  it("every generated MMX form decodes to its mnemonic with the same length in iced-x86 and ours", () => {
    const bad: string[] = [];
    for (const [name, arb] of Object.entries(mmxForms)) {
      for (const insn of fc.sample(arb, { seed: 3, numRuns: 400 })) {
        const bytes = Uint8Array.from(insn.bytes);
        for (const bits of [64, 32] as const) {
          // REX, and the 67 prefix (16-bit addressing there), change the meaning in 32-bit code
          if (bits === 32 && (bytes[0] === 0x67 || bytes.some((b, i) => i < 2 && b >= 0x40 && b <= 0x4f)))
            continue;
          const decoder = new Decoder(bits, bytes, DecoderOptions.None);
          const d = decoder.decode();
          const mnemonic = Mnemonic[d.mnemonic]?.toLowerCase();
          const ours = instructionLength(bytes, 0, bits);
          if (
            d.isInvalid ||
            d.length !== bytes.length ||
            ours !== bytes.length ||
            mnemonic !== insn.text.split(" ")[0]
          )
            bad.push(
              `${name} ${bits}: ${insn.text} ${Buffer.from(bytes).toString("hex")}: iced ${mnemonic}/${d.length}, ours ${ours}`,
            );
          d.free();
          decoder.free();
        }
      }
    }
    expect(bad.slice(0, 20)).toEqual([]);
  });
});

// IMUL with register operands runs inline in compiled blocks (block-compile.ts Gen.imul): each
// operand shape the inline code tells apart (zero-extended 32-bit values, sign-extended ones whose
// product a double holds, and the rest, through mulS64) must give single-stepping's result, CF/OF
// and the flags later ops derive from the result, for IMUL r64, r/m64; r32, r/m32; and the
// immediate forms. The loop runs each block interpreted and compiled (support/block-agree.ts).
//
// mov ebp, 3 ; L: mov rax, rbx ; imul rax, rcx ; seto r8b ; setc r9b ; sets r10b ; setz r11b ;
// setp r12b ; add r13, rax ; mov rdx, rcx ; imul rdx, rbx ; adc r13, rdx ; mov esi, ebx ;
// imul esi, ecx ; seto dil ; sets r10b ; add r13, rsi ; imul r14, rbx, -5 ; adc r13, r14 ;
// imul r15d, ecx, 0x12345 ; seto r11b ; setz r12b ; add r13, r15 ; imul rbx, rbx, 0x7fffffff ;
// jo 1f ; inc r8 ; 1: imul rcx, rax ; setc r9b ; dec ebp ; jnz L ; hlt

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { hex } from "./guest.js";
import { agree, genericOps, type Setup } from "./support/block-agree.js";

const code = hex(
  `bd 03 00 00 00 48 89 d8 48 0f af c1 41 0f 90 c0 41 0f 92 c1 41 0f 98 c2 41 0f 94 c3 41 0f 9a
   c4 49 01 c5 48 89 ca 48 0f af d3 49 11 d5 89 de 0f af f1 40 0f 90 c7 41 0f 98 c2 49 01 f5 4c
   6b f3 fb 4d 11 f5 44 69 f9 45 23 01 00 41 0f 90 c3 41 0f 94 c4 4d 01 fd 48 69 db ff ff ff 7f
   70 03 49 ff c0 48 0f af c8 41 0f 92 c1 ff cd 75 97 f4`,
);

const M64 = (1n << 64n) - 1n;
/** the operand shapes: zero-extended and sign-extended 32-bit values, edges, anything */
const operand = fc.oneof(
  fc.bigInt({ min: 0n, max: 0xffffffffn }),
  // zero-extended values whose product reaches 2^63 (overflow) or stays just below it
  fc.bigInt({ min: 0xb5000000n, max: 0xffffffffn }),
  fc.bigInt({ min: -(1n << 31n), max: (1n << 31n) - 1n }).map((v) => v & M64),
  fc.bigInt({ min: -(1n << 20n), max: 1n << 20n }).map((v) => v & M64),
  fc.constantFrom(
    0n,
    1n,
    0xffffffffn,
    0xb504f334n,
    M64,
    1n << 63n,
    (1n << 63n) - 1n,
    0x80000000n,
    0xffffffff80000000n,
    0x100000000n,
  ),
  fc.bigInt({ min: 0n, max: M64 }),
);

const setup = (rbx: bigint, rcx: bigint): Setup => ({
  at: 0x60000,
  data: new Uint8Array(0x100),
  regs: [
    [3, rbx],
    [1, rcx],
  ],
});

describe("IMUL inline in compiled blocks", () => {
  it("has no generic op but the HLT", () => {
    expect(genericOps("long", code, setup(3n, 5n))).toEqual([0xf4]);
  });

  it("gives single-stepping's products and flags for every operand shape", () => {
    fc.assert(
      fc.property(operand, operand, (rbx, rcx) => {
        expect(agree("long", code, setup(rbx, rcx)).stop).toBe(StopReason.Halted);
      }),
      { numRuns: 150 },
    );
  });
});

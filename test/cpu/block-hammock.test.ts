// A conditional branch forward to a later instruction of its block (in 64-bit code) skips the ops
// between inside the compiled function (block-compile.ts blockSource) instead of leaving it. The
// taken path must retire exactly the instructions single-stepping retires (a fault or an exit
// after the join reports its own instruction count), and where the paths meet with different flag
// states (the skipped ops set flags), each must leave its own. Nested skips that meet at one
// instruction, a skip to the loop's final branch and a load that faults or reads MMIO after a skip
// run interpreted, compiled, and compiled in slices (support/block-agree.ts).
//
// mov ecx, 200 ; L: mov edx, ecx ; and edx, 3 ; jz 1f ; add rax, rdx ; adc rbx, 0 ;
// 1: test cl, 4 ; jnz 2f ; inc rsi ; test cl, 8 ; jz 2f ; mov r8, [rdi+rcx*8] ; sub r9, r8 ;
// 2: setc r10b ; cmovz r11, rax ; lea r12, [r12+r10*2] ; test cl, 16 ; jnz 3f ; shl r13, 3 ;
// 3: adc r14, r13 ; dec ecx ; jnz L ; hlt

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildBlock } from "../../lib/cpu/block-cache.js";
import { blockSource } from "../../lib/cpu/block-compile.js";
import { StopReason } from "../../lib/cpu/index.js";
import { CODE, hex } from "./guest.js";
import { agree, genericOps, type Setup } from "./support/block-agree.js";

const code = hex(
  `b9 c8 00 00 00 89 ca 83 e2 03 74 07 48 01 d0 48 83 d3 00 f6 c1 04 75 0f 48 ff c6 f6 c1 08 74
   07 4c 8b 04 cf 4d 29 c1 41 0f 92 c2 4c 0f 44 d8 4f 8d 24 54 f6 c1 10 75 04 49 c1 e5 03 4d 11
   ee ff c9 75 c2 f4`,
);
const LOOP = 5;

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
/**
 * where the loads go: RAM; RAM's end, past which the 1-GiB identity map has no RAM (MMIO);
 * the map's end, past which the load faults at one iteration
 */
const table = fc.constantFrom(0x60000n, (8n << 20n) - 0x400n, (1n << 30n) - 0x400n);

const setup = (rdi: bigint, r: bigint[]): Setup => ({
  at: 0x60000,
  data: Uint8Array.from({ length: 0x100 }, (_, k) => (k * 37) & 0xff),
  regs: [
    [7, rdi],
    [0, r[0]],
    [3, r[1]],
    [6, r[2]],
    [9, r[3]],
    [11, r[4]],
    [12, r[5]],
    [13, r[6]],
    [14, r[7]],
  ],
});

describe("a conditional branch forward within a compiled block", () => {
  it("the loop is one self-looping block whose forward branches stay in its function", () => {
    // (the HLT is in more than one block: blocks go on past a conditional branch)
    expect(new Set(genericOps("long", code, setup(0x60000n, Array(8).fill(1n))))).toEqual(new Set([0xf4]));
    const mem = new Uint8Array(8192);
    mem.set(code, CODE & 0xfff);
    const src = blockSource(buildBlock(mem, 0, (CODE & 0xfff) + LOOP, true, false, 0));
    expect(src).toContain("for (;;)");
    // no side exit (exit 2): every conditional branch before the end skips within the block
    expect(src).not.toContain("return 2");
    expect(src).toContain("sk += ");
  });

  it("gives single-stepping's registers, flags, instruction count and fault", () => {
    fc.assert(
      fc.property(table, fc.array(u64, { minLength: 8, maxLength: 8 }), (rdi, r) => {
        const o = agree("long", code, setup(rdi, r));
        if (rdi === 0x60000n) expect(o.stop).toBe(StopReason.Halted);
      }),
      { numRuns: 40 },
    );
  });

  it("a load past the map faults at its own instruction, after skipped ones", () => {
    const o = agree("long", code, setup((1n << 30n) - 0x400n, [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]));
    // #PF (vector 14) at the first pass's load: MOV ECX, then 8 instructions of the pass, the
    // ADD and ADC skipped (200 & 3 = 0)
    expect(o.event.startsWith("14/")).toBe(true);
    expect(o.retired).toBe(9);
  });
});

// The block engine's fast SSE forms (block-sse.ts) against the single-step executor: MOVAPS/
// MOVUPS/MOVDQA/MOVDQU loads, stores and register moves, PXOR/POR/PAND/PANDN and XORPS/ORPS/ANDPS,
// PCMPEQB and PMOVMSKB, with xmm8-15 and an FS override. The program loops so that its blocks run
// interpreted ("blocks") and compiled on their first run ("compiled"); random registers, data and
// operand addresses (aligned or not: #GP(0) from the aligned forms; page-crossing; unmapped: #PF)
// must give single-stepping's registers, xmm registers, flags, memory, instruction count and fault,
// and so must CR0.TS (#NM), CR0.EM and a clear CR4.OSFXSR (#UD).
//
// Program assembled with binutils (as --64, Intel syntax); the source is beside it.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { OpKind } from "../../lib/cpu/block-ops.js";
import { StopReason } from "../../lib/cpu/index.js";
import { type Guest, hex, makeGuest } from "./guest.js";
import { agree as agreeAll, type Setup } from "./support/block-agree.js";

const DATA = 0x60000;

interface SseSetup {
  rsi: bigint;
  rbx: bigint;
  data: Uint8Array;
  cr0?: bigint;
  cr4?: bigint;
}

function prepare(g: Guest, s: SseSetup): void {
  g.ram.set(s.data, DATA);
  g.cpu.setGpr(6, s.rsi);
  g.cpu.setGpr(3, s.rbx);
  g.cpu.setSegment(4, { selector: 0, base: BigInt(DATA + 0x300), limit: 0xffffffff, ar: 0x93 });
  if (s.cr0 !== undefined) g.cpu.setControl("cr0", s.cr0);
  g.cpu.setControl("cr4", s.cr4 ?? 0x220n);
}

const setupOf = (s: SseSetup): Setup => ({
  regs: [],
  data: new Uint8Array(0),
  at: DATA,
  prepare: (g) => prepare(g, s),
});
const agree = (code: number[], s: SseSetup) => agreeAll("long", code, setupOf(s));

// mov ebp, 24 ; L: movq xmm1, rbx ; pshufd xmm1, xmm1, 0x1b ; pxor xmm0, xmm0 ;
// movaps [rsi+32], xmm0 ; movups xmm2, [rsi+r8] ; movdqu xmm3, [rsi+r8+16] ; pcmpeqb xmm2, xmm3 ;
// pmovmskb eax, xmm2 ; add r14, rax ; por xmm2, xmm1 ; movdqa xmm4, [rsi+64] ; pand xmm4, xmm2 ;
// pandn xmm4, [rsi+64] ; xorps xmm4, xmm1 ; orps xmm5, xmm4 ; andps xmm5, [rsi+80] ;
// movdqu [rsi+r8+96], xmm4 ; movups [rsi+r8+128], xmm5 ; movdqa [rsi+160], xmm2 ;
// movdqa xmm9, xmm4 ; movaps xmm10, xmm9 ; movups xmm11, xmm10 ; movdqu xmm12, xmm11 ;
// pxor xmm12, [rsi+192] ; pmovmskb r9d, xmm12 ; add r14, r9 ; fs movdqu xmm13, [r8+8] ;
// pcmpeqb xmm13, xmm12 ; pmovmskb ecx, xmm13 ; add r14, rcx ; ror rbx, 5 ; add rbx, r14 ;
// inc r8 ; and r8, 15 ; dec ebp ; jnz L ; hlt
const code = hex(
  `bd 18 00 00 00 66 48 0f 6e cb 66 0f 70 c9 1b 66 0f ef c0 0f 29 46 20 42 0f 10 14 06 f3 42 0f 6f
   5c 06 10 66 0f 74 d3 66 0f d7 c2 49 01 c6 66 0f eb d1 66 0f 6f 66 40 66 0f db e2 66 0f df 66 40
   0f 57 e1 0f 56 ec 0f 54 6e 50 f3 42 0f 7f 64 06 60 42 0f 11 ac 06 80 00 00 00 66 0f 7f 96 a0 00
   00 00 66 44 0f 6f cc 45 0f 28 d1 45 0f 10 da f3 45 0f 6f e3 66 44 0f ef a6 c0 00 00 00 66 45 0f
   d7 cc 4d 01 ce 64 f3 45 0f 6f 68 08 66 45 0f 74 ec 66 41 0f d7 cd 49 01 ce 48 c1 cb 05 4c 01 f3
   49 ff c0 49 83 e0 0f ff cd 0f 85 56 ff ff ff f4`,
);

/** data with runs of equal bytes, so that PCMPEQB finds some */
const data = fc.uint8Array({ minLength: 0x1400, maxLength: 0x1400 }).map((d) => d.map((b) => b & 0x83));
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

describe("64-bit: SSE moves, logic, PCMPEQB, PMOVMSKB", () => {
  it("runs with no generic op but MOVQ, PSHUFD and the HLT", () => {
    const g = makeGuest("long", code, { event: () => true });
    prepare(g, { rsi: BigInt(DATA), rbx: 5n, data: new Uint8Array(0x1400) });
    expect(g.cpu.run(1_000_000)).toBe(StopReason.Halted);
    const generic: number[] = [];
    for (const page of g.cpu.codePages.values())
      for (const [key, blk] of page.blocks) {
        let off = key >> 2;
        for (const op of blk.ops) {
          if (op.kind === OpKind.Generic) generic.push(off);
          off += op.len;
        }
      }
    // movq xmm1, rbx at 0x05, pshufd at 0x0a, hlt at 0xaf
    expect(generic.sort((a, b) => a - b)).toEqual([0x05, 0x0a, 0xaf]);
  });

  it("random registers and data, aligned operands: single-stepping's state", () => {
    fc.assert(
      fc.property(u64, data, (rbx, d) => {
        expect(agree(code, { rsi: BigInt(DATA), rbx, data: d }).stop).toBe(StopReason.Halted);
      }),
      { numRuns: 20 },
    );
  });

  it("misaligned, page-crossing and unmapped operands, CR0.TS, CR0.EM, no CR4.OSFXSR: the same fault", () => {
    const zero = new Uint8Array(0x1400);
    const cases: [SseSetup, string][] = [
      // movaps [rsi+32] misaligned: #GP(0)
      [{ rsi: BigInt(DATA + 8), rbx: 1n, data: zero }, "13/0"],
      // aligned, the loads and stores crossing into the next page of data
      [{ rsi: BigInt(DATA + 0xf40), rbx: 1n, data: zero }, ""],
      // past the 1-GiB identity map: #PF at the first access
      [{ rsi: 0x4000_0000n, rbx: 1n, data: zero }, "14/2"],
      // a non-canonical operand: #GP(0)
      [{ rsi: 0x0000_8000_0000_0000n, rbx: 1n, data: zero }, "13/0"],
      [{ rsi: BigInt(DATA), rbx: 1n, data: zero, cr0: 0x80000031n | 8n }, "7/undefined"],
      [{ rsi: BigInt(DATA), rbx: 1n, data: zero, cr0: 0x80000031n | 4n }, "6/undefined"],
      [{ rsi: BigInt(DATA), rbx: 1n, data: zero, cr4: 0x20n }, "6/undefined"],
    ];
    for (const [s, event] of cases) {
      const o = agree(code, s);
      expect(o.event, `${s.rsi.toString(16)} ${s.cr0} ${s.cr4}`).toBe(event);
    }
  });
});

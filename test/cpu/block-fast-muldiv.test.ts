// The block engine's fast forms of MUL/IMUL/DIV/IDIV (F6/F7 /4-/7), CBW/CWDE/CDQE and
// CWD/CDQ/CQO (98/99), and of instructions behind ES/CS/SS/DS overrides in 64-bit mode (null
// there: Linux calls its thunks as "cs call"), against the single-step executor. Each program
// loops so that its blocks run interpreted ("blocks") and compiled on their first run
// ("compiled"); random registers and data must give single-stepping's registers, flags, memory,
// instruction count and fault (#DE included).
//
// Programs assembled with binutils (as --64, Intel syntax); the source is beside each.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { hex } from "./guest.js";
import { agree as agreeAll, genericOps as genericOpsOf, run, type Setup } from "./support/block-agree.js";

const DATA = 0x60000;

const at = (regs: [number, bigint][], data: Uint8Array): Setup => ({ regs, data, at: DATA });
const agree = (code: number[], regs: [number, bigint][], data: Uint8Array) =>
  agreeAll("long", code, at(regs, data));
const genericOps = (code: number[], regs: [number, bigint][], data: Uint8Array) =>
  genericOpsOf("long", code, at(regs, data));

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const bytes = fc.uint8Array({ minLength: 0x40, maxLength: 0x40 });

describe("64-bit: MUL/IMUL/DIV/IDIV, CBW..CQO, null segment overrides", () => {
  // mov ebp, 24 ; L: mov rax, rbx ; cdqe ; cqo ; mul rcx ; imul qword [rsi+8] ; add r14, rdx ;
  // mov eax, ebx ; cdq ; imul ecx ; adc r14, rax ; cwde ; cwd ; mul dword [rsi+12] ; adc r14, rdx ;
  // mov ax, bx ; cbw ; mul cl ; imul byte [rsi+3] ; mul ch ; adc r14, rax ; or rcx, 1 ;
  // xor edx, edx ; mov rax, rbx ; div rcx ; add r14, rdx ; mov rax, r14 ; cqo ; idiv rcx ;
  // xor r14, rax ; mov eax, ebx ; xor edx, edx ; div ecx ; sub r14, rdx ; movzx eax, bx ;
  // xor edx, edx ; div cx ; add r14, rax ; movzx eax, bl ; div cl ; add r14, rax ; cs call f ;
  // ds mov [rsi+24], r14 ; es add rbx, [rsi+24] ; ss ror rbx, 7 ; add rbx, rcx ; dec ebp ; jnz L ;
  // hlt ; f: cs lea r14, [r14+r9*2+3] ; ret
  const code = hex(
    `bd 18 00 00 00 48 89 d8 48 98 48 99 48 f7 e1 48 f7 6e 08 49 01 d6 89 d8 99 f7 e9 49 11 c6 98
     66 99 f7 66 0c 49 11 d6 66 89 d8 66 98 f6 e1 f6 6e 03 f6 e5 49 11 c6 48 83 c9 01 31 d2 48 89
     d8 48 f7 f1 49 01 d6 4c 89 f0 48 99 48 f7 f9 49 31 c6 89 d8 31 d2 f7 f1 49 29 d6 0f b7 c3 31
     d2 66 f7 f1 49 01 c6 0f b6 c3 f6 f1 49 01 c6 2e e8 1b 00 00 00 3e 4c 89 76 18 26 48 03 5e 18
     36 48 c1 cb 07 48 01 cb ff cd 0f 85 79 ff ff ff f4 2e 4f 8d 74 4e 03 c3`,
  );
  const regs = (r: bigint[]): [number, bigint][] => [
    [6, BigInt(DATA)],
    [3, r[0]!],
    [1, r[1]!],
    [9, r[2]!],
    [14, r[3]!],
  ];

  it("runs with no generic op but the HLT", () => {
    const rs = regs([5n, 7n, 9n, 11n]);
    expect(run("long", code, "single-step", at(rs, new Uint8Array(0x40))).stop).toBe(StopReason.Halted);
    expect(genericOps(code, rs, new Uint8Array(0x40))).toEqual([0xf4]);
  });

  it("random registers and data: single-stepping's registers, flags and memory", () => {
    fc.assert(
      fc.property(fc.array(u64, { minLength: 4, maxLength: 4 }), bytes, (r, data) => {
        expect(agree(code, regs(r), data).stop).toBe(StopReason.Halted);
      }),
      { numRuns: 25 },
    );
  });

  // mov rax, rbx ; cqo ; idiv rcx ; div qword [rsi+16] ; hlt
  const faulting = hex("48 89 d8 48 99 48 f7 f9 48 f7 76 10 f4");

  it("#DE where single-stepping raises it: a zero divisor, IDIV's -2^63 / -1, a quotient too wide", () => {
    const cases: [bigint, bigint, bigint][] = [
      // rbx, rcx, qword [rsi+16]
      [5n, 0n, 1n],
      [1n << 63n, (1n << 64n) - 1n, 1n],
      [100n, 7n, 0n],
      // 100 / 7 leaves rdx = 2: rdx:rax / 1 does not fit in 64 bits
      [100n, 7n, 1n],
      [100n, 7n, 3n],
    ];
    for (const [rbx, rcx, d] of cases) {
      const data = new Uint8Array(0x40);
      new DataView(data.buffer).setBigUint64(16, d, true);
      const o = agree(
        faulting,
        [
          [6, BigInt(DATA)],
          [3, rbx],
          [1, rcx],
        ],
        data,
      );
      if (d !== 3n) expect(o.event, `${rbx} ${rcx} ${d}`).toBe("0/undefined");
      else expect(o.stop).toBe(StopReason.Halted);
    }
  });
});

// The block engine's fast forms of the instructions a Linux boot ran through the single-step
// decoder most (block-ops-kernel.ts): PAUSE, RDTSC, RDTSCP, REP STOS, CMPXCHG (with and without
// LOCK), BSF/BSR/TZCNT/LZCNT, SHLD/SHRD by CL and by imm8, MOV r/m,Sreg and SWAPGS, against the
// single-step executor. Each program loops so that its blocks run interpreted ("blocks") and
// compiled on their first run ("compiled"); random registers and data must give single-stepping's
// registers, flags (pushed after the forms whose flags are partly undefined), memory, instruction
// count and fault. Exits (PAUSE, RDTSC) must come at the same instruction with the same context,
// REP STOS must stop at the same iteration on a #PF and write MMIO the same way, and CMPXCHG to
// MMIO must read once and write once.
//
// Programs assembled with binutils (as --64/--32, Intel syntax); the source is beside each.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeFast } from "../../lib/cpu/block-decode.js";
import { OpKind } from "../../lib/cpu/block-ops.js";
import { StopReason } from "../../lib/cpu/index.js";
import type { Mode } from "./guest.js";
import { CODE, hex, RAM_SIZE } from "./guest.js";
import { agree, type Config, genericOps, type Outcome, run, type Setup } from "./support/block-agree.js";

const DATA = 0x60000;
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const bytes = fc.uint8Array({ minLength: 0x100, maxLength: 0x100 });
const RUNS = { numRuns: 25 };

/**
 * agree() for programs with a REP: a REP that stops at a budget's end restarts, so each
 * configuration is held to single-stepping in the same slices
 */
function agreeRep(mode: Mode, code: number[], s: Setup): Outcome {
  let ref: Outcome | undefined;
  for (const slice of [1_000_000, 7]) {
    const single = run(mode, code, "single-step", s, slice);
    ref ??= single;
    for (const config of ["blocks", "compiled"] as Config[])
      expect(run(mode, code, config, s, slice), `${config}, slices of ${slice}`).toEqual(single);
  }
  return ref!;
}

/** the op decodeFast makes of `code` in 64-bit mode (or null) */
const decode64 = (code: number[]) => decodeFast(new Uint8Array(code), 0, code.length, true, false);

describe("decoding", () => {
  it("gives the kernel forms their kinds, and leaves the executor's own cases generic", () => {
    const kind = (code: string) => decode64(hex(code))?.kind ?? null;
    expect(kind("f3 90")).toBe(OpKind.Pause);
    expect(kind("0f 31")).toBe(OpKind.Rdtsc);
    expect(kind("0f 01 f9")).toBe(OpKind.Rdtsc);
    expect(kind("0f 01 f8")).toBe(OpKind.Swapgs);
    expect(kind("f3 ab")).toBe(OpKind.RepStos);
    expect(kind("f3 48 ab")).toBe(OpKind.RepStos);
    expect(kind("f0 0f b1 4e 30")).toBe(OpKind.Cmpxchg);
    expect(kind("0f b1 d9")).toBe(OpKind.Cmpxchg);
    expect(kind("f3 48 0f bd 56 10")).toBe(OpKind.BitScan);
    expect(kind("0f ad 4e 20")).toBe(OpKind.DoubleShift);
    expect(kind("8c d8")).toBe(OpKind.MovSreg);
    // LOCK on a register operand (#UD), on anything but CMPXCHG, MOV from Sreg 6/7 (#UD), PAUSE
    // with REX.B (XCHG r8, rAX), REP LODS, CMPXCHG r/m8, F2 0F BC, an address-size prefix
    for (const c of [
      "f0 0f b1 d9",
      "f0 01 06",
      "8c f0",
      "f3 41 90",
      "f3 ad",
      "0f b0 0e",
      "f2 0f bc c1",
      "67 f3 ab",
    ])
      expect(kind(c), c).toBe(null);
    // the SHLD count and the memory operand
    const op = decode64(hex("48 0f ac 5e 18 25"))!;
    expect([op.imm, op.mem, op.disp, op.base, op.reg, op.sub]).toEqual([0x25, true, 0x18, 6, 3, 1]);
  });
});

describe("64-bit: PAUSE, RDTSC(P), BSF/BSR/TZCNT/LZCNT, SHLD/SHRD, CMPXCHG, MOV r/m,Sreg", () => {
  // mov ebp, 12 ; L: pause ; rdtsc ; add r14, rax ; rdtscp ; add r14, rcx ; bsf rax, rbx ;
  // pushfq ; pop rdx ; xor r14, rdx ; add r14, rax ; bsr eax, ebx ; pushfq ; xor r14, [rsp] ;
  // pop rdx ; add r14, rax ; bsf ax, [rsi+2] ; bsr rax, [rsi+8] ; adc r14, rax ; tzcnt rax, rcx ;
  // lzcnt edx, ecx ; adc r14, rdx ; tzcnt dx, [rsi+4] ; lzcnt rdx, [rsi+16] ; pushfq ; pop rax ;
  // xor r14, rax ; add r14, rdx ; shld rbx, rcx, cl ; shrd ebx, ecx, 5 ; pushfq ; pop rax ;
  // xor r14, rax ; shld word [rsi+6], cx, cl ; shrd qword [rsi+24], rbx, 37 ;
  // shrd dword [rsi+32], ecx, cl ; shld bx, cx, 17 ; pushfq ; pop rax ; add r14, rax ;
  // mov rax, [rsi+40] ; cmpxchg rcx, rbx ; cmpxchg [rsi+40], rdx ; lock cmpxchg [rsi+48], ecx ;
  // cmpxchg ecx, r9d ; pushfq ; pop rdx ; add r14, rdx ; lock cmpxchg [rsi+52], bx ;
  // cmpxchg r8w, r9w ; adc r14, rax ; mov eax, ds ; mov r9, ss ; mov r10w, cs ; mov [rsi+56], fs ;
  // add r14, rax ; xor r14, r9 ; add r14, r10 ; rol rcx, 7 ; add rbx, r14 ; xor rcx, rbx ;
  // dec ebp ; jnz L ; hlt
  const code = hex(
    `bd 0c 00 00 00 f3 90 0f 31 49 01 c6 0f 01 f9 49 01 ce 48 0f bc c3 9c 5a 49 31 d6 49 01 c6 0f
     bd c3 9c 4c 33 34 24 5a 49 01 c6 66 0f bc 46 02 48 0f bd 46 08 49 11 c6 f3 48 0f bc c1 f3 0f
     bd d1 49 11 d6 66 f3 0f bc 56 04 f3 48 0f bd 56 10 9c 58 49 31 c6 49 01 d6 48 0f a5 cb 0f ac
     cb 05 9c 58 49 31 c6 66 0f a5 4e 06 48 0f ac 5e 18 25 0f ad 4e 20 66 0f a4 cb 11 9c 58 49 01
     c6 48 8b 46 28 48 0f b1 d9 48 0f b1 56 28 f0 0f b1 4e 30 44 0f b1 c9 9c 5a 49 01 d6 66 f0 0f
     b1 5e 34 66 45 0f b1 c8 49 11 c6 8c d8 41 8c d1 66 41 8c ca 8c 66 38 49 01 c6 4d 31 ce 4d 01
     d6 48 c1 c1 07 4c 01 f3 48 31 d9 ff cd 0f 85 38 ff ff ff f4`,
  );
  const setup = (r: bigint[], data: Uint8Array, prepare?: Setup["prepare"]): Setup => ({
    at: DATA,
    data,
    prepare,
    regs: [
      [6, BigInt(DATA)],
      [3, r[0]!],
      [1, r[1]!],
      [2, r[2]!],
      [8, r[3]!],
      [9, r[4]!],
    ],
  });

  it("runs with no generic op but PUSHFQ and HLT", () => {
    const s = setup([5n, 7n, 9n, 11n, 13n], new Uint8Array(0x100));
    expect(run("long", code, "single-step", s).stop).toBe(StopReason.Halted);
    expect(new Set(genericOps("long", code, s))).toEqual(new Set([0x9c, 0xf4]));
  });

  it("random registers and data: single-stepping's registers, flags and memory", () => {
    // zeros and equal values make BSF/BSR/TZCNT/LZCNT see a zero source and CMPXCHG succeed
    const reg = fc.oneof(u64, fc.constantFrom(0n, 1n, 1n << 63n, 0xffffffffn, 1n << 32n));
    fc.assert(
      fc.property(fc.array(reg, { minLength: 5, maxLength: 5 }), bytes, fc.boolean(), (r, data, zeros) => {
        if (zeros) data.fill(0, 0, 24);
        expect(agree("long", code, setup(r, data)).stop).toBe(StopReason.Halted);
      }),
      RUNS,
    );
  });

  it("a PAUSE or RDTSC(P) that exits does so at the same instruction with the same context", () => {
    for (const [insn, nth] of [
      ["pause", 1],
      ["pause", 7],
      ["rdtsc", 3],
      ["rdtscp", 5],
    ] as const) {
      const calls: string[] = [];
      const prepare: Setup["prepare"] = (g) => {
        const h = g.cpu.hooks!;
        let n = 0;
        const exitOn = (what: string, length: number, lin: number): boolean => {
          calls.push(`${what} ${length} ${lin.toString(16)} ${g.cpu.retired}`);
          return what === insn && ++n === nth;
        };
        h.other = (what, ctx) => exitOn(what, ctx.length, ctx.linearRip);
        h.rdtsc = (aux, ctx) => exitOn(aux ? "rdtscp" : "rdtsc", ctx.length, ctx.linearRip);
      };
      const s = setup([1n, 2n, 3n, 4n, 5n], new Uint8Array(0x100), prepare);
      calls.length = 0;
      const ref = agree("long", code, s);
      expect(ref.stop, insn).toBe(StopReason.Exit);
      const refCalls = calls.slice(0, calls.length / 4);
      // each of the four runs made the same calls
      expect(calls).toEqual([...refCalls, ...refCalls, ...refCalls, ...refCalls]);
      const last = refCalls[refCalls.length - 1]!.split(" ");
      expect(last[0]).toBe(insn);
      expect(BigInt(`0x${last[2]}`)).toBe(ref.rip);
    }
  });

  it("RDTSC at CPL 3 with CR4.TSD: #GP(0) at the instruction", () => {
    // mov ecx, 3 ; L: rdtsc ; dec ecx ; jnz L ; hlt
    const rd = hex("b9 03 00 00 00 0f 31 ff c9 75 f9 f4");
    const s: Setup = {
      at: DATA,
      data: new Uint8Array(0x10),
      regs: [],
      prepare: (g) => {
        g.cpu.setControl("cr4", g.cpu.getControl("cr4") | 4n);
        // ring 3: the GDT's 64-bit user code and user data
        g.cpu.setSegment(2, { selector: 0x3b, base: 0n, limit: 0xffffffff, ar: 0xc0f3 });
        g.cpu.setSegment(1, { selector: 0x43, base: 0n, limit: 0xffffffff, ar: 0xa0fb });
      },
    };
    const o = agree("long", rd, s);
    expect(o.event).toBe("13/0");
    expect(o.rip).toBe(BigInt(CODE + 5));
  });
});

describe("64-bit: counts that mask to 0 and zero sources keep what the executor keeps", () => {
  // mov ebp, 4 ; L: shld ebx, r11d, cl ; shrd edx, r11d, cl ; shld r8, r9, 0 ; shrd r10d, r9d, 32 ;
  // bsf r12d, r13d ; pushfq ; pop rax ; add r14, rax ; add ecx, 31 ; dec ebp ; jnz L ; hlt
  const code = hex(
    `bd 04 00 00 00 44 0f a5 db 44 0f ad da 4d 0f a4 c8 00 45 0f ac ca 20 45 0f bc e5 9c 58 49 01
     c6 83 c1 1f ff cd 75 de f4`,
  );
  it("the high halves of 32-bit destinations, and flags, as single-stepping leaves them", () => {
    const high = fc.bigInt({ min: 1n << 32n, max: (1n << 64n) - 1n });
    fc.assert(
      fc.property(
        fc.array(high, { minLength: 7, maxLength: 7 }),
        fc.constantFrom(0n, 32n, 64n, 1n),
        (r, cl) => {
          const regs: [number, bigint][] = [3, 11, 2, 8, 9, 10, 12].map((n, k) => [n, r[k]!]);
          // BSF of a zero source leaves the whole destination
          regs.push([13, 0n], [1, cl]);
          expect(agree("long", code, { at: DATA, data: new Uint8Array(0x10), regs }).stop).toBe(
            StopReason.Halted,
          );
        },
      ),
      RUNS,
    );
  });
});

describe("64-bit: SWAPGS", () => {
  // mov ecx, 5 ; L: swapgs ; mov rax, gs:[8] ; add r14, rax ; swapgs ; add r14, gs:[0] ;
  // mov gs:[16], r14 ; rol r14, 3 ; dec ecx ; jnz L ; hlt
  const code = hex(
    `b9 05 00 00 00 0f 01 f8 65 48 8b 04 25 08 00 00 00 49 01 c6 0f 01 f8 65 4c 03 34 25 00 00 00
     00 65 4c 89 34 25 10 00 00 00 49 c1 c6 03 ff c9 75 d4 f4`,
  );
  const setup = (user: boolean): Setup => ({
    at: DATA,
    data: Uint8Array.from({ length: 0x100 }, (_, k) => (k * 37 + 11) & 0xff),
    regs: [[14, 0x123456789n]],
    prepare: (g) => {
      g.cpu.setSegment(5, { selector: 0x10, base: BigInt(DATA), limit: 0xffffffff, ar: 0xc093 });
      g.cpu.kernelGsBase = DATA + 0x80;
      if (user) {
        g.cpu.setSegment(2, { selector: 0x3b, base: 0n, limit: 0xffffffff, ar: 0xc0f3 });
        g.cpu.setSegment(1, { selector: 0x43, base: 0n, limit: 0xffffffff, ar: 0xa0fb });
      }
    },
  });
  it("GS-relative accesses after it use the other base, as single-stepping's do", () => {
    const o = agree("long", code, setup(false));
    expect(o.stop).toBe(StopReason.Halted);
    expect(genericOps("long", code, setup(false))).toEqual([0xf4]);
  });
  it("at CPL 3: #GP(0) at the instruction", () => {
    const o = agree("long", code, setup(true));
    expect(o.event).toBe("13/0");
    expect(o.rip).toBe(BigInt(CODE + 5));
  });
});

describe("32-bit: REP STOSD/STOSB, PAUSE, BSF/BSR, SHLD/SHRD, CMPXCHG, MOV r/m,Sreg", () => {
  // mov ebp, 10 ; L: mov edi, esi ; mov ecx, ebx ; and ecx, 63 ; mov eax, edx ; rep stosd ;
  // mov ecx, ebx ; shr ecx, 8 ; and ecx, 31 ; rep stosb ; pause ; bsf eax, [esi] ;
  // bsr cx, [esi+6] ; pushfd ; pop edx ; add edx, eax ; add edx, ecx ; shld [esi+8], edx, cl ;
  // shrd edx, ebx, 3 ; adc edx, [esi+8] ; lock cmpxchg [esi+12], edx ; cmpxchg [esi+16], ebx ;
  // mov [esi+20], ds ; mov eax, es ; add ebx, edx ; add ebx, eax ; ror ebx, 5 ; dec ebp ; jnz L ;
  // hlt
  const code = hex(
    `bd 0a 00 00 00 89 f7 89 d9 83 e1 3f 89 d0 f3 ab 89 d9 c1 e9 08 83 e1 1f f3 aa f3 90 0f bc 06
     66 0f bd 4e 06 9c 5a 01 c2 01 ca 0f a5 56 08 0f ac da 03 13 56 08 f0 0f b1 56 0c 0f b1 5e 10
     8c 5e 14 8c c0 01 d3 01 c3 c1 cb 05 4d 75 b8 f4`,
  );
  it("random registers and data: single-stepping's registers, flags and memory", () => {
    const u32 = fc.bigInt({ min: 0n, max: 0xffffffffn });
    fc.assert(
      fc.property(u32, u32, bytes, (ebx, edx, data) => {
        const s: Setup = {
          at: DATA,
          data,
          regs: [
            [6, BigInt(DATA)],
            [3, ebx],
            [2, edx],
          ],
        };
        expect(agreeRep("prot32", code, s).stop).toBe(StopReason.Halted);
      }),
      RUNS,
    );
  });
});

describe("REP STOS: faults and MMIO in the middle", () => {
  // mov rdi, r8 ; mov rcx, r9 ; mov rax, r10 ; rep stosd ; mov rdi, r11 ; mov rcx, r12 ;
  // rep stosb ; std ; mov rdi, r13 ; mov rcx, r9 ; rep stosq ; cld ; mov rdi, r8 ; mov rcx, r12 ;
  // rep stosw ; hlt
  const code = hex(
    `4c 89 c7 4c 89 c9 4c 89 d0 f3 ab 4c 89 df 4c 89 e1 f3 aa fd 4c 89 ef 4c 89 c9 f3 48 ab fc 4c
     89 c7 4c 89 e1 66 f3 ab f4`,
  );
  // destinations in RAM, running into MMIO (past RAM) or into the unmapped page past 1 GiB (#PF)
  const near = (edge: number) => fc.integer({ min: -0x3000, max: 0x40 }).map((d) => BigInt(edge + d));
  const dest = fc.oneof(
    fc.integer({ min: 0x100000, max: RAM_SIZE - 0x4000 }).map(BigInt),
    near(RAM_SIZE),
    near(0x40000000),
  );
  const count = fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 5000 })).map(BigInt);

  it("random destinations and counts, in slices that stop the REP anywhere", () => {
    fc.assert(
      fc.property(dest, dest, dest, count, count, u64, (d1, d2, d3, c1, c2, v) => {
        const s: Setup = {
          at: DATA,
          data: new Uint8Array(0x10),
          regs: [
            [8, d1],
            [11, d2],
            [13, d3],
            [9, c1],
            [12, c2],
            [10, v],
          ],
        };
        const o = agreeRep("long", code, s);
        expect([StopReason.Halted, StopReason.Exit]).toContain(o.stop);
      }),
      RUNS,
    );
  });

  it("a #PF partway leaves the iterations before it done and RIP at the REP", () => {
    const s: Setup = {
      at: DATA,
      data: new Uint8Array(0x10),
      regs: [
        [8, BigInt(0x40000000 - 0x100)],
        [9, 0x100n],
        [10, 0x11223344n],
      ],
    };
    const o = agreeRep("long", code, s);
    expect(o.event).toBe("14/2");
    expect(o.rip).toBe(BigInt(CODE + 9));
    // 0x40 of the 0x100 dwords were stored
    expect(o.regs[1]).toBe(0xc0n);
    expect(o.regs[7]).toBe(0x40000000n);
  });

  it("a run into MMIO writes each element there once, in order", () => {
    const s: Setup = {
      at: DATA,
      data: new Uint8Array(0x10),
      regs: [
        [8, BigInt(RAM_SIZE - 8)],
        [9, 5n],
        [10, 0xa5a5a5a5n],
        [13, BigInt(DATA + 0x100)],
      ],
    };
    const o = agreeRep("long", code, s);
    expect(o.stop).toBe(StopReason.Halted);
    // stosd: 3 dwords past the end of RAM; stosw (r12 = 0 here) none
    const w = [0xa5a5a5a5, 0];
    expect(o.mmioWrites).toEqual([RAM_SIZE, 4, ...w, RAM_SIZE + 4, 4, ...w, RAM_SIZE + 8, 4, ...w]);
  });
});

describe("CMPXCHG to MMIO", () => {
  // mov ecx, 3 ; L: mov eax, [rsi+4] ; cmpxchg [rdi], ebx ; lock cmpxchg [rdi+8], rdx ; dec ecx ;
  // jnz L ; hlt
  const cx = hex("b9 03 00 00 00 8b 46 04 0f b1 1f f0 48 0f b1 57 08 ff c9 75 f0 f4");
  it("reads once and writes once per instruction, whether or not the compare succeeds", () => {
    for (const eax of [0, (Math.imul(RAM_SIZE, 0x9e3779b1) >>> 0) | 0]) {
      const data = new Uint8Array(0x10);
      new DataView(data.buffer).setInt32(4, eax, true);
      /** MMIO reads of each run */
      const reads: number[] = [];
      const o = agree("long", cx, {
        at: DATA,
        data,
        prepare: (g) => {
          const mmio = g.hooks.mmio.bind(g.hooks);
          const k = reads.push(0) - 1;
          g.hooks.mmio = (gpa, size, write, lo, hi, linear) => {
            if (!write) reads[k]++;
            return mmio(gpa, size, write, lo, hi, linear);
          };
        },
        regs: [
          [6, BigInt(DATA)],
          [7, BigInt(RAM_SIZE)],
          [3, 0x1234n],
          [2, 0x5678n],
        ],
      });
      expect(o.stop).toBe(StopReason.Halted);
      // per pass one read and one write of each address (4 fields a write), in every run
      expect(o.mmioWrites.length).toBe(3 * 2 * 4);
      expect(reads).toEqual([6, 6, 6, 6]);
    }
  });
});

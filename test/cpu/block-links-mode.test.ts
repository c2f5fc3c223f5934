// Block links and compiled blocks across what no longer bumps codeEpoch in 64-bit mode (system.ts
// updateMode): a new FS/GS base (SWAPGS, WRMSR GS_BASE, WRFSBASE, MOV to GS) and a change between
// user and supervisor (SYSCALL/SYSRET, INT1). Each program loops so that its blocks chain to each
// other through links made in earlier passes; run with blocks interpreted, compiled on their first
// run and compiled in slices of 7 (block-agree.ts), it must end as single-stepping does. A block
// that kept a stale base, went on past a change of privilege, or a link followed under the other
// privilege would read other data, skip a fault or take one single-stepping does not.
//
// Programs assembled with binutils (as --64, Intel syntax); the source is beside each.

import { describe, expect, it } from "vitest";
import { decodeFast } from "../../lib/cpu/block-decode.js";
import { StopReason } from "../../lib/cpu/index.js";
import { CODE, GDT, hex, IDT, PML4 } from "./guest.js";
import { agree, genericOps, run, type Setup } from "./support/block-agree.js";

const DATA = 0x60000;
const GS_BASE = 0xc0000101;
const FSGSBASE = 0x10000;
const SMEP = 0x100000;
const pattern = () => Uint8Array.from({ length: 0x100 }, (_, k) => (k * 37 + 11) & 0xff);

function w32(ram: Uint8Array, a: number, v: number): void {
  ram[a] = v;
  ram[a + 1] = v >> 8;
  ram[a + 2] = v >> 16;
  ram[a + 3] = v >> 24;
}

/**
 * agree(), and in the compiled configuration codeEpoch must not move: the links made in the first
 * pass are the ones the later passes follow
 */
function agreeNoBump(code: number[], s: Setup) {
  const o = agree("long", code, s);
  let epoch = -1;
  let g: { codeEpoch: number; smp: unknown } | undefined;
  run("long", code, "compiled", {
    ...s,
    prepare: (guest) => {
      s.prepare?.(guest);
      // an empty run first: the shared-memory project's setup attaches at the first run()
      guest.cpu.run(0);
      g = guest.cpu;
      epoch = guest.cpu.codeEpoch;
    },
  });
  // (in the shared-memory project a serializing instruction may make blocks re-check themselves
  // once: code-coherence.ts serializeCode)
  if (g!.smp === null) expect(g!.codeEpoch, "codeEpoch after the run").toBe(epoch);
  return o;
}

describe("64-bit: SWAPGS, GS-relative accesses before it and in the block after it", () => {
  // mov ecx, 6 ; L: mov rax, gs:[8] ; add r14, rax ; mov gs:[24], r14 ; swapgs ;
  // add r14, gs:[0] ; mov gs:[16], r14 ; rol r14, 3 ; dec ecx ; jnz L ; hlt
  const code = hex(
    `b9 06 00 00 00 65 48 8b 04 25 08 00 00 00 49 01 c6 65 4c 89 34 25 18 00 00 00 0f 01 f8 65 4c
     03 34 25 00 00 00 00 65 4c 89 34 25 10 00 00 00 49 c1 c6 03 ff c9 75 ce f4`,
  );
  // the same with the executor's SWAPGS (an FS prefix, which it ignores, keeps it from the fast
  // form; the loop's JNZ reaches one byte further back)
  const slow = [...code.slice(0, 26), 0x64, ...code.slice(26, code.length - 2), 0xcd, 0xf4];
  const setup: Setup = {
    at: DATA,
    data: pattern(),
    regs: [[14, 0x123456789n]],
    prepare: (g) => {
      g.cpu.setSegment(5, { selector: 0x10, base: BigInt(DATA), limit: 0xffffffff, ar: 0xc093 });
      g.cpu.kernelGsBase = DATA + 0x80;
    },
  };
  it("the fast form: the block after it uses the other base, through the link", () => {
    expect(decodeFast(new Uint8Array(code.slice(26)), 0, 3, true, false)?.kind).toBeDefined();
    expect(genericOps("long", code, setup)).toEqual([0xf4]);
    const o = agreeNoBump(code, setup);
    expect(o.stop).toBe(StopReason.Halted);
  });
  it("the executor's form", () => {
    expect(decodeFast(new Uint8Array(slow.slice(26)), 0, 4, true, false)).toBe(null);
    expect(genericOps("long", slow, setup)).toEqual([0x64, 0xf4]);
    expect(agreeNoBump(slow, setup).stop).toBe(StopReason.Halted);
  });
});

/** a loop that loads GS_BASE or FS_BASE from r8, swapping r8 and r10 each pass */
describe("64-bit: a new FS/GS base in the middle of a block, then in the block chained after it", () => {
  const setup = (prepare?: Setup["prepare"]): Setup => ({
    at: DATA,
    data: pattern(),
    regs: [
      [8, BigInt(DATA)],
      [10, BigInt(DATA + 0x80)],
      [14, 0x5a5a5a5a5n],
    ],
    prepare,
  });
  it("WRMSR GS_BASE", () => {
    // mov ebp, 8 ; L: mov ecx, 0xc0000101 ; mov eax, r8d ; xor edx, edx ; wrmsr ;
    // mov rax, gs:[8] ; add r14, rax ; mov gs:[16], r14 ; jmp M ; M: add r14, gs:[0] ;
    // rol r14, 5 ; xchg r8, r10 ; dec ebp ; jnz L ; hlt
    const code = hex(
      `bd 08 00 00 00 b9 01 01 00 c0 44 89 c0 31 d2 0f 30 65 48 8b 04 25 08 00 00 00 49 01 c6 65 4c
       89 34 25 10 00 00 00 eb 00 65 4c 03 34 25 00 00 00 00 49 c1 c6 05 4d 87 d0 ff cd 75 c9 f4`,
    );
    expect(code.slice(6, 10)).toEqual(hex("01 01 00 c0").map((b, k) => (k === 3 ? GS_BASE >>> 24 : b)));
    // WRMSR (and XCHG) run the executor, the GS-relative accesses after it are fast ops
    expect(new Set(genericOps("long", code, setup()))).toEqual(new Set([0x0f, 0x4d, 0xf4]));
    const o = agreeNoBump(code, setup());
    expect(o.stop).toBe(StopReason.Halted);
  });
  it("WRFSBASE", () => {
    // mov ebp, 8 ; L: wrfsbase r8 ; mov rax, fs:[8] ; add r14, rax ; mov fs:[16], r14 ; jmp M ;
    // M: add r14, fs:[0] ; rol r14, 5 ; xchg r8, r10 ; dec ebp ; jnz L ; hlt
    const code = hex(
      `bd 08 00 00 00 f3 49 0f ae d0 64 48 8b 04 25 08 00 00 00 49 01 c6 64 4c 89 34 25 10 00 00 00
       eb 00 64 4c 03 34 25 00 00 00 00 49 c1 c6 05 4d 87 d0 ff cd 75 d0 f4`,
    );
    const s = setup((g) => g.cpu.setControl("cr4", g.cpu.getControl("cr4") | BigInt(FSGSBASE)));
    expect(agreeNoBump(code, s).stop).toBe(StopReason.Halted);
  });
  it("MOV to GS (the base from the descriptor)", () => {
    // mov ebp, 8 ; mov ebx, 0x58 ; mov edx, 0x60 ; L: mov gs, ebx ; add r14, gs:[8] ;
    // mov gs:[16], r14 ; xchg ebx, edx ; jmp M ; M: add r14, gs:[0] ; rol r14, 5 ; dec ebp ;
    // jnz L ; hlt
    const code = hex(
      `bd 08 00 00 00 bb 58 00 00 00 ba 60 00 00 00 8e eb 65 4c 03 34 25 08 00 00 00 65 4c 89 34 25
       10 00 00 00 87 d3 eb 00 65 4c 03 34 25 00 00 00 00 49 c1 c6 05 ff cd 75 d7 f4`,
    );
    const s = setup((g) => {
      // flat data segments based at DATA and DATA + 0x80
      for (const [at, base] of [
        [0x58, DATA],
        [0x60, DATA + 0x80],
      ]) {
        w32(g.ram, GDT + at, 0xffff | ((base & 0xffff) << 16));
        w32(g.ram, GDT + at + 4, ((base >>> 16) & 0xff) | (0x93 << 8) | 0xf0000 | (0xc << 20));
      }
      g.cpu.setGdtr({ base: BigInt(GDT), limit: 0x67 });
    });
    expect(agreeNoBump(code, s).stop).toBe(StopReason.Halted);
  });
});

describe("64-bit: user and supervisor", () => {
  /**
   * user mode (the harness GDT's ring-3 code and data, as SYSRET loads them), with SS.B as a null
   * SS has it (an event from user mode loads one), so that nothing updateMode compares but the
   * privilege changes
   */
  const toUser = (g: Parameters<NonNullable<Setup["prepare"]>>[0], ssAr = 0xc0f3): void => {
    g.cpu.setSegment(2, { selector: 0x3b, base: 0n, limit: 0xffffffff, ar: ssAr });
    g.cpu.setSegment(1, { selector: 0x43, base: 0n, limit: 0xffffffff, ar: 0xa0fb });
  };

  it("a link made in the kernel is not followed in user mode (SYSCALL/SYSRET)", () => {
    // at CODE, user: mov ebp, 5 ; L: syscall ; U1: add r14, r15 ; mov [rsi+8], r14 ; dec ebp ;
    // jnz L ; jmp R ; R: inc r14 ; jmp T
    const user = hex("bd 05 00 00 00 0f 05 4d 01 fe 4c 89 76 08 ff cd 75 f3 eb 00 49 ff c6 e9 24 00 1f 00");
    // at 0x200000, a supervisor page: K: add r15, [rsi] ; jmp R ; (at 0x200040) T: add r15, 3 ;
    // mov [rsi+16], r15 ; mov ecx, U1 ; sysretq
    const kernel = [
      ...hex("4c 03 3e e9 0c 00 e1 ff"),
      ...new Array(0x38).fill(0),
      ...hex("49 83 c7 03 4c 89 7e 10 b9 07 00 01 00 48 0f 07"),
    ];
    const T = 0x200040;
    const s: Setup = {
      at: DATA,
      data: pattern(),
      regs: [
        [6, BigInt(DATA)],
        [14, 0x1234n],
      ],
      prepare: (g) => {
        g.ram.set(kernel, 0x200000);
        // the second 2 MiB page: supervisor only
        w32(g.ram, PML4 + 0x2000 + 8, 0x200000 | 0x83);
        g.cpu.setControl("efer", g.cpu.getControl("efer") | 1n);
        g.cpu.star = (0x30n << 48n) | (0x18n << 32n);
        g.cpu.lstar = 0x200000;
        toUser(g);
      },
    };
    // the kernel ran R and chained to T five times; user mode then reaches R (the same block)
    // and must fault fetching T
    const o = agreeNoBump(user, s);
    // a user-mode fetch from a supervisor page (P, U)
    expect(o.event).toBe("14/5");
    expect(o.rip).toBe(BigInt(T));
  });

  // INT1 delivers through a DPL-0 gate from CPL 3 too: the gate's DPL is checked only for INT n,
  // INT3 and INTO (SDM Vol. 2A, INT n)
  it.each([
    ["3", 0xee00],
    ["0", 0x8e00],
  ])(
    "INT1 in the middle of a block does not let the block go on under the other privilege (gate DPL %s)",
    (_dpl, gateType) => {
      // mov ebp, 3 ; L: add r14, [rsi] ; mov [rsi+8], r14 ; dec ebp ; jnz L ; inc r15 ; int1 ;
      // H: inc r14 ; mov [rsi+16], r14 ; jmp L
      const code = hex(
        "bd 03 00 00 00 4c 03 36 4c 89 76 08 ff cd 75 f5 49 ff c7 f1 49 ff c6 4c 89 76 10 eb e8",
      );
      const H = CODE + 0x14;
      const s: Setup = {
        at: DATA,
        data: pattern(),
        regs: [
          [6, BigInt(DATA)],
          [14, 0x1234n],
        ],
        prepare: (g) => {
          // #DB's handler is the instruction after INT1, on a user page: with SMEP its fetch at
          // CPL 0 faults
          w32(g.ram, IDT + 16, (H & 0xffff) | (0x18 << 16));
          w32(g.ram, IDT + 16 + 4, (H & 0xffff0000) | gateType);
          g.cpu.setControl("cr4", g.cpu.getControl("cr4") | BigInt(SMEP));
          // SS.B clear, as in the null SS the event loads
          toUser(g, 0x80f3);
          const h = g.cpu.hooks!;
          const event = h.event.bind(h);
          h.event = (vector, type, errorCode, cr2, ctx) =>
            vector !== 1 && event(vector, type, errorCode, cr2, ctx);
        },
      };
      const o = agree("long", code, s);
      expect(o.event).toBe("14/17");
      expect(o.rip).toBe(BigInt(H));
    },
  );
});

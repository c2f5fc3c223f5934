// The block compiler's register locals, compile-time flags, self-loops and chaining against the
// single-step executor: loops whose memory operand walks from RAM into MMIO and then into an
// unmapped page (slow paths and a page fault inside a compiled loop, many passes in), chained
// multi-block loops under small budgets, and the benchmark loops compiled without generic ops.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildBlock } from "../../lib/cpu/block-cache.js";
import { blockSource } from "../../lib/cpu/block-compile.js";
import { OpKind } from "../../lib/cpu/block-ops.js";
import { StopReason } from "../../lib/cpu/index.js";
import { CODE, EXC_LOG, hex, le32, type Mode, makeGuest, r32 } from "./guest.js";

type Config = "single-step" | "blocks" | "compiled";

interface Outcome {
  stop: StopReason;
  regs: bigint[];
  flags: number;
  rip: bigint;
  retired: number;
  cr2: bigint;
  exc: number;
  mmio: number[];
}

/**
 * Runs `code` to the end in `config`, in slices of `budget` instructions, optionally flushing the
 * TLB between slices (so compiled blocks take their slow paths again).
 */
function run(
  mode: Mode,
  code: number[],
  config: Config,
  init: [number, bigint][],
  opts: { budget?: number; flush?: boolean } = {},
): Outcome {
  const mmio: number[] = [];
  const g = makeGuest(mode, code, {
    // a device whose registers read back a value derived from the address
    mmioRead: (gpa, size) => {
      mmio.push(gpa, size);
      return (gpa ^ 0x5a5a5a5a) >>> 0;
    },
  });
  g.cpu.decodeCache = config !== "single-step";
  g.cpu.jitThreshold = config === "compiled" ? 1 : 0;
  for (const [r, v] of init) g.cpu.setGpr(r, v);
  let stop: StopReason = StopReason.Budget;
  for (let n = 0; n < 1_000_000 && stop === StopReason.Budget; n++) {
    stop = g.cpu.run(opts.budget ?? 1_000_000);
    if (opts.flush) g.cpu.flushTlb();
  }
  return {
    stop,
    regs: Array.from({ length: 16 }, (_, r) => g.cpu.getGpr(r)),
    flags: g.cpu.getFlags(),
    rip: g.cpu.getRip(),
    retired: g.cpu.retired,
    cr2: g.cpu.getControl("cr2"),
    exc: r32(g.ram, EXC_LOG),
    mmio,
  };
}

describe("compiled loops: slow paths and faults many passes in", () => {
  // mov ecx, 2000 ; L: mov rax, [rsi] ; add rbx, rax ; adc rdi, rbx ; add rsi, rdx ; dec ecx ;
  // jnz L ; hlt — RSI walks 1 MiB a pass from 4 MiB: RAM, then MMIO past the 8-MiB RAM, then past
  // the 1-GiB identity map a page fault, with the registers and flags of the loop in locals
  const walk = [0xb9, ...le32(2000), ...hex("48 8b 06 48 01 c3 48 11 df 48 01 d6 ff c9 75 f0 f4")];
  const init: [number, bigint][] = [
    [6, 0x400000n],
    [2, 0x100000n],
    [3, 0xffff_ffff_0000_0000n],
  ];

  it("the fault is precise and MMIO reads happen once each", () => {
    const ref = run("long", walk, "single-step", init);
    expect(ref.exc).toBe(14);
    expect(ref.cr2).toBe(0x4000_0000n);
    expect(ref.mmio.length).toBeGreaterThan(1000);
    for (const config of ["blocks", "compiled"] as Config[]) {
      expect(run("long", walk, config, init), config).toEqual(ref);
      expect(run("long", walk, config, init, { budget: 13, flush: true }), `${config}, sliced`).toEqual(ref);
    }
  });

  it("a 32-bit loop through MMIO and an unmapped page agrees in every configuration", () => {
    // prot32 without paging: RSI walks from RAM into MMIO; the loop ends by count
    const code = [0xb9, ...le32(300), ...hex("8b 06 01 c3 11 df 01 d6 4f 49 75 f4 f4")];
    const init32: [number, bigint][] = [
      [6, 0x7f0000n],
      [2, 0x1234n],
      [3, 0xfffff000n],
    ];
    const ref = run("prot32", code, "single-step", init32);
    expect(ref.stop).toBe(StopReason.Halted);
    expect(ref.mmio.length).toBeGreaterThan(0);
    for (const config of ["blocks", "compiled"] as Config[]) {
      expect(run("prot32", code, config, init32), config).toEqual(ref);
      expect(run("prot32", code, config, init32, { budget: 5, flush: true }), config).toEqual(ref);
    }
  });
});

describe("chained blocks", () => {
  // L: add eax, ebx ; cmp eax, esi ; jb M ; sub eax, esi ; M: xor edx, eax ; inc edx ; dec ecx ;
  // jnz L ; hlt: L's block takes JB as a side exit, M's block JNZ L (all compiled)
  const body = hex("01 d8 39 f0 72 02 29 f0 31 c2 ff c2 ff c9 75 f0 f4");
  const code = (_mode: Mode) => [0xb9, ...le32(500), ...body];
  for (const mode of ["prot32", "long"] as Mode[]) {
    it(`${mode}: same state with budgets that stop anywhere in the chain`, () => {
      const init: [number, bigint][] = [
        [0, 5n],
        [3, 0x9e3779b9n],
        [6, 0xc0000000n],
      ];
      const ref = run(mode, code(mode), "single-step", init);
      expect(ref.stop).toBe(StopReason.Halted);
      expect(ref.retired).toBeGreaterThan(3000);
      for (const budget of [1_000_000, 1, 2, 3, 7, 11, 64]) {
        expect(run(mode, code(mode), "compiled", init, { budget }), `budget ${budget}`).toEqual(ref);
      }
    });
  }

  it("JB is a side exit of the loop's block, which loops in its function and chains to HLT", () => {
    const g = makeGuest("prot32", code("prot32"));
    g.cpu.jitThreshold = 1;
    expect(g.run()).toBe(StopReason.Halted);
    const blocks = [...g.cpu.codePages.values()].flatMap((p) => [...p.blocks.values()]);
    // L..JNZ L is one block (JNZ back to its start ends it), entered once: its passes, and the
    // side exits to M and back, ran without the run loop
    const head = blocks.find((b) => b.ops.length === 8);
    expect(head?.ops.map((o) => (o.kind === OpKind.Jcc ? "J" : "-")).join("")).toBe("--J----J");
    expect(head?.runs).toBe(1);
    expect(head?.compiled).not.toBeNull();
    // its fall-through (the loop done) leads to the HLT's block, remembered as a link
    expect(head?.link0?.ops.length).toBe(1);
  });
});

describe("the benchmark loops compile to inline code", () => {
  // bench/cpu-mips loop bodies (mips-quick.ts): no op runs the single-step executor
  const loops: [string, boolean, boolean][] = [
    ["01 d8 31 c3 83 c3 07 66 49 75 f5", false, false],
    ["01 d8 31 c3 83 c3 07 49 75 f6", false, true],
    ["48 01 d8 48 31 c3 48 83 c3 07 48 ff c9 75 f1", true, true],
    ["8b 04 01 c8 89 04 42 81 e2 ff 00 66 49 75 f1", false, false],
    ["8b 06 01 c8 89 06 42 81 e2 ff 00 00 00 49 75 f0", false, true],
    ["48 8b 06 48 01 c8 48 89 06 48 ff c2 48 81 e2 ff 00 00 00 48 ff c9 75 e8", true, true],
  ];
  for (const [code, mode64, csD] of loops) {
    it(code, () => {
      const mem = new Uint8Array(8192);
      mem.set(hex(code), CODE & 0xfff);
      const blk = buildBlock(mem, 0, CODE & 0xfff, mode64, csD, 0);
      const src = blockSource(blk);
      expect(src).not.toContain("generic(");
      // a self-loop: the body runs in a JS loop with the registers in locals
      expect(src).toContain("for (;;)");
    });
  }
});

describe("inline forms with easy-to-miss rules", () => {
  // mov ecx, 3 ; L: cmp ebx, ebx ; cmovnz eax, ebx (false: still clears RAX[63:32]) ;
  // cmovz rdx, rsi (64-bit, true) ; setnz ah ; movsx edi, bh ; movzx ebp, ah ; dec ecx ; jnz L ; hlt
  const code = [
    0xb9,
    ...le32(3),
    ...hex("39 db 0f 45 c3 48 0f 44 d6 0f 95 c4 0f be ff 0f b6 ec ff c9 75 ea f4"),
  ];
  it("CMOV r32 with a false condition clears the high half; AH/BH as 8-bit operands", () => {
    const init: [number, bigint][] = [
      [0, 0x1234_5678_9abc_def0n],
      [3, 0x0000_0001_0000_8100n],
      [6, 0xfedc_ba98_7654_3210n],
      [5, 0xffff_ffff_ffff_ffffn],
    ];
    const ref = run("long", code, "single-step", init);
    expect(ref.regs[0]).toBe(0x9abc_def0n & ~0xff00n);
    expect(ref.regs[2]).toBe(0xfedc_ba98_7654_3210n);
    expect(ref.regs[7]).toBe(0xffff_ff81n);
    expect(ref.regs[5]).toBe(0n);
    for (const config of ["blocks", "compiled"] as Config[])
      expect(run("long", code, config, init), config).toEqual(ref);
  });
});

describe("inline shifts by a constant", () => {
  // nop ; SHL/SHR/SAR r, imm8 or 1 ; setc bl ; seto bh ; hlt — the compiled block holds the shift
  // and both SETcc, so CF and OF are read from the block's locals, and the final flags from the CPU
  const arbValue = fc.oneof(
    fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    fc.constantFrom(0n, 1n, 0x8000n, 0xffffn, 0x8000_0000n, 0xffff_ffffn, 1n << 63n, (1n << 64n) - 1n),
  );
  const cases: [Mode, number][] = [
    ["real", 16],
    ["real", 32],
    ["prot32", 16],
    ["prot32", 32],
    ["long", 16],
    ["long", 32],
    ["long", 64],
  ];
  for (const [mode, size] of cases) {
    it(`${mode} mode, ${size}-bit operand: every count and form`, () => {
      fc.assert(
        fc.property(
          fc.constantFrom(4, 5, 6, 7),
          fc.oneof(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: size - 1 })),
          fc.boolean(),
          fc.constantFrom(0, 2, 6, 7),
          arbValue,
          (op, count, one, r, value) => {
            const o16 = mode === "real" ? size === 32 : size === 16;
            const prefix = [...(o16 ? [0x66] : []), ...(size === 64 ? [0x48] : [])];
            const shift = [...prefix, one ? 0xd1 : 0xc1, 0xc0 | (op << 3) | r, ...(one ? [] : [count])];
            const code = [0x90, ...shift, 0x0f, 0x92, 0xc3, 0x0f, 0x90, 0xc7, 0xf4];
            const init: [number, bigint][] = [[r, mode === "long" ? value : value & 0xffff_ffffn]];
            const ref = run(mode, code, "single-step", init);
            expect(ref.stop).toBe(StopReason.Halted);
            expect(run(mode, code, "compiled", init)).toEqual(ref);
          },
        ),
        { numRuns: 80 },
      );
    });
  }
});

describe("carries at the exact wrap and borrows across slow paths", () => {
  // L: add eax, ebx ; mov r11d, [rsp] (a memory op: a slow path when the TLB was flushed) ;
  // sbb esi, edi (borrow-in from the ADD) ; setc dl ; add r8, r9 ; adc r10, r12 ; setc dh ;
  // dec ecx ; jnz L ; hlt
  const code = hex("01 d8 44 8b 1c 24 19 fe 0f 92 c2 4d 01 c8 4d 11 e2 0f 92 c6 ff c9 75 e8 f4");
  const u32 = fc.integer({ min: 0, max: 0xffffffff });
  const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
  const delta = fc.constantFrom(-1, 0, 1);
  it("ADD/SBB/ADC agree with single-stepping when a+b is 2^n - 1, 2^n or 2^n + 1", () => {
    fc.assert(
      fc.property(u32, delta, u64, fc.constantFrom(-1n, 0n, 1n), u32, u32, (b, d, c, e, si, di) => {
        const a = BigInt((0xffffffff - b + d) >>> 0);
        const r9 = BigInt.asUintN(64, (1n << 64n) - 1n - c + e);
        const init: [number, bigint][] = [
          [0, a],
          [3, BigInt(b)],
          [1, 3n],
          [6, BigInt(si)],
          [7, BigInt(di)],
          [8, c],
          [9, r9],
          [10, c],
          [12, r9],
        ];
        const ref = run("long", code, "single-step", init);
        expect(run("long", code, "compiled", init)).toEqual(ref);
        expect(run("long", code, "compiled", init, { budget: 3, flush: true })).toEqual(ref);
      }),
      { numRuns: 150 },
    );
  });
});

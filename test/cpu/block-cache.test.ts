// The decode cache and the block compiler against the single-step executor (which the
// differential suite checks against the host CPU): random straight-line code made of the forms
// that have fast ops runs to the same registers, flags, memory, RIP and retired count with the
// cache off, with cached blocks interpreted, and with blocks compiled on their first run.
// Also: self-modifying code, host writes between runs, precise faults and exact budgets.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildBlock } from "../../lib/cpu/block-cache.js";
import { StopReason } from "../../lib/cpu/index.js";
import { CODE, EXC_LOG, type Guest, hex, le32, type Mode, makeGuest, r32 } from "./guest.js";

const DATA = 0x5000;

type Config = "single-step" | "blocks" | "compiled";

function configure(g: Guest, config: Config): void {
  g.cpu.decodeCache = config !== "single-step";
  g.cpu.jitThreshold = config === "compiled" ? 1 : 0;
}

/** registers a generated instruction may write: not CX (loop counter), SP, BP, SI (data base) */
const DEST = [0, 2, 3, 7];

const rexFor = (mode: Mode, w: boolean, reg: number, rm: number): number[] => {
  if (mode !== "long") return [];
  const rex = 0x40 | (w ? 8 : 0) | ((reg >> 3) << 2) | (rm >> 3);
  return rex === 0x40 ? [] : [rex];
};

const arbImm = fc.oneof(
  fc.integer({ min: -0x80000000, max: 0x7fffffff }),
  fc.constantFrom(0, 1, -1, 0x7f, 0x80, 0x7fff, -0x8000, 0xffff, 0x7fffffff, -0x80000000),
);

/** one random instruction with a fast-op form (or a short forward Jcc over one) */
function arbInsn(mode: Mode): fc.Arbitrary<number[]> {
  const long = mode === "long";
  const reg = long ? fc.constantFrom(...DEST, 8, 9, 10, 11, 12, 13, 14, 15) : fc.constantFrom(...DEST);
  const anyReg = long ? fc.integer({ min: 0, max: 15 }) : fc.integer({ min: 0, max: 7 });
  const w = long ? fc.boolean() : fc.constant(false);
  const o16 = fc.boolean().map((b) => (b ? [0x66] : []));
  // [SI + disp8] / [RSI + disp8]
  const mem = (r: number, d: number) =>
    mode === "real" ? [0x44 | ((r & 7) << 3), d & 0xff] : [0x46 | ((r & 7) << 3), d & 0xff];
  const disp = fc.integer({ min: -64, max: 60 });
  const aluOp = fc.constantFrom(0, 1, 2, 3, 4, 5, 6, 7);
  return fc.oneof(
    // ALU r/m, r and r, r/m (register forms)
    fc.tuple(o16, w, aluOp, fc.boolean(), reg, anyReg).map(([p, wb, op, dir, d, s]) => {
      const [rr, rm] = dir ? [d, s] : [s, d];
      return [
        ...p,
        ...rexFor(mode, wb, rr, rm),
        (op << 3) | (dir ? 3 : 1),
        0xc0 | ((rr & 7) << 3) | (rm & 7),
      ];
    }),
    // ALU r, imm8 / imm
    fc.tuple(o16, w, aluOp, reg, arbImm, fc.boolean()).map(([p, wb, op, d, imm, short]) => {
      // REX.W wins over 66: then the immediate is 32 bits
      const size16 = long ? p.length > 0 && !wb : p.length > 0 !== (mode === "real");
      const immBytes = short ? [imm & 0xff] : size16 ? [imm & 0xff, (imm >> 8) & 0xff] : le32(imm);
      return [...p, ...rexFor(mode, wb, 0, d), short ? 0x83 : 0x81, 0xc0 | (op << 3) | (d & 7), ...immBytes];
    }),
    // INC/DEC r
    fc
      .tuple(o16, w, fc.boolean(), reg)
      .map(([p, wb, dec, d]) => [...p, ...rexFor(mode, wb, 0, d), 0xff, (dec ? 0xc8 : 0xc0) | (d & 7)]),
    // MOV r, r / MOV r, imm32
    fc
      .tuple(w, reg, anyReg)
      .map(([wb, d, s]) => [...rexFor(mode, wb, s, d), 0x89, 0xc0 | ((s & 7) << 3) | (d & 7)]),
    fc
      .tuple(reg, arbImm)
      .map(([d, imm]) =>
        mode === "real"
          ? [0x66, 0xb8 | d, ...le32(imm)]
          : [...rexFor(mode, false, 0, d), 0xb8 | (d & 7), ...le32(imm)],
      ),
    // LEA r, [SI + disp8]
    fc
      .tuple(o16, w, reg, disp)
      .map(([p, wb, d, dp]) => [...p, ...rexFor(mode, wb, d, 0), 0x8d, ...mem(d, dp)]),
    // loads, stores and ALU with memory
    fc
      .tuple(
        o16,
        w,
        reg,
        disp,
        fc.constantFrom(
          0x8b,
          0x89,
          0x01,
          0x03,
          0x09,
          0x0b,
          0x11,
          0x13,
          0x19,
          0x1b,
          0x21,
          0x29,
          0x2b,
          0x31,
          0x39,
          0x3b,
        ),
      )
      .map(([p, wb, d, dp, opc]) => [...p, ...rexFor(mode, wb, d, 0), opc, ...mem(d, dp)]),
    fc
      .tuple(o16, w, aluOp, disp, fc.integer({ min: 0, max: 255 }))
      .map(([p, wb, op, dp, imm]) => [...p, ...rexFor(mode, wb, 0, 0), 0x83, ...mem(op, dp), imm]),
    // Jcc over a two-byte register MOV
    fc
      .tuple(fc.integer({ min: 0, max: 15 }), fc.constantFrom(...DEST))
      .map(([cc, d]) => [0x70 | cc, 2, 0x89, 0xc0 | d]),
    // MOVZX/MOVSX r, r8/r16 (without REX, r8 4..7 are AH CH DH BH) and r, m8/m16
    fc
      .tuple(o16, w, reg, anyReg, fc.constantFrom(0xb6, 0xb7, 0xbe, 0xbf))
      .map(([p, wb, d, s, opc]) => [
        ...p,
        ...rexFor(mode, wb, d, s),
        0x0f,
        opc,
        0xc0 | ((d & 7) << 3) | (s & 7),
      ]),
    fc
      .tuple(o16, w, reg, disp, fc.constantFrom(0xb6, 0xb7, 0xbe, 0xbf))
      .map(([p, wb, d, dp, opc]) => [...p, ...rexFor(mode, wb, d, 0), 0x0f, opc, ...mem(d, dp)]),
    // SHL/SHR/SAR r, imm8 (any count, masked as the CPU does) and r, 1
    fc
      .tuple(o16, w, fc.constantFrom(4, 5, 6, 7), reg, fc.integer({ min: 0, max: 255 }), fc.boolean())
      .map(([p, wb, op, d, count, one]) => [
        ...p,
        ...rexFor(mode, wb, 0, d),
        one ? 0xd1 : 0xc1,
        0xc0 | (op << 3) | (d & 7),
        ...(one ? [] : [count]),
      ]),
    // TEST r, imm and TEST m, r
    fc.tuple(o16, w, anyReg, arbImm, fc.boolean()).map(([p, wb, d, imm, alias]) => {
      const size16 = long ? p.length > 0 && !wb : p.length > 0 !== (mode === "real");
      const immBytes = size16 ? [imm & 0xff, (imm >> 8) & 0xff] : le32(imm);
      // F7 /1 is an alias of /0
      return [...p, ...rexFor(mode, wb, 0, d), 0xf7, (alias ? 0xc8 : 0xc0) | (d & 7), ...immBytes];
    }),
    fc
      .tuple(o16, w, anyReg, disp)
      .map(([p, wb, d, dp]) => [...p, ...rexFor(mode, wb, d, 0), 0x85, ...mem(d, dp)]),
    // CMOVcc r, r
    fc
      .tuple(o16, w, fc.integer({ min: 0, max: 15 }), reg, anyReg)
      .map(([p, wb, cc, d, s]) => [
        ...p,
        ...rexFor(mode, wb, d, s),
        0x0f,
        0x40 | cc,
        0xc0 | ((d & 7) << 3) | (s & 7),
      ]),
    // SETcc r8: AL DL BL AH DH BH, or DIL with a REX prefix
    fc
      .tuple(fc.integer({ min: 0, max: 15 }), fc.constantFrom(0, 2, 3, 4, 6, 7), fc.boolean())
      .map(([cc, r, rx]) => [...(long && rx && r === 7 ? [0x40] : []), 0x0f, 0x90 | cc, 0xc0 | r]),
    // MOV m, imm
    fc.tuple(o16, w, disp, arbImm).map(([p, wb, dp, imm]) => {
      const size16 = long ? p.length > 0 && !wb : p.length > 0 !== (mode === "real");
      const immBytes = size16 ? [imm & 0xff, (imm >> 8) & 0xff] : le32(imm);
      return [...p, ...rexFor(mode, wb, 0, 0), 0xc7, ...mem(0, dp), ...immBytes];
    }),
    // Jcc over ADD BP, imm8: BP is written nowhere else, so every decision shows in the result
    fc
      .tuple(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 1, max: 127 }))
      .map(([cc, k]) => [0x70 | cc, 3, 0x83, 0xc5, k]),
    // JMP (rel8, rel32) over UD2 (in 64-bit mode a block goes on at the target)
    fc.constantFrom<number[]>([0xeb, 2, 0x0f, 0x0b], [0xe9, ...le32(2), 0x0f, 0x0b]),
  );
}

/** `count` iterations of body, then HLT: mov ecx, count; body; dec ecx; jnz; hlt */
function loop(mode: Mode, body: number[], count: number): number[] {
  const o = mode === "real" ? [0x66] : [];
  const tail = [...o, 0xff, 0xc9, 0x0f, 0x85];
  const rel = -(body.length + tail.length + (mode === "real" ? 2 : 4));
  return [
    ...o,
    0xb9,
    ...le32(count),
    ...body,
    ...tail,
    ...(mode === "real" ? [rel & 0xff, (rel >> 8) & 0xff] : le32(rel)),
    0xf4,
  ];
}

interface Outcome {
  stop: StopReason;
  regs: bigint[];
  flags: number;
  rip: bigint;
  retired: number;
  data: number[];
  exc: number;
}

/** `flush`: the TLB is flushed after every slice, so compiled blocks take their slow paths */
function runIn(
  mode: Mode,
  code: number[],
  regs: bigint[],
  config: Config,
  budget?: number,
  flush = false,
): Outcome {
  const g = makeGuest(mode, code);
  configure(g, config);
  regs.forEach((v, r) => {
    if (r !== 1 && r !== 4 && r !== 5) g.cpu.setGpr(r, mode === "long" ? v : v & 0xffffffffn);
  });
  g.cpu.setGpr(6, BigInt(DATA));
  for (let i = 0; i < 256; i++) g.ram[DATA - 128 + i] = (i * 37 + 11) & 0xff;
  let stop: StopReason = StopReason.Budget;
  if (budget === undefined) stop = g.run(1_000_000);
  else
    for (let n = 0; n < 10_000 && stop === StopReason.Budget; n++) {
      stop = g.cpu.run(budget);
      if (flush) g.cpu.flushTlb();
    }
  return {
    stop,
    regs: Array.from({ length: 16 }, (_, r) => g.cpu.getGpr(r)),
    flags: g.cpu.getFlags(),
    rip: g.cpu.getRip(),
    retired: g.cpu.retired,
    data: [...g.ram.subarray(DATA - 128, DATA + 128)],
    exc: r32(g.ram, EXC_LOG),
  };
}

/** register values, often at the edges where carry, overflow and sign change */
const arbReg = fc.oneof(
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  fc.constantFrom(0n, 1n, 0x7fffn, 0x8000n, 0xffffn, 0x7fffffffn, 0x80000000n, 0xffffffffn),
  fc.constantFrom(0x1_0000_0000n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n, (1n << 64n) - 0x8000n),
);
const arbRegs = fc.array(arbReg, { minLength: 16, maxLength: 16 });

describe("decode cache and block compiler agree with the single-step executor", () => {
  for (const mode of ["real", "prot32", "long"] as Mode[]) {
    it(`${mode} mode: random straight-line code in a loop`, () => {
      fc.assert(
        fc.property(fc.array(arbInsn(mode), { minLength: 1, maxLength: 40 }), arbRegs, (insns, regs) => {
          const code = loop(mode, insns.flat(), 3);
          const ref = runIn(mode, code, regs, "single-step");
          expect(ref.stop).toBe(StopReason.Halted);
          expect(runIn(mode, code, regs, "blocks")).toEqual(ref);
          expect(runIn(mode, code, regs, "compiled")).toEqual(ref);
          // small budgets split blocks: the same instructions retire, none twice
          expect(runIn(mode, code, regs, "compiled", 7)).toEqual(ref);
          // memory ops on their slow paths, with registers and flags synced from locals
          expect(runIn(mode, code, regs, "compiled", 5, true)).toEqual(ref);
        }),
        { numRuns: 60 },
      );
    });
  }
});

describe("decode cache invalidation", () => {
  // mov [rip+2], cl ; add eax, imm8 (the byte just written) ; dec ecx ; jnz ; hlt
  const smc64 = [
    0xb9,
    ...le32(10),
    0x31,
    0xc0,
    0x88,
    0x0d,
    ...le32(2),
    0x83,
    0xc0,
    0x00,
    0xff,
    0xc9,
    0x75,
    0xf3,
    0xf4,
  ];
  for (const config of ["blocks", "compiled"] as Config[]) {
    it(`self-modifying code in the same block sees its own write (${config})`, () => {
      const g = makeGuest("long", smc64);
      configure(g, config);
      expect(g.run()).toBe(StopReason.Halted);
      // each iteration adds the counter it just stored into the instruction: 10 + 9 + ... + 1
      expect(Number(g.cpu.getGpr(0))).toBe(55);
    });

    it(`a 32-bit store into the next block's code is seen (${config})`, () => {
      // mov ecx, 6 ; L: mov [abs T+1], cl ; jmp T ; T: add eax, imm8 ; dec ecx ; jnz L ; hlt
      const t = CODE + 5 + 6 + 2;
      const code = [
        0xb9,
        ...le32(6),
        0x88,
        0x0d,
        ...le32(t + 2),
        0xeb,
        0x00,
        0x83,
        0xc0,
        0x00,
        0x49,
        0x75,
        0xf2,
        0xf4,
      ];
      const g = makeGuest("prot32", code);
      configure(g, config);
      expect(g.run()).toBe(StopReason.Halted);
      expect(Number(g.cpu.getGpr(0))).toBe(21);
    });

    it(`a store into code past a JMP that its 64-bit block went on after is seen (${config})`, () => {
      // mov ecx, 6 ; L: mov [abs T+2], cl ; jmp T (over UD2) ; T: add eax, imm8 ; dec ecx ; jnz L ; hlt
      const t = CODE + 16;
      const code = [
        0xb9,
        ...le32(6),
        0x88,
        0x0c,
        0x25,
        ...le32(t + 2),
        ...hex("eb 02 0f 0b 83 c0 00 ff c9 75 ee f4"),
      ];
      const g = makeGuest("long", code);
      configure(g, config);
      expect(g.run()).toBe(StopReason.Halted);
      expect(Number(g.cpu.getGpr(0))).toBe(21);
      // the loop's block holds the store, the JMP and the code at its target up to the JNZ back to
      // its start (in 32-bit mode it ends at the JMP)
      const page = g.ram.subarray(CODE & ~0xfff, (CODE & ~0xfff) + 0x2000);
      expect(buildBlock(page, 0, (CODE & 0xfff) + 5, true, false, 0).ops.map((o) => o.len)).toEqual([
        7, 2, 3, 2, 2,
      ]);
      expect(buildBlock(page, 0, (CODE & 0xfff) + 5, false, true, 0).ops.map((o) => o.len)).toEqual([7, 2]);
    });

    it(`code a device writes during an OUT handled without an exit is re-decoded (${config})`, () => {
      // mov ecx, 5 ; xor ebx, ebx ; L: mov eax, imm32 ; add ebx, eax ; out 0x80, al ; dec ecx ;
      // jnz L ; hlt — the port handler patches the MOV's immediate to AL + 1, as a DMA would
      const l = CODE + 7;
      const code = [
        0xb9,
        ...le32(5),
        0x31,
        0xdb,
        0xb8,
        ...le32(1),
        0x01,
        0xc3,
        0xe6,
        0x80,
        0xff,
        0xc9,
        0x75,
        0xf3,
        0xf4,
      ];
      const g = makeGuest("long", code, {
        portOut: (port, _size, value) => {
          if (port === 0x80) g.ram.set(le32((value & 0xff) + 1), l + 1);
        },
      });
      configure(g, config);
      expect(g.run()).toBe(StopReason.Halted);
      expect(Number(g.cpu.getGpr(3))).toBe(1 + 2 + 3 + 4 + 5);
    });

    it(`code rewritten by the host between runs is re-decoded (${config})`, () => {
      // mov eax, 1 ; hlt
      const g = makeGuest("long", [0xb8, ...le32(1), 0xf4]);
      configure(g, config);
      for (let round = 2; round < 6; round++) {
        expect(g.run()).toBe(StopReason.Halted);
        expect(Number(g.cpu.getGpr(0))).toBe(round - 1);
        g.ram.set([0xb8, ...le32(round)], CODE);
        g.cpu.activity = 0;
        g.cpu.setRip(BigInt(CODE));
      }
    });

    it(`code reached through a successor link and rewritten by the host between runs is re-decoded (${config})`, () => {
      // A: mov ecx, 7 ; jmp B ; B: mov eax, imm32 ; hlt — A's link (or successor memo) to B
      // outlives the run, B's bytes do not
      const g = makeGuest("long", [0xb9, ...le32(7), 0xeb, 0x00, 0xb8, ...le32(1), 0xf4]);
      configure(g, config);
      for (let round = 2; round < 6; round++) {
        expect(g.run()).toBe(StopReason.Halted);
        expect(Number(g.cpu.getGpr(0))).toBe(round - 1);
        g.ram.set(le32(round), CODE + 8);
        g.cpu.activity = 0;
        g.cpu.setRip(BigInt(CODE));
      }
    });
  }
});

describe("faults and budgets inside blocks", () => {
  it("a page fault in the middle of a compiled block is precise", () => {
    // inc eax ; inc edx ; mov rbx, [rdi] (unmapped) ; inc eax ; hlt — twice through a loop so
    // the block is compiled before the faulting pass
    const body = [0xff, 0xc0, 0xff, 0xc2, 0x48, 0x8b, 0x1f, 0xff, 0xc0];
    const code = loop("long", body, 2);
    const regs = Array.from({ length: 16 }, () => 0n);
    regs[7] = BigInt(DATA);
    const run = (config: Config) => {
      const g = makeGuest("long", code);
      configure(g, config);
      g.cpu.setGpr(7, BigInt(DATA));
      // after one pass, point RDI at an unmapped page (beyond the 1-GiB identity map)
      expect(g.cpu.run(7)).toBe(StopReason.Budget);
      g.cpu.setGpr(7, 0x7000_0000_0000n);
      const stop = g.run();
      return {
        stop,
        retired: g.cpu.retired,
        cr2: g.cpu.getControl("cr2"),
        exc: r32(g.ram, EXC_LOG),
        regs: [0, 2, 3].map((r) => g.cpu.getGpr(r)),
      };
    };
    const ref = run("single-step");
    expect(ref.exc).toBe(14);
    expect(ref.cr2).toBe(0x7000_0000_0000n);
    expect(run("blocks")).toEqual(ref);
    expect(run("compiled")).toEqual(ref);
  });

  it("a non-canonical address in a block is #SS(0) through RBP and #GP(0) through RSI", () => {
    // mov ecx, 20 ; mov ebp, DATA ; mov esi, DATA ; L: mov rax, [rbp|rsi] ; dec ecx ; jnz L ;
    // mov{abs} rbp|rsi, 0x800000000000 ; mov ecx, 1 ; jmp L: the block at L has run (and been
    // compiled) before its memory operand turns non-canonical
    const vectors = (base: "rbp" | "rsi", config: Config) => {
      const load = base === "rbp" ? [0x48, 0x8b, 0x45, 0x00] : [0x48, 0x8b, 0x46, 0x00];
      const movabs = base === "rbp" ? [0x48, 0xbd] : [0x48, 0xbe];
      const head = [0xb9, ...le32(20), 0xbd, ...le32(DATA), 0xbe, ...le32(DATA)];
      const l = head.length;
      const code = [...head, ...load, 0xff, 0xc9, 0x75, 0];
      code[code.length - 1] = (l - code.length) & 0xff;
      code.push(...movabs, 0, 0, 0, 0, 0, 0x80, 0, 0, 0xb9, ...le32(1), 0xeb, 0);
      code[code.length - 1] = (l - code.length) & 0xff;
      const g = makeGuest("long", code);
      configure(g, config);
      g.run();
      return { exc: r32(g.ram, EXC_LOG), err: r32(g.ram, EXC_LOG + 4), rcx: g.cpu.getGpr(1) };
    };
    for (const config of ["single-step", "blocks", "compiled"] as const) {
      expect(vectors("rbp", config), config).toEqual({ exc: 12, err: 0, rcx: 1n });
      expect(vectors("rsi", config), config).toEqual({ exc: 13, err: 0, rcx: 1n });
    }
  });

  it("run(budget) retires exactly the budget inside long blocks", () => {
    const body = Array.from({ length: 20 }, (_, i) => [0x83, 0xc0, i + 1]).flat();
    for (const config of ["blocks", "compiled"] as Config[]) {
      const g = makeGuest("prot32", loop("prot32", body, 50));
      configure(g, config);
      let total = 0;
      for (let k = 1; k <= 40; k++) {
        expect(g.cpu.run(k)).toBe(StopReason.Budget);
        total += k;
        expect(g.cpu.retired).toBe(total);
      }
    }
  });
});

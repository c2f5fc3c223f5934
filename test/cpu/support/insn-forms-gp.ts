// Random general-purpose instruction forms (ALU, shifts/rotates, mul/div, bit ops, moves, SETcc/
// CMOVcc, ...) as fast-check arbitraries of encoded instructions with their effects. Flag
// undefinedness follows the SDM's "Flags Affected" section of each instruction.

import fc from "fast-check";
import { SCRATCH_ADDR } from "./oracle.js";
import {
  AF,
  ARITH,
  bit,
  CC_FLAGS,
  CC_NAMES,
  CF,
  type Dynamic,
  encode,
  gprOf,
  type Insn,
  needsRex,
  OF,
  operandValue,
  PF,
  type Pre,
  plainInsn,
  pushLe,
  type Rm,
  RSP,
  regName,
  rmText,
  SF,
  type Size,
  ZF,
} from "./x86-encode.js";

const FORBIDDEN_WRITES = bit(RSP) | bit(14) | bit(15);

export const arbSize: fc.Arbitrary<Size> = fc.constantFrom<Size>(8, 16, 32, 64);
const arbWideSize: fc.Arbitrary<Size> = fc.constantFrom<Size>(16, 32, 64);
const arbReg = fc.integer({ min: 0, max: 15 });
const arbMem: fc.Arbitrary<Rm> = fc.record({
  kind: fc.constant("mem" as const),
  disp: fc.oneof(
    fc.integer({ min: 0, max: 7 }).map((d) => d * 16),
    fc.integer({ min: 0, max: 127 }),
  ),
  disp32: fc.boolean(),
  index: fc.boolean(),
  scale: fc.integer({ min: 0, max: 3 }),
  addr32: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
});
export const arbRm: fc.Arbitrary<Rm> = fc.oneof(
  { weight: 3, arbitrary: arbReg.map((reg): Rm => ({ kind: "reg", reg })) },
  { weight: 1, arbitrary: arbMem },
);
const arbImm32 = fc
  .oneof(
    fc.integer({ min: -0x80000000, max: 0x7fffffff }),
    fc.integer({ min: -130, max: 130 }),
    fc.constantFrom(0x7fffffff, -0x80000000, 0xffff, 0x8000, 0x7f, 0x80, -1, 0, 1),
  )
  .map((v) => BigInt(v));

/** Prefix/REX.W for an operand size (8-bit uses the byte opcode). */
function sizeBits(size: Size): { prefixes: number[]; w: boolean } {
  return { prefixes: size === 16 ? [0x66] : [], w: size === 64 };
}

/** Writing a 32-bit register zero-extends; the full register is "written" either way. */
function immSize(size: Size): 1 | 2 | 4 {
  return size === 8 ? 1 : size === 16 ? 2 : 4;
}

interface Built {
  bytes: number[];
  rex: boolean;
}

function build(
  size: Size,
  opcode8: number[] | undefined,
  opcode: number[],
  reg: number,
  rm: Rm,
  forceRex: boolean,
  imm?: { value: bigint; size: 1 | 2 | 4 },
  extraPrefixes: number[] = [],
): Built {
  const s = sizeBits(size);
  const o = {
    prefixes: [...s.prefixes, ...extraPrefixes],
    w: s.w,
    opcode: size === 8 && opcode8 ? opcode8 : opcode,
    reg,
    rm,
    imm,
    forceRex: size === 8 && forceRex,
  };
  return { bytes: encode(o), rex: needsRex(o) };
}

function rmGprs(rm: Rm, size: Size, rex: boolean): number {
  return rm.kind === "reg" ? bit(gprOf(rm.reg, size, rex)) : bit(14) | bit(15);
}
function rmDest(rm: Rm, size: Size, rex: boolean): number {
  return rm.kind === "reg" ? bit(gprOf(rm.reg, size, rex)) : 0;
}

const insn = (p: Partial<Insn> & Pick<Insn, "bytes" | "text">): Insn => plainInsn(p);

const valid = (i: Insn): boolean => (i.writes & FORBIDDEN_WRITES) === 0 && i.bytes.length <= 15;

const ALU = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"];

const alu = fc
  .record({
    op: fc.integer({ min: 0, max: 7 }),
    form: fc.integer({ min: 0, max: 4 }),
    size: arbSize,
    reg: arbReg,
    rm: arbRm,
    imm: arbImm32,
    forceRex: fc.boolean(),
    lock: fc.integer({ min: 0, max: 7 }).map((n) => n === 0),
  })
  .map(({ op, form, size, reg, rm, imm, forceRex, lock }) => {
    const name = ALU[op]!;
    const logic = op === 1 || op === 4 || op === 6;
    const base = {
      flagsRead: op === 2 || op === 3 ? CF : 0,
      flagsWritten: ARITH,
      flagsUndefined: logic ? AF : 0,
    };
    if (form === 4) {
      // accumulator, immediate (no modrm)
      const s = sizeBits(size);
      const bytes = [...s.prefixes, ...(s.w ? [0x48] : []), op * 8 + (size === 8 ? 4 : 5)];
      pushLe(bytes, imm, immSize(size));
      return insn({
        ...base,
        bytes,
        text: `${name} ${regName(0, size, false)}, ${imm}`,
        reads: bit(0),
        writes: op === 7 ? 0 : bit(0),
      });
    }
    if (form === 2 || form === 3) {
      // group 1: 80/81 /op imm, 83 /op imm8 (sign-extended)
      const imm8 = form === 3 && size !== 8;
      const b = build(
        size,
        [0x80],
        [imm8 ? 0x83 : 0x81],
        op,
        rm,
        forceRex,
        { value: imm, size: imm8 ? 1 : immSize(size) },
        lock ? [0xf0] : [],
      );
      return insn({
        ...base,
        bytes: b.bytes,
        text: `${lock ? "lock " : ""}${name} ${rmText(rm, size, b.rex)}, imm`,
        reads: rmGprs(rm, size, b.rex),
        writes: op === 7 ? 0 : rmDest(rm, size, b.rex),
        memRead: rm.kind === "mem",
        memWrite: rm.kind === "mem" && op !== 7,
      });
    }
    const toReg = form === 1;
    // LOCK is valid only on a memory destination of ADD..XOR; elsewhere it is #UD
    const locked = lock && !toReg;
    const b = build(
      size,
      [op * 8 + (toReg ? 2 : 0)],
      [op * 8 + (toReg ? 3 : 1)],
      reg,
      rm,
      forceRex,
      undefined,
      locked ? [0xf0] : [],
    );
    const r = bit(gprOf(reg, size, b.rex));
    return insn({
      ...base,
      bytes: b.bytes,
      text: toReg
        ? `${name} ${regName(reg, size, b.rex)}, ${rmText(rm, size, b.rex)}`
        : `${locked ? "lock " : ""}${name} ${rmText(rm, size, b.rex)}, ${regName(reg, size, b.rex)}`,
      reads: r | rmGprs(rm, size, b.rex),
      writes: op === 7 ? 0 : toReg ? r : rmDest(rm, size, b.rex),
      memRead: rm.kind === "mem",
      memWrite: rm.kind === "mem" && !toReg && op !== 7,
    });
  })
  .filter(valid);

const SHIFT = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"];

/** SDM "Flags Affected" of the rotate and shift instructions for a given count. */
export function shiftFlags(op: number, size: Size, count: number): Dynamic {
  const masked = count & (size === 64 ? 63 : 31);
  if (masked === 0) return { flagsWritten: 0 };
  if (op <= 1) return { flagsWritten: CF | OF, flagsUndefined: masked === 1 ? 0 : OF };
  if (op <= 3) {
    const t = size === 8 ? masked % 9 : size === 16 ? masked % 17 : masked;
    return { flagsWritten: t === 0 ? OF : CF | OF, flagsUndefined: masked === 1 ? 0 : OF };
  }
  let undef = AF | (masked === 1 ? 0 : OF);
  if ((op === 4 || op === 5) && masked >= size) undef |= CF;
  return { flagsWritten: ARITH, flagsUndefined: undef };
}

const shift = fc
  .record({
    op: fc.constantFrom(0, 1, 2, 3, 4, 5, 7),
    form: fc.integer({ min: 0, max: 2 }),
    size: arbSize,
    rm: arbRm,
    count: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 9 })),
    forceRex: fc.boolean(),
  })
  .map(({ op, form, size, rm, count, forceRex }) => {
    const byCl = form === 2;
    const b =
      form === 0
        ? build(size, [0xc0], [0xc1], op, rm, forceRex, { value: BigInt(count), size: 1 })
        : build(size, [form === 1 ? 0xd0 : 0xd2], [form === 1 ? 0xd1 : 0xd3], op, rm, forceRex);
    const fixed = form === 0 ? count : 1;
    return insn({
      bytes: b.bytes,
      text: `${SHIFT[op]} ${rmText(rm, size, b.rex)}, ${byCl ? "cl" : fixed}`,
      reads: rmGprs(rm, size, b.rex) | (byCl ? bit(1) : 0),
      writes: rmDest(rm, size, b.rex),
      flagsRead: op === 2 || op === 3 ? CF : 0,
      flagsWritten: ARITH,
      dynamic: (pre: Pre) => shiftFlags(op, size, byCl ? Number(pre.gpr(1) & 0xffn) : fixed),
      memRead: rm.kind === "mem",
      memWrite: rm.kind === "mem",
    });
  })
  .filter(valid);

const shiftDouble = fc
  .record({
    right: fc.boolean(),
    byCl: fc.boolean(),
    size: arbWideSize,
    reg: arbReg,
    rm: arbRm,
    count: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 17 })),
  })
  .map(({ right, byCl, size, reg, rm, count }) => {
    const op = (right ? 0xac : 0xa4) + (byCl ? 1 : 0);
    const b = build(
      size,
      undefined,
      [0x0f, op],
      reg,
      rm,
      false,
      byCl ? undefined : { value: BigInt(count), size: 1 },
    );
    const dest = rmDest(rm, size, b.rex);
    return insn({
      bytes: b.bytes,
      text: `${right ? "shrd" : "shld"} ${rmText(rm, size, b.rex)}, ${regName(reg, size, b.rex)}, ${byCl ? "cl" : count}`,
      reads: rmGprs(rm, size, b.rex) | bit(reg) | (byCl ? bit(1) : 0),
      writes: dest,
      flagsWritten: ARITH,
      dynamic: (pre: Pre): Dynamic => {
        const masked = (byCl ? Number(pre.gpr(1) & 0xffn) : count) & (size === 64 ? 63 : 31);
        if (masked === 0) return { flagsWritten: 0 };
        // SDM: a count greater than the operand size leaves the result and all flags undefined
        if (masked > size) {
          return {
            flagsWritten: ARITH,
            flagsUndefined: ARITH,
            regsUndefined: dest,
            memUndefined: rm.kind === "mem",
          };
        }
        return { flagsWritten: ARITH, flagsUndefined: AF | (masked === 1 ? 0 : OF) };
      },
      memRead: rm.kind === "mem",
      memWrite: rm.kind === "mem",
    });
  })
  .filter(valid);

const UNARY = ["test", "", "not", "neg", "mul", "imul", "div", "idiv"];

const unary = fc
  .record({
    op: fc.constantFrom(0, 2, 3, 4, 5, 6, 7),
    size: arbSize,
    rm: arbRm,
    imm: arbImm32,
    forceRex: fc.boolean(),
  })
  .map(({ op, size, rm, imm, forceRex }) => {
    const b = build(
      size,
      [0xf6],
      [0xf7],
      op,
      rm,
      forceRex,
      op === 0 ? { value: imm, size: immSize(size) } : undefined,
    );
    const r = rmGprs(rm, size, b.rex);
    const mem = rm.kind === "mem";
    const text = `${UNARY[op]} ${rmText(rm, size, b.rex)}`;
    switch (op) {
      case 0:
        return insn({
          bytes: b.bytes,
          text,
          reads: r,
          flagsWritten: ARITH,
          flagsUndefined: AF,
          memRead: mem,
        });
      case 2:
      case 3:
        return insn({
          bytes: b.bytes,
          text,
          reads: r,
          writes: rmDest(rm, size, b.rex),
          flagsWritten: op === 3 ? ARITH : 0,
          memRead: mem,
          memWrite: mem,
        });
      default: {
        const div = op >= 6;
        const acc = size === 8 ? bit(0) : bit(0) | bit(2);
        return insn({
          bytes: b.bytes,
          text,
          reads: r | bit(0) | (div && size !== 8 ? bit(2) : 0),
          writes: acc,
          flagsWritten: ARITH,
          flagsUndefined: div ? ARITH : SF | ZF | AF | PF,
          memRead: mem,
          mayFault: div,
        });
      }
    }
  })
  .filter(valid);

const incDec = fc
  .record({ dec: fc.boolean(), size: arbSize, rm: arbRm, forceRex: fc.boolean() })
  .map(({ dec, size, rm, forceRex }) => {
    const b = build(size, [0xfe], [0xff], dec ? 1 : 0, rm, forceRex);
    return insn({
      bytes: b.bytes,
      text: `${dec ? "dec" : "inc"} ${rmText(rm, size, b.rex)}`,
      reads: rmGprs(rm, size, b.rex),
      writes: rmDest(rm, size, b.rex),
      flagsWritten: ARITH & ~CF,
      memRead: rm.kind === "mem",
      memWrite: rm.kind === "mem",
    });
  })
  .filter(valid);

const imulMulti = fc
  .record({ form: fc.integer({ min: 0, max: 2 }), size: arbWideSize, reg: arbReg, rm: arbRm, imm: arbImm32 })
  .map(({ form, size, reg, rm, imm }) => {
    const b =
      form === 0
        ? build(size, undefined, [0x0f, 0xaf], reg, rm, false)
        : build(size, undefined, [form === 1 ? 0x69 : 0x6b], reg, rm, false, {
            value: imm,
            size: form === 1 ? immSize(size) : 1,
          });
    return insn({
      bytes: b.bytes,
      text: `imul ${regName(reg, size, b.rex)}, ${rmText(rm, size, b.rex)}${form ? ", imm" : ""}`,
      reads: rmGprs(rm, size, b.rex) | (form === 0 ? bit(reg) : 0),
      writes: bit(reg),
      flagsWritten: ARITH,
      flagsUndefined: SF | ZF | AF | PF,
      memRead: rm.kind === "mem",
    });
  })
  .filter(valid);

const BITOPS = ["bt", "bts", "btr", "btc"];

const bitTest = fc
  .record({
    op: fc.integer({ min: 0, max: 3 }),
    byReg: fc.boolean(),
    size: arbWideSize,
    reg: arbReg,
    rm: arbRm,
    imm: fc.integer({ min: 0, max: 255 }),
    offset: fc.integer({ min: -64, max: 255 }),
  })
  .map(({ op, byReg, size, reg, rm, imm, offset }) => {
    const b = byReg
      ? build(size, undefined, [0x0f, 0xa3 + op * 8], reg, rm, false)
      : build(size, undefined, [0x0f, 0xba], 4 + op, rm, false, { value: BigInt(imm), size: 1 });
    const mem = rm.kind === "mem";
    return insn({
      bytes: b.bytes,
      text: `${BITOPS[op]} ${rmText(rm, size, b.rex)}, ${byReg ? regName(reg, size, b.rex) : imm}`,
      reads: rmGprs(rm, size, b.rex) | (byReg ? bit(reg) : 0),
      writes: op === 0 ? 0 : rmDest(rm, size, b.rex),
      flagsWritten: CF | OF | SF | AF | PF,
      flagsUndefined: OF | SF | AF | PF,
      memRead: mem,
      memWrite: mem && op !== 0,
      // a register bit offset addresses memory far from the operand: keep it inside the scratch page
      init:
        mem && byReg
          ? [
              [reg, BigInt(offset)],
              [15, BigInt(SCRATCH_ADDR + 0x100)],
            ]
          : undefined,
    });
  })
  .filter(
    (i) => valid(i) && !(i.init && (i.init[0]![0] === 14 || i.init[0]![0] === 15 || i.init[0]![0] === RSP)),
  );

const BITSCAN = ["bsf", "bsr", "tzcnt", "lzcnt", "popcnt"];

const bitScan = fc
  .record({ op: fc.integer({ min: 0, max: 4 }), size: arbWideSize, reg: arbReg, rm: arbRm })
  .map(({ op, size, reg, rm }) => {
    const opcode = op === 4 ? 0xb8 : 0xbc + (op & 1);
    const b = build(size, undefined, [0x0f, opcode], reg, rm, false, undefined, op >= 2 ? [0xf3] : []);
    // F3 must precede 66 only in text order; both are legacy prefixes and may come in any order
    return insn({
      bytes: b.bytes,
      text: `${BITSCAN[op]} ${regName(reg, size, b.rex)}, ${rmText(rm, size, b.rex)}`,
      reads: rmGprs(rm, size, b.rex) | (op < 2 ? bit(reg) : 0),
      writes: bit(reg),
      flagsWritten: ARITH,
      flagsUndefined: op < 2 ? ARITH & ~ZF : op < 4 ? OF | SF | PF | AF : 0,
      dynamic:
        op < 2
          ? (pre: Pre): Dynamic =>
              operandValue(rm, size, b.rex, pre) === 0n ? { regsUndefined: bit(reg) } : {}
          : undefined,
      memRead: rm.kind === "mem",
    });
  })
  .filter(valid);

const condMove = fc
  .record({
    set: fc.boolean(),
    cc: fc.integer({ min: 0, max: 15 }),
    size: arbWideSize,
    reg: arbReg,
    rm: arbRm,
    forceRex: fc.boolean(),
  })
  .map(({ set, cc, size, reg, rm, forceRex }) => {
    if (set) {
      const b = build(8, [0x0f, 0x90 + cc], [], 0, rm, forceRex);
      return insn({
        bytes: b.bytes,
        text: `set${CC_NAMES[cc]} ${rmText(rm, 8, b.rex)}`,
        reads: rmGprs(rm, 8, b.rex),
        writes: rmDest(rm, 8, b.rex),
        flagsRead: CC_FLAGS[cc]!,
        memWrite: rm.kind === "mem",
      });
    }
    const b = build(size, undefined, [0x0f, 0x40 + cc], reg, rm, false);
    return insn({
      bytes: b.bytes,
      text: `cmov${CC_NAMES[cc]} ${regName(reg, size, b.rex)}, ${rmText(rm, size, b.rex)}`,
      reads: rmGprs(rm, size, b.rex) | bit(reg),
      writes: bit(reg),
      flagsRead: CC_FLAGS[cc]!,
      memRead: rm.kind === "mem",
    });
  })
  .filter(valid);

const moves = fc
  .record({
    form: fc.integer({ min: 0, max: 9 }),
    size: arbSize,
    reg: arbReg,
    rm: arbRm,
    imm: arbImm32,
    imm64: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    forceRex: fc.boolean(),
  })
  .map(({ form, size, reg, rm, imm, imm64, forceRex }): Insn => {
    const mem = rm.kind === "mem";
    switch (form) {
      case 0:
      case 1: {
        // mov rm, reg / mov reg, rm
        const toReg = form === 1;
        const b = build(size, [toReg ? 0x8a : 0x88], [toReg ? 0x8b : 0x89], reg, rm, forceRex);
        const r = bit(gprOf(reg, size, b.rex));
        return insn({
          bytes: b.bytes,
          text: `mov ${toReg ? `${regName(reg, size, b.rex)}, ${rmText(rm, size, b.rex)}` : `${rmText(rm, size, b.rex)}, ${regName(reg, size, b.rex)}`}`,
          reads: toReg ? rmGprs(rm, size, b.rex) : r | (mem ? rmGprs(rm, size, b.rex) : 0),
          writes: toReg ? r : rmDest(rm, size, b.rex),
          memRead: toReg && mem,
          memWrite: !toReg && mem,
        });
      }
      case 2: {
        // mov rm, imm (C6/C7)
        const b = build(size, [0xc6], [0xc7], 0, rm, forceRex, { value: imm, size: immSize(size) });
        return insn({
          bytes: b.bytes,
          text: `mov ${rmText(rm, size, b.rex)}, imm`,
          reads: mem ? rmGprs(rm, size, b.rex) : 0,
          writes: rmDest(rm, size, b.rex),
          memWrite: mem,
        });
      }
      case 3: {
        // mov reg, imm (B0+r / B8+r, imm64 with REX.W)
        const s = sizeBits(size);
        const rex = 0x40 | (s.w ? 8 : 0) | (reg >= 8 ? 1 : 0);
        const useRex = rex !== 0x40 || (size === 8 && forceRex);
        const bytes = [...s.prefixes, ...(useRex ? [rex] : []), (size === 8 ? 0xb0 : 0xb8) + (reg & 7)];
        pushLe(bytes, size === 64 ? imm64 : imm, size === 64 ? 8 : immSize(size));
        return insn({
          bytes,
          text: `mov ${regName(reg, size, useRex)}, imm`,
          writes: bit(gprOf(reg, size, useRex)),
        });
      }
      case 4: {
        // movzx/movsx from 8 or 16 bits
        const from: Size = size === 8 || size === 16 ? 8 : forceRex ? 16 : 8;
        const to: Size = size === 8 ? 16 : size;
        const sx = imm < 0n;
        const op = (sx ? 0xbe : 0xb6) + (from === 16 ? 1 : 0);
        const b = build(to, undefined, [0x0f, op], reg, rm, false);
        return insn({
          bytes: b.bytes,
          text: `mov${sx ? "sx" : "zx"} ${regName(reg, to, b.rex)}, ${rmText(rm, from, b.rex)}`,
          reads: rmGprs(rm, from, b.rex),
          writes: bit(reg),
          memRead: mem,
        });
      }
      case 5: {
        // movsxd r64, rm32
        const b = build(64, undefined, [0x63], reg, rm, false);
        return insn({
          bytes: b.bytes,
          text: `movsxd ${regName(reg, 64, true)}, ${rmText(rm, 32, true)}`,
          reads: rmGprs(rm, 32, true),
          writes: bit(reg),
          memRead: mem,
        });
      }
      case 6: {
        // lea (any operand size; only the address is computed)
        const s: Size = size === 8 ? 32 : size;
        const m: Rm = mem ? rm : { kind: "mem", disp: 8, disp32: true, index: true, scale: 3 };
        const b = build(s, undefined, [0x8d], reg, m, false);
        return insn({
          bytes: b.bytes,
          text: `lea ${regName(reg, s, true)}, ${rmText(m, s, true)}`,
          reads: bit(14) | bit(15),
          writes: bit(reg),
        });
      }
      case 7: {
        // xchg rm, reg
        const b = build(size, [0x86], [0x87], reg, rm, forceRex);
        const r = bit(gprOf(reg, size, b.rex));
        return insn({
          bytes: b.bytes,
          text: `xchg ${rmText(rm, size, b.rex)}, ${regName(reg, size, b.rex)}`,
          reads: r | rmGprs(rm, size, b.rex),
          writes: r | rmDest(rm, size, b.rex),
          memRead: mem,
          memWrite: mem,
        });
      }
      case 8: {
        // xadd / cmpxchg
        const cmpxchg = imm < 0n;
        const b = build(
          size,
          [0x0f, cmpxchg ? 0xb0 : 0xc0],
          [0x0f, cmpxchg ? 0xb1 : 0xc1],
          reg,
          rm,
          forceRex,
        );
        const r = bit(gprOf(reg, size, b.rex));
        return insn({
          bytes: b.bytes,
          text: `${cmpxchg ? "cmpxchg" : "xadd"} ${rmText(rm, size, b.rex)}, ${regName(reg, size, b.rex)}`,
          reads: r | rmGprs(rm, size, b.rex) | (cmpxchg ? bit(0) : 0),
          writes: (cmpxchg ? bit(0) : r) | rmDest(rm, size, b.rex),
          flagsWritten: ARITH,
          memRead: mem,
          memWrite: mem,
        });
      }
      default: {
        // bswap r32/r64
        const s: Size = size === 64 ? 64 : 32;
        const rex = 0x40 | (s === 64 ? 8 : 0) | (reg >= 8 ? 1 : 0);
        const bytes = [...(rex !== 0x40 ? [rex] : []), 0x0f, 0xc8 + (reg & 7)];
        return insn({ bytes, text: `bswap ${regName(reg, s, true)}`, reads: bit(reg), writes: bit(reg) });
      }
    }
  })
  .filter(valid);

const misc = fc.integer({ min: 0, max: 15 }).map((k): Insn => {
  switch (k) {
    case 11:
      return insn({ bytes: [0xfc], text: "cld" });
    case 12:
      return insn({ bytes: [0xfd], text: "std" });
    case 13:
      return insn({ bytes: [0x0f, 0x1f, 0x44, 0x00, 0x00], text: "nop [rax+rax+0]" });
    case 14:
      return insn({ bytes: [0xf3, 0x90], text: "pause" });
    case 15:
      return insn({ bytes: [0x66, 0x90], text: "nop" });
    case 0:
      return insn({ bytes: [0xf8], text: "clc", flagsWritten: CF });
    case 1:
      return insn({ bytes: [0xf9], text: "stc", flagsWritten: CF });
    case 2:
      return insn({ bytes: [0xf5], text: "cmc", flagsRead: CF, flagsWritten: CF });
    case 3:
      return insn({ bytes: [0x9f], text: "lahf", flagsRead: ARITH & ~OF, reads: bit(0), writes: bit(0) });
    case 4:
      return insn({ bytes: [0x9e], text: "sahf", reads: bit(0), flagsWritten: ARITH & ~OF });
    case 5:
      return insn({ bytes: [0x66, 0x98], text: "cbw", reads: bit(0), writes: bit(0) });
    case 6:
      return insn({ bytes: [0x98], text: "cwde", reads: bit(0), writes: bit(0) });
    case 7:
      return insn({ bytes: [0x48, 0x98], text: "cdqe", reads: bit(0), writes: bit(0) });
    case 8:
      return insn({ bytes: [0x66, 0x99], text: "cwd", reads: bit(0) | bit(2), writes: bit(2) });
    case 9:
      return insn({ bytes: [0x99], text: "cdq", reads: bit(0), writes: bit(2) });
    default:
      return insn({ bytes: [0x48, 0x99], text: "cqo", reads: bit(0), writes: bit(2) });
  }
});

/** PUSH/POP/PUSHF and XCHG/CMPXCHG8B/16B: the stack is in the scratch page (RSP moves at most
 * 4 x 8 bytes in a sequence, inside the compared bytes). */
const stackAndExchange = fc
  .record({ form: fc.integer({ min: 0, max: 6 }), reg: arbReg, imm: arbImm32, mem: arbMem })
  .map(({ form, reg, imm, mem }): Insn => {
    const rex = reg >= 8 ? [0x41] : [];
    switch (form) {
      case 0:
        return insn({
          bytes: [...rex, 0x50 + (reg & 7)],
          text: `push ${regName(reg, 64, true)}`,
          reads: bit(reg),
          memWrite: true,
        });
      case 1:
        return insn({
          bytes: [...rex, 0x58 + (reg & 7)],
          text: `pop ${regName(reg, 64, true)}`,
          writes: bit(reg),
          memRead: true,
        });
      case 2: {
        const small = imm >= -128n && imm < 128n;
        const bytes = [small ? 0x6a : 0x68];
        pushLe(bytes, imm, small ? 1 : 4);
        return insn({ bytes, text: "push imm", memWrite: true });
      }
      case 3:
        // the pushed image holds the flags, undefined ones included: their taint reaches memory
        return insn({ bytes: [0x9c], text: "pushfq", flagsRead: ARITH, memWrite: true });
      case 4:
        return insn({
          // 48 90 is NOP; 49 90 is xchg r8, rax
          bytes: [0x48 | (reg >= 8 || reg === 0 ? 1 : 0), 0x90 + (reg & 7)],
          text: `xchg ${regName(reg || 8, 64, true)}, rax`,
          reads: bit(reg || 8) | bit(0),
          writes: bit(reg || 8) | bit(0),
        });
      default: {
        // cmpxchg8b / cmpxchg16b (16-byte alignment or #GP)
        const wide = form === 6;
        const b = build(wide ? 64 : 32, undefined, [0x0f, 0xc7], 1, mem, false);
        return insn({
          bytes: b.bytes,
          text: `${wide ? "cmpxchg16b" : "cmpxchg8b"} ${rmText(mem, 64, true)}`,
          reads: bit(0) | bit(1) | bit(2) | bit(3) | bit(14) | bit(15),
          writes: bit(0) | bit(2),
          flagsWritten: ZF,
          memRead: true,
          memWrite: true,
        });
      }
    }
  })
  .filter(valid);

/** One-byte opcodes that do not exist in 64-bit mode, and the UD0/UD1/UD2 opcodes: all #UD. */
const INVALID_64: Array<[number[], string]> = [
  [[0x06], "push es"],
  [[0x07], "pop es"],
  [[0x0e], "push cs"],
  [[0x16], "push ss"],
  [[0x17], "pop ss"],
  [[0x1e], "push ds"],
  [[0x1f], "pop ds"],
  [[0x27], "daa"],
  [[0x2f], "das"],
  [[0x37], "aaa"],
  [[0x3f], "aas"],
  [[0x60], "pusha"],
  [[0x61], "popa"],
  [[0xce], "into"],
  [[0xd4, 0x0a], "aam"],
  [[0xd5, 0x0a], "aad"],
  [[0x9a, 0, 0, 0, 0, 0, 0], "call far"],
  [[0xea, 0, 0, 0, 0, 0, 0], "jmp far"],
  [[0x0f, 0x0b], "ud2"],
  [[0x0f, 0xb9, 0xc0], "ud1"],
  [[0x0f, 0xff, 0xc0], "ud0"],
];

const invalid64 = fc
  .constantFrom(...INVALID_64)
  .map(([bytes, text]) => insn({ bytes, text: `${text} (#UD)` }));

/** PUSH/POP with a memory operand and XLAT (which forms a case alone: RBX must point at the table) */
const memoryStack = fc
  .record({ form: fc.integer({ min: 0, max: 2 }), mem: arbMem, al: fc.integer({ min: 0, max: 255 }) })
  .map(({ form, mem, al }): Insn => {
    if (form === 2) {
      return insn({
        bytes: [0x48, 0xd7],
        text: "xlatb",
        reads: bit(0) | bit(3),
        writes: bit(0),
        memRead: true,
        init: [
          [3, BigInt(SCRATCH_ADDR + 0x100)],
          [0, BigInt(al)],
        ],
      });
    }
    const push = form === 0;
    const b = build(64, undefined, [push ? 0xff : 0x8f], push ? 6 : 0, mem, false);
    // the operand size is 64 by default: drop REX.W to exercise that
    const bytes = b.bytes.map((v, i) =>
      i === (mem.kind === "mem" && mem.addr32 ? 1 : 0) && v >= 0x40 && v <= 0x4f ? v & ~8 : v,
    );
    return insn({
      bytes,
      text: `${push ? "push" : "pop"} ${rmText(mem, 64, true)}`,
      reads: bit(14) | bit(15),
      memRead: true,
      memWrite: true,
    });
  });

export const generalForms = {
  invalid64,
  memoryStack,
  stackAndExchange,
  alu,
  shift,
  shiftDouble,
  unary,
  incDec,
  imulMulti,
  bitTest,
  bitScan,
  condMove,
  moves,
  misc,
};

// Random string instructions (MOVS/CMPS/STOS/LODS/SCAS) with REP/REPE/REPNE and the address-size
// override. Each forms a case alone: RSI/RDI point into the scratch page and RCX holds a small count;
// with the 67 prefix the upper halves hold junk that a correct CPU ignores.

import fc from "fast-check";
import { SCRATCH_ADDR } from "./oracle.js";
import { ARITH, bit, type Insn, type Pre } from "./x86-encode.js";

const OPS: Array<[string, number, boolean]> = [
  ["movs", 0xa4, false],
  ["cmps", 0xa6, true],
  ["stos", 0xaa, false],
  ["lods", 0xac, false],
  ["scas", 0xae, true],
];
const SUFFIX: Record<number, string> = { 8: "b", 16: "w", 32: "d", 64: "q" };

export const stringOp = fc
  .record({
    op: fc.constantFrom(...OPS),
    size: fc.constantFrom(8, 16, 32, 64),
    rep: fc.constantFrom(0, 0xf3, 0xf2),
    addr32: fc.boolean(),
    si: fc.integer({ min: 0, max: 0x80 }),
    di: fc.integer({ min: 0, max: 0x80 }),
    count: fc.integer({ min: 0, max: 16 }),
    junk: fc.bigInt({ min: 0n, max: 0xffffffffn }),
  })
  .map(({ op: [name, opcode, compares], size, rep, addr32, si, di, count, junk }): Insn => {
    const prefix = compares ? rep : rep && 0xf3;
    const bytes = [
      ...(addr32 ? [0x67] : []),
      ...(size === 16 ? [0x66] : []),
      ...(prefix ? [prefix] : []),
      ...(size === 64 ? [0x48] : []),
      opcode + (size === 8 ? 0 : 1),
    ];
    const high = addr32 ? junk << 32n : 0n;
    const repText = prefix === 0xf3 ? (compares ? "repe " : "rep ") : prefix === 0xf2 ? "repne " : "";
    return {
      bytes,
      text: `${addr32 ? "addr32 " : ""}${repText}${name}${SUFFIX[size]}`,
      reads: bit(0) | bit(1) | bit(6) | bit(7),
      writes: bit(6) | bit(7) | (prefix ? bit(1) : 0) | (name === "lods" ? bit(0) : 0),
      flagsRead: 0,
      flagsWritten: compares ? ARITH : 0,
      flagsUndefined: 0,
      // Observed on Intel hardware, not specified by the SDM: with a 32-bit address size and ECX = 0,
      // REP string instructions may or may not clear the upper halves of RCX/RSI/RDI although no
      // iteration runs. Those upper halves are not compared then.
      dynamic: (pre: Pre) =>
        addr32 && prefix && (pre.gpr(1) & 0xffffffffn) === 0n
          ? { regsUndefined: bit(1) | bit(6) | bit(7) }
          : {},
      memRead: name !== "stos",
      memWrite: name === "movs" || name === "stos",
      init: [
        [6, high | BigInt(SCRATCH_ADDR + 0x100 + si)],
        [7, high | BigInt(SCRATCH_ADDR + 0x100 + di)],
        [1, high | BigInt(count)],
      ],
    };
  });

// Random SSE/SSE2 integer and move instructions (what gcc and a libc emit) as fast-check
// arbitraries. Legacy-SSE 128-bit memory operands must be 16-byte aligned (#GP otherwise), so the
// generator mixes aligned and unaligned displacements to exercise both.

import fc from "fast-check";
import { arbRm } from "./insn-forms-gp.js";
import { bit, encode, type Insn, plainInsn as plain, type Rm, rmText } from "./x86-encode.js";

const arbXmm = fc.integer({ min: 0, max: 15 });

interface Op {
  name: string;
  prefix: number[];
  opcode: number[];
  /** aligned 16-byte memory operand (else any alignment) */
  aligned: boolean;
  imm?: boolean;
}

const p66 = (name: string, op: number, extra: Partial<Op> = {}): Op => ({
  name,
  prefix: [0x66],
  opcode: [0x0f, op],
  aligned: true,
  ...extra,
});

/** xmm, xmm/m128 operations whose result goes to the register operand */
const BINARY: Op[] = [
  p66("punpcklbw", 0x60),
  p66("punpcklwd", 0x61),
  p66("punpckldq", 0x62),
  p66("packsswb", 0x63),
  p66("pcmpgtb", 0x64),
  p66("pcmpgtw", 0x65),
  p66("pcmpgtd", 0x66),
  p66("packuswb", 0x67),
  p66("punpckhbw", 0x68),
  p66("punpckhwd", 0x69),
  p66("punpckhdq", 0x6a),
  p66("packssdw", 0x6b),
  p66("punpcklqdq", 0x6c),
  p66("punpckhqdq", 0x6d),
  p66("pcmpeqb", 0x74),
  p66("pcmpeqw", 0x75),
  p66("pcmpeqd", 0x76),
  p66("psrlw", 0xd1),
  p66("psrld", 0xd2),
  p66("psrlq", 0xd3),
  p66("paddq", 0xd4),
  p66("pmullw", 0xd5),
  p66("psubusb", 0xd8),
  p66("psubusw", 0xd9),
  p66("pminub", 0xda),
  p66("pand", 0xdb),
  p66("paddusb", 0xdc),
  p66("paddusw", 0xdd),
  p66("pmaxub", 0xde),
  p66("pandn", 0xdf),
  p66("pavgb", 0xe0),
  p66("psraw", 0xe1),
  p66("psrad", 0xe2),
  p66("pavgw", 0xe3),
  p66("pmulhuw", 0xe4),
  p66("pmulhw", 0xe5),
  p66("psubsb", 0xe8),
  p66("psubsw", 0xe9),
  p66("pminsw", 0xea),
  p66("por", 0xeb),
  p66("paddsb", 0xec),
  p66("paddsw", 0xed),
  p66("pmaxsw", 0xee),
  p66("pxor", 0xef),
  p66("psllw", 0xf1),
  p66("pslld", 0xf2),
  p66("psllq", 0xf3),
  p66("pmuludq", 0xf4),
  p66("pmaddwd", 0xf5),
  p66("psadbw", 0xf6),
  p66("psubb", 0xf8),
  p66("psubw", 0xf9),
  p66("psubd", 0xfa),
  p66("psubq", 0xfb),
  p66("paddb", 0xfc),
  p66("paddw", 0xfd),
  p66("paddd", 0xfe),
  p66("pshufd", 0x70, { imm: true }),
  { name: "pshufhw", prefix: [0xf3], opcode: [0x0f, 0x70], aligned: true, imm: true },
  { name: "pshuflw", prefix: [0xf2], opcode: [0x0f, 0x70], aligned: true, imm: true },
  { name: "movdqa", prefix: [0x66], opcode: [0x0f, 0x6f], aligned: true },
  { name: "movdqu", prefix: [0xf3], opcode: [0x0f, 0x6f], aligned: false },
  { name: "movaps", prefix: [], opcode: [0x0f, 0x28], aligned: true },
  { name: "movups", prefix: [], opcode: [0x0f, 0x10], aligned: false },
  { name: "andps", prefix: [], opcode: [0x0f, 0x54], aligned: true },
  { name: "andnps", prefix: [], opcode: [0x0f, 0x55], aligned: true },
  { name: "orps", prefix: [], opcode: [0x0f, 0x56], aligned: true },
  { name: "xorps", prefix: [], opcode: [0x0f, 0x57], aligned: true },
  { name: "unpcklps", prefix: [], opcode: [0x0f, 0x14], aligned: true },
  { name: "unpckhps", prefix: [], opcode: [0x0f, 0x15], aligned: true },
  { name: "shufps", prefix: [], opcode: [0x0f, 0xc6], aligned: true, imm: true },
  p66("xorpd", 0x57),
  p66("andpd", 0x54),
  p66("orpd", 0x56),
  p66("unpcklpd", 0x14),
  p66("unpckhpd", 0x15),
  p66("shufpd", 0xc6, { imm: true }),
  { name: "movq", prefix: [0xf3], opcode: [0x0f, 0x7e], aligned: false },
  { name: "movss", prefix: [0xf3], opcode: [0x0f, 0x10], aligned: false },
  { name: "movsd", prefix: [0xf2], opcode: [0x0f, 0x10], aligned: false },
];

/** xmm/m, xmm stores */
const STORES: Op[] = [
  { name: "movdqa", prefix: [0x66], opcode: [0x0f, 0x7f], aligned: true },
  { name: "movdqu", prefix: [0xf3], opcode: [0x0f, 0x7f], aligned: false },
  { name: "movaps", prefix: [], opcode: [0x0f, 0x29], aligned: true },
  { name: "movups", prefix: [], opcode: [0x0f, 0x11], aligned: false },
  { name: "movq", prefix: [0x66], opcode: [0x0f, 0xd6], aligned: false },
  { name: "movss", prefix: [0xf3], opcode: [0x0f, 0x11], aligned: false },
  { name: "movsd", prefix: [0xf2], opcode: [0x0f, 0x11], aligned: false },
];

const xmmRm: fc.Arbitrary<Rm> = fc.oneof(
  { weight: 2, arbitrary: arbXmm.map((reg): Rm => ({ kind: "reg", reg })) },
  { weight: 1, arbitrary: arbRm.filter((r) => r.kind === "mem") },
);

export const memRegs = (rm: Rm): number => (rm.kind === "mem" ? bit(14) | bit(15) : 0);

const binary = fc
  .record({ op: fc.constantFrom(...BINARY), reg: arbXmm, rm: xmmRm, imm: fc.integer({ min: 0, max: 255 }) })
  .map(({ op, reg, rm, imm }) =>
    plain({
      bytes: encode({
        prefixes: op.prefix,
        opcode: op.opcode,
        reg,
        rm,
        imm: op.imm ? { value: BigInt(imm), size: 1 } : undefined,
      }),
      text: `${op.name} xmm${reg}, ${rm.kind === "reg" ? `xmm${rm.reg}` : rmText(rm, 64, true)}${op.imm ? `, ${imm}` : ""}`,
      reads: memRegs(rm),
      memRead: rm.kind === "mem",
      xmmWrite: true,
    }),
  );

const store = fc.record({ op: fc.constantFrom(...STORES), reg: arbXmm, rm: xmmRm }).map(({ op, reg, rm }) =>
  plain({
    bytes: encode({ prefixes: op.prefix, opcode: op.opcode, reg, rm }),
    text: `${op.name} ${rm.kind === "reg" ? `xmm${rm.reg}` : rmText(rm, 64, true)}, xmm${reg}`,
    reads: memRegs(rm),
    memWrite: rm.kind === "mem",
  }),
);

export const SHIFT_IMM: Array<[string, number, number]> = [
  ["psrlw", 0x71, 2],
  ["psraw", 0x71, 4],
  ["psllw", 0x71, 6],
  ["psrld", 0x72, 2],
  ["psrad", 0x72, 4],
  ["pslld", 0x72, 6],
  ["psrlq", 0x73, 2],
  ["psrldq", 0x73, 3],
  ["psllq", 0x73, 6],
  ["pslldq", 0x73, 7],
];

/** The register files the vector forms below are built for: xmm (66 prefix) or mm (none). */
export interface VectorKind {
  name: "xmm" | "mm";
  prefixes: number[];
  regs: fc.Arbitrary<number>;
  /** what writing one of its registers is, for the harness's taint tracking */
  write: Partial<Insn>;
}

const XMM: VectorKind = { name: "xmm", prefixes: [0x66], regs: arbXmm, write: { xmmWrite: true } };

/** shifts of a vector register by an immediate count (groups 0F 71-73) */
export function shiftImmForms(kind: VectorKind, table: Array<[string, number, number]>): fc.Arbitrary<Insn> {
  return fc
    .record({
      op: fc.constantFrom(...table),
      reg: kind.regs,
      count: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 65 })),
    })
    .map(({ op: [name, opcode, ext], reg, count }) =>
      plain({
        bytes: encode({
          prefixes: kind.prefixes,
          opcode: [0x0f, opcode],
          reg: ext,
          rm: { kind: "reg", reg },
          imm: { value: BigInt(count), size: 1 },
        }),
        text: `${name} ${kind.name}${reg}, ${count}`,
        ...kind.write,
      }),
    );
}

/** moves between general registers / memory and a vector register, the word extract/insert and
 * the byte sign mask */
export function gprVectorForms(kind: VectorKind): fc.Arbitrary<Insn> {
  return fc
    .record({
      form: fc.integer({ min: 0, max: 6 }),
      vec: kind.regs,
      gpr: fc.constantFrom(0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13),
      rm: arbRm,
      imm: fc.integer({ min: 0, max: 255 }),
    })
    .map(({ form, vec, gpr, rm, imm }): Insn => {
      const mem = rm.kind === "mem";
      const g: Rm = mem ? rm : { kind: "reg", reg: gpr };
      const v = `${kind.name}${vec}`;
      const prefixes = kind.prefixes;
      switch (form) {
        case 0:
        case 1: {
          // movd/movq vec, r/m32|64
          const w = form === 1;
          return plain({
            bytes: encode({ prefixes, w, opcode: [0x0f, 0x6e], reg: vec, rm: g }),
            text: `mov${w ? "q" : "d"} ${v}, ${rmText(g, w ? 64 : 32, true)}`,
            reads: mem ? memRegs(rm) : bit(gpr),
            memRead: mem,
            ...kind.write,
          });
        }
        case 2:
        case 3: {
          // movd/movq r/m32|64, vec
          const w = form === 3;
          return plain({
            bytes: encode({ prefixes, w, opcode: [0x0f, 0x7e], reg: vec, rm: g }),
            text: `mov${w ? "q" : "d"} ${rmText(g, w ? 64 : 32, true)}, ${v}`,
            reads: memRegs(g),
            writes: mem ? 0 : bit(gpr),
            memWrite: mem,
          });
        }
        case 4:
        case 5: {
          // pmovmskb r32, vec  /  pextrw r32, vec, imm8
          const extract = form === 5;
          return plain({
            bytes: encode({
              prefixes,
              opcode: [0x0f, extract ? 0xc5 : 0xd7],
              reg: gpr,
              rm: { kind: "reg", reg: vec },
              imm: extract ? { value: BigInt(imm), size: 1 } : undefined,
            }),
            text: `${extract ? "pextrw" : "pmovmskb"} ${rmText({ kind: "reg", reg: gpr }, 32, true)}, ${v}${extract ? `, ${imm}` : ""}`,
            writes: bit(gpr),
          });
        }
        default:
          // pinsrw vec, r32/m16, imm8
          return plain({
            bytes: encode({
              prefixes,
              opcode: [0x0f, 0xc4],
              reg: vec,
              rm: g,
              imm: { value: BigInt(imm), size: 1 },
            }),
            text: `pinsrw ${v}, ${rmText(g, mem ? 16 : 32, true)}, ${imm}`,
            reads: mem ? memRegs(rm) : bit(gpr),
            memRead: mem,
            ...kind.write,
          });
      }
    });
}

const shiftImm = shiftImmForms(XMM, SHIFT_IMM);
const gprXmm = gprVectorForms(XMM);

export const sseForms = { binary, store, shiftImm, gprXmm };

// Random MMX instructions (0F xx without a 66/F2/F3 prefix on mm0-7, the SSE-era integer forms
// included) as fast-check arbitraries, and random x87/MMX register states for them to start from.

import fc from "fast-check";
import { arbRm } from "./insn-forms-gp.js";
import { gprVectorForms, memRegs, SHIFT_IMM, shiftImmForms, type VectorKind } from "./insn-forms-sse.js";
import { FX_SIZE, initialFx, SCRATCH_ADDR } from "./oracle.js";
import { bit, encode, type Insn, plainInsn as plain, type Rm, rmText } from "./x86-encode.js";

const arbMm = fc.integer({ min: 0, max: 7 });

/** mm, mm/m64 operations whose result goes to the register operand */
const BINARY: Array<[string, number]> = [
  ["punpcklbw", 0x60],
  ["punpcklwd", 0x61],
  ["punpckldq", 0x62],
  ["packsswb", 0x63],
  ["pcmpgtb", 0x64],
  ["pcmpgtw", 0x65],
  ["pcmpgtd", 0x66],
  ["packuswb", 0x67],
  ["punpckhbw", 0x68],
  ["punpckhwd", 0x69],
  ["punpckhdq", 0x6a],
  ["packssdw", 0x6b],
  ["movq", 0x6f],
  ["pcmpeqb", 0x74],
  ["pcmpeqw", 0x75],
  ["pcmpeqd", 0x76],
  ["psrlw", 0xd1],
  ["psrld", 0xd2],
  ["psrlq", 0xd3],
  ["paddq", 0xd4],
  ["pmullw", 0xd5],
  ["psubusb", 0xd8],
  ["psubusw", 0xd9],
  ["pminub", 0xda],
  ["pand", 0xdb],
  ["paddusb", 0xdc],
  ["paddusw", 0xdd],
  ["pmaxub", 0xde],
  ["pandn", 0xdf],
  ["pavgb", 0xe0],
  ["psraw", 0xe1],
  ["psrad", 0xe2],
  ["pavgw", 0xe3],
  ["pmulhuw", 0xe4],
  ["pmulhw", 0xe5],
  ["psubsb", 0xe8],
  ["psubsw", 0xe9],
  ["pminsw", 0xea],
  ["por", 0xeb],
  ["paddsb", 0xec],
  ["paddsw", 0xed],
  ["pmaxsw", 0xee],
  ["pxor", 0xef],
  ["psllw", 0xf1],
  ["pslld", 0xf2],
  ["psllq", 0xf3],
  ["pmuludq", 0xf4],
  ["pmaddwd", 0xf5],
  ["psadbw", 0xf6],
  ["psubb", 0xf8],
  ["psubw", 0xf9],
  ["psubd", 0xfa],
  ["psubq", 0xfb],
  ["paddb", 0xfc],
  ["paddw", 0xfd],
  ["paddd", 0xfe],
  ["pshufw", 0x70],
];

const mmRm: fc.Arbitrary<Rm> = fc.oneof(
  { weight: 2, arbitrary: arbMm.map((reg): Rm => ({ kind: "reg", reg })) },
  { weight: 1, arbitrary: arbRm.filter((r) => r.kind === "mem") },
);

const mmText = (rm: Rm, size: 16 | 32 | 64) => (rm.kind === "reg" ? `mm${rm.reg}` : rmText(rm, size, true));

const binary = fc
  .record({ op: fc.constantFrom(...BINARY), reg: arbMm, rm: mmRm, imm: fc.integer({ min: 0, max: 255 }) })
  .map(({ op: [name, op], reg, rm, imm }) => {
    const hasImm = op === 0x70;
    return plain({
      bytes: encode({
        opcode: [0x0f, op],
        reg,
        rm,
        imm: hasImm ? { value: BigInt(imm), size: 1 } : undefined,
      }),
      text: `${name} mm${reg}, ${mmText(rm, 64)}${hasImm ? `, ${imm}` : ""}`,
      reads: memRegs(rm),
      memRead: rm.kind === "mem",
      mmWrite: true,
    });
  });

/** MOVQ mm/m64, mm and MOVNTQ m64, mm */
const store = fc.record({ nt: fc.boolean(), reg: arbMm, rm: mmRm }).map(({ nt, reg, rm }) => {
  const movnt = nt && rm.kind === "mem";
  return plain({
    bytes: encode({ opcode: [0x0f, movnt ? 0xe7 : 0x7f], reg, rm }),
    text: `${movnt ? "movntq" : "movq"} ${mmText(rm, 64)}, mm${reg}`,
    reads: memRegs(rm),
    memWrite: rm.kind === "mem",
    mmWrite: rm.kind === "reg",
  });
});

const MM: VectorKind = { name: "mm", prefixes: [], regs: arbMm, write: { mmWrite: true } };

// the whole-register byte shifts (/3, /7) exist only for xmm
const shiftImm = shiftImmForms(
  MM,
  SHIFT_IMM.filter(([, , ext]) => ext !== 3 && ext !== 7),
);

/** moves between general registers / memory and mm, word insert/extract, the byte sign mask */
const gprMm = gprVectorForms(MM);

/** EMMS, MOVQ2DQ xmm, mm and MOVDQ2Q mm, xmm */
const transfer = fc
  .record({ form: fc.integer({ min: 0, max: 2 }), mm: arbMm, xmm: fc.integer({ min: 0, max: 15 }) })
  .map(({ form, mm, xmm }): Insn => {
    if (form === 0) return plain({ bytes: [0x0f, 0x77], text: "emms" });
    const toXmm = form === 1;
    return plain({
      bytes: encode({
        prefixes: [toXmm ? 0xf3 : 0xf2],
        opcode: [0x0f, 0xd6],
        reg: toXmm ? xmm : mm,
        rm: { kind: "reg", reg: toXmm ? mm : xmm },
      }),
      text: toXmm ? `movq2dq xmm${xmm}, mm${mm}` : `movdq2q mm${mm}, xmm${xmm}`,
      xmmWrite: toXmm,
      mmWrite: !toXmm,
    });
  });

/** the SSE conversions between packed int32 in mm (or m64) and packed floats in xmm */
const CONVERT: Array<[string, number[], number]> = [
  ["cvtpi2ps", [], 0x2a],
  ["cvtpi2pd", [0x66], 0x2a],
  ["cvtps2pi", [], 0x2d],
  ["cvttps2pi", [], 0x2c],
  ["cvtpd2pi", [0x66], 0x2d],
  ["cvttpd2pi", [0x66], 0x2c],
];
const convert = fc
  .record({
    form: fc.constantFrom(...CONVERT),
    mm: arbMm,
    xmm: fc.integer({ min: 0, max: 15 }),
    mem: arbRm.filter((r) => r.kind === "mem"),
    useMem: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
  })
  .map(({ form: [name, prefixes, op], mm, xmm, mem, useMem }) => {
    const toXmm = op === 0x2a;
    const rm: Rm = useMem ? mem : { kind: "reg", reg: toXmm ? mm : xmm };
    const rmName = rm.kind === "mem" ? rmText(rm, 64, true) : toXmm ? `mm${mm}` : `xmm${xmm}`;
    return plain({
      bytes: encode({
        prefixes,
        opcode: [0x0f, op],
        reg: toXmm ? xmm : mm,
        rm,
      }),
      text: `${name} ${toXmm ? `xmm${xmm}` : `mm${mm}`}, ${rmName}`,
      reads: memRegs(rm),
      memRead: useMem,
      ...(toXmm ? { xmmWrite: true } : { mmWrite: true }),
    });
  });

/** MASKMOVQ (and MASKMOVDQU, its SSE2 twin) store to [rdi]: RDI is set up inside the scratch
 * page, so it forms a case alone */
const maskmovq = fc
  .record({
    dq: fc.boolean(),
    data: arbMm,
    mask: arbMm,
    hi: fc.integer({ min: 0, max: 3 }),
    at: fc.integer({ min: 0, max: 0x3b0 }),
  })
  .map(({ dq, data, mask, hi, at }) => {
    // MASKMOVDQU also reaches xmm8-15
    const r = dq ? data + 8 * (hi & 1) : data;
    const m = dq ? mask + 8 * (hi >> 1) : mask;
    const name = dq ? "xmm" : "mm";
    return plain({
      bytes: encode({
        prefixes: dq ? [0x66] : [],
        opcode: [0x0f, 0xf7],
        reg: r,
        rm: { kind: "reg", reg: m },
      }),
      text: `${dq ? "maskmovdqu" : "maskmovq"} ${name}${r}, ${name}${m}`,
      reads: bit(7),
      memWrite: true,
      init: [[7, BigInt(SCRATCH_ADDR + at)]],
    });
  });

export const mmxForms = { binary, store, shiftImm, gprMm, transfer, convert, maskmovq };

// ----------------------------------------------------------------- x87/MMX starting states

/** a register the interpreter holds exactly: an MMX value (sign/exponent all ones, any significand)
 * or a normal double / zero as an 80-bit real (the low 11 significand bits zero) */
const arbReg80: fc.Arbitrary<number[]> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }))
      .map(([lo, hi]) => [lo, hi, 0xffff]),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({
        lo: fc.integer({ min: 0, max: 0xffffffff }),
        hi: fc.integer({ min: 0, max: 0x7fffffff }),
        exp: fc.integer({ min: -1022, max: 1023 }),
        sign: fc.boolean(),
      })
      .map(({ lo, hi, exp, sign }) => [
        (lo & ~0x7ff) >>> 0,
        (hi | 0x80000000) >>> 0,
        (sign ? 0x8000 : 0) | (16383 + exp),
      ]),
  },
  { weight: 1, arbitrary: fc.boolean().map((neg) => [0, 0, neg ? 0x8000 : 0]) },
);

/**
 * FXSAVE image prefixes: random TOP, tags and register contents; exception flags clear, except
 * now and then an unmasked invalid-operation exception pending (FSW.IE, ES and B, FCW.IM clear), on
 * which every MMX instruction but the xmm-only ones raises #MF.
 */
export const arbFx: fc.Arbitrary<Uint8Array> = fc
  .record({
    top: fc.integer({ min: 0, max: 7 }),
    ftw: fc.integer({ min: 0, max: 255 }),
    cc: fc.integer({ min: 0, max: 15 }),
    pending: fc.integer({ min: 0, max: 15 }).map((n) => n === 0),
    regs: fc.array(arbReg80, { minLength: 8, maxLength: 8 }),
  })
  .map(({ top, ftw, cc, pending, regs }) => {
    const fx = initialFx();
    const dv = new DataView(fx.buffer);
    const ccBits = ((cc & 7) << 8) | (((cc >> 3) & 1) << 14);
    dv.setUint16(0, pending ? 0x37e : 0x37f, true);
    dv.setUint16(2, (top << 11) | ccBits | (pending ? 0x8081 : 0), true);
    fx[4] = ftw;
    regs.forEach(([lo, hi, se], k) => {
      dv.setUint32(32 + 16 * k, lo!, true);
      dv.setUint32(36 + 16 * k, hi!, true);
      dv.setUint16(40 + 16 * k, se!, true);
    });
    return fx.subarray(0, FX_SIZE);
  });

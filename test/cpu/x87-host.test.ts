// The x87 unit beside the host CPU (the differential oracle: user code in 64-bit mode): FSAVE and
// FSTENV images, FRSTOR/FLDENV, FXAM classes, FPREM/FPREM1 quotient bits, FLD/FSTP m80, FBLD/FBSTP,
// FISTTP and FIST, FCOMI/FUCOMI, stack faults and #MF. Inputs are chosen so that the results are
// exact in double precision (the interpreter's documented precision), and the whole state is
// compared: registers, flags, FCW/FSW/FTW, ST0-7 as 80 bits and the scratch memory, except the
// last-instruction pointers the interpreter does not keep. Transcendentals are compared within a
// relative tolerance of 2^-50 (the host's libm against the CPU's microcode). Where the host cannot
// run the oracle, the suite skips and says why.

import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import { type F80, toF80 } from "../../lib/cpu/x87-regs.js";
import { compareRuns } from "./support/diff-cases.js";
import { InterpHarness } from "./support/interp-harness.js";
import {
  type CpuState,
  initialFx,
  oracleUnsupportedReason,
  runOracle,
  SCRATCH_ADDR,
  SCRATCH_SIZE,
} from "./support/oracle.js";
import { type Insn, plainInsn } from "./support/x86-encode.js";

const oracle = oracleUnsupportedReason();
const skip = oracle !== undefined;
const why = oracle ? ` (skipped: ${oracle})` : "";
if (oracle) console.warn(`x87 host comparisons skipped: ${oracle}`);

const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
/** op /reg with the absolute operand [SCRATCH_ADDR + off] */
const m = (op: number, reg: number, off: number, pre: number[] = []) => [
  ...pre,
  op,
  (reg << 3) | 4,
  0x25,
  ...le32(SCRATCH_ADDR + off),
];
const FNSTSW_AX = [0xdf, 0xe0];

const insn = (bytes: number[]): Insn => plainInsn({ bytes });

/** an FXSAVE prefix with ST(0..) = values (null: empty), TOP, FCW and FSW flags */
function fxWith(values: (F80 | number | null)[], top = 0, cw = 0x37f, sw = 0): Uint8Array {
  const fx = initialFx();
  const dv = new DataView(fx.buffer);
  dv.setUint16(0, cw, true);
  dv.setUint16(2, (sw & ~0x3800) | (top << 11), true);
  let tag = 0;
  values.forEach((v, k) => {
    if (v === null) return;
    const [lo, hi, se] = typeof v === "number" ? toF80(v) : v;
    dv.setUint32(32 + 16 * k, lo, true);
    dv.setUint32(36 + 16 * k, hi, true);
    dv.setUint16(40 + 16 * k, se, true);
    tag |= 1 << ((top + k) & 7);
  });
  fx[4] = tag;
  return fx;
}

interface Case {
  code: number[][];
  fx?: Uint8Array;
  scratch?: Array<[number, number[]]>;
  rax?: bigint;
  /** scratch offsets the interpreter does not model (pointer fields): zeroed on both sides */
  ignore?: Array<[number, number]>;
}

function state(c: Case): CpuState {
  const scratch = new Uint8Array(SCRATCH_SIZE);
  for (const [at, bytes] of c.scratch ?? []) scratch.set(bytes, at);
  const gpr = new Array<bigint>(16).fill(0n);
  gpr[0] = c.rax ?? 0n;
  return { gpr, rflags: 2n, rip: 0n, xmm: new Uint8Array(256), fx: c.fx ?? initialFx(), scratch };
}

function runAll(cases: readonly Case[]) {
  const states = cases.map(state);
  const hosts = runOracle(
    cases.map((c, k) => ({ code: Uint8Array.from(c.code.flat()), state: states[k]!, bits: 64 })),
  );
  return cases.map((c, k) => {
    const ours = new InterpHarness(new Interpreter(), 64).run(c.code.map(insn), states[k]!);
    const host = hosts[k]!;
    for (const [at, n] of c.ignore ?? []) {
      ours.state.scratch.fill(0, at, at + n);
      host.state.scratch.fill(0, at, at + n);
    }
    return { ours, host };
  });
}

function runBoth(c: Case) {
  return runAll([c])[0]!;
}

/** differences between the interpreter and the host, each labelled with its case (one host run) */
function diffAll(cases: ReadonlyArray<[string, Case]>): string[] {
  const runs = runAll(cases.map(([, c]) => c));
  return runs.flatMap(({ ours, host }, k) => compareRuns(ours, host, 64).map((d) => `${cases[k]![0]}: ${d}`));
}

function diff(c: Case): string[] {
  return diffAll([["", c]]);
}

const f80 = (lo: number, hi: number, se: number): F80 => [lo >>> 0, hi >>> 0, se];
const f80Bytes = ([lo, hi, se]: F80) => [...le32(lo), ...le32(hi), se & 0xff, se >> 8];
const f64Bytes = (v: number) => Array.from(new Uint8Array(new Float64Array([v]).buffer));

describe.skipIf(skip)(`x87 environment and state images beside the host CPU${why}`, () => {
  const regs = [1.5, -0, Infinity, f80(0, 0xc0000000, 0xffff), 2 ** -1070, null, -3.25, 1e300];
  it("FNSAVE (32-bit format) stores the environment and ST0-7, then reinitialises", () => {
    const fx = fxWith(regs, 5, 0x27f, 0x4321 & 0x47ff);
    const code = [m(0xdd, 6, 0), m(0xdd, 7, 0x200), m(0xd9, 7, 0x202)];
    expect(diff({ code, fx, ignore: [[12, 16]] })).toEqual([]);
  });
  it("FNSAVE with a 16-bit operand size stores the 94-byte image", () => {
    const fx = fxWith(regs, 2, 0x37f, 0x100);
    expect(diff({ code: [m(0xdd, 6, 0, [0x66])], fx, ignore: [[6, 8]] })).toEqual([]);
  });
  it("FNSTENV (both sizes) stores the environment and masks every exception", () => {
    const fx = fxWith([2, 3], 7, 0x360, 0x0200);
    expect(diff({ code: [m(0xd9, 6, 0), m(0xd9, 7, 0x40)], fx, ignore: [[12, 16]] })).toEqual([]);
    expect(diff({ code: [m(0xd9, 6, 0, [0x66]), m(0xd9, 7, 0x40)], fx, ignore: [[6, 8]] })).toEqual([]);
  });
  it("FRSTOR and FLDENV take FCW, FSW, TOP and the empty tags from the image", () => {
    // a 32-bit image: FCW 0x7f (PC single, all masked), FSW C3|C0 with TOP 6, tags: R6 valid,
    // R7 zero, R0 special, the rest empty; reserved halves and pointers arbitrary
    const env = [
      ...le32(0x1234007f),
      ...le32(0xabcd4100 | (6 << 11)),
      ...le32(0x5555fff0 | (0x1 << 2) | 0x0),
      ...le32(0xdeadbeef),
      ...le32(0x07ff0023),
      ...le32(0x12345678),
      ...le32(0x2b),
    ];
    env[8] = 0b00_01_00_11; // R3..R0: R0 empty?? overwritten below
    // tag word: R0 10, R1-R5 11, R6 00, R7 01
    const tag = 0b01_00_11_11_11_11_11_10;
    env[8] = tag & 0xff;
    env[9] = tag >> 8;
    const st = [-7.5, 0, Infinity, 1, 2, 3, 4, 5].map((v) => f80Bytes(toF80(v)));
    const image = [...env, ...st.flat()];
    expect(diff({ code: [m(0xdd, 4, 0)], scratch: [[0, image]] })).toEqual([]);
    expect(diff({ code: [m(0xd9, 4, 0)], scratch: [[0, env]], fx: fxWith([1, 2, 3]) })).toEqual([]);
    const env16 = [0x7f, 0x0c, 0x00, 0x41 | (3 << 3), 0xff, 0xfc, 1, 2, 3, 4, 5, 6, 7, 8];
    expect(diff({ code: [m(0xd9, 4, 0, [0x66])], scratch: [[0, env16]], fx: fxWith([1, 2]) })).toEqual([]);
  });
});

describe.skipIf(skip)(`x87 classes, remainders and formats beside the host CPU${why}`, () => {
  it("FXAM classifies zero, normal, infinity, NaN, unsupported and empty, with the sign in C1", () => {
    const values: (F80 | number | null)[] = [
      0,
      -0,
      1.5,
      -(2 ** -1070),
      Infinity,
      -Infinity,
      f80(0, 0xc0000000, 0xffff),
      f80(0x1234, 0x80000001, 0xffff), // negative SNaN, exact
      f80(0, 0x40000000, 0xffff), // pseudo-NaN: unsupported
      Number.NaN,
    ];
    const cases = values.map((v): [string, Case] => [
      String(v),
      { code: [[0xd9, 0xe5], FNSTSW_AX], fx: fxWith([v, 1]) },
    ]);
    cases.push(["empty", { code: [[0xd9, 0xe5], FNSTSW_AX], fx: fxWith([]) }]);
    expect(diffAll(cases)).toEqual([]);
  });

  it("FPREM and FPREM1 give exact remainders and the quotient's low bits in C0, C3, C1", () => {
    const pairs: Array<[number, number]> = [
      [7, 2],
      [-7, 2],
      [7.5, -2],
      [1e10, 3],
      [5, 0.75],
      [13, 4],
      [11, 4],
      [-0, 3],
      [3, Infinity],
      [1, 3],
      [2 ** 52 + 1, 0.125],
    ];
    const cases = pairs.flatMap(([a, b]) =>
      [0xf8, 0xf5].map((op): [string, Case] => [
        `${a} ${b} ${op}`,
        { code: [[0xd9, op], FNSTSW_AX], fx: fxWith([a, b]) },
      ]),
    );
    expect(diffAll(cases)).toEqual([]);
    // a partial remainder: C2 = 1 until the exponent difference is below 64; the final value agrees
    const { ours, host } = runBoth({
      code: [
        [0xd9, 0xf8],
        [0xd9, 0xf8],
        [0xd9, 0xf8],
        [0xd9, 0xf8],
      ],
      fx: fxWith([2 ** 120 * 1.75, 3]),
    });
    expect(Array.from(ours.state.fx!.subarray(32, 42))).toEqual(Array.from(host.state.fx!.subarray(32, 42)));
  });

  it("FLD m80 / FSTP m80 round-trip doubles, infinities, zeros and NaNs", () => {
    const patterns: F80[] = [
      toF80(1),
      toF80(-3.25e-300),
      toF80(Number.MAX_VALUE),
      toF80(5e-324),
      toF80(Infinity),
      toF80(-Infinity),
      toF80(0),
      toF80(-0),
      f80(0, 0xc0000000, 0xffff),
      f80(0x89abcdef, 0xc1234567, 0xffff),
      f80(0x89abc800, 0xc1234567, 0x7fff),
      f80(0xfffff800, 0x81234567, 0x7fff), // positive SNaN: loaded without IE
      f80(0, 0x40000000, 0xffff), // pseudo-NaN with an all-ones sign/exponent: kept exactly
    ];
    const code = [m(0xdb, 5, 0), m(0xdb, 7, 16), FNSTSW_AX];
    const cases = patterns.map((p): [string, Case] => [
      p.map((x) => x.toString(16)).join(" "),
      { code, scratch: [[0, f80Bytes(p)]] },
    ]);
    expect(diffAll(cases)).toEqual([]);
  });

  it("FBLD / FBSTP convert packed BCD, round by RC and store the BCD indefinite when out of range", () => {
    const bcd = (digits: string, neg = false) => {
      const d = digits.padStart(18, "0");
      const out: number[] = [];
      for (let k = 0; k < 9; k++) out.push(Number(d[17 - 2 * k]) | (Number(d[16 - 2 * k]) << 4));
      return [...out, neg ? 0x80 : 0];
    };
    const cases: Array<[string, Case]> = [];
    for (const [digits, neg] of [
      ["0", false],
      ["0", true],
      ["9007199254740991", false],
      ["42", true],
      ["999999999999999", false],
    ] as const) {
      const code = [m(0xdf, 4, 0), m(0xdf, 6, 16), FNSTSW_AX];
      cases.push([digits, { code, scratch: [[0, bcd(digits, neg)]] }]);
    }
    for (const v of [2.5, -2.5, 1e18, -1e18 + 128, Number.NaN, Infinity, 0.4, -0.4]) {
      for (const cw of [0x37f, 0x77f, 0xb7f, 0xf7f]) {
        cases.push([`${v} ${cw}`, { code: [m(0xdf, 6, 0), FNSTSW_AX], fx: fxWith([v], 0, cw) }]);
      }
    }
    expect(diffAll(cases)).toEqual([]);
  });

  it("FIST/FISTP/FISTTP of every size: rounding, PE and C1, the integer indefinite on overflow", () => {
    const values = [
      1.9,
      -1.9,
      2.5,
      -2.5,
      32767.9,
      32768,
      -32768.5,
      2 ** 31,
      -(2 ** 31),
      2 ** 63,
      -(2 ** 63),
      Number.NaN,
      -Infinity,
    ];
    const forms = [
      m(0xdf, 1, 0), // fisttp m16
      m(0xdb, 1, 0), // fisttp m32
      m(0xdd, 1, 0), // fisttp m64
      m(0xdf, 2, 0), // fist m16
      m(0xdb, 3, 0), // fistp m32
      m(0xdf, 7, 0), // fistp m64
    ];
    const cases: Array<[string, Case]> = [];
    for (const v of values) {
      for (const form of forms) {
        for (const cw of [0x37f, 0xf7f]) {
          cases.push([
            `${v} ${form[0]} ${form[1]} ${cw}`,
            { code: [form, FNSTSW_AX], fx: fxWith([v, 1], 0, cw) },
          ]);
        }
      }
    }
    expect(diffAll(cases)).toEqual([]);
  });

  it("FILD of every size, FST/FSTP m32/m64 with RC, overflow and SNaNs", () => {
    const ints: Array<[number[], number[]]> = [
      [m(0xdf, 0, 0), [0x00, 0x80]],
      [m(0xdb, 0, 0), [0xff, 0xff, 0xff, 0x7f]],
      [m(0xdf, 5, 0), [1, 0, 0, 0, 0, 0, 0xf0, 0xff]],
    ];
    for (const [form, bytes] of ints) {
      expect(diff({ code: [form, m(0xdd, 3, 16)], scratch: [[0, bytes]] })).toEqual([]);
    }
    const cases: Array<[string, Case]> = [];
    for (const v of [
      1 / 3,
      -1 / 3,
      1e300,
      -1e300,
      1e-300,
      2 ** -140,
      3.4028235677973366e38,
      -3.4028235677973366e38,
    ]) {
      for (const cw of [0x37f, 0x77f, 0xb7f, 0xf7f, 0x37e, 0x377, 0x36f]) {
        cases.push([`${v} ${cw}`, { code: [m(0xd9, 3, 0), FNSTSW_AX], fx: fxWith([v], 0, cw) }]);
      }
    }
    expect(diffAll(cases)).toEqual([]);
    // SNaN m32 and m64 sources load quieted with IE; FST m32 of a QNaN keeps the payload's top
    expect(
      diff({ code: [m(0xd9, 0, 0), m(0xd9, 3, 8), FNSTSW_AX], scratch: [[0, [1, 0, 0xa0, 0x7f]]] }),
    ).toEqual([]);
    expect(
      diff({
        code: [m(0xdd, 0, 0), m(0xdd, 3, 8), FNSTSW_AX],
        scratch: [[0, [1, 0, 0, 0, 0, 0, 0xf4, 0xff]]],
      }),
    ).toEqual([]);
    expect(diff({ code: [m(0xd9, 0, 0), m(0xd9, 3, 8), FNSTSW_AX], scratch: [[0, [1, 0, 0, 0]]] })).toEqual(
      [],
    ); // denormal: DE
  });

  it("FCOMI, FUCOMI, FCOM, FUCOM and FTST with ordered, equal and NaN operands; FCMOVcc", () => {
    const qnan = f80(0, 0xc0000000, 0x7fff);
    const snan = f80(0, 0xa0000000, 0x7fff);
    const cases: Array<[string, Case]> = [];
    for (const [a, b] of [
      [1, 2],
      [2, 1],
      [3, 3],
      [1, qnan],
      [snan, 1],
    ] as Array<[F80 | number, F80 | number]>) {
      for (const code of [
        [0xdb, 0xf1],
        [0xdf, 0xf1],
        [0xdb, 0xe9],
        [0xdf, 0xe9],
        [0xd8, 0xd1],
        [0xdd, 0xe1],
        [0xda, 0xe9],
        [0xde, 0xd9],
        [0xd9, 0xe4],
      ]) {
        cases.push([`${a} ${b} ${code}`, { code: [code, FNSTSW_AX], fx: fxWith([a, b]) }]);
      }
    }
    // FCMOVB/E/BE/U and the NB forms after a compare that sets each flag pattern
    for (const [a, b] of [
      [1, 2],
      [2, 1],
      [3, 3],
      [1, Number.NaN],
    ]) {
      for (let k = 0; k < 8; k++) {
        const fcmov = [k < 4 ? 0xda : 0xdb, 0xc0 | ((k & 3) << 3) | 2];
        cases.push([`${a} ${b} ${k}`, { code: [[0xdb, 0xf1], fcmov], fx: fxWith([a, b, -5]) }]);
      }
    }
    expect(diffAll(cases)).toEqual([]);
  });

  it("stack overflow and underflow: IE|SF, C1, the QNaN indefinite; #MF once IE is unmasked", () => {
    const full = fxWith([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(
      diffAll([
        ["fld1 onto a full stack", { code: [[0xd9, 0xe8], FNSTSW_AX], fx: full }],
        ["fadd with an empty ST(1)", { code: [[0xd8, 0xc1], FNSTSW_AX], fx: fxWith([1]) }],
        ["fxch with an empty ST(1)", { code: [[0xd9, 0xc9], FNSTSW_AX], fx: fxWith([1]) }],
        ["fstp m64 from empty", { code: [m(0xdd, 3, 0), FNSTSW_AX], fx: fxWith([]) }],
        ["fistp m32 from empty", { code: [m(0xdb, 3, 0), FNSTSW_AX], fx: fxWith([]) }],
        ["fbstp from empty", { code: [m(0xdf, 6, 0), FNSTSW_AX], fx: fxWith([]) }],
        ["fstp m80 from empty", { code: [m(0xdb, 7, 0), FNSTSW_AX], fx: fxWith([]) }],
        // IE unmasked: FSQRT of -1 leaves ST0 and sets ES; the next waiting instruction raises #MF
        [
          "unmasked IE, then #MF",
          { code: [[0xd9, 0xfa], FNSTSW_AX, [0xd9, 0xe8]], fx: fxWith([-1], 0, 0x37e) },
        ],
        [
          "unmasked IE, FNCLEX",
          {
            code: [
              [0xd9, 0xfa],
              [0xdb, 0xe2],
              [0xd9, 0xe8],
            ],
            fx: fxWith([-1], 0, 0x37e),
          },
        ],
        // ZE unmasked: FDIV by zero leaves the destination
        [
          "unmasked ZE",
          { code: [[0xd8, 0xf1], FNSTSW_AX, [0xdb, 0xe2], FNSTSW_AX], fx: fxWith([1, 0], 0, 0x37b) },
        ],
        ["masked ZE", { code: [[0xd8, 0xf1], FNSTSW_AX], fx: fxWith([-1, 0]) }],
        ["0/0", { code: [[0xd8, 0xf1], FNSTSW_AX], fx: fxWith([0, 0]) }],
        ["inf-inf", { code: [[0xd8, 0xe1], FNSTSW_AX], fx: fxWith([Infinity, Infinity]) }],
        // DE comes after stack faults and NaNs; FLD loads a denormal even when DE is unmasked
        [
          "fld m32 denormal, DE unmasked",
          { code: [m(0xd9, 0, 0x14), FNSTSW_AX], fx: fxWith([1], 0, 0x37d), scratch: [[0x14, [1, 0, 0, 0]]] },
        ],
        [
          "fld m32 denormal onto a full stack",
          { code: [m(0xd9, 0, 0x14), FNSTSW_AX], fx: full, scratch: [[0x14, [1, 0, 0, 0]]] },
        ],
        [
          "fadd m32 denormal, DE unmasked",
          { code: [m(0xd8, 0, 0x14), FNSTSW_AX], fx: fxWith([1], 0, 0x37d), scratch: [[0x14, [1, 0, 0, 0]]] },
        ],
        [
          "fcomp m32 denormal, DE unmasked",
          {
            code: [m(0xd8, 3, 0x14), FNSTSW_AX],
            fx: fxWith([1, 2], 0, 0x37d),
            scratch: [[0x14, [1, 0, 0, 0]]],
          },
        ],
        [
          "fadd m32 denormal to a QNaN",
          { code: [m(0xd8, 0, 0x14), FNSTSW_AX], fx: fxWith([Number.NaN]), scratch: [[0x14, [1, 0, 0, 0]]] },
        ],
        [
          "fcomp m32 SNaN, IE unmasked",
          {
            code: [m(0xd8, 3, 0x10), FNSTSW_AX],
            fx: fxWith([1, 2], 0, 0x37e),
            scratch: [[0x10, [0, 0, 0xa0, 0x7f]]],
          },
        ],
        [
          "fadd m32 SNaN to a QNaN",
          {
            code: [m(0xd8, 0, 0x10), FNSTSW_AX],
            fx: fxWith([Number.NaN]),
            scratch: [[0x10, [0, 0, 0xa0, 0x7f]]],
          },
        ],
        ["fldcw 0xffff", { code: [m(0xd9, 5, 0), m(0xd9, 7, 2)], scratch: [[0, [0xff, 0xff]]] }],
        [
          "fldcw unmasking a pending flag",
          { code: [[0xd9, 0xfa], m(0xd9, 5, 0), FNSTSW_AX], fx: fxWith([-1]), scratch: [[0, [0x7e, 0x03]]] },
        ],
      ]),
    ).toEqual([]);
  });

  it("FXTRACT, FSCALE, FRNDINT, FCHS/FABS of NaNs, FINCSTP/FDECSTP, FFREE/FFREEP, FXCH", () => {
    const cases: Array<[string, Case]> = [];
    for (const v of [12, -0.375, 0, Infinity, 2 ** -1070]) {
      cases.push([`fxtract ${v}`, { code: [[0xd9, 0xf4], FNSTSW_AX], fx: fxWith([v]) }]);
    }
    for (const [a, b] of [
      [3, 2.9],
      [3, -4.5],
      [1, 1000],
      [1.5, -1060],
      [0, Infinity],
      [5, -Infinity],
      [Infinity, -Infinity],
    ]) {
      cases.push([`fscale ${a} ${b}`, { code: [[0xd9, 0xfd], FNSTSW_AX], fx: fxWith([a, b]) }]);
    }
    for (const v of [2.5, -2.5, 3.5, 0.3, -0]) {
      for (const cw of [0x37f, 0x77f, 0xb7f, 0xf7f]) {
        cases.push([`frndint ${v} ${cw}`, { code: [[0xd9, 0xfc], FNSTSW_AX], fx: fxWith([v], 0, cw) }]);
      }
    }
    const snan = f80(0, 0x90000000, 0x7fff);
    cases.push([
      "fchs/fabs of an SNaN",
      {
        code: [
          [0xd9, 0xe0],
          [0xd9, 0xe1],
        ],
        fx: fxWith([snan]),
      },
    ]);
    cases.push([
      "fincstp/fdecstp",
      { code: [[0xd9, 0xf7], [0xd9, 0xf7], [0xd9, 0xf6], FNSTSW_AX], fx: fxWith([1, 2, 3]) },
    ]);
    cases.push([
      "ffree/ffreep/fxch",
      { code: [[0xdd, 0xc1], [0xdf, 0xc0], [0xd9, 0xcb], FNSTSW_AX], fx: fxWith([1, 2, 3, 4]) },
    ]);
    cases.push([
      "fld st(2), fst st(4), fstp st(1)",
      {
        code: [
          [0xd9, 0xc2],
          [0xdd, 0xd4],
          [0xdd, 0xd9],
        ],
        fx: fxWith([1, 2, 3]),
      },
    ]);
    // arithmetic propagates the NaN with the larger significand, quieted
    const a = f80(0, 0xc0001000, 0x7fff);
    const b = f80(0, 0xa0002000, 0xffff);
    cases.push(["qnan + snan", { code: [[0xd8, 0xc1], FNSTSW_AX], fx: fxWith([a, b]) }]);
    cases.push(["snan * 2, pop", { code: [[0xde, 0xc9], FNSTSW_AX], fx: fxWith([b, 2]) }]);
    cases.push([
      "fsubr/fdivr forms",
      {
        code: [
          [0xd8, 0xe9],
          [0xdc, 0xf9],
          [0xde, 0xe1],
          [0xde, 0xf9],
        ],
        fx: fxWith([4, 12, 13]),
      },
    ]);
    cases.push([
      "fiadd/fimul/ficomp m16/m32",
      {
        code: [m(0xde, 0, 0), m(0xda, 1, 4), m(0xde, 3, 0), FNSTSW_AX],
        fx: fxWith([3, 4]),
        scratch: [[0, [7, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff]]],
      },
    ]);
    expect(diffAll(cases)).toEqual([]);
  });
});

describe.skipIf(skip)(`x87 transcendentals beside the host CPU, within 2^-50 relative${why}`, () => {
  /** runs `op` on ST0 (and ST1), stores ST0 as m64 and returns both sides' values and FSW */
  function compute(
    op: number[],
    st: number[],
    mask: bigint,
  ): { ours: number[]; host: number[]; fsw: number[] } {
    // FSW before the stores: FSTP m64 of a CPU's 80-bit result raises PE of its own
    const code = [op, FNSTSW_AX, m(0xdd, 3, 0), m(0xdd, 3, 8)];
    const { ours, host } = runBoth({
      code,
      fx: fxWith(st),
      scratch: [
        [0, f64Bytes(-999)],
        [8, f64Bytes(-999)],
      ],
    });
    const val = (s: Uint8Array, at: number) => new DataView(s.buffer, s.byteOffset).getFloat64(at, true);
    return {
      ours: [val(ours.state.scratch, 0), val(ours.state.scratch, 8)],
      host: [val(host.state.scratch, 0), val(host.state.scratch, 8)],
      fsw: [Number(ours.state.gpr[0]! & mask), Number(host.state.gpr[0]! & mask)],
    };
  }
  const close = (a: number, b: number) =>
    Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b)) || Math.abs(a - b) <= Math.abs(b) * 2 ** -50;

  it("FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1, FSQRT and the constants", () => {
    const cases: Array<[string, number[], number[]]> = [
      ["fsin", [0xd9, 0xfe], [0.5, 7]],
      ["fsin", [0xd9, 0xfe], [-3, 7]],
      ["fcos", [0xd9, 0xff], [1.25, 7]],
      ["fsincos", [0xd9, 0xfb], [0.75]],
      ["fptan", [0xd9, 0xf2], [0.3]],
      ["fpatan", [0xd9, 0xf3], [2, -1.5, 9]],
      ["f2xm1", [0xd9, 0xf0], [0.5, 7]],
      ["f2xm1", [0xd9, 0xf0], [-0.25, 7]],
      ["fyl2x", [0xd9, 0xf1], [10, 3, 9]],
      ["fyl2xp1", [0xd9, 0xf9], [0.125, 2, 9]],
      ["fsqrt", [0xd9, 0xfa], [2, 7]],
      ["fsin out of range", [0xd9, 0xfe], [2 ** 64, 7]],
      ["fptan out of range", [0xd9, 0xf2], [-(2 ** 70), 7]],
      ...[0xe8, 0xe9, 0xea, 0xeb, 0xec, 0xed, 0xee].map((k): [string, number[], number[]] => [
        `constant d9 ${k.toString(16)}`,
        [0xd9, k],
        [7],
      ]),
    ];
    // basic arithmetic also reports PE (where the double's exactness is the CPU's)
    const arithmetic: Array<[string, number[], number[]]> = [
      ["fdiv 1/3", [0xd8, 0xf1], [1, 3]],
      ["fdiv 1/4", [0xd8, 0xf1], [1, 4]],
      ["fmul 0.1*0.1", [0xd8, 0xc9], [0.1, 0.1]],
      ["fsub exact", [0xd8, 0xe1], [0.75, 0.5]],
      ["fsqrt 2", [0xd9, 0xfa], [2, 7]],
      ["fsqrt 2.25", [0xd9, 0xfa], [2.25, 7]],
    ];
    for (const [name, op, st] of [...cases, ...arithmetic]) {
      const mask = arithmetic.some((c) => c[0] === name) ? 0x4520n : 0x4500n;
      const r = compute(op, st, mask);
      expect(r.fsw[0], `${name} C3 C2 C0${mask & 0x20n ? " PE" : ""}`).toBe(r.fsw[1]);
      for (let k = 0; k < 2; k++) {
        expect(close(r.ours[k]!, r.host[k]!), `${name} st${k}: ours ${r.ours[k]}, host ${r.host[k]}`).toBe(
          true,
        );
      }
    }
  });
});

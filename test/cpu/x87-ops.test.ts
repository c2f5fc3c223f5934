// The x87 unit on the interpreter alone, group by group, against the SDM's stated results: memory
// formats (m80, packed BCD, integers with RC and FISTTP), FXAM classes, FPREM/FPREM1 quotient bits,
// comparisons into FSW and EFLAGS, stack faults and masked responses, transcendentals and scaling,
// #MF/#NM/#UD. (x87-host.test.ts runs the same kinds of cases beside the host CPU.)

import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import { fwait } from "../../lib/cpu/x87.js";
import { type F80, toF80 } from "../../lib/cpu/x87-regs.js";
import { InterpHarness } from "./support/interp-harness.js";
import { type CpuState, initialFx, SCRATCH_ADDR, SCRATCH_SIZE } from "./support/oracle.js";
import { type Insn, plainInsn } from "./support/x86-encode.js";

const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const m = (op: number, reg: number, off: number) => [op, (reg << 3) | 4, 0x25, ...le32(SCRATCH_ADDR + off)];
const FNSTSW_AX = [0xdf, 0xe0];
const f80Bytes = ([lo, hi, se]: F80) => [...le32(lo), ...le32(hi), se & 0xff, se >> 8];
const f80 = (lo: number, hi: number, se: number): F80 => [lo >>> 0, hi >>> 0, se];

// status word bits
const IE = 1;
const ZE = 4;
const PE = 0x20;
const SF = 0x40;
const ES = 0x80;
const C0 = 0x100;
const C1 = 0x200;
const C2 = 0x400;
const C3 = 0x4000;

const insn = (bytes: number[]): Insn => plainInsn({ bytes });

interface Result {
  vector: number;
  /** FSW without TOP */
  sw: number;
  top: number;
  /** ST(k) as 80-bit bytes */
  st: (k: number) => number[];
  tags: number;
  scratch: Uint8Array;
  rflags: bigint;
  cpu: Interpreter;
}

/** runs code with ST(0..) = values (null: empty), FCW `cw` and scratch bytes */
function run(
  code: number[][],
  values: (F80 | number | null)[] = [],
  cw = 0x37f,
  scratch: Array<[number, number[]]> = [],
  cr0Bits = 0n,
): Result {
  const fx = initialFx();
  const dv = new DataView(fx.buffer);
  dv.setUint16(0, cw, true);
  values.forEach((v, k) => {
    if (v === null) return;
    fx.set(f80Bytes(typeof v === "number" ? toF80(v) : v), 32 + 16 * k);
    fx[4]! |= 1 << k;
  });
  const s = new Uint8Array(SCRATCH_SIZE);
  for (const [at, b] of scratch) s.set(b, at);
  const state: CpuState = {
    gpr: new Array<bigint>(16).fill(0n),
    rflags: 2n,
    rip: 0n,
    xmm: new Uint8Array(256),
    fx,
    scratch: s,
  };
  const cpu = new Interpreter();
  const h = new InterpHarness(cpu, 64);
  cpu.setControl("cr0", cpu.getControl("cr0") | cr0Bits);
  const r = h.run(code.map(insn), state);
  const img = r.state.fx!;
  const sw = img[2]! | (img[3]! << 8);
  return {
    vector: r.vector,
    sw: sw & ~0x3800,
    top: (sw >> 11) & 7,
    st: (k) => Array.from(img.subarray(32 + 16 * k, 42 + 16 * k)),
    tags: img[4]!,
    scratch: r.state.scratch,
    rflags: r.state.rflags,
    cpu,
  };
}

const INDEF = f80Bytes(f80(0, 0xc0000000, 0xffff));
const bytesAt = (r: Result, at: number, n: number) => Array.from(r.scratch.subarray(at, at + n));

describe("x87 memory formats", () => {
  it("FLD m80 / FSTP m80 keep every double, infinities, NaNs (negative ones exactly), and raise nothing", () => {
    for (const p of [
      toF80(-3.25e-300),
      toF80(5e-324),
      toF80(-Infinity),
      f80(0x1234, 0xc0000001, 0xffff),
      f80(0, 0x40000000, 0xffff),
      f80(0x800, 0xa0000000, 0x7fff),
    ]) {
      const r = run([m(0xdb, 5, 0), m(0xdb, 7, 16)], [], 0x37f, [[0, f80Bytes(p)]]);
      expect(bytesAt(r, 16, 10)).toEqual(f80Bytes(p));
      expect(r.sw).toBe(0);
    }
  });

  it("the documented limits of double storage: 80-bit denormals load as zeros, unnormals as the indefinite", () => {
    const fold = (p: F80) =>
      bytesAt(run([m(0xdb, 5, 0), m(0xdb, 7, 16)], [], 0x37f, [[0, f80Bytes(p)]]), 16, 10);
    expect(fold(f80(1, 0, 0x8000))).toEqual(f80Bytes(toF80(-0))); // a denormal
    expect(fold(f80(0, 0x80000000, 0))).toEqual(f80Bytes(toF80(0))); // a pseudo-denormal
    expect(fold(f80(0, 0x40000000, 0x3fff))).toEqual(INDEF); // an unnormal
    expect(fold(f80(0, 0x80000000, 0x7000))).toEqual(f80Bytes(toF80(Infinity))); // beyond the double range
  });

  it("packed BCD: FBLD, FBSTP rounding by RC, the BCD indefinite for 10^18", () => {
    const r = run([m(0xdf, 4, 0), m(0xdf, 6, 16)], [], 0x37f, [[0, [0x42, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x80]]]);
    expect(bytesAt(r, 16, 10)).toEqual([0x42, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x80]); // -1042
    const half = run([m(0xdf, 6, 0)], [-2.5], 0xb7f); // RC up: -2
    expect(bytesAt(half, 0, 10)).toEqual([2, 0, 0, 0, 0, 0, 0, 0, 0, 0x80]);
    expect(half.sw).toBe(PE);
    const big = run([m(0xdf, 6, 0)], [1e18]);
    expect(bytesAt(big, 0, 10)).toEqual([0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff]);
    expect(big.sw).toBe(IE);
  });

  it("integers: FIST by RC with PE and C1, FISTTP truncates, the integer indefinite on overflow", () => {
    const down = run([m(0xdb, 2, 0), FNSTSW_AX], [2.5], 0x77f);
    expect([bytesAt(down, 0, 4), down.sw]).toEqual([[2, 0, 0, 0], PE]);
    const up = run([m(0xdb, 2, 0)], [2.5], 0xb7f);
    expect([bytesAt(up, 0, 4), up.sw]).toEqual([[3, 0, 0, 0], PE | C1]);
    const tt = run([m(0xdd, 1, 0)], [-1.9]);
    expect(bytesAt(tt, 0, 8)).toEqual([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    expect(tt.tags).toBe(0); // popped
    const over = run([m(0xdf, 1, 0)], [32768]);
    expect([bytesAt(over, 0, 2), over.sw]).toEqual([[0, 0x80], IE]);
    const ild = run([m(0xdf, 5, 0), m(0xdd, 3, 8)], [], 0x37f, [[0, [1, 0, 0, 0, 0, 0, 0xf0, 0xff]]]);
    expect(new DataView(ild.scratch.buffer).getFloat64(8, true)).toBe(-4503599627370495);
  });

  it("m32 stores round by RC, report OE/UE/PE, and an SNaN source is IE and loads quieted", () => {
    const third = run([m(0xd9, 3, 0)], [1 / 3], 0xf7f);
    // toward zero: the float below 1/3 (the nearest one, Math.fround's, lies above)
    expect(new DataView(third.scratch.buffer).getFloat32(0, true)).toBe(0.3333333134651184);
    expect(third.sw).toBe(PE);
    const over = run([m(0xd9, 3, 0)], [1e300]);
    expect([new DataView(over.scratch.buffer).getFloat32(0, true), over.sw]).toEqual([
      Infinity,
      0x8 | PE | C1,
    ]);
    const snan = run([m(0xd9, 0, 0), m(0xd9, 3, 8)], [], 0x37f, [[0, [1, 0, 0xa0, 0x7f]]]);
    expect([bytesAt(snan, 8, 4), snan.sw]).toEqual([[1, 0, 0xe0, 0x7f], IE]);
  });
});

describe("x87 classes, remainders and comparisons", () => {
  it("FXAM: C3 C2 C0 give the class, C1 the sign", () => {
    const cls = (v: F80 | number | null) => run([[0xd9, 0xe5]], [v]).sw & (C0 | C1 | C2 | C3);
    expect(cls(0)).toBe(C3);
    expect(cls(-0)).toBe(C3 | C1);
    expect(cls(1.5)).toBe(C2);
    expect(cls(-Infinity)).toBe(C2 | C0 | C1);
    expect(cls(Number.NaN)).toBe(C0);
    expect(cls(f80(0, 0x40000000, 0xffff))).toBe(C1); // pseudo-NaN: unsupported
    expect(cls(null) & (C0 | C2 | C3)).toBe(C3 | C0);
  });

  it("FPREM truncates and FPREM1 rounds the quotient, whose bits 2, 1, 0 go to C0, C3, C1", () => {
    const p = run([[0xd9, 0xf8]], [7, 2]);
    expect([p.st(0), p.sw]).toEqual([f80Bytes(toF80(1)), C3 | C1]); // q = 3
    const p1 = run([[0xd9, 0xf5]], [7, 2]);
    expect([p1.st(0), p1.sw]).toEqual([f80Bytes(toF80(-1)), C0]); // q = 4
    const neg = run([[0xd9, 0xf8]], [-13, 4]);
    expect([neg.st(0), neg.sw]).toEqual([f80Bytes(toF80(-1)), C3 | C1]); // q = 3
    const partial = run([[0xd9, 0xf8]], [2 ** 120, 3]);
    expect(partial.sw & C2).toBe(C2);
    const done = run(
      [
        [0xd9, 0xf8],
        [0xd9, 0xf8],
        [0xd9, 0xf8],
      ],
      [2 ** 120, 3],
    );
    expect([done.st(0), done.sw & C2]).toEqual([f80Bytes(toF80(2 ** 120 % 3)), 0]);
  });

  it("FCOMI/FUCOMI set ZF PF CF; NaNs are IE for the ordered forms only", () => {
    const flags = (r: Result) => Number(r.rflags & 0x8d5n);
    expect(flags(run([[0xdb, 0xf1]], [1, 2]))).toBe(0x1);
    expect(flags(run([[0xdb, 0xf1]], [3, 3]))).toBe(0x40);
    const q = run([[0xdb, 0xe9]], [1, Number.NaN]);
    expect([flags(q), q.sw]).toEqual([0x45, 0]);
    const o = run([[0xdf, 0xf1]], [1, Number.NaN]);
    expect([flags(o), o.sw, o.top]).toEqual([0x45, IE, 1]);
    const cc = run([[0xde, 0xd9]], [2, 1]); // FCOMPP: greater, pops twice
    expect([cc.sw, cc.tags]).toEqual([0, 0]);
  });
});

describe("x87 arithmetic", () => {
  it("results, operand order of the reversed forms, PE and C1 from the rounding", () => {
    const third = run([[0xd8, 0xf1]], [1, 3]);
    expect([third.st(0), third.sw]).toEqual([f80Bytes(toF80(1 / 3)), PE]); // rounded down
    const tenth = run([[0xd8, 0xf1]], [1, 10]);
    expect(tenth.sw).toBe(PE | C1); // the double nearest 0.1 lies above it
    expect(run([[0xd8, 0xf1]], [1, 4]).sw).toBe(0);
    // fsubr st0, st1 (12 - 4 = 8); fdiv st1, st0 (12 / 8); fsubrp st1 (8 - 1.5); fdivp st1 (13 / 6.5)
    const r = run(
      [
        [0xd8, 0xe9],
        [0xdc, 0xf9],
        [0xde, 0xe1],
        [0xde, 0xf9],
      ],
      [4, 12, 13],
    );
    expect([r.st(0), r.top]).toEqual([f80Bytes(toF80(2)), 2]);
    // PC = single rounds to 24 bits
    const single = run([[0xd8, 0xf1]], [1, 3], 0x07f);
    expect(single.st(0)).toEqual(f80Bytes(toF80(Math.fround(1 / 3))));
  });
});

describe("x87 stack faults and exceptions", () => {
  it("a push onto a full stack is IE|SF with C1 = 1 and loads the indefinite", () => {
    const r = run([[0xd9, 0xe8]], [1, 2, 3, 4, 5, 6, 7, 8]);
    expect([r.sw, r.top, r.st(0)]).toEqual([IE | SF | C1, 7, INDEF]);
  });
  it("an empty operand is IE|SF with C1 = 0; masked, the destination gets the indefinite", () => {
    const r = run([[0xd8, 0xc1]], [1]);
    expect([r.sw, r.st(0)]).toEqual([IE | SF, INDEF]);
    const st = run([m(0xdd, 3, 0)], []);
    expect([bytesAt(st, 0, 8), st.sw]).toEqual([[0, 0, 0, 0, 0, 0, 0xf8, 0xff], IE | SF]);
  });
  it("division by zero: masked an infinity, unmasked the destination stays and ES is set", () => {
    const masked = run([[0xd8, 0xf1]], [-1, 0]);
    expect([masked.st(0), masked.sw]).toEqual([f80Bytes(toF80(-Infinity)), ZE]);
    const unmasked = run([[0xd8, 0xf1]], [-1, 0], 0x37b);
    expect([unmasked.st(0), unmasked.sw]).toEqual([f80Bytes(toF80(-1)), ZE | ES | 0x8000]);
  });
  it("a pending unmasked exception is #MF at the next waiting instruction, not at FN* controls", () => {
    expect(
      run(
        [
          [0xd9, 0xfa],
          [0xd9, 0xe8],
        ],
        [-1],
        0x37e,
      ).vector,
    ).toBe(16);
    const ok = run([[0xd9, 0xfa], FNSTSW_AX, [0xdb, 0xe2], [0xd9, 0xe8]], [-1], 0x37e);
    expect([ok.vector, ok.sw]).toEqual([-1, 0]);
    // FWAIT's semantics (exec.ts dispatches 9B): #MF when ES is set and CR0.NE
    const cpu = new Interpreter();
    cpu.setControl("cr0", 0x33n);
    cpu.fpuSw = ES | IE;
    expect(() => fwait(cpu)).toThrow();
    cpu.fpuSw = 0;
    expect(() => fwait(cpu)).not.toThrow();
  });
  it("reserved encodings are #UD without counting as unimplemented; CR0.TS is #NM", () => {
    for (const code of [
      [0xd9, 0xd1],
      [0xd9, 0xe2],
      [0xdf, 0xe1],
      [0xde, 0xd8],
      m(0xd9, 1, 0),
      m(0xdd, 5, 0),
      m(0xdb, 4, 0),
    ]) {
      const r = run([code], [1, 2]);
      expect(r.vector, code.join(" ")).toBe(6);
      expect(r.cpu.udTotal).toBe(0);
    }
    expect(run([[0xd9, 0xe8]], [], 0x37f, [], 0x8n).vector).toBe(7);
    expect(run([m(0xdd, 6, 0)], [], 0x37f, [], 0x4n).vector).toBe(7); // CR0.EM
  });
});

describe("x87 transcendentals and scaling", () => {
  const value = (r: Result, k = 0) => {
    const b = Uint8Array.from(r.st(k));
    const dv = new DataView(b.buffer);
    const se = dv.getUint16(8, true);
    return (
      (se & 0x8000 ? -1 : 1) *
      (dv.getUint32(4, true) * 2 ** 32 + dv.getUint32(0, true)) *
      2 ** ((se & 0x7fff) - 16383 - 63)
    );
  };
  it("FSIN/FCOS/FPTAN/FSINCOS from libm; C2 = 1 and nothing changed for |x| >= 2^63", () => {
    expect(value(run([[0xd9, 0xfe]], [0.5]))).toBe(Math.sin(0.5));
    const tan = run([[0xd9, 0xf2]], [0.3]);
    expect([value(tan, 0), value(tan, 1)]).toEqual([1, Math.tan(0.3)]);
    const sc = run([[0xd9, 0xfb]], [0.75]);
    expect([value(sc, 0), value(sc, 1)]).toEqual([Math.cos(0.75), Math.sin(0.75)]);
    const far = run([[0xd9, 0xff]], [2 ** 64]);
    expect([far.sw, value(far)]).toEqual([C2, 2 ** 64]);
  });
  it("FYL2X, FYL2XP1, FPATAN pop; F2XM1, FSCALE, FXTRACT exact where the SDM's results are", () => {
    const l = run([[0xd9, 0xf1]], [8, 3]);
    expect([value(l), l.top]).toEqual([9, 1]);
    expect(value(run([[0xd9, 0xf9]], [1, 2]))).toBe(2);
    expect(value(run([[0xd9, 0xf3]], [-1, 0]))).toBe(Math.PI);
    expect(value(run([[0xd9, 0xf0]], [1]))).toBe(1);
    expect(value(run([[0xd9, 0xfd]], [3, 2.9]))).toBe(12);
    const x = run([[0xd9, 0xf4]], [12]);
    expect([value(x, 0), value(x, 1)]).toEqual([1.5, 3]);
    const z = run([[0xd9, 0xf4]], [-0]);
    expect([value(z, 1), z.sw]).toEqual([-Infinity, ZE]);
  });
});

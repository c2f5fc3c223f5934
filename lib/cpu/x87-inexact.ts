// Whether an x87 arithmetic result is exact, and which way it was rounded: PE and C1 ("rounded up",
// SDM Vol. 1 8.1.3.3) for FADD/FSUB/FMUL/FDIV and FSQRT. The registers hold doubles, so this is
// judged against the double (or, with FCW.PC single, float) result the interpreter produced:
// where a CPU's 64-bit result is exact and the double is not, PE differs, and C1 follows the
// double's rounding, not the CPU's.

/** a finite value as significand * 2^exponent (significand signed) */
type Exact = [m: bigint, e: number];

const f64 = new Float64Array(1);
const f64u = new Uint32Array(f64.buffer);

/** |v| = m * 2^e with m an integer (v finite, not zero) */
export function parts(v: number): [bigint, number] {
  f64[0] = v;
  const hi = f64u[1];
  const exp = (hi >>> 20) & 0x7ff;
  const frac = (BigInt(hi & 0xfffff) << 32n) | BigInt(f64u[0]);
  if (exp === 0) return [frac, -1074];
  return [frac | (1n << 52n), exp - 1075];
}

function exact(v: number): Exact {
  if (v === 0) return [0n, 0];
  const [m, e] = parts(v);
  return [v < 0 ? -m : m, e];
}

function abs(m: bigint): bigint {
  return m < 0n ? -m : m;
}

/** the sign of |x| - |y| */
function compareMag(x: Exact, y: Exact): number {
  const e = Math.min(x[1], y[1]);
  const a = abs(x[0]) << BigInt(x[1] - e);
  const b = abs(y[0]) << BigInt(y[1] - e);
  return a > b ? 1 : a < b ? -1 : 0;
}

function mul(x: Exact, y: Exact): Exact {
  return [x[0] * y[0], x[1] + y[1]];
}

function add(x: Exact, y: Exact): Exact {
  const e = Math.min(x[1], y[1]);
  return [(x[0] << BigInt(x[1] - e)) + (y[0] << BigInt(y[1] - e)), e];
}

/**
 * How res relates to the exact result of `op` (D8 /r numbering: 0 add, 1 mul, 4 sub, 5 subr, 6 div,
 * 7 divr; -1 square root of a): 0 exact, 1 larger in magnitude (rounded up), -1 smaller.
 * Infinite or NaN results count as exact (their exceptions are reported elsewhere).
 */
export function rounding(op: number, a: number, b: number, res: number): number {
  if (!Number.isFinite(res) || !Number.isFinite(a) || !Number.isFinite(b)) return 0;
  const r = exact(res);
  switch (op) {
    case 0:
      return compareMag(r, add(exact(a), exact(b)));
    case 4:
      return compareMag(r, add(exact(a), exact(-b)));
    case 5:
      return compareMag(r, add(exact(b), exact(-a)));
    case 1:
      return compareMag(r, mul(exact(a), exact(b)));
    case 6:
    case 7: {
      // res = n / d: compare |res * d| with |n|
      const [n, d] = op === 6 ? [a, b] : [b, a];
      if (d === 0) return 0;
      return compareMag(mul(r, exact(d)), exact(n));
    }
    default:
      return compareMag(mul(r, r), exact(a));
  }
}

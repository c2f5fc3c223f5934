// Lazy arithmetic flags: ALU instructions record their operands and raw (unmasked) result, and
// CF/PF/AF/ZF/SF/OF are computed only when something reads them. Most results are never read
// (the next ALU op overwrites them), and a Jcc usually needs one flag.

export const FL_CF = 0x1;
export const FL_PF = 0x4;
export const FL_AF = 0x10;
export const FL_ZF = 0x40;
export const FL_SF = 0x80;
export const FL_TF = 0x100;
export const FL_IF = 0x200;
export const FL_DF = 0x400;
export const FL_OF = 0x800;
export const FL_IOPL = 0x3000;
export const FL_NT = 0x4000;
export const FL_RF = 0x10000;
export const FL_VM = 0x20000;
export const FL_AC = 0x40000;
export const FL_VIF = 0x80000;
export const FL_VIP = 0x100000;
export const FL_ID = 0x200000;
export const FL_ARITH = FL_CF | FL_PF | FL_AF | FL_ZF | FL_SF | FL_OF;

/** the six arithmetic flags live in `eflags` */
export const LZ_NONE = 0;
/** raw = a + b (+carry); 64-bit: raw lo / raw hi sums */
export const LZ_ADD = 1;
/** raw = a - b (-borrow) */
export const LZ_SUB = 2;
/** CF = OF = AF = 0 */
export const LZ_LOGIC = 3;
/** like ADD with b = 1, CF kept in fCf */
export const LZ_INC = 4;
/** like SUB with b = 1, CF kept in fCf */
export const LZ_DEC = 5;
/** ZF/SF/PF from the result; CF, OF, AF given explicitly (shifts, multiplies) */
export const LZ_RES = 6;

export const PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let p = 1;
  for (let b = i; b; b >>= 1) p ^= b & 1;
  PARITY[i] = p ? FL_PF : 0;
}

/** State the lazy evaluator reads; Interpreter carries these fields. */
export interface LazyFlags {
  eflags: number;
  fOp: number;
  fSize: number;
  fA: number;
  fB: number;
  fRes: number;
  fAHi: number;
  fBHi: number;
  fResHi: number;
  fCf: number;
  fOf: number;
  fAf: number;
}

export function lazyCf(s: LazyFlags): number {
  switch (s.fOp) {
    case LZ_ADD:
      if (s.fSize === 64) return s.fResHi > 0xffffffff ? 1 : 0;
      return s.fRes > (s.fSize === 32 ? 0xffffffff : (1 << s.fSize) - 1) ? 1 : 0;
    case LZ_SUB:
      return (s.fSize === 64 ? s.fResHi : s.fRes) < 0 ? 1 : 0;
    case LZ_LOGIC:
      return 0;
    case LZ_INC:
    case LZ_DEC:
    case LZ_RES:
      return s.fCf;
    default:
      return s.eflags & 1;
  }
}

export function lazyZf(s: LazyFlags): boolean {
  switch (s.fSize) {
    case 8:
      return (s.fRes & 0xff) === 0;
    case 16:
      return (s.fRes & 0xffff) === 0;
    case 32:
      return (s.fRes | 0) === 0;
    default:
      return (s.fRes | 0) === 0 && (s.fResHi | 0) === 0;
  }
}

export function lazySf(s: LazyFlags): number {
  if (s.fSize === 64) return (s.fResHi >>> 31) & 1;
  return (s.fRes >>> (s.fSize - 1)) & 1;
}

export function lazyOf(s: LazyFlags): number {
  const sh = s.fSize === 64 ? 31 : s.fSize - 1;
  let a = s.fA;
  let b = s.fB;
  let r = s.fRes;
  if (s.fSize === 64) {
    a = s.fAHi;
    b = s.fBHi;
    r = s.fResHi;
  }
  switch (s.fOp) {
    case LZ_ADD:
    case LZ_INC:
      return (((a ^ r) & (b ^ r)) >>> sh) & 1;
    case LZ_SUB:
    case LZ_DEC:
      return (((a ^ b) & (a ^ r)) >>> sh) & 1;
    case LZ_RES:
      return s.fOf;
    default:
      return 0;
  }
}

/** Full EFLAGS with the lazy part folded in. */
export function materialize(s: LazyFlags): number {
  if (s.fOp === LZ_NONE) return s.eflags;
  let f = s.eflags & ~FL_ARITH;
  f |= lazyCf(s);
  f |= PARITY[s.fRes & 0xff];
  if (s.fOp === LZ_RES) f |= s.fAf ? FL_AF : 0;
  else if (s.fOp !== LZ_LOGIC) f |= (s.fA ^ s.fB ^ s.fRes) & FL_AF;
  if (lazyZf(s)) f |= FL_ZF;
  if (lazySf(s)) f |= FL_SF;
  if (lazyOf(s)) f |= FL_OF;
  return f;
}

/** Condition code 0..15 as encoded in Jcc/SETcc/CMOVcc. */
export function condition(s: LazyFlags, cc: number): boolean {
  let r: boolean;
  switch (cc >> 1) {
    case 0:
      r = lazyOfAny(s) !== 0;
      break;
    case 1:
      r = lazyCf(s) !== 0;
      break;
    case 2:
      r = s.fOp === LZ_NONE ? (s.eflags & FL_ZF) !== 0 : lazyZf(s);
      break;
    case 3:
      r = lazyCf(s) !== 0 || (s.fOp === LZ_NONE ? (s.eflags & FL_ZF) !== 0 : lazyZf(s));
      break;
    case 4:
      r = (s.fOp === LZ_NONE ? (s.eflags >> 7) & 1 : lazySf(s)) !== 0;
      break;
    case 5:
      r = (s.fOp === LZ_NONE ? s.eflags & FL_PF : PARITY[s.fRes & 0xff]) !== 0;
      break;
    case 6:
      r = sfAny(s) !== lazyOfAny(s);
      break;
    default:
      r = (s.fOp === LZ_NONE ? (s.eflags & FL_ZF) !== 0 : lazyZf(s)) || sfAny(s) !== lazyOfAny(s);
      break;
  }
  return (cc & 1) === 0 ? r : !r;
}

function lazyOfAny(s: LazyFlags): number {
  return s.fOp === LZ_NONE ? (s.eflags >> 11) & 1 : lazyOf(s);
}

function sfAny(s: LazyFlags): number {
  return s.fOp === LZ_NONE ? (s.eflags >> 7) & 1 : lazySf(s);
}

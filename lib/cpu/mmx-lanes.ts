// Packed-integer lane arithmetic shared by the MMX (64-bit mm) and SSE2 (128-bit xmm) forms of
// the same opcodes: the caller loads the destination's lanes into `dst` and the source's into
// `src`, runs an operation over `bytes` (8 or 16) bytes, and stores `dst` back.

/** destination lanes in, result out */
export const dst = new Int32Array(4);
/** source lanes (read-only for the operations) */
export const src = new Int32Array(4);

const dU8 = new Uint8Array(dst.buffer);
const dI8 = new Int8Array(dst.buffer);
const dU16 = new Uint16Array(dst.buffer);
const dI16 = new Int16Array(dst.buffer);
const sU8 = new Uint8Array(src.buffer);
const sI8 = new Int8Array(src.buffer);
const sU16 = new Uint16Array(src.buffer);
const sI16 = new Int16Array(src.buffer);
const out = new Int32Array(4);
const oU8 = new Uint8Array(out.buffer);
const oU16 = new Uint16Array(out.buffer);

function sat8s(v: number): number {
  return Math.max(-128, Math.min(127, v));
}
function sat8u(v: number): number {
  return Math.max(0, Math.min(255, v));
}
function sat16s(v: number): number {
  return Math.max(-32768, Math.min(32767, v));
}
function sat16u(v: number): number {
  return Math.max(0, Math.min(65535, v));
}

function q(a: Int32Array, i: number): bigint {
  return (BigInt(a[i + 1] >>> 0) << 32n) | BigInt(a[i] >>> 0);
}
function setQ(a: Int32Array, i: number, v: bigint): void {
  a[i] = Number(v & 0xffffffffn);
  a[i + 1] = Number((v >> 32n) & 0xffffffffn);
}

/**
 * Shifts each 16/32/64-bit lane of `dst` (mode 0 logical right, 1 arithmetic right, 2 left); a
 * count past the lane width clears the lane (fills it with the sign for arithmetic shifts).
 */
export function laneShift(w: 16 | 32 | 64, mode: number, count: number, bytes: number): void {
  if (w === 16) {
    for (let i = 0; i < bytes >> 1; i++) {
      if (mode === 1) dI16[i] = dI16[i] >> Math.min(count, 15);
      else dU16[i] = count > 15 ? 0 : mode === 0 ? dU16[i] >>> count : dU16[i] << count;
    }
  } else if (w === 32) {
    for (let i = 0; i < bytes >> 2; i++) {
      const v = dst[i];
      if (mode === 1) dst[i] = v >> Math.min(count, 31);
      else dst[i] = count > 31 ? 0 : mode === 0 ? v >>> count : v << count;
    }
  } else {
    for (let i = 0; i < bytes >> 2; i += 2) {
      const v = q(dst, i);
      setQ(
        dst,
        i,
        count > 63 ? 0n : mode === 0 ? v >> BigInt(count) : (v << BigInt(count)) & 0xffffffffffffffffn,
      );
    }
  }
}

/** shift-by-register forms: D1-D3 (PSRL), E1-E2 (PSRA), F1-F3 (PSLL); the count is the low
 * 64 bits of the source */
export function isShiftByReg(op: number): boolean {
  return (op >= 0xd1 && op <= 0xd3) || op === 0xe1 || op === 0xe2 || (op >= 0xf1 && op <= 0xf3);
}

/** PSHUFW / PSHUFLW / PSHUFHW: the four words at `word` of `dst` from those of `src` by imm8 */
export function shuffleWords(imm: number, word: number): void {
  for (let i = 0; i < 4; i++) dU16[word + i] = sU16[word + ((imm >> (2 * i)) & 3)];
}

/** PMOVMSKB: the top bit of each byte of `src` */
export function byteSignMask(bytes: number): number {
  let m = 0;
  for (let i = 0; i < bytes; i++) m |= (sU8[i] >> 7) << i;
  return m;
}

/**
 * The two-operand lane operation `op` (0F xx) on `bytes` bytes: dst = dst op src. Returns false
 * for an opcode that is not one.
 */
export function laneOp(op: number, bytes: number): boolean {
  const nw = bytes >> 1;
  const nd = bytes >> 2;
  if (isShiftByReg(op)) {
    const count = src[1] !== 0 ? 255 : Math.min(src[0] >>> 0, 255);
    const w = (op & 3) === 1 ? 16 : (op & 3) === 2 ? 32 : 64;
    laneShift(w, op < 0xe0 ? 0 : op < 0xf0 ? 1 : 2, count, bytes);
    return true;
  }
  switch (op) {
    case 0x60:
    case 0x61:
    case 0x62:
    case 0x68:
    case 0x69:
    case 0x6a:
    case 0x6c:
    case 0x6d: {
      // unpack: interleave the low (or high) halves
      const high = op >= 0x68 && op !== 0x6c;
      const unit = op === 0x6c || op === 0x6d ? 8 : 1 << (op & 3);
      const half = high ? bytes >> 1 : 0;
      let o = 0;
      for (let i = 0; i < bytes >> 1; i += unit) {
        for (let k = 0; k < unit; k++) oU8[o++] = dU8[half + i + k];
        for (let k = 0; k < unit; k++) oU8[o++] = sU8[half + i + k];
      }
      for (let i = 0; i < nd; i++) dst[i] = out[i];
      return true;
    }
    case 0x63:
    case 0x67:
    case 0x6b:
      // pack with saturation: the destination's lanes, then the source's
      if (op === 0x6b) {
        for (let i = 0; i < nd; i++) oU16[i] = sat16s(dst[i]) & 0xffff;
        for (let i = 0; i < nd; i++) oU16[nd + i] = sat16s(src[i]) & 0xffff;
      } else {
        const f = op === 0x63 ? sat8s : sat8u;
        for (let i = 0; i < nw; i++) oU8[i] = f(dI16[i]) & 0xff;
        for (let i = 0; i < nw; i++) oU8[nw + i] = f(sI16[i]) & 0xff;
      }
      for (let i = 0; i < nd; i++) dst[i] = out[i];
      return true;
    case 0x64:
    case 0x74:
      for (let i = 0; i < bytes; i++) dU8[i] = (op === 0x74 ? dU8[i] === sU8[i] : dI8[i] > sI8[i]) ? 0xff : 0;
      return true;
    case 0x65:
    case 0x75:
      for (let i = 0; i < nw; i++)
        dU16[i] = (op === 0x75 ? dU16[i] === sU16[i] : dI16[i] > sI16[i]) ? 0xffff : 0;
      return true;
    case 0x66:
    case 0x76:
      for (let i = 0; i < nd; i++) dst[i] = (op === 0x76 ? dst[i] === src[i] : dst[i] > src[i]) ? -1 : 0;
      return true;
    case 0xdb:
      for (let i = 0; i < nd; i++) dst[i] &= src[i];
      return true;
    case 0xdf:
      for (let i = 0; i < nd; i++) dst[i] = ~dst[i] & src[i];
      return true;
    case 0xeb:
      for (let i = 0; i < nd; i++) dst[i] |= src[i];
      return true;
    case 0xef:
      for (let i = 0; i < nd; i++) dst[i] ^= src[i];
      return true;
    case 0xd4:
    case 0xfb:
      for (let i = 0; i < nd; i += 2)
        setQ(dst, i, BigInt.asUintN(64, op === 0xd4 ? q(dst, i) + q(src, i) : q(dst, i) - q(src, i)));
      return true;
    case 0xd5:
      for (let i = 0; i < nw; i++) dI16[i] = Math.imul(dI16[i], sI16[i]);
      return true;
    case 0xe5:
      for (let i = 0; i < nw; i++) dI16[i] = (dI16[i] * sI16[i]) >> 16;
      return true;
    case 0xe4:
      for (let i = 0; i < nw; i++) dU16[i] = (dU16[i] * sU16[i]) >>> 16;
      return true;
    case 0xd8:
    case 0xd9:
    case 0xdc:
    case 0xdd:
    case 0xe8:
    case 0xe9:
    case 0xec:
    case 0xed: {
      // saturating add/sub: bit 2 clear subtracts, bit 0 selects words, E8-EF are signed
      const sub = (op & 4) === 0;
      const signed = op >= 0xe8;
      if ((op & 1) === 1)
        for (let i = 0; i < nw; i++) {
          const a = signed ? dI16[i] : dU16[i];
          const b = signed ? sI16[i] : sU16[i];
          const r = sub ? a - b : a + b;
          dU16[i] = (signed ? sat16s(r) : sat16u(r)) & 0xffff;
        }
      else
        for (let i = 0; i < bytes; i++) {
          const a = signed ? dI8[i] : dU8[i];
          const b = signed ? sI8[i] : sU8[i];
          const r = sub ? a - b : a + b;
          dU8[i] = (signed ? sat8s(r) : sat8u(r)) & 0xff;
        }
      return true;
    }
    case 0xda:
      for (let i = 0; i < bytes; i++) dU8[i] = Math.min(dU8[i], sU8[i]);
      return true;
    case 0xde:
      for (let i = 0; i < bytes; i++) dU8[i] = Math.max(dU8[i], sU8[i]);
      return true;
    case 0xea:
      for (let i = 0; i < nw; i++) dI16[i] = Math.min(dI16[i], sI16[i]);
      return true;
    case 0xee:
      for (let i = 0; i < nw; i++) dI16[i] = Math.max(dI16[i], sI16[i]);
      return true;
    case 0xe0:
      for (let i = 0; i < bytes; i++) dU8[i] = (dU8[i] + sU8[i] + 1) >> 1;
      return true;
    case 0xe3:
      for (let i = 0; i < nw; i++) dU16[i] = (dU16[i] + sU16[i] + 1) >> 1;
      return true;
    case 0xf4:
      for (let i = 0; i < nd; i += 2) setQ(dst, i, BigInt(dst[i] >>> 0) * BigInt(src[i] >>> 0));
      return true;
    case 0xf5:
      for (let i = 0; i < nd; i++) out[i] = dI16[2 * i] * sI16[2 * i] + dI16[2 * i + 1] * sI16[2 * i + 1];
      for (let i = 0; i < nd; i++) dst[i] = out[i];
      return true;
    case 0xf6:
      // PSADBW: per 8-byte group, the sum of absolute differences in the group's low word
      for (let g = 0; g < bytes; g += 8) {
        let s = 0;
        for (let i = g; i < g + 8; i++) s += Math.abs(dU8[i] - sU8[i]);
        dst[g >> 2] = s;
        dst[(g >> 2) + 1] = 0;
      }
      return true;
    case 0xf8:
      for (let i = 0; i < bytes; i++) dU8[i] = dU8[i] - sU8[i];
      return true;
    case 0xf9:
      for (let i = 0; i < nw; i++) dU16[i] = dU16[i] - sU16[i];
      return true;
    case 0xfa:
      for (let i = 0; i < nd; i++) dst[i] = dst[i] - src[i];
      return true;
    case 0xfc:
      for (let i = 0; i < bytes; i++) dU8[i] = dU8[i] + sU8[i];
      return true;
    case 0xfd:
      for (let i = 0; i < nw; i++) dU16[i] = dU16[i] + sU16[i];
      return true;
    case 0xfe:
      for (let i = 0; i < nd; i++) dst[i] = dst[i] + src[i];
      return true;
    default:
      return false;
  }
}

// 64 x 64 -> 128-bit multiplication on 32-bit halves, without BigInt: kernel code multiplies
// 64-bit values all the time (hash_64, division by constants, time conversions), and a BigInt
// product costs several allocations per instruction.

const T32 = 4294967296;

/** the product's four 32-bit words, least significant first (unsigned) */
export const product = new Uint32Array(4);

/** unsigned (aHi:aLo) * (bHi:bLo) into `product`; the halves may be given signed or unsigned */
export function mulU64(aLo: number, aHi: number, bLo: number, bHi: number): void {
  aLo >>>= 0;
  aHi >>>= 0;
  bLo >>>= 0;
  bHi >>>= 0;
  // each 32 x 32-bit partial product: its low word exactly by Math.imul; its high word from the
  // double product, whose rounding error (at most 2^12 below 2^64) Math.round removes, since
  // product - low word is an exact multiple of 2^32
  const l00 = Math.imul(aLo, bLo) >>> 0;
  const h00 = Math.round((aLo * bLo - l00) / T32);
  if ((aHi | bHi) === 0) {
    // 32-bit values in 64-bit registers (hashes, scaled indexes): one partial product
    product[0] = l00;
    product[1] = h00;
    product[2] = 0;
    product[3] = 0;
    return;
  }
  const l01 = Math.imul(aLo, bHi) >>> 0;
  const h01 = Math.round((aLo * bHi - l01) / T32);
  const l10 = Math.imul(aHi, bLo) >>> 0;
  const h10 = Math.round((aHi * bLo - l10) / T32);
  const l11 = Math.imul(aHi, bHi) >>> 0;
  const h11 = Math.round((aHi * bHi - l11) / T32);
  const s1 = h00 + l01 + l10;
  const w1 = s1 >>> 0;
  const s2 = (s1 - w1) / T32 + h01 + h10 + l11;
  const w2 = s2 >>> 0;
  product[0] = l00;
  product[1] = w1;
  product[2] = w2;
  product[3] = (s2 - w2) / T32 + h11;
}

/**
 * signed (aHi:aLo) * (bHi:bLo) into `product` (two's complement, 128 bits); returns whether the
 * product does not fit in 64 signed bits (IMUL's CF/OF)
 */
export function mulS64(aLo: number, aHi: number, bLo: number, bHi: number): boolean {
  mulU64(aLo, aHi, bLo, bHi);
  // the unsigned product of the same bit patterns differs from the signed one by 2^64 times
  // each negative operand's partner, in the high half only
  let lo = product[2];
  let hi = product[3];
  if (aHi < 0 || aHi > 0x7fffffff) {
    const b = bLo >>> 0;
    hi = (hi - (bHi >>> 0) - (lo < b ? 1 : 0)) >>> 0;
    lo = (lo - b) >>> 0;
  }
  if (bHi < 0 || bHi > 0x7fffffff) {
    const a = aLo >>> 0;
    hi = (hi - (aHi >>> 0) - (lo < a ? 1 : 0)) >>> 0;
    lo = (lo - a) >>> 0;
  }
  product[2] = lo;
  product[3] = hi;
  const sign = product[1] >>> 31 ? 0xffffffff : 0;
  return lo !== sign || hi !== sign;
}

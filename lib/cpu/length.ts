// Instruction length decoding, independent of the executor, so it can be cross-checked against a
// reference decoder. Covers the legacy one-byte, 0F, 0F 38 and 0F 3A maps. Returns -1 for
// encodings it does not decode: VEX/EVEX/XOP, 3DNow!, undefined opcodes, truncated input, and
// instructions longer than 15 bytes.

const MODRM1 = new Uint8Array(256);
const MODRM2 = new Uint8Array(256);
const INVALID2 = new Uint8Array(256);

function mark(t: Uint8Array, ...ranges: [number, number][]): void {
  for (const [a, b] of ranges) for (let i = a; i <= b; i++) t[i] = 1;
}

mark(
  MODRM1,
  [0x00, 0x03],
  [0x08, 0x0b],
  [0x10, 0x13],
  [0x18, 0x1b],
  [0x20, 0x23],
  [0x28, 0x2b],
  [0x30, 0x33],
  [0x38, 0x3b],
  [0x62, 0x63],
  [0x69, 0x69],
  [0x6b, 0x6b],
  [0x80, 0x8f],
  [0xc0, 0xc1],
  [0xc4, 0xc7],
  [0xd0, 0xd3],
  [0xd8, 0xdf],
  [0xf6, 0xf7],
  [0xfe, 0xff],
);
mark(
  MODRM2,
  [0x00, 0x03],
  [0x0d, 0x0d],
  [0x10, 0x2f],
  [0x40, 0x76],
  [0x78, 0x7f],
  [0x90, 0x9f],
  [0xa3, 0xa5],
  [0xab, 0xaf],
  [0xb0, 0xc7],
  [0xd0, 0xff],
);
mark(
  INVALID2,
  [0x04, 0x04],
  [0x0a, 0x0a],
  [0x0c, 0x0c],
  [0x0f, 0x0f],
  [0x24, 0x27],
  [0x36, 0x36],
  [0x39, 0x39],
  [0x3b, 0x3f],
  [0x7a, 0x7b],
  [0xa6, 0xa7],
);

/**
 * Length in bytes of the instruction at bytes[offset] decoded in 16-, 32- or 64-bit mode, or -1
 * (never throws) when the encoding is outside what this decoder supports or is invalid.
 */
export function instructionLength(bytes: Uint8Array, offset: number, bits: 16 | 32 | 64): number {
  let p = offset;
  const end = Math.min(bytes.length, offset + 15);
  const at = (): number => (p < end ? bytes[p] : -1);
  let opsz = false;
  let adsz = false;
  let rexW = false;
  let rep = 0;
  for (;;) {
    const b = at();
    if (b < 0) return -1;
    if (bits === 64 && (b & 0xf0) === 0x40) {
      rexW = (b & 8) !== 0;
      p++;
      continue;
    }
    if (b === 0x66) opsz = true;
    else if (b === 0x67) adsz = true;
    else if (b === 0xf2 || b === 0xf3) rep = b;
    else if (b === 0xf0 || b === 0x26 || b === 0x2e || b === 0x36 || b === 0x3e || b === 0x64 || b === 0x65) {
      // segment / lock
    } else break;
    // a legacy prefix after REX cancels it
    rexW = false;
    p++;
  }
  const osz = bits === 64 ? (rexW ? 64 : opsz ? 16 : 32) : (bits === 32) !== opsz ? 32 : 16;
  const asz = bits === 64 ? (adsz ? 32 : 64) : (bits === 32) !== adsz ? 32 : 16;
  const iz = osz === 16 ? 2 : 4;
  let op = at();
  if (op < 0) return -1;
  p++;
  let hasModrm: boolean;
  let imm = 0;
  let map = 1;
  if (op === 0x0f) {
    op = at();
    if (op < 0) return -1;
    p++;
    if (op === 0x38 || op === 0x3a) {
      map = op === 0x38 ? 3 : 4;
      op = at();
      if (op < 0) return -1;
      p++;
      hasModrm = true;
      imm = map === 4 ? 1 : 0;
    } else {
      map = 2;
      if (INVALID2[op]) return -1;
      // 66/F2/F3 0F 78/79 are AMD's EXTRQ/INSERTQ, not VMREAD/VMWRITE
      if ((op === 0x78 || op === 0x79) && (opsz || rep !== 0)) return -1;
      hasModrm = MODRM2[op] === 1;
      if (
        (op >= 0x70 && op <= 0x73) ||
        op === 0xa4 ||
        op === 0xac ||
        op === 0xba ||
        op === 0xc2 ||
        (op >= 0xc4 && op <= 0xc6)
      )
        imm = 1;
      else if (op >= 0x80 && op <= 0x8f) imm = bits === 64 ? 4 : iz;
    }
  } else {
    if (
      bits === 64 &&
      [
        0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x60, 0x61, 0x62, 0x82, 0x9a, 0xc4,
        0xc5, 0xce, 0xd4, 0xd5, 0xd6, 0xea,
      ].includes(op)
    ) {
      return -1;
    }
    if (op === 0xd6) return -1; // SALC: undocumented, not decoded by reference decoders
    if ((op === 0xc4 || op === 0xc5 || op === 0x62) && ((at() >> 6) & 3) === 3) return -1; // VEX/EVEX
    if (op === 0x8f && (at() & 0x38) !== 0) return -1; // XOP
    hasModrm = MODRM1[op] === 1;
    if ((op & 0xc7) === 0x04 && op < 0x40) imm = 1;
    else if ((op & 0xc7) === 0x05 && op < 0x40) imm = iz;
    else
      switch (op) {
        case 0x6a:
        case 0x6b:
        case 0x80:
        case 0x82:
        case 0x83:
        case 0xa8:
        case 0xc0:
        case 0xc1:
        case 0xc6:
        case 0xcd:
        case 0xd4:
        case 0xd5:
        case 0xeb:
          imm = 1;
          break;
        case 0x68:
        case 0x69:
        case 0x81:
        case 0xa9:
        case 0xc7:
          imm = iz;
          break;
        case 0xe8:
        case 0xe9:
          imm = bits === 64 ? 4 : iz;
          break;
        case 0xc2:
        case 0xca:
          imm = 2;
          break;
        case 0xc8:
          imm = 3;
          break;
        case 0x9a:
        case 0xea:
          imm = iz + 2;
          break;
        case 0xa0:
        case 0xa1:
        case 0xa2:
        case 0xa3:
          imm = asz / 8;
          break;
        default:
          if ((op >= 0x70 && op <= 0x7f) || (op >= 0xb0 && op <= 0xb7) || (op >= 0xe0 && op <= 0xe7)) imm = 1;
          else if (op >= 0xb8 && op <= 0xbf) imm = osz === 64 ? 8 : iz;
      }
    if ((op === 0xf6 || op === 0xf7) && (at() & 0x30) === 0) imm = op === 0xf6 ? 1 : iz;
  }
  if (hasModrm) {
    const m = at();
    if (m < 0) return -1;
    p++;
    // MOV to/from CR/DR: the ModRM always names registers, whatever mod says
    const mod = map === 2 && op >= 0x20 && op <= 0x23 ? 3 : m >> 6;
    const rm = m & 7;
    if (mod !== 3) {
      if (asz === 16) {
        if (mod === 1) p += 1;
        else if (mod === 2 || (mod === 0 && rm === 6)) p += 2;
      } else {
        if (rm === 4) {
          const sib = at();
          if (sib < 0) return -1;
          p++;
          if (mod === 0 && (sib & 7) === 5) p += 4;
        }
        if (mod === 1) p += 1;
        else if (mod === 2 || (mod === 0 && rm === 5)) p += 4;
      }
    }
  }
  p += imm;
  const len = p - offset;
  if (len > 15 || p > bytes.length) return -1;
  return len;
}

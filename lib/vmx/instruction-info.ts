// The VM-exit instruction-information field (SDM Vol. 3C 28.2.5, tables 28-8 .. 28-14) and the
// displacement that the exit qualification carries for instructions with a memory operand. As the
// processor does, we decode the exiting instruction: prefixes (segment override, 66, 67, REX) and
// the ModR/M + SIB + displacement of its operand, in the code segment's default sizes.

/** Default operand/address size of the code the instruction ran in. */
export const enum CodeSize {
  Bits16 = 0,
  Bits32 = 1,
  Bits64 = 2,
}

export interface DecodedOperand {
  /** address size: 0 = 16-bit, 1 = 32-bit, 2 = 64-bit (the encoding of instruction info 9:7) */
  addressSize: number;
  /** operand size after 66 / REX.W: 0 = 16-bit, 1 = 32-bit, 2 = 64-bit */
  operandSize: number;
  /** segment register of the memory operand (override, or the default for the base register) */
  segment: number;
  /** ModR/M fields (with REX extensions); undefined for instructions without ModR/M */
  mod?: number;
  reg?: number;
  rm?: number;
  scaling: number;
  index: number | undefined;
  base: number | undefined;
  /** displacement, sign-extended */
  displacement: number;
}

const SEGMENT_PREFIX: Record<number, number> = { 38: 0, 46: 1, 54: 2, 62: 3, 100: 4, 101: 5 };
// 16-bit ModR/M r/m: [base, index] in register numbers (BX 3, BP 5, SI 6, DI 7)
const RM16: readonly [number | undefined, number | undefined][] = [
  [3, 6],
  [3, 7],
  [5, 6],
  [5, 7],
  [6, undefined],
  [7, undefined],
  [5, undefined],
  [3, undefined],
];

const s8 = (b: number): number => (b << 24) >> 24;
const s16 = (v: number): number => (v << 16) >> 16;

/**
 * Decodes the prefixes, and the ModR/M operand when `modrm` is set, of the instruction in `bytes`.
 * Returns undefined when the bytes end before the operand does.
 */
export function decodeOperand(bytes: Uint8Array, code: CodeSize, modrm: boolean): DecodedOperand | undefined {
  let i = 0;
  let opsz = false;
  let adsz = false;
  let segment: number | undefined;
  let rex = 0;
  for (; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b === 0x66) opsz = true;
    else if (b === 0x67) adsz = true;
    else if (b in SEGMENT_PREFIX) segment = SEGMENT_PREFIX[b];
    else if (b === 0xf0 || b === 0xf2 || b === 0xf3) {
      // LOCK / REP prefixes carry nothing the field reports
    } else if (code === CodeSize.Bits64 && (b & 0xf0) === 0x40) {
      rex = b;
      continue;
    } else break;
    rex = 0; // REX only counts immediately before the opcode
  }
  const addressSize =
    code === CodeSize.Bits64 ? (adsz ? 1 : 2) : code === CodeSize.Bits32 ? (adsz ? 0 : 1) : adsz ? 1 : 0;
  const operandSize = rex & 8 ? 2 : code === CodeSize.Bits16 ? (opsz ? 1 : 0) : opsz ? 0 : 1;
  const out: DecodedOperand = {
    addressSize,
    operandSize,
    segment: segment ?? 3,
    scaling: 0,
    index: undefined,
    base: undefined,
    displacement: 0,
  };
  if (!modrm) return out;
  // opcode: 0F xx, 0F 38 xx, 0F 3A xx (every instruction with instruction info is in these maps)
  if (bytes[i] === 0x0f) {
    i++;
    if (bytes[i] === 0x38 || bytes[i] === 0x3a) i++;
  }
  i++;
  const m = bytes[i++];
  if (m === undefined) return undefined;
  const mod = m >>> 6;
  out.mod = mod;
  out.reg = ((m >>> 3) & 7) | (rex & 4 ? 8 : 0);
  out.rm = (m & 7) | (rex & 1 ? 8 : 0);
  if (mod === 3) return out;
  let ss = segment;
  const read = (n: number): number | undefined => {
    if (i + n > bytes.length) return undefined;
    let v = 0;
    for (let k = n - 1; k >= 0; k--) v = v * 256 + bytes[i + k]!;
    i += n;
    return v;
  };
  let disp: number | undefined = 0;
  if (addressSize === 0) {
    const rm = m & 7;
    if (mod === 0 && rm === 6) disp = read(2);
    else {
      [out.base, out.index] = RM16[rm]!;
      if (out.base === 5) ss ??= 2;
    }
    if (mod === 1) disp = read(1);
    else if (mod === 2) disp = read(2);
    if (disp === undefined) return undefined;
    out.displacement = mod === 1 ? s8(disp) : s16(disp);
  } else {
    let base: number | undefined = (m & 7) | (rex & 1 ? 8 : 0);
    if ((m & 7) === 4) {
      const sib = bytes[i++];
      if (sib === undefined) return undefined;
      out.scaling = sib >>> 6;
      const index = ((sib >>> 3) & 7) | (rex & 2 ? 8 : 0);
      out.index = index === 4 ? undefined : index;
      base = (sib & 7) | (rex & 1 ? 8 : 0);
      if ((sib & 7) === 5 && mod === 0) {
        base = undefined;
        disp = read(4);
      }
    } else if ((m & 7) === 5 && mod === 0) {
      // disp32, or RIP-relative in 64-bit mode: neither has a base or index register
      base = undefined;
      disp = read(4);
    }
    if (mod === 1) disp = read(1);
    else if (mod === 2) disp = read(4);
    if (disp === undefined) return undefined;
    out.base = base;
    if (base === 4 || base === 5) ss ??= 2;
    out.displacement = mod === 1 ? s8(disp) : disp | 0;
  }
  out.segment = ss ?? 3;
  return out;
}

/** Bits shared by the memory-operand layouts: scaling, address size, segment, index, base. */
export function memoryInfo(d: DecodedOperand): number {
  return (
    (d.scaling |
      (d.addressSize << 7) |
      (d.segment << 15) |
      ((d.index ?? 0) << 18) |
      (d.index === undefined ? 1 << 22 : 0) |
      ((d.base ?? 0) << 23) |
      (d.base === undefined ? 1 << 27 : 0)) >>>
    0
  );
}

/** INS/OUTS (table 28-8): address size 9:7, segment 17:15 (OUTS; INS always uses ES). */
export function ioStringInfo(d: DecodedOperand, input: boolean): number {
  return ((d.addressSize << 7) | ((input ? 0 : d.segment) << 15)) >>> 0;
}

/** A memory operand or, for mod = 3, the register in 6:3 with bit 10 set (tables 28-11, 28-14). */
export function operandInfo(d: DecodedOperand): number {
  if (d.mod === 3) return (((d.rm ?? 0) << 3) | (d.addressSize << 7) | (1 << 10)) >>> 0;
  return memoryInfo(d);
}

/** The exit qualification of an instruction with a memory operand: its displacement, sign-extended. */
export function displacementQualification(d: DecodedOperand): bigint {
  return d.mod === 3 ? 0n : BigInt.asUintN(64, BigInt(d.displacement));
}

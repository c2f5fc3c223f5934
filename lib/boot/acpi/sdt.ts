// What every ACPI table shares (ACPI 6.x section 5.2): the 36-byte System Description Table header
// with its checksum, the Generic Address Structure the FADT points at registers with, and the
// identity nodevmm signs its tables with.

import { BootSetupError } from "../errors.js";

/** Bytes of the standard header in front of every table but the RSDP and FACS. */
export const SDT_HEADER_SIZE = 36;

/** Header field offsets (Table 5.4). */
export const SDT = {
  signature: 0,
  length: 4,
  revision: 8,
  checksum: 9,
  oemId: 10,
  oemTableId: 16,
  oemRevision: 24,
  creatorId: 28,
  creatorRevision: 32,
} as const;

export const OEM_ID = "NODEVM";
export const OEM_TABLE_ID = "NODEVMM";
export const CREATOR_ID = "NVMM";

/** Generic Address Structure address spaces (Table 5.1). */
export const GAS_SYSTEM_MEMORY = 0;
export const GAS_SYSTEM_IO = 1;
/** GAS access sizes: 1 byte, 2 word, 3 dword, 4 qword. */
export type GasAccessSize = 0 | 1 | 2 | 3 | 4;
export const GAS_SIZE = 12;

export interface GenericAddress {
  space: number;
  bitWidth: number;
  bitOffset?: number;
  accessSize: GasAccessSize;
  address: number;
}

/** A table under construction: a fixed-size buffer with little-endian field writers. */
export class TableBytes {
  readonly bytes: Uint8Array;
  readonly #dv: DataView;

  constructor(length: number) {
    this.bytes = new Uint8Array(length);
    this.#dv = new DataView(this.bytes.buffer);
  }

  get length(): number {
    return this.bytes.length;
  }

  u8(at: number, v: number): this {
    this.#dv.setUint8(at, v);
    return this;
  }
  u16(at: number, v: number): this {
    this.#dv.setUint16(at, v, true);
    return this;
  }
  u32(at: number, v: number): this {
    this.#dv.setUint32(at, v >>> 0, true);
    return this;
  }
  u64(at: number, v: number): this {
    this.#dv.setBigUint64(at, BigInt(v), true);
    return this;
  }
  /** ASCII padded with spaces to `width` (OEM ids are space-padded, as ACPICA writes them). */
  ascii(at: number, s: string, width = s.length): this {
    if (s.length > width || !/^[\x20-\x7e]*$/.test(s)) {
      throw new BootSetupError(`ACPI field "${s}" is not printable ASCII of at most ${width} characters`);
    }
    for (let i = 0; i < width; i++) this.bytes[at + i] = i < s.length ? s.charCodeAt(i) : 0x20;
    return this;
  }
  gas(at: number, g: GenericAddress): this {
    return this.u8(at, g.space)
      .u8(at + 1, g.bitWidth)
      .u8(at + 2, g.bitOffset ?? 0)
      .u8(at + 3, g.accessSize)
      .u64(at + 4, g.address);
  }
  set(at: number, data: Uint8Array): this {
    this.bytes.set(data, at);
    return this;
  }
}

/** The byte that makes `bytes[from, to)` sum to zero modulo 256, with that byte counted as 0. */
export function checksumByte(bytes: Uint8Array, at: number, from = 0, to = bytes.length): number {
  let sum = 0;
  for (let i = from; i < to; i++) if (i !== at) sum += bytes[i]!;
  return (0x100 - (sum & 0xff)) & 0xff;
}

/** Sum of the bytes modulo 256: 0 for a table whose checksum is right. */
export function byteSum(bytes: Uint8Array, from = 0, to = bytes.length): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += bytes[i]!;
  return sum & 0xff;
}

/** A table of `length` bytes with its header filled in; call `sealTable` once the body is written. */
export function sdtTable(signature: string, length: number, revision: number): TableBytes {
  if (signature.length !== 4) throw new BootSetupError(`ACPI signature "${signature}" is not 4 characters`);
  return new TableBytes(length)
    .ascii(SDT.signature, signature)
    .u32(SDT.length, length)
    .u8(SDT.revision, revision)
    .ascii(SDT.oemId, OEM_ID, 6)
    .ascii(SDT.oemTableId, OEM_TABLE_ID, 8)
    .u32(SDT.oemRevision, 1)
    .ascii(SDT.creatorId, CREATOR_ID, 4)
    .u32(SDT.creatorRevision, 1);
}

/** Sets the header checksum over the whole table; returns the bytes. */
export function sealTable(t: TableBytes): Uint8Array {
  t.u8(SDT.checksum, checksumByte(t.bytes, SDT.checksum));
  return t.bytes;
}

// The root of the tables (ACPI 6.x section 5.2.5-5.2.8): the RSDP an OS finds by scanning the BIOS
// area on 16-byte boundaries, and the RSDT (32-bit) and XSDT (64-bit) lists of table addresses it
// points at. An ACPI 2.0+ OS follows the XSDT; the RSDT is there for ACPI 1.0 readers.

import { BootSetupError, hex } from "../errors.js";
import { checksumByte, OEM_ID, SDT_HEADER_SIZE, sdtTable, sealTable, TableBytes } from "./sdt.js";

export const RSDP_SIGNATURE = "RSD PTR ";
/** Revision 2 (ACPI 2.0 and later): 36 bytes with the XSDT address and an extended checksum. */
export const RSDP_SIZE = 36;
/** The first checksum covers the ACPI 1.0 part. */
export const RSDP_V1_SIZE = 20;

export const RSDP = {
  signature: 0,
  checksum: 8,
  oemId: 9,
  revision: 15,
  rsdtAddress: 16,
  length: 20,
  xsdtAddress: 24,
  extendedChecksum: 32,
} as const;

export function rsdpBytes(rsdt: number, xsdt: number): Uint8Array {
  const t = new TableBytes(RSDP_SIZE)
    .ascii(RSDP.signature, RSDP_SIGNATURE)
    .ascii(RSDP.oemId, OEM_ID, 6)
    .u8(RSDP.revision, 2)
    .u32(RSDP.rsdtAddress, rsdt)
    .u32(RSDP.length, RSDP_SIZE)
    .u64(RSDP.xsdtAddress, xsdt);
  t.u8(RSDP.checksum, checksumByte(t.bytes, RSDP.checksum, 0, RSDP_V1_SIZE));
  t.u8(RSDP.extendedChecksum, checksumByte(t.bytes, RSDP.extendedChecksum));
  return t.bytes;
}

/** RSDT: the header, then one 32-bit address per table. */
export function rsdtBytes(tables: readonly number[]): Uint8Array {
  const t = sdtTable("RSDT", SDT_HEADER_SIZE + 4 * tables.length, 1);
  tables.forEach((a, i) => {
    if (a > 0xffff_ffff) throw new BootSetupError(`table at ${hex(a)} is beyond the RSDT's 32-bit reach`);
    t.u32(SDT_HEADER_SIZE + 4 * i, a);
  });
  return sealTable(t);
}

/** XSDT: the header, then one 64-bit address per table (8-byte fields at 4-byte alignment). */
export function xsdtBytes(tables: readonly number[]): Uint8Array {
  const t = sdtTable("XSDT", SDT_HEADER_SIZE + 8 * tables.length, 1);
  tables.forEach((a, i) => {
    t.u64(SDT_HEADER_SIZE + 8 * i, a);
  });
  return sealTable(t);
}

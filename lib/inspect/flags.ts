// Names for the bits of RFLAGS, CR0, CR4 and EFER, and the decoders that turn a value into them.

/** A named bit of a register. */
export interface BitName {
  /** Bit number (0 is the least significant). */
  bit: number;
  /** The architectural name, e.g. "IF" or "PG". */
  name: string;
}

/**
 * The named one-bit flags of RFLAGS (CF ... ID; IOPL, two bits, is not listed).
 */
export const RFLAGS_BITS: readonly BitName[] = [
  { bit: 0, name: "CF" },
  { bit: 2, name: "PF" },
  { bit: 4, name: "AF" },
  { bit: 6, name: "ZF" },
  { bit: 7, name: "SF" },
  { bit: 8, name: "TF" },
  { bit: 9, name: "IF" },
  { bit: 10, name: "DF" },
  { bit: 11, name: "OF" },
  { bit: 14, name: "NT" },
  { bit: 16, name: "RF" },
  { bit: 17, name: "VM" },
  { bit: 18, name: "AC" },
  { bit: 19, name: "VIF" },
  { bit: 20, name: "VIP" },
  { bit: 21, name: "ID" },
];

/** The named bits of CR0 (PE, MP, EM, TS, ET, NE, WP, AM, NW, CD, PG). */
export const CR0_BITS: readonly BitName[] = [
  { bit: 0, name: "PE" },
  { bit: 1, name: "MP" },
  { bit: 2, name: "EM" },
  { bit: 3, name: "TS" },
  { bit: 4, name: "ET" },
  { bit: 5, name: "NE" },
  { bit: 16, name: "WP" },
  { bit: 18, name: "AM" },
  { bit: 29, name: "NW" },
  { bit: 30, name: "CD" },
  { bit: 31, name: "PG" },
];

/** The named bits of CR4 (VME ... CET). */
export const CR4_BITS: readonly BitName[] = [
  { bit: 0, name: "VME" },
  { bit: 1, name: "PVI" },
  { bit: 2, name: "TSD" },
  { bit: 3, name: "DE" },
  { bit: 4, name: "PSE" },
  { bit: 5, name: "PAE" },
  { bit: 6, name: "MCE" },
  { bit: 7, name: "PGE" },
  { bit: 8, name: "PCE" },
  { bit: 9, name: "OSFXSR" },
  { bit: 10, name: "OSXMMEXCPT" },
  { bit: 11, name: "UMIP" },
  { bit: 12, name: "LA57" },
  { bit: 13, name: "VMXE" },
  { bit: 14, name: "SMXE" },
  { bit: 16, name: "FSGSBASE" },
  { bit: 17, name: "PCIDE" },
  { bit: 18, name: "OSXSAVE" },
  { bit: 20, name: "SMEP" },
  { bit: 21, name: "SMAP" },
  { bit: 22, name: "PKE" },
  { bit: 23, name: "CET" },
];

/** The named bits of IA32_EFER (SCE, LME, LMA, NXE, ...). */
export const EFER_BITS: readonly BitName[] = [
  { bit: 0, name: "SCE" },
  { bit: 8, name: "LME" },
  { bit: 10, name: "LMA" },
  { bit: 11, name: "NXE" },
  { bit: 12, name: "SVME" },
  { bit: 14, name: "FFXSR" },
];

export const bitSet = (value: bigint | number, bit: number): boolean =>
  ((BigInt(value) >> BigInt(bit)) & 1n) === 1n;

/** Names of the set bits, in bit order. */
export function setBitNames(value: bigint | number, table: readonly BitName[]): string[] {
  return table.filter((b) => bitSet(value, b.bit)).map((b) => b.name);
}

/** RFLAGS as names, with IOPL spelled out when non-zero (e.g. ["ZF", "IF", "IOPL=3"]). */
export function decodeRflags(rflags: bigint | number): string[] {
  const names = setBitNames(rflags, RFLAGS_BITS);
  const iopl = Number((BigInt(rflags) >> 12n) & 3n);
  if (iopl) names.push(`IOPL=${iopl}`);
  return names;
}

/** QEMU's seven-letter flag summary: D O S Z A P C, '-' for clear. */
export function qemuFlagLetters(rflags: bigint | number): string {
  const f = BigInt(rflags);
  const letter = (bit: number, c: string) => (((f >> BigInt(bit)) & 1n) === 1n ? c : "-");
  return `${letter(10, "D")}${letter(11, "O")}${letter(7, "S")}${letter(6, "Z")}${letter(4, "A")}${letter(2, "P")}${letter(0, "C")}`;
}

/** The names of the CR0 bits set in `cr0`, low bit first. */
export const decodeCr0 = (cr0: bigint | number): string[] => setBitNames(cr0, CR0_BITS);
/** The names of the CR4 bits set in `cr4`, low bit first. */
export const decodeCr4 = (cr4: bigint | number): string[] => setBitNames(cr4, CR4_BITS);
/** The names of the EFER bits set in `efer`, low bit first. */
export const decodeEfer = (efer: bigint | number): string[] => setBitNames(efer, EFER_BITS);

/** CR3: the paging-structure base it names depends on the paging mode (CR4.PAE). */
export function decodeCr3(cr3: bigint, cr4: bigint, efer: bigint): string {
  const pae = bitSet(cr4, 5);
  const lma = bitSet(efer, 10);
  const pcide = bitSet(cr4, 17);
  const flags: string[] = [];
  if (!pcide) {
    if (bitSet(cr3, 3)) flags.push("PWT");
    if (bitSet(cr3, 4)) flags.push("PCD");
  }
  let base: string;
  if (pae && !lma) base = `PDPT=0x${(cr3 & 0xffffffe0n).toString(16)}`;
  else if (lma) base = `PML4=0x${(cr3 & 0x000ffffffffff000n).toString(16)}`;
  else base = `PD=0x${(cr3 & 0xfffff000n).toString(16)}`;
  const pcid = pcide ? ` PCID=${cr3 & 0xfffn}` : "";
  return `${base}${pcid}${flags.length ? ` ${flags.join(" ")}` : ""}`;
}

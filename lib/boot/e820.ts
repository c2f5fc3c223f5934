// The BIOS memory map (INT 15h, AX=E820h) a PC hands its OS, built from the machine's RAM regions:
// usable RAM minus the holes every PC has. Below 1 MiB the last KiB before 640 KiB is the EBDA and
// 0xA0000-0xFFFFF is VGA memory and option/BIOS ROMs (both reserved, as QEMU's SeaBIOS reports them);
// at the top of the 32-bit space 0xFEC00000-0xFFFFFFFF is the I/O APIC, HPET, local APIC and the
// BIOS flash, never RAM. Extra entries (ACPI tables, a device's window) cut the RAM they cover.

import type { RamRange } from "./target.js";

export const E820_RAM = 1;
export const E820_RESERVED = 2;
export const E820_ACPI = 3;
export const E820_NVS = 4;
export const E820_UNUSABLE = 5;

/** The zero page has room for this many entries (boot_params.e820_table). */
export const E820_MAX_ENTRIES_ZEROPAGE = 128;
/** struct boot_e820_entry: u64 addr, u64 size, u32 type (packed). */
export const E820_ENTRY_SIZE = 20;

/** One entry of a BIOS e820 memory map, as the Linux boot protocol and fw_cfg's "etc/e820" carry it. */
export interface E820Entry {
  /** Start guest-physical address. */
  addr: number;
  /** Length in bytes. */
  size: number;
  /** 1 RAM, 2 reserved, 3 ACPI reclaimable, 4 ACPI NVS, 5 unusable. */
  type: number;
}

/** Start of the extended BIOS data area a PC BIOS keeps at the top of conventional memory. */
export const EBDA_START = 0x9fc00;
/** VGA memory, video BIOS, option ROMs and the system BIOS: 640 KiB to 1 MiB. */
export const ISA_HOLE_START = 0xa0000;
export const HIGH_MEMORY = 0x100000;
/** I/O APIC (0xFEC00000), HPET (0xFED00000), local APIC (0xFEE00000), BIOS flash: never RAM. */
export const PC_MMIO_START = 0xfec00000;
const FOUR_GIB = 0x1_0000_0000;

interface Span {
  start: number;
  end: number;
}

/** RAM regions as sorted, merged spans (KVM's high RAM comes in adjacent 1 GiB slots). */
function ramSpans(regions: readonly RamRange[]): Span[] {
  const sorted = regions
    .filter((r) => r.size > 0)
    .map((r) => ({ start: r.guestPhysAddr, end: r.guestPhysAddr + r.size }))
    .sort((a, b) => a.start - b.start);
  const out: Span[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.start <= last.end) last.end = Math.max(last.end, s.end);
    else out.push({ ...s });
  }
  return out;
}

function subtract(spans: Span[], cut: Span): Span[] {
  const out: Span[] = [];
  for (const s of spans) {
    if (cut.end <= s.start || cut.start >= s.end) {
      out.push(s);
      continue;
    }
    if (s.start < cut.start) out.push({ start: s.start, end: cut.start });
    if (cut.end < s.end) out.push({ start: cut.end, end: s.end });
  }
  return out;
}

/**
 * The map a PC's firmware would report for this RAM: usable RAM below 640 KiB (less the EBDA), the
 * EBDA and the 640 KiB-1 MiB hole reserved, usable RAM from 1 MiB up (never into 0xFEC00000-4 GiB),
 * RAM above 4 GiB; `extra` entries replace whatever RAM they cover. Sorted by address.
 */
export function e820Map(regions: readonly RamRange[], extra: readonly E820Entry[] = []): E820Entry[] {
  let ram = ramSpans(regions);
  const reserved: E820Entry[] = [];
  const lowTop = ram.find((s) => s.start < EBDA_START)?.end ?? 0;
  if (lowTop > EBDA_START) {
    reserved.push({ addr: EBDA_START, size: ISA_HOLE_START - EBDA_START, type: E820_RESERVED });
  }
  reserved.push({ addr: ISA_HOLE_START, size: HIGH_MEMORY - ISA_HOLE_START, type: E820_RESERVED });
  for (const cut of [
    { start: EBDA_START, end: HIGH_MEMORY },
    { start: PC_MMIO_START, end: FOUR_GIB },
  ]) {
    ram = subtract(ram, cut);
  }
  for (const e of extra) {
    ram = subtract(ram, { start: e.addr, end: e.addr + e.size });
  }
  const out: E820Entry[] = [
    ...ram.map((s) => ({ addr: s.start, size: s.end - s.start, type: E820_RAM })),
    ...reserved.filter((r) => !extra.some((e) => e.addr < r.addr + r.size && r.addr < e.addr + e.size)),
    ...extra.filter((e) => e.size > 0).map((e) => ({ ...e })),
  ];
  return out.sort((a, b) => a.addr - b.addr || a.type - b.type);
}

/** The entries as the zero page stores them (20 bytes each). */
export function e820Bytes(entries: readonly E820Entry[]): Uint8Array {
  const out = new Uint8Array(entries.length * E820_ENTRY_SIZE);
  const dv = new DataView(out.buffer);
  entries.forEach((e, i) => {
    const at = i * E820_ENTRY_SIZE;
    dv.setBigUint64(at, BigInt(e.addr), true);
    dv.setBigUint64(at + 8, BigInt(e.size), true);
    dv.setUint32(at + 16, e.type, true);
  });
  return out;
}

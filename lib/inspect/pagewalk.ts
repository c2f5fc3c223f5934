// Guest-virtual to guest-physical translation by walking the guest's page tables in guest memory,
// reporting every level visited: 32-bit (with PSE 4 MiB pages), PAE, and 4-/5-level paging.

import { bitSet } from "./flags.js";

/** What the walk reads guest-physical memory through (GuestMemory satisfies it). */
export interface PhysicalReader {
  /** Reads a little-endian 32-bit value at guest-physical `gpa`. */
  readU32(gpa: number): number;
  /** Reads a little-endian 64-bit value at guest-physical `gpa`. */
  readU64(gpa: number): bigint;
}

/** The registers that decide the paging mode and root (a SpecialRegs satisfies it). */
export interface PagingState {
  /** CR0 (PE and PG). */
  cr0: bigint;
  /** CR3: the root table's address. */
  cr3: bigint;
  /** CR4 (PSE, PAE, LA57). */
  cr4: bigint;
  /** IA32_EFER (LME/LMA, NXE). */
  efer: bigint;
}

/** The paging mode CR0.PG, CR4.PAE, EFER.LME and CR4.LA57 select; "none" when paging is off. */
export type PagingMode = "none" | "32-bit" | "pae" | "4-level" | "5-level";
/** A page-table level, as the SDM names them (32-bit paging uses PD and PT). */
export type LevelName = "PML5" | "PML4" | "PDPT" | "PD" | "PT";

/** One paging-structure entry the walk read. */
export interface WalkLevel {
  /** The table the entry is in. */
  level: LevelName;
  /** index of the entry in its table */
  index: number;
  /** guest-physical address of the entry */
  entryAddress: number;
  /** The entry's raw value. */
  entry: bigint;
  /** The P bit. */
  present: boolean;
  /** The R/W bit: writes allowed through this entry. */
  writable: boolean;
  /** The U/S bit: user-mode (CPL 3) accesses allowed. */
  user: boolean;
  /** execute-disable (only meaningful with EFER.NXE) */
  nx: boolean;
  /** the entry maps a page (PS=1 above the last level, or a PT entry) */
  leaf: boolean;
}

/**
 * The result of a page walk: the physical address when it succeeded, every level read, and the access rights
 * the walk allows.
 */
export interface Translation {
  /** The guest-virtual (linear) address translated. */
  gva: bigint;
  /** The paging mode the walk used. */
  mode: PagingMode;
  /** guest-physical address, when the walk reached a page */
  physical?: bigint;
  /** Size of the page reached: 4 KiB, 2 MiB, 4 MiB or 1 GiB. */
  pageSize?: number;
  /** The entries read, from the root down. */
  levels: WalkLevel[];
  /** why the translation failed (not present, non-canonical, table not in RAM) */
  fault?: string;
  /** Whether writes are allowed (R/W set at every level). */
  writable: boolean;
  /** Whether user-mode accesses are allowed (U/S set at every level). */
  user: boolean;
  /** Whether instruction fetches are allowed (no execute-disable bit along the way with EFER.NXE). */
  executable: boolean;
}

const ADDR_MASK = 0x000ffffffffff000n;

/** The paging mode the registers select. */
export function pagingMode(p: PagingState): PagingMode {
  if (!bitSet(p.cr0, 31) || !bitSet(p.cr0, 0)) return "none";
  if (!bitSet(p.cr4, 5)) return "32-bit";
  if (!bitSet(p.efer, 10)) return "pae";
  return bitSet(p.cr4, 12) ? "5-level" : "4-level";
}

/**
 * Translates guest-virtual `gva` by walking the guest's page tables in guest memory, as the CPU would; a
 * failed walk returns `fault` (never throws for guest data).
 */
export function walkPageTables(mem: PhysicalReader, paging: PagingState, gva: bigint): Translation {
  const mode = pagingMode(paging);
  const t: Translation = { gva, mode, levels: [], writable: true, user: true, executable: true };
  if (mode === "none") {
    t.physical = BigInt.asUintN(32, gva);
    t.pageSize = 4096;
    return t;
  }
  const nxe = bitSet(paging.efer, 11);
  const read = (addr: bigint, wide: boolean): bigint | string => {
    const a = Number(addr);
    try {
      return wide ? mem.readU64(a) : BigInt(mem.readU32(a));
    } catch {
      return `page-table entry at 0x${addr.toString(16)} is not in guest RAM`;
    }
  };
  const visit = (
    level: LevelName,
    tableBase: bigint,
    index: number,
    wide: boolean,
    canBeLarge: boolean,
  ): WalkLevel | undefined => {
    const entryAddress = tableBase + BigInt(index * (wide ? 8 : 4));
    const entry = read(entryAddress, wide);
    if (typeof entry === "string") {
      t.fault = entry;
      return undefined;
    }
    const present = (entry & 1n) === 1n;
    // PAE PDPTEs have no R/W, U/S or XD bits: they do not restrict access.
    const pdptPae = mode === "pae" && level === "PDPT";
    const l: WalkLevel = {
      level,
      index,
      entryAddress: Number(entryAddress),
      entry,
      present,
      writable: pdptPae || (entry & 2n) === 2n,
      user: pdptPae || (entry & 4n) === 4n,
      nx: wide && nxe && !pdptPae && entry >> 63n === 1n,
      leaf: level === "PT" || (canBeLarge && (entry & 0x80n) === 0x80n),
    };
    t.levels.push(l);
    t.writable &&= l.writable;
    t.user &&= l.user;
    if (l.nx) t.executable = false;
    if (!present) t.fault = `${level}[${index}] at 0x${entryAddress.toString(16)} is not present`;
    return present ? l : undefined;
  };

  if (mode === "32-bit") {
    const va = Number(BigInt.asUintN(32, gva));
    const pde = visit("PD", paging.cr3 & 0xfffff000n, va >>> 22, false, bitSet(paging.cr4, 4));
    if (!pde) return t;
    if (pde.leaf) {
      const high = ((pde.entry >> 13n) & 0xffn) << 32n;
      t.physical = (pde.entry & 0xffc00000n) | high | BigInt(va & 0x3fffff);
      t.pageSize = 4 << 20;
      return t;
    }
    const pte = visit("PT", pde.entry & 0xfffff000n, (va >>> 12) & 0x3ff, false, false);
    if (!pte) return t;
    t.physical = (pte.entry & 0xfffff000n) | BigInt(va & 0xfff);
    t.pageSize = 4096;
    return t;
  }

  let va = gva;
  let table: bigint;
  let order: LevelName[];
  if (mode === "pae") {
    va = BigInt.asUintN(32, gva);
    const pdpte = visit("PDPT", paging.cr3 & 0xffffffe0n, Number((va >> 30n) & 3n), true, false);
    if (!pdpte) return t;
    table = pdpte.entry & ADDR_MASK;
    order = ["PD", "PT"];
  } else {
    const bits = mode === "5-level" ? 57 : 48;
    const canonical = BigInt.asIntN(bits, gva) === BigInt.asIntN(64, gva);
    if (!canonical) {
      t.fault = `0x${BigInt.asUintN(64, gva).toString(16)} is not canonical for ${mode} paging`;
      return t;
    }
    table = paging.cr3 & ADDR_MASK;
    order = mode === "5-level" ? ["PML5", "PML4", "PDPT", "PD", "PT"] : ["PML4", "PDPT", "PD", "PT"];
  }
  const shifts: Record<LevelName, bigint> = { PML5: 48n, PML4: 39n, PDPT: 30n, PD: 21n, PT: 12n };
  for (const level of order) {
    const shift = shifts[level];
    const canBeLarge = level === "PD" || level === "PDPT";
    const e = visit(level, table, Number((va >> shift) & 0x1ffn), true, canBeLarge);
    if (!e) return t;
    if (e.leaf) {
      const size = 1n << shift;
      t.physical = (e.entry & ADDR_MASK & ~(size - 1n)) | (va & (size - 1n));
      t.pageSize = Number(size);
      return t;
    }
    table = e.entry & ADDR_MASK;
  }
  return t;
}

/** One line per level, e.g. `PML4[0] @0x1000 = 0x2003 P W`: what `translate` prints. */
export function formatTranslation(t: Translation): string {
  const lines = [`${t.mode} paging, virtual 0x${BigInt.asUintN(64, t.gva).toString(16)}`];
  for (const l of t.levels) {
    const bits = [l.present ? "P" : "-", l.writable ? "W" : "R", l.user ? "U" : "S"];
    if (l.nx) bits.push("NX");
    if (l.leaf && l.level !== "PT") bits.push("PS");
    lines.push(
      `  ${l.level}[${l.index}] @0x${l.entryAddress.toString(16)} = 0x${l.entry.toString(16)} ${bits.join(" ")}`,
    );
  }
  lines.push(
    t.physical !== undefined
      ? `  -> physical 0x${t.physical.toString(16)} (${t.pageSize! >= 1 << 20 ? `${t.pageSize! >> 20} MiB` : `${t.pageSize! >> 10} KiB`} page)`
      : `  -> fault: ${t.fault}`,
  );
  return lines.join("\n");
}

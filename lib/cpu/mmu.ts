// The page walk: 32-bit (4 KiB / 4 MiB), PAE and 4-level paging with U/S, R/W, NX, WP, A/D,
// global pages, SMEP, SMAP and protection keys (SDM Vol. 3A 4.6 "Access Rights"). Paging-structure
// reads go through hooks.mapPage (EPT) with pagingStructure=true. Errors raise #PF with the
// architectural error code and CR2.
//
// The interpreter's TLB keeps what a walk allowed, keyed by linear page, and is flushed when CPL
// crosses between user and supervisor and on every CR0/CR4 write, so a cached permission holds as
// long as those stay put (and PKRU: a load of it drops the data translations, pku.ts). The one
// exception is SMAP's EFLAGS.AC: a supervisor access to a user page allowed only because AC was 1
// must not outlive AC, so such walks are remembered and a clear of AC (smapAcCleared) drops the
// cached data translations.

import { CR4_PKE, CR4_SMAP, CR4_SMEP, MAXPHYADDR } from "./control-checks.js";
import { CpuFault, Vec } from "./faults.js";
import { FL_AC } from "./flags.js";
import { Access, MMIO } from "./hooks.js";
import type { Interpreter } from "./interpreter.js";
import { PF_PK, pkDenies } from "./pku.js";
import { atomicViewOf } from "./smp-memory.js";

const TWO32 = 4294967296;
/** bits 51:MAXPHYADDR of an entry, in its high half */
const HI_RSVD = 0x000fffff & ~((1 << (MAXPHYADDR - 32)) - 1);

export const PF_P = 1;
export const PF_W = 2;
export const PF_U = 4;
export const PF_RSVD = 8;
export const PF_I = 16;

/**
 * What a paging-structure read from an address with no memory behind it gets: the bus floats high,
 * as on a PC, so the entry is present with reserved bits set and the walk ends in #PF (RSVD).
 * Its A and D bits are set: the walk never writes to it.
 */
const FLOATING = new Uint8Array(8).fill(0xff);

function entryBytes(cpu: Interpreter, gpa: number, lin: number): { m: Uint8Array; p: number } {
  const map = cpu.mapPhys(gpa, Access.Read, lin, true);
  if (map === MMIO) return { m: FLOATING, p: 0 };
  return { m: map.bytes, p: map.offset + (gpa % 4096) };
}

function rd32(m: Uint8Array, p: number): number {
  return (m[p] | (m[p + 1] << 8) | (m[p + 2] << 16) | (m[p + 3] << 24)) >>> 0;
}
/** high half of the entry readEntry read last */
let entryHi = 0;
/**
 * Reads a paging-structure entry (`bytes` 4 or 8) as one access when other vCPUs share the memory
 * (their aligned stores of an entry are seen whole or not at all); returns the low half unsigned,
 * the high half in entryHi.
 */
function readEntry(cpu: Interpreter, e: { m: Uint8Array; p: number }, bytes: number): number {
  if (cpu.smp !== null) {
    const v = atomicViewOf(e.m);
    if (bytes === 4) return v.getInt32(e.p) >>> 0;
    const lo = v.ld64(e.p) >>> 0;
    entryHi = v.vh >>> 0;
    return lo;
  }
  if (bytes === 8) entryHi = rd32(e.m, e.p + 4);
  return rd32(e.m, e.p);
}

/**
 * Per interpreter, the linear addresses of the user pages SMAP let a supervisor access reach on
 * AC=1 since AC was last cleared (their translations may sit in the TLB)
 */
const acAllowed = new WeakMap<Interpreter, number[]>();
/** past this many pages, clearing AC drops every data translation rather than each page's */
const AC_PAGES_MAX = 32;

/**
 * EFLAGS.AC went from 1 to 0: data translations cached while SMAP let a supervisor access a user
 * page thanks to AC must go, so the next such access faults. CLAC calls it, and Interpreter.setFlags
 * for every other load of EFLAGS that clears AC (POPF, IRET, event delivery, RFLAGS from the VMCS).
 */
export function smapAcCleared(cpu: Interpreter): void {
  const pages = acAllowed.get(cpu);
  if (pages === undefined) return;
  acAllowed.delete(cpu);
  // a copy to or from user memory (STAC ... CLAC) touches a few pages: only their entries go
  if (pages.length > AC_PAGES_MAX) cpu.dropDataTranslations();
  else for (const lin of pages) cpu.dropDataTranslation(lin);
}

/**
 * Translates `lin` for `access` at user (CPL 3) or supervisor privilege. Returns the
 * guest-physical address; sets cpu.xGlobal. Sets accessed/dirty bits as the walk succeeds.
 *
 * `implicit`: a supervisor access to a system structure (GDT, LDT, IDT, TSS), which SMAP checks
 * whatever EFLAGS.AC holds. A supervisor access made at CPL 3 can only be such an access, so it
 * counts as implicit without being told.
 */
export function translate(
  cpu: Interpreter,
  lin: number,
  access: Access,
  user: boolean,
  implicit = false,
): number {
  const write = access === Access.Write;
  const fetch = access === Access.Execute;
  const nxe = (cpu.efer & 0x800) !== 0;
  const wp = (cpu.cr0 & 0x10000) !== 0;
  const smep = (cpu.cr4 & CR4_SMEP) !== 0;
  // I/D is reported for fetches when SMEP is on or execute-disable can apply (SDM Vol. 3A 4.7)
  const idBit = fetch && (smep || (nxe && (cpu.cr4 & 0x20) !== 0));
  let err = (write ? PF_W : 0) | (user ? PF_U : 0) | (idBit ? PF_I : 0);
  const fault = (present: number): never => {
    throw new CpuFault(Vec.PF, err | present, lin);
  };
  let allowU = true;
  let allowW = true;
  let nx = false;
  // (memory, offset) of every entry on the path, to set A (and D on the leaf) once permitted
  const path: { m: Uint8Array; p: number }[] = [];
  let leaf: { m: Uint8Array; p: number };
  let gpa: number;
  let global = false;
  let pageSize: number;
  /** high half of the leaf entry in IA-32e paging (its protection key), else undefined */
  let leafHi: number | undefined;

  if ((cpu.cr4 & 0x20) === 0) {
    // 32-bit paging. Masks are `>>> 0`: a table or page at or above 2 GiB (the APICs) would
    // otherwise come out negative
    const pdeA = ((cpu.cr3 & 0xfffff000) >>> 0) + (((lin >>> 22) & 0x3ff) << 2);
    const pd = entryBytes(cpu, pdeA, lin);
    const pde = readEntry(cpu, pd, 4);
    if ((pde & 1) === 0) fault(0);
    allowU = (pde & 4) !== 0;
    allowW = (pde & 2) !== 0;
    if ((pde & 0x80) !== 0 && (cpu.cr4 & 0x10) !== 0) {
      leaf = pd;
      global = (pde & 0x100) !== 0;
      pageSize = 0x400000;
      gpa = (pde & 0xffc00000) >>> 0;
      gpa += ((pde >>> 13) & 0xff) * TWO32;
    } else {
      path.push(pd);
      const pteA = ((pde & 0xfffff000) >>> 0) + (((lin >>> 12) & 0x3ff) << 2);
      const pt = entryBytes(cpu, pteA, lin);
      const pte = readEntry(cpu, pt, 4);
      if ((pte & 1) === 0) fault(0);
      allowU &&= (pte & 4) !== 0;
      allowW &&= (pte & 2) !== 0;
      leaf = pt;
      global = (pte & 0x100) !== 0;
      pageSize = 0x1000;
      gpa = (pte & 0xfffff000) >>> 0;
    }
  } else {
    // PAE or 4-level: 8-byte entries
    let table: number;
    let level: number;
    if ((cpu.efer & 0x400) !== 0) {
      table = cpu.cr3 - (cpu.cr3 % 4096);
      level = 4;
    } else {
      // PAE: the PDPTE (no A bit, no permissions)
      const pdpteA = ((cpu.cr3 & 0xffffffe0) >>> 0) + ((lin >>> 30) & 3) * 8;
      const e = entryBytes(cpu, pdpteA, lin);
      const lo = readEntry(cpu, e, 8);
      const hi = entryHi;
      if ((lo & 1) === 0) fault(0);
      if ((lo & 0x1e6) !== 0 || (hi & HI_RSVD) !== 0) fault(PF_P | PF_RSVD);
      table = ((lo & 0xfffff000) >>> 0) + (hi & 0xff) * TWO32;
      level = 2;
    }
    for (;;) {
      let idx: number;
      if (level === 4) idx = Math.floor(lin / 2 ** 39) & 0x1ff;
      else if (level === 3) idx = Math.floor(lin / 2 ** 30) & 0x1ff;
      else if (level === 2) idx = (lin >>> 21) & 0x1ff;
      else idx = (lin >>> 12) & 0x1ff;
      const e = entryBytes(cpu, table + idx * 8, lin);
      const lo = readEntry(cpu, e, 8);
      const hi = entryHi;
      if ((lo & 1) === 0) fault(0);
      if ((hi & HI_RSVD) !== 0 || (!nxe && hi >>> 31 !== 0)) fault(PF_P | PF_RSVD);
      allowU &&= (lo & 4) !== 0;
      allowW &&= (lo & 2) !== 0;
      if (hi >>> 31 !== 0) nx = true;
      const ps = (lo & 0x80) !== 0;
      if (level === 4 && ps) fault(PF_P | PF_RSVD);
      if (level === 1 || ps) {
        leaf = e;
        if ((cpu.efer & 0x400) !== 0) leafHi = hi;
        global = (lo & 0x100) !== 0;
        pageSize = level === 1 ? 0x1000 : level === 2 ? 0x200000 : 0x40000000;
        const addr = ((lo & 0xfffff000) >>> 0) + (hi & 0xff) * TWO32;
        gpa = addr - (addr % pageSize);
        if (level > 1 && (addr % pageSize) >>> 13 !== 0) fault(PF_P | PF_RSVD);
        break;
      }
      path.push(e);
      table = ((lo & 0xfffff000) >>> 0) + (hi & 0xff) * TWO32;
      level--;
    }
  }

  // a protection-key violation sets PK whatever else the access breaks (SDM Vol. 3A 4.7), and
  // faults even where nothing else does
  const pk =
    leafHi !== undefined &&
    !fetch &&
    allowU &&
    (cpu.cr4 & CR4_PKE) !== 0 &&
    pkDenies(cpu.pkru, leafHi, write, user, wp);
  if (pk) err |= PF_PK;
  if (user) {
    if (!allowU) fault(PF_P);
    if (write && !allowW) fault(PF_P);
  } else if (allowU) {
    // a supervisor access to a user-mode address
    if (fetch) {
      if (smep) fault(PF_P);
    } else if ((cpu.cr4 & CR4_SMAP) !== 0) {
      if (implicit || cpu.cpl === 3 || (cpu.eflags & FL_AC) === 0) fault(PF_P);
      if (write && !allowW && wp) fault(PF_P);
      const pages = acAllowed.get(cpu);
      if (pages === undefined) acAllowed.set(cpu, [lin]);
      else if (pages.length <= AC_PAGES_MAX) pages.push(lin);
    } else if (write && !allowW && wp) fault(PF_P);
  } else if (write && !allowW && wp) fault(PF_P);
  if (fetch && nx && nxe) fault(PF_P);
  if (pk) fault(PF_P);

  // atomic ORs (as the processor's locked updates, SDM 4.8): another vCPU's XCHG or CMPXCHG of the
  // entry is never undone; an update the entry already has is not written
  for (const e of path) if ((e.m[e.p] & 0x20) === 0) Atomics.or(e.m, e.p, 0x20);
  const ad = write ? 0x60 : 0x20;
  if ((leaf.m[leaf.p] & ad) !== ad) Atomics.or(leaf.m, leaf.p, ad);
  err = 0;
  cpu.xGlobal = global && (cpu.cr4 & 0x80) !== 0;
  const within = lin >= 0 ? lin % pageSize : (lin % pageSize) + pageSize;
  return gpa + (within === pageSize ? 0 : within);
}

// Protection keys for user-mode pages (SDM Vol. 3A 4.6.2): in IA-32e paging with CR4.PKE, bits 62:59
// of a leaf entry name a key, and PKRU holds two bits per key, AD (access disable, bit 2k) and WD
// (write disable, bit 2k+1), that restrict data accesses to user-mode addresses at any CPL.
// Instruction fetches are never checked. RDPKRU and WRPKRU read and write PKRU (SDM Vol. 2B).

import { CR4_PKE } from "./control-checks.js";
import { ud } from "./exec.js";
import { CpuFault, Vec } from "./faults.js";
import type { Interpreter } from "./interpreter.js";

/** #PF error code bit 5: the access broke the rights PKRU gives the page's protection key */
export const PF_PK = 0x20;

/**
 * Whether PKRU forbids a data access to a user-mode page whose leaf entry has `entryHi` as its high
 * half. WD stops user writes always, supervisor writes only with CR0.WP, as WP does for R/W.
 */
export function pkDenies(pkru: number, entryHi: number, write: boolean, user: boolean, wp: boolean): boolean {
  const key = (entryHi >>> 27) & 0xf;
  const rights = (pkru >>> (key * 2)) & 3;
  if ((rights & 1) !== 0) return true;
  return (rights & 2) !== 0 && write && (user || wp);
}

/**
 * Loads PKRU. The TLB keeps the data translations a walk allowed under the old rights, so they go
 * when the rights change (fetch translations do not depend on them).
 */
export function pkruLoaded(cpu: Interpreter, value: number): void {
  const v = value >>> 0;
  if (cpu.pkru === v) return;
  cpu.pkru = v;
  cpu.tlbRTag.fill(Number.NaN);
  cpu.tlbWTag.fill(Number.NaN);
}

/** RDPKRU (0F 01 EE): EDX:EAX = 0:PKRU; #UD without CR4.PKE, #GP(0) unless ECX = 0 */
export function rdpkru(cpu: Interpreter): void {
  if ((cpu.cr4 & CR4_PKE) === 0) ud();
  if (cpu.lo[1] !== 0) throw new CpuFault(Vec.GP, 0);
  cpu.setReg(32, 0, cpu.pkru >>> 0, 0);
  cpu.setReg(32, 2, 0, 0);
}

/** WRPKRU (0F 01 EF): PKRU = EAX; #UD without CR4.PKE, #GP(0) unless ECX = EDX = 0 */
export function wrpkru(cpu: Interpreter): void {
  if ((cpu.cr4 & CR4_PKE) === 0) ud();
  if (cpu.lo[1] !== 0 || cpu.lo[2] !== 0) throw new CpuFault(Vec.GP, 0);
  pkruLoaded(cpu, cpu.lo[0]);
}

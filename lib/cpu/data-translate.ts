// A data access's translation as the processor checks it, for a hypervisor that performs the
// access itself after a VM exit (INS/OUTS: the exit comes before the memory operand is touched, so
// its page faults are the hypervisor's to raise, SDM Vol. 3C 26.1.1). It runs the interpreter's own
// page walk (mmu.ts: U/S, R/W with WP, SMAP, protection keys, reserved bits, A/D updates) on an
// emulating interpreter whose hooks map guest-physical memory, so nothing here repeats its rules.

import { CpuFault, Vec } from "./faults.js";
import { Access } from "./hooks.js";
import type { Interpreter } from "./interpreter.js";
import { translate } from "./mmu.js";

/** The guest state a data access's translation depends on. */
export interface DataAccessState {
  cr0: number;
  cr3: number;
  cr4: number;
  efer: number;
  /** the current privilege level (SS.DPL) */
  cpl: number;
  /** RFLAGS (AC, for SMAP) */
  rflags: number;
  /** PKRU (only read with CR4.PKE) */
  pkru: number;
}

/**
 * Where `length` bytes at `lin` are: the guest-physical address of the first and of the last byte
 * (they differ by length - 1 unless the access crosses into a page mapped elsewhere), or the #PF
 * the access raises (its error code and CR2). undefined: a paging-structure entry is not in RAM.
 * `lin` is a signed number (exact for canonical addresses).
 */
export function translateData(
  emu: Interpreter,
  s: DataAccessState,
  lin: number,
  length: number,
  write: boolean,
): { gpa: number; gpaLast: number } | { errorCode: number; cr2: number } | undefined {
  const last = lin + length - 1;
  if ((s.cr0 & 0x80000000) === 0) return { gpa: lin >>> 0, gpaLast: last >>> 0 };
  emu.cr0 = s.cr0 >>> 0;
  emu.cr3 = s.cr3;
  emu.cr4 = s.cr4 >>> 0;
  emu.efer = s.efer >>> 0;
  emu.cpl = s.cpl;
  emu.eflags = s.rflags;
  emu.pkru = s.pkru >>> 0;
  // nothing the emulator cached may outlive the guest's page tables of this exit
  emu.flushTlb();
  const access = write ? Access.Write : Access.Read;
  try {
    const gpa = translate(emu, lin, access, s.cpl === 3);
    const next = (Math.floor(lin / 4096) + 1) * 4096;
    if (last < next) return { gpa, gpaLast: gpa + length - 1 };
    // the second page on its own (a fault there reports its first byte, as the processor does)
    return { gpa, gpaLast: translate(emu, next, access, s.cpl === 3) + (last - next) };
  } catch (e) {
    if (!(e instanceof CpuFault)) throw e;
    if (e.vector === Vec.PF) return { errorCode: e.code ?? 0, cr2: e.cr2 ?? lin };
    // a paging-structure entry outside RAM (#MC in the walk)
    return undefined;
  }
}

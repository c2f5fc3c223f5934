// The initial vCPU state a loader asks for, in the shared register types (kvm_regs / kvm_sregs
// names), so the machine applies it to either backend without translation.

import {
  type DescriptorTable,
  segment as makeSegment,
  type Regs,
  type Segment,
  type SpecialRegs,
} from "../types/regs.js";

/**
 * The mode a loader starts the vCPU in: real mode, 32-bit protected mode (flat segments, no paging), or
 * 64-bit long mode (identity-mapped page tables).
 */
export type EntryMode = "real" | "protected" | "long";

export type EntrySegment = Segment;
export type EntryTable = DescriptorTable;

/** A subset of SpecialRegs: cr2, cr8 and apicBase keep the machine's reset values. */
export type EntrySregs = Omit<SpecialRegs, "cr2" | "cr8" | "apicBase">;

/** A general register's name as {@link Regs} spells it ("rax", "rip", "rflags", ...). */
export type EntryRegName = keyof Regs;

/** General registers the loader sets; the ones it leaves out are zero. */
export type EntryRegs = Partial<Record<EntryRegName, bigint>>;

/** The vCPU state a loader asks for (`LoadResult.entry`); `vm.applyEntry()` puts a vCPU in it. */
export interface EntryState {
  /** The CPU mode the state enters. */
  mode: EntryMode;
  /** General registers, RIP and RFLAGS to set; those left out are zero. */
  regs: EntryRegs;
  /** Segments, descriptor tables, CR0/CR3/CR4 and EFER for that mode. */
  sregs: EntrySregs;
}

export const CR0_PE = 1n << 0n;
export const CR0_ET = 1n << 4n;
export const CR0_PG = 1n << 31n;
export const CR4_PAE = 1n << 5n;
export const EFER_LME = 1n << 8n;
export const EFER_LMA = 1n << 10n;
/** RFLAGS bit 1 is always set; IF stays clear so no interrupt arrives before the guest is ready. */
export const RFLAGS_RESERVED = 0x2n;

/** Selectors of the loader's GDT (see layout.ts). */
export const SEL_CODE32 = 0x08;
export const SEL_DATA = 0x10;
export const SEL_CODE64 = 0x18;

// Descriptor types with the accessed bit already set, so the CPU never writes the GDT back.
const TYPE_CODE_RX_ACCESSED = 0xb;
const TYPE_DATA_RW_ACCESSED = 0x3;
const TYPE_TSS_BUSY = 0xb;
const TYPE_LDT = 0x2;

function segment(init: Partial<EntrySegment>): EntrySegment {
  return makeSegment({ type: TYPE_DATA_RW_ACCESSED, ...init });
}

/** TR and LDTR as the processor has them after reset: VM entry wants a usable busy TSS. */
function systemSegments(): { tr: EntrySegment; ldt: EntrySegment } {
  return {
    tr: segment({ type: TYPE_TSS_BUSY, s: false }),
    ldt: segment({ type: TYPE_LDT, s: false }),
  };
}

/** Real mode at CS:IP, every data segment at `dataSegment` (paragraph number). */
export function realModeEntry(cs: number, ip: number, sp: number, dataSegment = 0): EntryState {
  const data = segment({ selector: dataSegment, base: BigInt(dataSegment) << 4n });
  return {
    mode: "real",
    regs: { rip: BigInt(ip), rsp: BigInt(sp), rflags: RFLAGS_RESERVED },
    sregs: {
      cs: segment({ selector: cs, base: BigInt(cs) << 4n, type: TYPE_CODE_RX_ACCESSED }),
      ds: { ...data },
      es: { ...data },
      fs: { ...data },
      gs: { ...data },
      ss: { ...data },
      ...systemSegments(),
      gdt: { base: 0n, limit: 0xffff },
      idt: { base: 0n, limit: 0x3ff },
      cr0: CR0_ET,
      cr3: 0n,
      cr4: 0n,
      efer: 0n,
    },
  };
}

function flatSegments(codeSelector: number, long: boolean) {
  const flat = { base: 0n, limit: 0xffffffff, g: true };
  const data = segment({ ...flat, selector: SEL_DATA, db: true });
  const cs = segment({
    ...flat,
    selector: codeSelector,
    type: TYPE_CODE_RX_ACCESSED,
    db: !long,
    l: long,
  });
  return { cs, ds: { ...data }, es: { ...data }, fs: { ...data }, gs: { ...data }, ss: { ...data } };
}

/** 32-bit protected mode, flat segments from the loader's GDT, paging off. */
export function protectedModeEntry(gdtBase: number, gdtLimit: number, eip: number): EntryState {
  return {
    mode: "protected",
    regs: { rip: BigInt(eip), rflags: RFLAGS_RESERVED },
    sregs: {
      ...flatSegments(SEL_CODE32, false),
      ...systemSegments(),
      gdt: { base: BigInt(gdtBase), limit: gdtLimit },
      // limit 0: any interrupt or exception before the guest installs an IDT is a triple fault
      idt: { base: 0n, limit: 0 },
      cr0: CR0_PE | CR0_ET,
      cr3: 0n,
      cr4: 0n,
      efer: 0n,
    },
  };
}

/** 64-bit long mode on the loader's identity page tables. */
export function longModeEntry(gdtBase: number, gdtLimit: number, pml4: number, rip: number): EntryState {
  return {
    mode: "long",
    regs: { rip: BigInt(rip), rflags: RFLAGS_RESERVED },
    sregs: {
      ...flatSegments(SEL_CODE64, true),
      ...systemSegments(),
      gdt: { base: BigInt(gdtBase), limit: gdtLimit },
      idt: { base: 0n, limit: 0 },
      cr0: CR0_PG | CR0_PE | CR0_ET,
      cr3: BigInt(pml4),
      cr4: CR4_PAE,
      efer: EFER_LME | EFER_LMA,
    },
  };
}

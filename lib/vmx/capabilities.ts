// The capability MSRs (IA32_VMX_BASIC .. IA32_VMX_TRUE_ENTRY_CTLS) describe exactly what this
// software VT-x implements; VM entry checks the controls against the same numbers.

import { EntryCtl, ExitCtl, Msr, Pin, Proc, Proc2 } from "./constants.js";
import { HIGHEST_INDEX } from "./fields.js";

export const VMCS_REVISION_ID = 0x534f4654 & 0x7fffffff; // "SOFT"
export const VMCS_REGION_SIZE = 4096;
/** Physical-address width of the soft host (CPUID.80000008H:EAX[7:0]). */
export const MAXPHYADDR = 39;
/**
 * The preemption timer counts down once every 2^RATE retired instructions (our TSC). 0, which the
 * SDM allows: instruction budgets (time slices, maxInstructions, deterministic quanta) end at the
 * exact instruction wherever an entry began, not at the next multiple of a coarser tick.
 */
export const PREEMPTION_TIMER_RATE = 0;
export const CR3_TARGET_MAX = 4;

/** A control word's capability: bits that must be 1 (allowed-0 = 0) and bits that may be 1. */
export interface ControlCaps {
  mustBeOne: number;
  mayBeOne: number;
}

const bits = (...b: number[]): number => b.reduce((a, n) => (a | (1 << n)) >>> 0, 0);

// "default1" classes (SDM A.2-A.5): reserved bits that read as allowed-0 = 1 in the non-true MSRs.
const PIN_DEFAULT1 = bits(1, 2, 4);
const PROC_DEFAULT1 = bits(1, 4, 5, 6, 8, 13, 14, 15, 16, 26);
const EXIT_DEFAULT1 = bits(0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 14, 16, 17);
const ENTRY_DEFAULT1 = bits(0, 1, 2, 3, 4, 5, 6, 7, 8, 12);

export const PIN_CAPS: ControlCaps = {
  mustBeOne: PIN_DEFAULT1,
  mayBeOne:
    (PIN_DEFAULT1 | Pin.EXTERNAL_INTERRUPT | Pin.NMI_EXITING | Pin.VIRTUAL_NMIS | Pin.PREEMPTION_TIMER) >>> 0,
};
export const PROC_CAPS: ControlCaps = {
  mustBeOne: PROC_DEFAULT1,
  mayBeOne:
    (PROC_DEFAULT1 |
      Proc.INTERRUPT_WINDOW |
      Proc.TSC_OFFSETTING |
      Proc.HLT |
      Proc.INVLPG |
      Proc.MWAIT |
      Proc.RDPMC |
      Proc.RDTSC |
      Proc.CR3_LOAD |
      Proc.CR3_STORE |
      Proc.CR8_LOAD |
      Proc.CR8_STORE |
      Proc.NMI_WINDOW |
      Proc.MOV_DR |
      Proc.UNCOND_IO |
      Proc.USE_IO_BITMAPS |
      Proc.MONITOR_TRAP_FLAG |
      Proc.USE_MSR_BITMAPS |
      Proc.MONITOR |
      Proc.PAUSE |
      Proc.SECONDARY) >>>
    0,
};
export const PROC2_CAPS: ControlCaps = {
  mustBeOne: 0,
  mayBeOne:
    Proc2.EPT |
    Proc2.DESC_TABLE |
    Proc2.RDTSCP |
    Proc2.VPID |
    Proc2.WBINVD |
    Proc2.UNRESTRICTED_GUEST |
    Proc2.RDRAND |
    Proc2.RDSEED |
    Proc2.PAUSE_LOOP |
    Proc2.INVPCID,
};
export const EXIT_CAPS: ControlCaps = {
  mustBeOne: EXIT_DEFAULT1,
  mayBeOne:
    (EXIT_DEFAULT1 |
      ExitCtl.SAVE_DEBUG |
      ExitCtl.HOST_ADDR_SPACE_SIZE |
      ExitCtl.ACK_INTR_ON_EXIT |
      ExitCtl.SAVE_PAT |
      ExitCtl.LOAD_PAT |
      ExitCtl.SAVE_EFER |
      ExitCtl.LOAD_EFER |
      ExitCtl.SAVE_PREEMPTION_TIMER) >>>
    0,
};
export const ENTRY_CAPS: ControlCaps = {
  mustBeOne: ENTRY_DEFAULT1,
  mayBeOne:
    (ENTRY_DEFAULT1 | EntryCtl.LOAD_DEBUG | EntryCtl.IA32E_MODE | EntryCtl.LOAD_PAT | EntryCtl.LOAD_EFER) >>>
    0,
};

// The "true" MSRs let software clear some default1 bits (SDM A.2): CR3-load/store exiting and the
// debug-control save/load bits are real controls here.
export const TRUE_PIN_CAPS: ControlCaps = PIN_CAPS;
export const TRUE_PROC_CAPS: ControlCaps = {
  mustBeOne: (PROC_CAPS.mustBeOne & ~(Proc.CR3_LOAD | Proc.CR3_STORE)) >>> 0,
  mayBeOne: PROC_CAPS.mayBeOne,
};
export const TRUE_EXIT_CAPS: ControlCaps = {
  mustBeOne: (EXIT_CAPS.mustBeOne & ~ExitCtl.SAVE_DEBUG) >>> 0,
  mayBeOne: EXIT_CAPS.mayBeOne,
};
export const TRUE_ENTRY_CAPS: ControlCaps = {
  mustBeOne: (ENTRY_CAPS.mustBeOne & ~EntryCtl.LOAD_DEBUG) >>> 0,
  mayBeOne: ENTRY_CAPS.mayBeOne,
};

/** CR0 bits fixed to 1 in VMX operation (PE and PG are relaxed for guests by unrestricted guest). */
export const CR0_FIXED0 = 0x80000021n;
export const CR0_FIXED1 = 0xffffffffn;
/**
 * CR4.VMXE must be 1; CR4_FIXED1 lists the CR4 bits the interpreter implements (UMIP 11, FSGSBASE
 * 16, PCIDE 17, SMEP 20, SMAP 21 and PKE 22 among them: a guest that CPUID lets set them must be
 * able to enter with them).
 */
export const CR4_FIXED0 = 0x2000n;
export const CR4_FIXED1 = 0x00772fffn;

/** IA32_VMX_EPT_VPID_CAP: execute-only, 4-level walks, UC/WB, 2M/1G pages, INVEPT/INVVPID types. */
export const EPT_VPID_CAP =
  (1n << 0n) |
  (1n << 6n) |
  (1n << 8n) |
  (1n << 14n) |
  (1n << 16n) |
  (1n << 17n) |
  (1n << 20n) |
  (1n << 25n) |
  (1n << 26n) |
  (1n << 32n) |
  (1n << 41n) |
  (1n << 42n) |
  (1n << 43n) |
  (1n << 44n);

const ctlMsr = (c: ControlCaps): bigint => (BigInt(c.mayBeOne >>> 0) << 32n) | BigInt(c.mustBeOne >>> 0);

export const VMX_BASIC =
  BigInt(VMCS_REVISION_ID) |
  (BigInt(VMCS_REGION_SIZE) << 32n) |
  (6n << 50n) | // write-back VMCS memory type
  (1n << 54n) | // INS/OUTS exits report their segment and address size in the instruction information
  (1n << 55n); // true control MSRs exist

/**
 * MISC: timer rate, LMA stored in the IA-32e entry control, the HLT (6), shutdown (7) and
 * wait-for-SIPI (8) activity states, 4 CR3 targets.
 */
export const VMX_MISC =
  BigInt(PREEMPTION_TIMER_RATE) |
  (1n << 5n) |
  (1n << 6n) |
  (1n << 7n) |
  (1n << 8n) |
  (BigInt(CR3_TARGET_MAX) << 16n);

export const CAPABILITY_MSRS: ReadonlyMap<number, bigint> = new Map<number, bigint>([
  [Msr.VMX_BASIC, VMX_BASIC],
  [Msr.VMX_PINBASED_CTLS, ctlMsr(PIN_CAPS)],
  [Msr.VMX_PROCBASED_CTLS, ctlMsr(PROC_CAPS)],
  [Msr.VMX_EXIT_CTLS, ctlMsr(EXIT_CAPS)],
  [Msr.VMX_ENTRY_CTLS, ctlMsr(ENTRY_CAPS)],
  [Msr.VMX_MISC, VMX_MISC],
  [Msr.VMX_CR0_FIXED0, CR0_FIXED0],
  [Msr.VMX_CR0_FIXED1, CR0_FIXED1],
  [Msr.VMX_CR4_FIXED0, CR4_FIXED0],
  [Msr.VMX_CR4_FIXED1, CR4_FIXED1],
  [Msr.VMX_VMCS_ENUM, BigInt(HIGHEST_INDEX << 1)],
  [Msr.VMX_PROCBASED_CTLS2, ctlMsr(PROC2_CAPS)],
  [Msr.VMX_EPT_VPID_CAP, EPT_VPID_CAP],
  [Msr.VMX_TRUE_PINBASED_CTLS, ctlMsr(TRUE_PIN_CAPS)],
  [Msr.VMX_TRUE_PROCBASED_CTLS, ctlMsr(TRUE_PROC_CAPS)],
  [Msr.VMX_TRUE_EXIT_CTLS, ctlMsr(TRUE_EXIT_CAPS)],
  [Msr.VMX_TRUE_ENTRY_CTLS, ctlMsr(TRUE_ENTRY_CAPS)],
]);

/** Adjusts a desired control word to what a capability MSR allows (what hypervisors do at setup). */
export function adjustControls(desired: number, caps: ControlCaps): number {
  return ((desired | caps.mustBeOne) & caps.mayBeOne) >>> 0;
}

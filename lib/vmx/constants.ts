// Control bits, exit reasons and capability-MSR numbers (SDM Vol. 3C, ch. 24 and appendices A-C).

export const Pin = {
  EXTERNAL_INTERRUPT: 1 << 0,
  NMI_EXITING: 1 << 3,
  VIRTUAL_NMIS: 1 << 5,
  PREEMPTION_TIMER: 1 << 6,
  POSTED_INTERRUPTS: 1 << 7,
} as const;

export const Proc = {
  INTERRUPT_WINDOW: 1 << 2,
  TSC_OFFSETTING: 1 << 3,
  HLT: 1 << 7,
  INVLPG: 1 << 9,
  MWAIT: 1 << 10,
  RDPMC: 1 << 11,
  RDTSC: 1 << 12,
  CR3_LOAD: 1 << 15,
  CR3_STORE: 1 << 16,
  CR8_LOAD: 1 << 19,
  CR8_STORE: 1 << 20,
  TPR_SHADOW: 1 << 21,
  NMI_WINDOW: 1 << 22,
  MOV_DR: 1 << 23,
  UNCOND_IO: 1 << 24,
  USE_IO_BITMAPS: 1 << 25,
  MONITOR_TRAP_FLAG: 1 << 27,
  USE_MSR_BITMAPS: 1 << 28,
  MONITOR: 1 << 29,
  PAUSE: 1 << 30,
  SECONDARY: 1 << 31,
} as const;

export const Proc2 = {
  VIRTUALIZE_APIC: 1 << 0,
  EPT: 1 << 1,
  DESC_TABLE: 1 << 2,
  RDTSCP: 1 << 3,
  X2APIC: 1 << 4,
  VPID: 1 << 5,
  WBINVD: 1 << 6,
  UNRESTRICTED_GUEST: 1 << 7,
  PAUSE_LOOP: 1 << 10,
  RDRAND: 1 << 11,
  INVPCID: 1 << 12,
  RDSEED: 1 << 16,
  XSAVES: 1 << 20,
} as const;

export const ExitCtl = {
  SAVE_DEBUG: 1 << 2,
  HOST_ADDR_SPACE_SIZE: 1 << 9,
  ACK_INTR_ON_EXIT: 1 << 15,
  SAVE_PAT: 1 << 18,
  LOAD_PAT: 1 << 19,
  SAVE_EFER: 1 << 20,
  LOAD_EFER: 1 << 21,
  SAVE_PREEMPTION_TIMER: 1 << 22,
} as const;

export const EntryCtl = {
  LOAD_DEBUG: 1 << 2,
  IA32E_MODE: 1 << 9,
  LOAD_PAT: 1 << 14,
  LOAD_EFER: 1 << 15,
} as const;

export const enum ExitReason {
  ExceptionNmi = 0,
  ExternalInterrupt = 1,
  TripleFault = 2,
  Init = 3,
  Sipi = 4,
  InterruptWindow = 7,
  NmiWindow = 8,
  TaskSwitch = 9,
  Cpuid = 10,
  Getsec = 11,
  Hlt = 12,
  Invd = 13,
  Invlpg = 14,
  Rdpmc = 15,
  Rdtsc = 16,
  Vmcall = 18,
  Vmclear = 19,
  Vmlaunch = 20,
  Vmptrld = 21,
  Vmptrst = 22,
  Vmread = 23,
  Vmresume = 24,
  Vmwrite = 25,
  Vmxoff = 26,
  Vmxon = 27,
  CrAccess = 28,
  DrAccess = 29,
  Io = 30,
  Rdmsr = 31,
  Wrmsr = 32,
  InvalidGuestState = 33,
  MsrLoading = 34,
  Mwait = 36,
  MonitorTrapFlag = 37,
  Monitor = 39,
  Pause = 40,
  MachineCheck = 41,
  TprBelowThreshold = 43,
  ApicAccess = 44,
  GdtrIdtr = 46,
  LdtrTr = 47,
  EptViolation = 48,
  EptMisconfig = 49,
  Invept = 50,
  Rdtscp = 51,
  PreemptionTimer = 52,
  Invvpid = 53,
  Wbinvd = 54,
  Xsetbv = 55,
  Rdrand = 57,
  Invpcid = 58,
  Vmfunc = 59,
  Rdseed = 61,
  Xsaves = 63,
  Xrstors = 64,
}

// Names of basic exit reasons, for traces: the one table, in lib/types (Linux's spellings).
export {
  VMX_EXIT_REASON_NAMES as EXIT_REASON_NAMES,
  vmxExitReasonName as exitReasonName,
} from "../types/exit-names.js";

/** Bit 31 of the exit-reason field: VM-entry failure. */
export const EXIT_REASON_ENTRY_FAILURE = 0x80000000;

export const Msr = {
  VMX_BASIC: 0x480,
  VMX_PINBASED_CTLS: 0x481,
  VMX_PROCBASED_CTLS: 0x482,
  VMX_EXIT_CTLS: 0x483,
  VMX_ENTRY_CTLS: 0x484,
  VMX_MISC: 0x485,
  VMX_CR0_FIXED0: 0x486,
  VMX_CR0_FIXED1: 0x487,
  VMX_CR4_FIXED0: 0x488,
  VMX_CR4_FIXED1: 0x489,
  VMX_VMCS_ENUM: 0x48a,
  VMX_PROCBASED_CTLS2: 0x48b,
  VMX_EPT_VPID_CAP: 0x48c,
  VMX_TRUE_PINBASED_CTLS: 0x48d,
  VMX_TRUE_PROCBASED_CTLS: 0x48e,
  VMX_TRUE_EXIT_CTLS: 0x48f,
  VMX_TRUE_ENTRY_CTLS: 0x490,
} as const;

/** Interruption-information field layout (entry, exit, IDT-vectoring). */
export const IntrInfo = {
  VECTOR_MASK: 0xff,
  TYPE_SHIFT: 8,
  ERROR_CODE_VALID: 1 << 11,
  NMI_UNBLOCKING: 1 << 12,
  VALID: 0x80000000,
} as const;

export const enum IntrType {
  External = 0,
  Nmi = 2,
  HardwareException = 3,
  SoftwareInterrupt = 4,
  PrivilegedSoftwareException = 5,
  SoftwareException = 6,
  Other = 7,
}

/** Guest activity state (SDM 24.4.2); IA32_VMX_MISC bits 8:6 report HLT, shutdown and wait-for-SIPI. */
export const enum Activity {
  Active = 0,
  Hlt = 1,
  Shutdown = 2,
  WaitForSipi = 3,
}

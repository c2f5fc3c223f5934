// The narrow interface between the x86 interpreter (lib/cpu) and whatever runs it: the software VT-x
// (lib/vmx) in VMX non-root operation, or a bare harness in tests. The interpreter never knows VMX
// exit-reason numbers: it asks "does this exit?" and the VMX layer, which owns the VMCS controls,
// answers and records the exit. When a hook answers true the interpreter abandons the instruction
// with no architectural side effect (RIP still points at it, as on a VM exit that happens before the
// instruction executes) and `run` returns StopReason.Exit.
//
// Calls happen only when such an instruction executes or such an event occurs, never per
// instruction, so a virtual call here costs nothing on the hot path.

export const enum Access {
  Read = 0,
  Write = 1,
  Execute = 2,
}

/** Host memory backing one guest-physical 4-KiB page (after EPT). */
export interface PageMapping {
  /** host bytes of the RAM region containing the page */
  bytes: Uint8Array;
  /** offset of the page's first byte in `bytes` */
  offset: number;
  /** false on an execute-only page (EPT without read): data reads go through mmio() */
  readable: boolean;
  writable: boolean;
  executable: boolean;
}

/** Returned by mapPage when the guest-physical page is not RAM: the access goes through mmio(). */
export const MMIO = 1 as const;
/**
 * Returned by mapPage / answered by hooks when the VMX layer recorded a VM exit. Negative: mmio()
 * returns it in place of a read value (0 and up), so it must be no value a device can return.
 */
export const EXIT = -1 as const;

export interface IoInfo {
  port: number;
  size: 1 | 2 | 4;
  in: boolean;
  string: boolean;
  rep: boolean;
  /** port given as an immediate operand */
  immediate: boolean;
}

export type CrAccess =
  | { type: "mov-to"; cr: number; gpr: number; value: bigint }
  | { type: "mov-from"; cr: number; gpr: number }
  | { type: "clts" }
  | { type: "lmsw"; source: number; memoryOperand: boolean; linear?: number };

/** Architectural events the interpreter delivers; the type numbers are those of interruption info. */
export const enum EventType {
  External = 0,
  Nmi = 2,
  HardwareException = 3,
  SoftwareInterrupt = 4,
  PrivilegedSoftwareException = 5,
  SoftwareException = 6,
}

export interface InstructionContext {
  /** length in bytes of the instruction that asks */
  length: number;
  /** guest-linear address of the instruction (CS.base + RIP) */
  linearRip: number;
}

export interface NonRootHooks {
  /**
   * Second-level translation of the guest-physical page containing gpa (EPT). `linear` is the
   * guest-linear address that led here (NaN when none, e.g. a paging-structure read during a walk
   * reports the structure's address), `pagingStructure` tells the walk's own reads apart.
   * Returns the host page, MMIO (not RAM: use mmio()), or EXIT (an EPT violation/misconfig was
   * recorded). The interpreter caches mappings in its TLB until flushTlb() is called.
   */
  mapPage(
    gpa: number,
    access: Access,
    linear: number,
    pagingStructure: boolean,
  ): PageMapping | typeof MMIO | typeof EXIT;
  /**
   * An access to a non-RAM guest-physical address. For a read, returns the value when one is
   * available (a completion queued for this instruction by the host), otherwise EXIT after
   * recording the exit. For a write, returns 0 when the write was consumed (already completed),
   * otherwise EXIT. Each access lies within one page and is 1 to 8 bytes wide (widths other than
   * 1, 2, 4 and 8 are the MMIO part of an access that crosses into or out of RAM, as KVM splits
   * them); values of more than 4 bytes travel as two 32-bit halves: written in lo/hi, read as the
   * returned bits 31:0 with bits 63:32 in `mmioHigh` (when the hooks keep it; otherwise the
   * returned number is the whole value, exact up to 2^53).
   */
  mmio(
    gpa: number,
    size: number,
    write: boolean,
    lo: number,
    hi: number,
    linear: number,
  ): number | typeof EXIT;
  /** bits 63:32 of the last read of more than 4 bytes that mmio() answered */
  readonly mmioHigh?: number;
  /**
   * false: an access mmio() answers ran no device model (the VMX layer answers only the replay of
   * an access the host completed after its exit, or unbacked memory), so guest RAM cannot have
   * changed behind the decode cache. Missing or true: the interpreter assumes a device may have
   * written guest memory (DMA) and re-checks cached code.
   */
  readonly mmioRunsDevices?: boolean;

  io(info: IoInfo, ctx: InstructionContext): boolean;
  /**
   * Optional: when io() answered false (no exit), the interpreter performs the access here.
   * Missing: IN reads all-ones, OUT is dropped.
   */
  portIn?(port: number, size: number): number;
  portOut?(port: number, size: number, value: number): void;
  hlt(ctx: InstructionContext): boolean;
  cpuid(leaf: number, subleaf: number, ctx: InstructionContext): boolean;
  rdmsr(index: number, ctx: InstructionContext): boolean;
  wrmsr(index: number, value: bigint, ctx: InstructionContext): boolean;
  rdtsc(rdtscp: boolean, ctx: InstructionContext): boolean;
  /**
   * Optional (missing: they run). false: RDTSCP and RDPID are #UD, as in VMX non-root operation
   * with the "enable RDTSCP" control 0; asked before any other check of the instruction.
   */
  rdtscpEnabled?(): boolean;
  rdpmc(ctx: InstructionContext): boolean;
  invlpg(linear: number, ctx: InstructionContext): boolean;
  /**
   * Optional (missing: INVPCID runs). false: INVPCID is #UD, as in VMX non-root operation with the
   * "enable INVPCID" control 0; asked before any other check of the instruction.
   */
  invpcidEnabled?(): boolean;
  /** Optional: INVPCID past its #UD and privilege checks exits (INVLPG exiting in non-root operation) */
  invpcid?(ctx: InstructionContext): boolean;
  crAccess(access: CrAccess, ctx: InstructionContext): boolean;
  drAccess(dr: number, toDr: boolean, gpr: number, ctx: InstructionContext): boolean;
  /** MONITOR, MWAIT, PAUSE, WBINVD, INVD, XSETBV, RDRAND, RDSEED, GETSEC */
  other(
    instruction:
      | "monitor"
      | "mwait"
      | "pause"
      | "wbinvd"
      | "invd"
      | "xsetbv"
      | "rdrand"
      | "rdseed"
      | "getsec",
    ctx: InstructionContext,
  ): boolean;
  /** LGDT/LIDT/SGDT/SIDT and LLDT/LTR/SLDT/STR (descriptor-table exiting) */
  descriptorTable(
    instruction: "lgdt" | "lidt" | "sgdt" | "sidt" | "lldt" | "ltr" | "sldt" | "str",
    ctx: InstructionContext,
  ): boolean;
  /** VMCALL and the other VMX instructions executed by the guest: always exit in non-root operation */
  vmxInstruction(
    instruction:
      | "vmcall"
      | "vmclear"
      | "vmlaunch"
      | "vmptrld"
      | "vmptrst"
      | "vmread"
      | "vmresume"
      | "vmwrite"
      | "vmxoff"
      | "vmxon"
      | "invept"
      | "invvpid"
      | "vmfunc",
    ctx: InstructionContext,
  ): boolean;
  /**
   * An exception or interrupt is about to be delivered through the guest IDT (exception bitmap, #PF
   * error-code mask/match, NMI exiting). `cr2` is set for #PF. Answer true to exit instead.
   */
  event(
    vector: number,
    type: EventType,
    errorCode: number | undefined,
    cr2: number | undefined,
    ctx: InstructionContext,
  ): boolean;
  /** A triple fault. Always an exit in non-root operation (the interpreter enters shutdown otherwise). */
  tripleFault(): boolean;
  /**
   * Called at an instruction boundary when `cpu.windowRequests` is non-zero: lets the VMX layer
   * implement interrupt-window / NMI-window exiting and the monitor trap flag.
   * `interruptible`: RFLAGS.IF=1 and no STI/MOV-SS blocking.
   */
  boundary(interruptible: boolean): boolean;
}

/** Why `run` returned. */
export const enum StopReason {
  /** a hook answered true: the VMX layer recorded a VM exit */
  Exit = 0,
  /** the instruction budget ran out (the VMX preemption timer is built on it) */
  Budget = 1,
  /** HLT executed without exiting: activity state HLT until an event is injected */
  Halted = 2,
  /** triple fault outside non-root operation: activity state shutdown */
  Shutdown = 3,
  /** cpu.hostPoll answered true: the host has an interrupt pending (a timer, a kick) */
  HostInterrupt = 4,
}

/** Bits of GuestCpu.windowRequests */
export const enum Window {
  Interrupt = 1,
  Nmi = 2,
  /** monitor trap flag: a boundary after every instruction */
  MonitorTrap = 4,
}

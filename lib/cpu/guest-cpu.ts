// The interpreter as the VMX layer drives it: guest state loaded at VM entry, saved at VM exit,
// events injected, instructions run. The interpreter's class implements this; the VMX layer and
// tests program against it. Values that can exceed 32 bits are bigint here (this is the slow path
// used at entries, exits and for inspection; the run loop keeps its own fast representation).

import type { EventType, NonRootHooks, StopReason } from "./hooks.js";

/** Segment register indices, in the x86 encoding order. */
export const enum Seg {
  ES = 0,
  CS = 1,
  SS = 2,
  DS = 3,
  FS = 4,
  GS = 5,
  LDTR = 6,
  TR = 7,
}

/** A segment register with its hidden descriptor cache; `ar` uses the VMX access-rights layout
 * (bits 3:0 type, 4 S, 6:5 DPL, 7 P, 12 AVL, 13 L, 14 D/B, 15 G, 16 unusable). */
export interface SegmentState {
  selector: number;
  base: bigint;
  limit: number;
  ar: number;
}

export interface TableState {
  base: bigint;
  limit: number;
}

/** Registers that the VMCS guest-state area holds (besides the segments and tables). */
export type ControlRegister =
  | "cr0"
  | "cr2"
  | "cr3"
  | "cr4"
  | "cr8"
  | "dr6"
  | "dr7"
  | "efer"
  | "pat"
  | "debugctl";
export type SysenterRegister = "sysenter_cs" | "sysenter_esp" | "sysenter_eip";

/** x87, SSE and PKRU state, which VMX leaves to the hypervisor (it is not in the VMCS): moved as a
 * whole when a vCPU migrates to another logical processor. Opaque to everyone but the interpreter. */
export interface ExtendedState {
  readonly fpu: Float64Array;
  readonly fpuTop: number;
  readonly fpuTag: number;
  readonly fpuCw: number;
  readonly fpuSw: number;
  readonly xmm: Int32Array;
  readonly mxcsr: number;
  /** PKRU, which XSAVE keeps with them (absent: 0, all keys allow everything) */
  readonly pkru?: number;
}

export interface GuestCpu {
  /** general registers by x86 number (0 = RAX ... 15 = R15) */
  getGpr(index: number): bigint;
  setGpr(index: number, value: bigint): void;
  getRip(): bigint;
  setRip(value: bigint): void;
  getRflags(): bigint;
  setRflags(value: bigint): void;
  /**
   * Number forms for the VM-exit path, where a BigInt per field would be most of the cost: RIP as
   * a two's-complement signed number (exact for canonical addresses), RFLAGS (bits 63:32 are
   * reserved zeros), a segment's access rights.
   */
  getRipNumber(): number;
  setRipNumber(value: number): void;
  getRflagsNumber(): number;
  getSegmentAr(seg: Seg): number;

  getSegment(seg: Seg): SegmentState;
  setSegment(seg: Seg, state: SegmentState): void;
  getGdtr(): TableState;
  setGdtr(t: TableState): void;
  getIdtr(): TableState;
  setIdtr(t: TableState): void;

  getControl(reg: ControlRegister | SysenterRegister): bigint;
  /** sets the register as a VM entry loads it (no checks, no side effects beyond mode/TLB recomputation) */
  setControl(reg: ControlRegister | SysenterRegister, value: bigint): void;
  /** any MSR the interpreter keeps (FS/GS base, KERNEL_GS_BASE, STAR, LSTAR, CSTAR, SFMASK, TSC, ...) */
  getMsr(index: number): bigint | undefined;
  setMsr(index: number, value: bigint): boolean;

  /** a copy of the x87/SSE state */
  getExtendedState(): ExtendedState;
  setExtendedState(state: ExtendedState): void;

  /** VMX interruptibility-state bits: 0 STI, 1 MOV SS, 2 SMI, 3 NMI */
  interruptibility: number;
  /**
   * What the guest's reads of the TSC (RDTSC, RDTSCP, RDMSR IA32_TSC) add to the counter: the
   * VMCS TSC offset under "use TSC offsetting", which each VM entry sets (0 without it).
   */
  tscGuestOffset: bigint;
  /** 0 active, 1 HLT, 2 shutdown, 3 wait-for-SIPI */
  activity: number;
  /**
   * Windows the VMX layer wants reported at instruction boundaries (Window bits; 0 none). The
   * interpreter calls hooks.boundary() at every boundary where one could open: every instruction
   * with the monitor trap flag; for the interrupt and NMI windows, after each instruction that can
   * change RFLAGS.IF, the interrupt shadow or NMI blocking (none of these are compiled fast ops),
   * so compiled blocks keep running while a window stays shut.
   */
  windowRequests: number;
  /**
   * Asked every few dozen blocks or instructions and at every delivered exception: true stops
   * run() with StopReason.HostInterrupt (a host timer or kick, an external interrupt of the host).
   */
  hostPoll: (() => boolean) | null;

  /** the VMX layer's hooks while in non-root operation; null outside it */
  hooks: NonRootHooks | null;

  /**
   * Delivers an event through the guest IDT/IVT as VM entry does for the entry interruption-info
   * field. `instructionLength` advances RIP first for software interrupts/exceptions. May itself
   * cause a nested exception, a double fault or a triple fault (reported via hooks/StopReason).
   */
  deliverEvent(
    vector: number,
    type: EventType,
    errorCode: number | undefined,
    instructionLength: number,
  ): StopReason | undefined;

  /**
   * The pending debug exceptions VM entry loads (B0-B3 and BS, SDM 26.7.3): a #DB now, or after
   * the next instruction inside a MOV SS shadow. Optional: a CPU without debug support has none.
   */
  raiseDebug?(bits: number): StopReason | undefined;
  /**
   * Takes the #DB bits held over a MOV SS shadow (what VM exit saves as pending debug
   * exceptions), leaving none held.
   */
  takePendingDebug?(): number;

  /**
   * Runs until an exit, HLT, shutdown, or `budget` instructions have retired. `memoryMoved` false
   * promises that nothing else wrote guest memory since the last run() (default true).
   */
  run(budget: number, memoryMoved?: boolean): StopReason;
  /** instructions retired since creation */
  readonly retired: number;
  /**
   * exceptions and interrupts delivered since creation (including injected events): with
   * `retired`, the work that budgets and the preemption timer count, so that a guest whose every
   * instruction faults still uses up its budget
   */
  readonly eventsDelivered: number;
  /**
   * iterations of REP string instructions completed since creation, but for the first of each
   * execution (which the instruction's retirement counts): work too (a REP of 2^32 iterations
   * retires one instruction), counted by budgets and the preemption timer
   */
  readonly stringIterations: number;
  /** what budgets and the preemption timer count: retired + eventsDelivered + stringIterations */
  work(): number;
  /** the TSC's source in ticks (the host's clock, scaled); null: the TSC counts retired instructions */
  tscClock: (() => number) | null;

  /** drops every cached translation (CR3 write by the host, EPT change, INVEPT) */
  flushTlb(): void;
  /** forgets decoded code for a guest-physical range (host wrote guest code) */
  invalidateCode(gpa: number, length: number): void;
}

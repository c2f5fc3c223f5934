// The one VM-exit union both backends feed the loop. KVM exits are decoded by lib/kvm into objects
// of exactly these shapes (data are views into kvm_run); the soft backend builds them from VMREADs.

/** Backend-specific detail of an exit. */
export type RawExit =
  | { backend: "kvm" /** KVM_EXIT_* code from kvm_run.exit_reason */; code: number }
  | {
      backend: "soft";
      /** VMX basic exit reason (bits 15:0 of the exit-reason field) */
      reason: number;
      /** the full exit-reason field (bit 31 = VM-entry failure) */
      exitReasonField: number;
      qualification: bigint;
      instructionLength: number;
    };

export interface IoExit {
  kind: "io";
  direction: "in" | "out";
  port: number;
  size: 1 | 2 | 4;
  /** more than 1 for string I/O (REP INS/OUTS): data holds size*count bytes */
  count: number;
  /** out: the bytes the guest wrote; in: fill these before the next run */
  data: Uint8Array;
  raw: RawExit;
}

export interface MmioExit {
  kind: "mmio";
  address: number;
  length: number;
  write: boolean;
  /** write: the bytes written; read: fill these before the next run */
  data: Uint8Array;
  raw: RawExit;
}

export interface HltExit {
  kind: "hlt";
  raw: RawExit;
}
/** Triple fault (KVM_EXIT_SHUTDOWN, VMX reason 2). */
export interface ShutdownExit {
  kind: "shutdown";
  raw: RawExit;
}
/** VM entry failed: KVM's hardware_entry_failure_reason, or the VMX exit-reason field with bit 31. */
export interface FailEntryExit {
  kind: "fail_entry";
  reason: number;
  raw: RawExit;
}
export interface InternalErrorExit {
  kind: "internal_error";
  suberror: number;
  /** backend-provided words (KVM internal.data) or a description */
  data: readonly bigint[];
  message?: string;
  raw: RawExit;
}
export interface SystemEventExit {
  kind: "system_event";
  /** KVM_SYSTEM_EVENT_* (1 shutdown, 2 reset, 3 crash) */
  type: number;
  raw: RawExit;
}
export interface DebugExit {
  kind: "debug";
  exception: number;
  pc: bigint;
  dr6: bigint;
  dr7: bigint;
  raw: RawExit;
}
/** The run was interrupted (signal, kick, immediate_exit, time slice) before the guest exited. */
export interface IntrExit {
  kind: "intr";
  raw: RawExit;
}
export interface IrqWindowOpenExit {
  kind: "irq_window_open";
  raw: RawExit;
}
/** VMCALL / KVM_EXIT_HYPERCALL: nr and args from RAX, RBX, RCX, RDX, RSI; set ret to answer in RAX. */
export interface HypercallExit {
  kind: "hypercall";
  nr: bigint;
  args: bigint[];
  ret: bigint;
  raw: RawExit;
}
/** CPUID / RDMSR / WRMSR that the backend chose to surface (the soft backend answers most itself). */
export interface CpuidExit {
  kind: "cpuid";
  leaf: number;
  subleaf: number;
  raw: RawExit;
}
export interface MsrExit {
  kind: "msr";
  write: boolean;
  index: number;
  value: bigint;
  raw: RawExit;
}
export interface UnknownExit {
  kind: "unknown";
  code: number;
  raw: RawExit;
}

export type VmExit =
  | IoExit
  | MmioExit
  | HltExit
  | ShutdownExit
  | FailEntryExit
  | InternalErrorExit
  | SystemEventExit
  | DebugExit
  | IntrExit
  | IrqWindowOpenExit
  | HypercallExit
  | CpuidExit
  | MsrExit
  | UnknownExit;

export type VmExitKind = VmExit["kind"];

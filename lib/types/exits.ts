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

/** A port I/O instruction (IN/OUT, INS/OUTS). The machine's default handler serves it from `vm.io`. */
export interface IoExit {
  /** Discriminant of the {@link VmExit} union. */
  kind: "io";
  /** "in": the guest reads the port (fill `data`); "out": it writes (`data` holds the bytes). */
  direction: "in" | "out";
  /** The port, 0 to 0xFFFF. */
  port: number;
  /** Bytes per access. */
  size: 1 | 2 | 4;
  /** more than 1 for string I/O (REP INS/OUTS): data holds size*count bytes */
  count: number;
  /** out: the bytes the guest wrote; in: fill these before the next run */
  data: Uint8Array;
  /**
   * Backend-specific detail: the KVM exit code, or the VMX exit reason, qualification and instruction length.
   */
  raw: RawExit;
}

/** A guest access to a guest-physical address outside RAM. The default handler serves it from `vm.mmio`. */
export interface MmioExit {
  /** Discriminant of the {@link VmExit} union. */
  kind: "mmio";
  /** The guest-physical address accessed. */
  address: number;
  /** Bytes accessed (1 to 8; wider SSE/AVX accesses are handled as 8-byte pieces). */
  length: number;
  /** true for a write (MMIO store, WRMSR), false for a read. */
  write: boolean;
  /** write: the bytes written; read: fill these before the next run */
  data: Uint8Array;
  /**
   * Backend-specific detail: the KVM exit code, or the VMX exit reason, qualification and instruction length.
   */
  raw: RawExit;
}

/**
 * The vCPU executed HLT. The default handler waits for an interrupt when one can come, else ends the run as
 * "hlt".
 */
export interface HltExit {
  /** Discriminant of the {@link VmExit} union. */
  kind: "hlt";
  /**
   * Backend-specific detail: the KVM exit code, or the VMX exit reason, qualification and instruction length.
   */
  raw: RawExit;
}
/** Triple fault (KVM_EXIT_SHUTDOWN, VMX reason 2). */
export interface ShutdownExit {
  /** Discriminant of the {@link VmExit} union. */
  kind: "shutdown";
  /**
   * Backend-specific detail: the KVM exit code, or the VMX exit reason, qualification and instruction length.
   */
  raw: RawExit;
}
/** VM entry failed: KVM's hardware_entry_failure_reason, or the VMX exit-reason field with bit 31. */
export interface FailEntryExit {
  /** Discriminant of the {@link VmExit} union. */
  kind: "fail-entry";
  /** The hardware entry-failure reason (KVM) or the VMX exit-reason field (soft). */
  reason: number;
  /**
   * Backend-specific detail: the KVM exit code, or the VMX exit reason, qualification and instruction length.
   */
  raw: RawExit;
}
/**
 * The backend could not go on (KVM_EXIT_INTERNAL_ERROR, e.g. emulation failure; or a soft-backend failure).
 * The default handler ends the run as "internal-error".
 */
export interface InternalErrorExit {
  /** Discriminant of the {@link VmExit} union. */
  kind: "internal-error";
  /** KVM_INTERNAL_ERROR_* suberror code (1 emulation, 2 simultaneous exceptions, 3 delivery event, ...). */
  suberror: number;
  /** backend-provided words (KVM internal.data) or a description */
  data: readonly bigint[];
  /** What went wrong, in words (soft backend). */
  message?: string;
  /**
   * Backend-specific detail: the KVM exit code, or the VMX exit reason, qualification and instruction length.
   */
  raw: RawExit;
}
/**
 * The platform asked for a shutdown, reset or crash (KVM_EXIT_SYSTEM_EVENT). Ends the run as "poweroff" or
 * "reset" by default.
 */
export interface SystemEventExit {
  /** Discriminant of the {@link VmExit} union. */
  kind: "system-event";
  /** KVM_SYSTEM_EVENT_* (1 shutdown, 2 reset, 3 crash) */
  type: number;
  /**
   * Backend-specific detail: the KVM exit code, or the VMX exit reason, qualification and instruction length.
   */
  raw: RawExit;
}
/**
 * A debug exception the host asked to see (breakpoint, single step, hardware breakpoint). Exported as
 * `DebugExceptionExit` from the package. Ends the run as "debug" by default.
 */
export interface DebugExit {
  /** Discriminant of the {@link VmExit} union. */
  kind: "debug";
  /** The exception vector: 1 (#DB) or 3 (#BP). */
  exception: number;
  /** The guest RIP where it happened. */
  pc: bigint;
  /** DR6 at the exception (which breakpoint fired, single step). */
  dr6: bigint;
  /** DR7 at the exception (the breakpoints set). */
  dr7: bigint;
  /**
   * Backend-specific detail: the KVM exit code, or the VMX exit reason, qualification and instruction length.
   */
  raw: RawExit;
}
/** The run was interrupted (signal, kick, immediate_exit, time slice) before the guest exited. */
export interface IntrExit {
  /** Discriminant of the {@link VmExit} union. */
  kind: "intr";
  /**
   * Backend-specific detail: the KVM exit code, or the VMX exit reason, qualification and instruction length.
   */
  raw: RawExit;
}
/**
 * The guest can take an interrupt now (RFLAGS.IF set, no blocking): the exit the run asks for when an
 * interrupt waits to be injected. The default handler resumes the guest.
 */
export interface IrqWindowOpenExit {
  /** Discriminant of the {@link VmExit} union. */
  kind: "irq-window-open";
  /**
   * Backend-specific detail: the KVM exit code, or the VMX exit reason, qualification and instruction length.
   */
  raw: RawExit;
}
/** VMCALL / KVM_EXIT_HYPERCALL: nr and args from RAX, RBX, RCX, RDX, RSI; set ret to answer in RAX. */
export interface HypercallExit {
  /** Discriminant of the {@link VmExit} union. */
  kind: "hypercall";
  /** The hypercall number (RAX). */
  nr: bigint;
  /** The arguments, from RBX, RCX, RDX and RSI in that order. */
  args: bigint[];
  /** The value the guest gets in RAX; HYPERCALL_ENOSYS (-1000, KVM_ENOSYS) unless a handler sets it. */
  ret: bigint;
  /**
   * Backend-specific detail: the KVM exit code, or the VMX exit reason, qualification and instruction length.
   */
  raw: RawExit;
}
/** CPUID / RDMSR / WRMSR that the backend chose to surface (the soft backend answers most itself). */
export interface CpuidExit {
  /** Discriminant of the {@link VmExit} union. */
  kind: "cpuid";
  /** EAX at the CPUID instruction. */
  leaf: number;
  /** ECX at the CPUID instruction. */
  subleaf: number;
  /**
   * Backend-specific detail: the KVM exit code, or the VMX exit reason, qualification and instruction length.
   */
  raw: RawExit;
}
/** A RDMSR or WRMSR the backend passed to user space (KVM_EXIT_X86_RDMSR/WRMSR). */
export interface MsrExit {
  /** Discriminant of the {@link VmExit} union. */
  kind: "msr";
  /** true for a write (MMIO store, WRMSR), false for a read. */
  write: boolean;
  /** The MSR number (ECX). */
  index: number;
  /** WRMSR: the value written. RDMSR: set it to answer the guest. */
  value: bigint;
  /**
   * Backend-specific detail: the KVM exit code, or the VMX exit reason, qualification and instruction length.
   */
  raw: RawExit;
}
/** An exit the backend does not decode; ends the run as "internal-error" by default. */
export interface UnknownExit {
  /** Discriminant of the {@link VmExit} union. */
  kind: "unknown";
  /** The backend's exit code (KVM_EXIT_* or VMX exit reason). */
  code: number;
  /**
   * Backend-specific detail: the KVM exit code, or the VMX exit reason, qualification and instruction length.
   */
  raw: RawExit;
}

/**
 * Every VM-exit either backend reports, told apart by `kind`. Exit handlers (Machine.setExitHandler) and the
 * machine's "exit" event receive these.
 */
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

/** The `kind` of a {@link VmExit}: kebab-case, as run reasons are (`"internal-error"`, `"fail-entry"`). */
export type VmExitKind = VmExit["kind"];

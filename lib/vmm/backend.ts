// What the machine needs of a backend. lib/vmm/backends/kvm.ts wraps lib/kvm (KvmVm/KvmVcpu);
// lib/vmm/backends/soft.ts is the small VT-x hypervisor over lib/vmx + lib/cpu.

import type { Clock } from "../devices/device.js";
import type { KickTarget } from "../kvm/binding-api.js";
import type { VmExit } from "../types/exits.js";
import type { Regs, SpecialRegs } from "../types/regs.js";
import type { GuestMemory } from "./memory.js";

/** "kvm": guests run on the host CPU through /dev/kvm; "soft": the software VT-x and x86 interpreter. */
export type BackendKind = "kvm" | "soft";

/** Where a device's interrupt goes on the soft backend (the emulated i8259 pair / APIC). */
export interface InterruptController {
  /** Drives interrupt line `line` (ISA IRQ / GSI) to `level`. */
  setIrq(line: number, level: boolean): void;
  /** an interrupt is pending for the CPU (INTR asserted) */
  hasInterrupt(): boolean;
  /** INTA cycle: returns the vector and updates in-service state */
  acknowledge(): number;
  /**
   * Optional: the local APIC's task-priority register (bits 7:4 are CR8 in 64-bit mode). With it,
   * the soft vCPU's MOV to/from CR8 reads and writes the APIC's TPR, as on hardware.
   */
  taskPriority?: { get(): number; set(value: number): void };
  /**
   * Optional: the CPU's own local APIC as its MSRs reach it. With it, the soft vCPU offers x2APIC
   * and TSC-deadline in CPUID and routes IA32_APIC_BASE.EXTD, the x2APIC registers (0x800-0x8FF)
   * and IA32_TSC_DEADLINE (0x6E0) there.
   */
  apicMsrs?: ApicMsrAccess;
  /** Optional (SMP): the controller as CPU `index` sees it (its own local APIC). */
  forCpu?(index: number): InterruptController;
}

/** A local APIC's MSR interface (lib/devices' LocalApicMsrs): undefined / false mean #GP. */
export interface ApicMsrAccess {
  /** the APIC is on the machine; until then the CPU offers and routes none of this */
  readonly attached: boolean;
  /** RDMSR of an APIC MSR (0x800-0x8FF, IA32_TSC_DEADLINE); undefined means #GP */
  readMsr(index: number): bigint | undefined;
  /** WRMSR of an APIC MSR; false means #GP */
  writeMsr(index: number, value: bigint): boolean;
  /** IA32_APIC_BASE.EXTD as the APIC has it */
  readonly x2apic: boolean;
  /** IA32_APIC_BASE.EXTD written: enters or leaves x2APIC mode */
  setX2apic(on: boolean): void;
  /** the CPU's time-stamp counter, which TSC-deadline mode compares against */
  tsc: { read(): bigint; readonly hz: number } | undefined;
}

/** What the APIC bus delivers to a CPU besides interrupts (SDM vol. 3 ch. 10.6, 8.4). */
export type CpuSignal = "init" | "sipi" | "nmi";

/**
 * A backend's vCPU, as the exit loop drives it. Users normally go through {@link Vcpu}; exit handlers get one
 * in {@link ExitContext}.
 */
export interface VcpuBackend {
  /** The vCPU's index (0 is the bootstrap processor). */
  readonly index: number;
  /**
   * Enters the guest and returns at the next exit. For io "in" and mmio reads the caller fills
   * exit.data before calling run() again; the backend completes the instruction with it.
   */
  run(): VmExit;
  /** The general registers, RIP and RFLAGS. */
  getRegs(): Regs;
  /** Writes every general register, RIP and RFLAGS (unchecked: Vcpu.setRegs checks values first). */
  setRegs(regs: Regs): void;
  /** Segments, descriptor tables, control registers, EFER and the APIC base. */
  getSregs(): SpecialRegs;
  /** Writes them all (unchecked: Vcpu.setSregs checks values first). */
  setSregs(sregs: SpecialRegs): void;
  /** Reads an MSR; undefined when the vCPU has none by that number. */
  getMsr(index: number): bigint | undefined;
  /** Writes an MSR; throws when the vCPU refuses it (Vcpu.setMsr reports that as RegisterValueError). */
  setMsr(index: number, value: bigint): void;
  /** makes a run() in progress (or the next one) return an "intr" exit promptly; callable from elsewhere */
  kick(): void;
  /** Releases what it holds (KVM file descriptors, or the soft backend's state); vm.close() calls it. */
  close(): void;
  /**
   * Optional (soft backend): from now on run() returns an "intr" exit once `n` more guest
   * instructions have retired; undefined removes the budget. The loop uses it for time slices,
   * timeouts of guests that never exit, and `maxInstructions`.
   */
  setInstructionBudget?(n: number | undefined): void;
  /**
   * Optional (soft backend): run() returns an "intr" exit by this performance.now() time, whatever
   * the guest does (its own slice bound applies too); undefined removes it. Infinity removes every
   * host-time bound (deterministic runs: an instruction budget must bound the entry instead).
   */
  setEntryDeadline?(atMs: number | undefined): void;
  /**
   * Optional (soft backend): guest instructions this vCPU has retired since it was created, plus the
   * exceptions and interrupts delivered to it and the iterations of REP string instructions (the
   * unit of instruction budgets: a guest whose every instruction faults, or one REP of 2^32
   * iterations, still uses them up).
   */
  instructionsRetired?(): number;
  /**
   * Optional (KVM): what a watchdog thread needs to kick this vCPU out of a blocking KVM_RUN (the
   * addon's file and the vCPU fd, or koffi's shared run state and signal); undefined when the
   * binding cannot kick across threads. Lets timeouts and async slices work for guests that never
   * exit.
   */
  crossThreadKick?(): KickTarget | undefined;
  /** Optional (KVM with the in-kernel irqchip): the vCPU is in HLT inside the kernel (MP state HALTED). */
  isHalted?(): boolean;
  /** Optional (soft): INIT, SIPI (vector = the SIPI's 8-bit vector) or NMI arriving from the APIC bus. */
  signal?(kind: CpuSignal, vector?: number): void;
  /** Optional (soft): false while the vCPU waits for SIPI, or is halted (HLT activity) with no interrupt/NMI/INIT/SIPI it would take. */
  runnable?(): boolean;
  /**
   * Optional (soft vCPU threads): while the vCPU is in an entry on its own thread, whether it
   * sleeps halted with interrupts disabled or waits for SIPI (true), or may run (false); undefined
   * when the machine's thread may ask runnable() and the registers instead.
   */
  asleepForGood?(): boolean | undefined;
  /**
   * Optional (soft, several vCPUs): the last exit came from a PAUSE loop, the guest spin-waiting
   * for another vCPU (VT-x PAUSE-loop exiting); reading clears it. The loop ends this vCPU's turn.
   */
  takeYield?(): boolean;
}

/** Where guest writes signal an eventfd instead of exiting (KVM_IOEVENTFD). */
export interface IoeventSink {
  /** a new eventfd (blocking, close-on-exec) the caller owns and closes */
  eventfd(): number;
  /** 4-byte guest writes of `value` to MMIO `address` signal `fd` and do not exit; throws when refused */
  add(fd: number, address: number, value: number): void;
  /** undoes add() with the same arguments */
  remove(fd: number, address: number, value: number): void;
}

/** What a machine runs on (`vm.backend`): KVM or the software VT-x, or your own through a BackendFactory. */
export interface MachineBackend {
  /** Which backend this is. */
  readonly kind: BackendKind;
  /** The guest RAM the backend runs the guest over. */
  readonly memory: GuestMemory;
  /** Creates vCPU `index`; the machine calls it once per vCPU, in index order. */
  createVcpu(index: number): VcpuBackend;
  /** level of an interrupt line (ISA IRQ / GSI): KVM_IRQ_LINE on KVM, the emulated PIC on soft */
  setIrqLine(line: number, level: boolean): void;
  /**
   * Optional (KVM): guest writes to this range need not exit one by one (coalesced MMIO/PIO); the
   * backend delivers them, in order, before the next exit it reports. False when it cannot.
   */
  coalesceWrites?(space: "io" | "mmio", base: number, length: number): boolean;
  /**
   * Optional (KVM): guest writes that signal an eventfd in the kernel instead of exiting
   * (ioeventfd); the machine uses them for virtio queue notifications (virtio-ioevents.ts).
   */
  ioevents?(): IoeventSink;
  /**
   * Optional: maps `bytes` (whole pages) read-only at `gpa`, outside RAM and not in `memory`: the
   * guest reads and executes them, its writes exit as MMIO (firmware ROM below 4 GiB). Throws
   * MachineConfigError when it cannot.
   */
  mapRom?(gpa: number, bytes: Uint8Array): void;
  /** Optional: CPUID.1:EAX of the vCPUs (family, model, stepping), which RESET leaves in EDX. */
  cpuSignature?(): number;
  /**
   * Optional (soft backend): the machine's clock, which guest time follows (the TSC counts it at
   * the frequency CPUID states, as the PIT, RTC and APIC timer do).
   */
  useClock?(clock: Clock): void;
  /** Optional (KVM): whether the guest's writes to RAM are being logged (startDirtyLog()). */
  readonly dirtyLogging?: boolean;
  /**
   * Optional (KVM): logs the pages the guest writes from now on (KVM_MEM_LOG_DIRTY_PAGES);
   * incremental snapshots save those. Throws when the host refuses.
   */
  startDirtyLog?(): void;
  /**
   * Optional (KVM): the pages the guest wrote since the last call or startDirtyLog(), one bit per
   * 4 KiB page for each RAM region in `memory.regions` order; only while no vCPU runs.
   */
  takeDirtyLog?(): BigUint64Array[];
  /** Releases what it holds (KVM file descriptors, or the soft backend's state); vm.close() calls it. */
  close(): void;
}

// The soft vCPU: a small VT-x hypervisor. It owns a VMCS on its own logical processor, enters the
// guest with VMLAUNCH/VMRESUME, reads every exit back with VMREAD, emulates what it can (CPUID,
// MSRs, CR accesses, interrupt windows) and turns the rest into the VmExit union the loop handles.

import {
  type ControlState,
  CR4_OFFERED,
  cr0Fault,
  cr0Stored,
  cr4Fault,
  eferFault,
  eferStored,
  Interpreter,
  patValid,
} from "../../../cpu/index.js";
import type { Clock } from "../../../devices/device.js";
import type { RawExit, VmExit } from "../../../types/exits.js";
import {
  Activity,
  EntryCtl,
  ExitReason,
  F,
  type HostMemory,
  LogicalProcessor,
  PREEMPTION_TIMER_RATE,
  Proc,
  VMCS_REVISION_ID,
} from "../../../vmx/index.js";
import type { ApicMsrAccess, CpuSignal, InterruptController, VcpuBackend } from "../../backend.js";

type SoftRaw = Extract<RawExit, { backend: "soft" }>;

import { CR4_PKE } from "../../../cpu/control-checks.js";
import { translateData } from "../../../cpu/data-translate.js";
import type { Regs, SpecialRegs } from "../../../types/regs.js";
import type { SharedChunk } from "../../../vmx/host-memory.js";
import type { GuestMemory } from "../../memory.js";
import { answerCpuid, CPU_SIGNATURE, TSC_HZ } from "./cpuid.js";
import { readRegs, readSregs, writeRegs, writeSregs } from "./regs.js";
import {
  type ArchVcpuState,
  applySoftVcpu,
  captureSoftVcpu,
  type SoftSavedState,
  type SoftVcpuState,
} from "./saved-state.js";
import { createTaskEmulator, emulateTaskSwitch } from "./task-switch.js";
import { arriveContext, departContext, keptForArrival, type SoftVcpuContext } from "./vcpu-context.js";
import {
  CR0_OWNED,
  CR4_OWNED,
  writeControls,
  writeHostState,
  writeInitGuest,
  writeResetGuest,
  writeSipiStart,
} from "./vmcs-setup.js";

const BP_VECTOR = 3;
/** VM-entry interruption information: valid, software exception (type 6), vector 3 */
const INJECT_BP = (0x80000000 | (6 << 8) | BP_VECTOR) >>> 0;

// the preemption timer's rate as IA32_VMX_MISC[4:0] reports it
const TIMER_RATE = PREEMPTION_TIMER_RATE;
const MAX_TIMER = 0xffffffff;
/**
 * Longest time one run() stays in the guest without an entry deadline: the host timer's interrupt
 * (an external-interrupt exit) ends it, so the caller regains control whatever the guest does.
 */
const MAX_ENTRY_MS = 50;

type Completion =
  | { kind: "io-in"; size: number; data: Uint8Array; length: number }
  | { kind: "string-io"; finish: () => void }
  /** a string I/O element whose memory operand is MMIO: its second exit comes from this */
  | { kind: "string-mmio"; next: () => VmExit }
  | { kind: "mmio-read"; gpa: number; size: number; data: Uint8Array }
  | { kind: "mmio-write"; gpa: number; size: number }
  | { kind: "hypercall"; exit: { ret: bigint }; length: number };

/** MSRs the interpreter keeps outside the VMCS (SYSCALL, KERNEL_GS_BASE, TSC_AUX, APIC base) */
const MIGRATED_MSRS = [0x1b, 0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, 0xc0000102, 0xc0000103];
const APIC_BASE_MSR = 0x1b;
/** IA32_APIC_BASE at reset: the xAPIC enabled at FEE00000, bit 8 (BSP) on the bootstrap processor only */
const APIC_BASE_AP = 0xfee00800n;
const APIC_BASE_BSP = APIC_BASE_AP | 0x100n;
/** IA32_APIC_BASE.EXTD (x2APIC mode) and EN (global enable) */
const APIC_EXTD = 0x400n;
const APIC_EN = 0x800n;
const TSC_MSR = 0x10;
const TSC_DEADLINE_MSR = 0x6e0;
/** the x2APIC registers' MSRs the CPU hands to its local APIC */
const X2APIC_FIRST = 0x800;
const X2APIC_LAST = 0x8ff;
/** APIC MSR writes after which the timer's next deadline or another CPU's IRR may have moved */
const APIC_WAKE_MSRS = new Set([TSC_DEADLINE_MSR, 0x830, 0x832, 0x838, 0x83e, 0x83f]);

const isApicMsr = (index: number): boolean =>
  index === TSC_DEADLINE_MSR || (index >= X2APIC_FIRST && index <= X2APIC_LAST);

/**
 * Sets the MSR bitmap bits (read and write) of IA32_APIC_BASE, IA32_TSC_DEADLINE and the x2APIC
 * range: they exit to this host, which hands them to the vCPU's local APIC (the interpreter has no
 * APIC). The bitmap is shared by every vCPU: setting the bits again is harmless.
 */
function exitOnApicMsrs(memory: HostMemory, bitmap: number): void {
  const set = (msr: number) => {
    for (const half of [0, 0x800]) {
      const at = bitmap + half + (msr >> 3);
      memory.writeU8(at, memory.readU8(at) | (1 << (msr & 7)));
    }
  };
  set(APIC_BASE_MSR);
  set(TSC_DEADLINE_MSR);
  for (let msr = X2APIC_FIRST; msr <= X2APIC_LAST; msr++) set(msr);
}

export interface SoftVcpuShared {
  memory: HostMemory;
  /** the EPT the VMCS points at (built by the backend; a vCPU thread has only its pointer) */
  ept: { readonly eptp: bigint };
  ioBitmapA: number;
  ioBitmapB: number;
  msrBitmap: number;
  interrupts: InterruptController | undefined;
  guestMemory: GuestMemory;
  /** what guest time follows once the machine gives its clock (see useClock) */
  clock?: Clock;
  /** CPUs in the machine (the topology CPUID states) */
  vcpus: number;
  /** each vCPU runs in a thread of its own (no turns to give up on a PAUSE loop) */
  ownThreads?: boolean;
  /**
   * An MMIO read this vCPU's thread answers itself (a vCPU thread's local APIC registers, from the
   * copy the machine's thread keeps): the value, or undefined to exit to the machine as usual
   */
  localMmioRead?: (gpa: number, size: number) => number | undefined;
  /** An MMIO write this vCPU's thread takes itself (an EOI it posts): true when taken */
  localMmioWrite?: (gpa: number, size: number, value: number) => boolean;
  /**
   * For vCPU `vcpu`, a number that moves whenever anything but its own interpreter may have written
   * guest memory since it last ran (LogicalProcessorOptions.memoryGeneration); absent, its cached
   * code is re-checked at every VM entry (vCPU threads, whose host writes other threads make)
   */
  memoryGeneration?: (vcpu: number) => number;
}

/** Where a SoftVcpu's VMX regions are, and the state it arrives with from another thread. */
export interface SoftVcpuPlacement {
  /** where kicks are latched (shared with the thread that kicks this vCPU) */
  kickWord?: Int32Array;
  /** the VMCS region (else one is allocated): in memory every thread that may run the vCPU maps */
  vmcs?: number;
  /** this logical processor's VMXON region (else one is allocated) */
  vmxon?: number;
  /** the vCPU comes from another thread's processor (SoftVcpu.depart there): its VMCS is `vmcs` as it left it */
  context?: SoftVcpuContext;
  /**
   * With `context`: the interpreter this thread kept of this vCPU when it last left this thread
   * (thread-worker.ts), whose cached blocks serve again; its state is replaced (keptForArrival)
   */
  interpreter?: Interpreter;
}

export class SoftVcpu implements VcpuBackend {
  lp: LogicalProcessor;
  readonly vmcs: number;
  #launched = false;
  #completion: Completion | undefined;
  /** an exit to report at the next run() without entering the guest (string I/O on MMIO) */
  #pendingExit: VmExit | undefined;
  /** the guest spun on PAUSE (see takeYield) */
  #yielded = false;
  /** work count (instructions retired + events delivered) at which run() returns "intr" */
  #budgetEnd: number | undefined;
  /** REP INS/OUTS iterations this host completed for the guest (#stringIo) */
  #hostIterations = 0;
  /** what #work() adds so that the count goes on from where it was on the processor the vCPU left */
  #workBase = 0;
  /** performance.now() time by which run() returns "intr" */
  #deadline: number | undefined;
  #closed = false;
  #lastRaw: SoftRaw | undefined;
  /** the interpreter that emulates task switches (created at the first one) */
  #taskEmulator: Interpreter | undefined;
  /** the interrupt controller as this CPU sees it (its own local APIC with SMP) */
  readonly #irq: InterruptController | undefined;
  /** run() is in progress (a signal then kicks it so that the event is taken promptly) */
  #running = false;
  /** this CPU's local APIC as its MSRs reach it (x2APIC, TSC-deadline), when the machine has one */
  readonly #apic: ApicMsrAccess | undefined;

  /** where kicks are latched: shared with the thread that kicks this vCPU when it runs in a worker */
  readonly #kickWord: Int32Array;

  constructor(
    readonly index: number,
    readonly shared: SoftVcpuShared,
    opts: SoftVcpuPlacement = {},
  ) {
    const mem = shared.memory;
    this.#irq = shared.interrupts?.forCpu?.(index) ?? shared.interrupts;
    this.#apic = this.#irq?.apicMsrs;
    this.#kickWord = opts.kickWord ?? new Int32Array(1);
    const arriving = opts.context;
    this.lp = new LogicalProcessor({
      memory: mem,
      cpu: arriving && opts.interpreter ? keptForArrival(opts.interpreter) : new Interpreter(),
      id: index,
      kickWord: this.#kickWord,
      memoryGeneration: this.#memoryGeneration(),
    });
    const vmxon = opts.vmxon ?? mem.allocatePage();
    mem.writeU32(vmxon, VMCS_REVISION_ID);
    this.vmcs = opts.vmcs ?? mem.allocatePage();
    this.lp.vmxon(vmxon);
    if (this.#apic) {
      exitOnApicMsrs(mem, shared.msrBitmap);
      this.#apic.tsc = { read: () => this.#cpu.getMsr(TSC_MSR) ?? 0n, hz: TSC_HZ };
    }
    if (arriving) {
      // a vCPU that left another thread's processor (VMCLEAR there): VMPTRLD here, VMLAUNCH next
      arriveContext(this.lp, arriving);
      this.#lastRaw = arriving.host.lastRaw;
      this.#hostIterations = arriving.host.hostIterations;
      this.#workBase = arriving.host.work - this.lp.cpu.work() - this.#hostIterations;
      if (shared.clock) this.useClock(shared.clock);
      return;
    }
    mem.writeU32(this.vmcs, VMCS_REVISION_ID);
    this.lp.vmclear(this.vmcs);
    this.lp.vmptrld(this.vmcs);
    writeControls(this.lp, { ...shared, eptp: shared.ept.eptp });
    writeHostState(this.lp);
    if (shared.clock) this.useClock(shared.clock);
    writeResetGuest(this.lp);
    this.lp.cpu.setGpr(2, 0x600n);
    this.lp.cpu.setMsr(APIC_BASE_MSR, index === 0 ? APIC_BASE_BSP : APIC_BASE_AP);
    // application processors start in the INIT state, waiting for SIPI, as a PC's do
    if (index > 0) this.#enterInitState();
  }

  get #cpu() {
    return this.lp.cpu;
  }

  /** this vCPU's view of SoftVcpuShared.memoryGeneration, for its logical processor */
  #memoryGeneration(): (() => number) | undefined {
    const generation = this.shared.memoryGeneration;
    const index = this.index;
    return generation && (() => generation(index));
  }

  /** what budgets count: instructions retired, exceptions/interrupts delivered, REP iterations */
  #work(): number {
    return this.lp.cpu.work() + this.#hostIterations + this.#workBase;
  }

  #raw(): SoftRaw {
    const lp = this.lp;
    const field = lp.vmreadNumber(F.VM_EXIT_REASON);
    return {
      backend: "soft",
      reason: field & 0xffff,
      exitReasonField: field,
      qualification: lp.vmread(F.EXIT_QUALIFICATION),
      instructionLength: lp.vmreadNumber(F.VM_EXIT_INSTRUCTION_LEN),
    };
  }

  #advance(length: number): void {
    const lp = this.lp;
    // this host completed the instruction: MMIO accesses it made are not to be replayed
    lp.mmioReplay.drop();
    // numbers while RIP + length stays below 2^53 (always outside 64-bit mode), BigInts above
    const rip = lp.vmreadNumber(F.GUEST_RIP);
    const next = rip + length;
    if (next > 0xffffffff && next <= Number.MAX_SAFE_INTEGER && this.#pastEnd(next)) return;
    if (next <= Number.MAX_SAFE_INTEGER) lp.vmwrite(F.GUEST_RIP, next);
    else lp.vmwrite(F.GUEST_RIP, lp.vmread(F.GUEST_RIP) + BigInt(length));
    // an emulated instruction ends any STI/MOV-SS shadow
    lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, lp.vmreadNumber(F.GUEST_INTERRUPTIBILITY_INFO) & ~3);
  }

  /**
   * An emulated instruction that ends past 4 GiB: outside 64-bit mode EIP wraps to 0; in 64-bit
   * mode, at the top of the canonical range, the next fetch is #GP(0), which is raised now at the
   * instruction (the VMCS cannot hold the non-canonical RIP the fault would otherwise report).
   * True when handled here.
   */
  #pastEnd(next: number): boolean {
    const lp = this.lp;
    const mode64 =
      (lp.vmreadNumber(F.GUEST_IA32_EFER) & 0x400) !== 0 &&
      (lp.vmreadNumber(F.GUEST_CS_AR_BYTES) & 0x2000) !== 0;
    if (mode64) {
      if (next < 0x800000000000) return false;
      this.#injectGp();
      return true;
    }
    lp.vmwrite(F.GUEST_RIP, next % 2 ** 32);
    lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, lp.vmreadNumber(F.GUEST_INTERRUPTIBILITY_INFO) & ~3);
    return true;
  }

  #setGprSized(index: number, size: number, value: bigint): void {
    const cpu = this.#cpu;
    if (size === 4) cpu.setGpr(index, value & 0xffffffffn);
    else {
      const mask = (1n << BigInt(size * 8)) - 1n;
      cpu.setGpr(index, (cpu.getGpr(index) & ~mask) | (value & mask));
    }
  }

  #complete(): void {
    const c = this.#completion;
    this.#completion = undefined;
    if (!c) return;
    switch (c.kind) {
      case "io-in": {
        let v = 0n;
        for (let i = c.size - 1; i >= 0; i--) v = (v << 8n) | BigInt(c.data[i]!);
        this.#setGprSized(0, c.size, v);
        this.#advance(c.length);
        break;
      }
      case "hypercall":
        this.#cpu.setGpr(0, BigInt.asUintN(64, c.exit.ret));
        this.#advance(c.length);
        break;
      case "mmio-read": {
        let lo = 0;
        let hi = 0;
        for (let i = 0; i < Math.min(4, c.size); i++) lo |= c.data[i]! << (i * 8);
        for (let i = 4; i < c.size; i++) hi |= c.data[i]! << ((i - 4) * 8);
        // the halves apart: all 64 bits of an 8-byte read reach the guest
        this.lp.completeMmio({ gpa: c.gpa, size: c.size, write: false, value: lo >>> 0, hi: hi >>> 0 });
        break;
      }
      case "mmio-write":
        this.lp.completeMmio({ gpa: c.gpa, size: c.size, write: true, value: 0 });
        break;
      case "string-io":
        c.finish();
        break;
      case "string-mmio":
        this.#pendingExit = c.next();
        break;
    }
  }

  #interruptible(): boolean {
    const lp = this.lp;
    return (
      (lp.vmreadNumber(F.GUEST_RFLAGS) & 0x200) !== 0 &&
      (lp.vmreadNumber(F.GUEST_INTERRUPTIBILITY_INFO) & 3) === 0
    );
  }

  /** injects a pending PIC interrupt, or asks for an interrupt window when the guest cannot take it */
  #injectInterrupts(): void {
    const lp = this.lp;
    const pic = this.#irq;
    // a 32-bit control: plain numbers (>>> 0 keeps them unsigned)
    const proc = lp.vmreadNumber(F.CPU_BASED_VM_EXEC_CONTROL);
    const window = Proc.INTERRUPT_WINDOW;
    if (
      !pic?.hasInterrupt() ||
      lp.vmreadNumber(F.VM_ENTRY_INTR_INFO_FIELD) >>> 31 ||
      // waiting for SIPI blocks external interrupts: nothing to inject, no window to open
      lp.vmreadNumber(F.GUEST_ACTIVITY_STATE) === Activity.WaitForSipi
    ) {
      if (proc & window) lp.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, (proc & ~window) >>> 0);
      return;
    }
    // an instruction with MMIO accesses this host completed runs to its end first: the interrupt
    // window opens after it (NonRootOperation.boundary), as KVM completes it before injecting
    const replay = lp.mmioReplay;
    const midInstruction = replay.done.length !== 0 && replay.pending(lp.cpu.work(), lp.vmread(F.GUEST_RIP));
    if (this.#interruptible() && lp.vmreadNumber(F.GUEST_ACTIVITY_STATE) !== 2 && !midInstruction) {
      lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, (0x80000000 | (pic.acknowledge() & 0xff)) >>> 0);
      lp.vmwrite(F.GUEST_ACTIVITY_STATE, 0);
      if (proc & window) lp.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, (proc & ~window) >>> 0);
    } else if (!(proc & window)) {
      lp.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, (proc | window) >>> 0);
    }
  }

  #injectGp(): void {
    this.#injectException(13, 0);
  }

  /** a hardware exception through the entry interruption-information field */
  #injectException(vector: number, errorCode?: number): void {
    // real mode (unrestricted guest, CR0.PE=0) delivers no error codes
    const withCode = errorCode !== undefined && (this.lp.vmread(F.GUEST_CR0) & 1n) === 1n;
    this.lp.vmwrite(
      F.VM_ENTRY_INTR_INFO_FIELD,
      (0x80000000 | (3 << 8) | vector | (withCode ? 1 << 11 : 0)) >>> 0,
    );
    if (withCode) this.lp.vmwrite(F.VM_ENTRY_EXCEPTION_ERROR_CODE, errorCode);
  }

  run(): VmExit {
    if (this.#closed) throw new Error("vCPU is closed");
    this.#running = true;
    try {
      return this.#run();
    } finally {
      this.#running = false;
    }
  }

  #run(): VmExit {
    this.#complete();
    // the second half of a string I/O element on MMIO reaches the loop before the guest runs on
    const pending = this.#pendingExit;
    if (pending) {
      this.#pendingExit = undefined;
      return pending;
    }
    // the host timer bounds this whole call, exits handled here included (a guest that loops on
    // CPUID or faults never reaches the caller otherwise)
    // (a deadline of Infinity: no host-time bound at all, for deterministic runs, which bound
    // every entry by an instruction budget instead)
    this.lp.hostTimerAt =
      this.#deadline === Number.POSITIVE_INFINITY
        ? Number.POSITIVE_INFINITY
        : Math.min(this.#deadline ?? Number.POSITIVE_INFINITY, performance.now() + MAX_ENTRY_MS);
    for (;;) {
      const lp = this.lp;
      this.#injectInterrupts();
      if (lp.vmreadNumber(F.GUEST_ACTIVITY_STATE) === Activity.Hlt && this.#lastRaw && !this.#wakeEvent()) {
        // still halted with nothing to inject: report HLT again and let the loop wait for an event
        if (lp.hostKick) {
          lp.hostKick = false;
          return { kind: "intr", raw: this.#lastRaw };
        }
        return { kind: "hlt", raw: this.#lastRaw };
      }
      let timer = MAX_TIMER;
      if (this.#budgetEnd !== undefined) {
        const left = this.#budgetEnd - this.#work();
        if (left <= 0) return { kind: "intr", raw: this.#lastRaw ?? this.#raw() };
        timer = Math.min(MAX_TIMER, Math.ceil(left / 2 ** TIMER_RATE));
      }
      lp.vmwrite(F.VMX_PREEMPTION_TIMER_VALUE, timer);
      const field = this.#launched ? lp.vmresume() : lp.vmlaunch();
      if (!(field & 0x80000000)) {
        this.#launched = true;
        this.#reinjectVectoring();
      }
      const exit = this.#handle(field);
      if (exit) return exit;
    }
  }

  /** An exit that interrupted an event's delivery: the event is delivered again on the next entry. */
  #reinjectVectoring(): void {
    const lp = this.lp;
    const info = lp.vmreadNumber(F.IDT_VECTORING_INFO_FIELD);
    if (!(info & 0x80000000)) return;
    lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, (info & 0x80000fff) >>> 0);
    if (info & (1 << 11)) lp.vmwrite(F.VM_ENTRY_EXCEPTION_ERROR_CODE, lp.vmread(F.IDT_VECTORING_ERROR_CODE));
    lp.vmwrite(F.VM_ENTRY_INSTRUCTION_LEN, lp.vmread(F.VM_EXIT_INSTRUCTION_LEN));
  }

  /** Emulates or surfaces one exit; undefined = handled here, re-enter. */
  #handle(field: number): VmExit | undefined {
    const lp = this.lp;
    const raw = this.#raw();
    if (field & 0x80000000) return { kind: "fail-entry", reason: field >>> 0, raw };
    const q = raw.qualification;
    const len = raw.instructionLength;
    switch (raw.reason) {
      case ExitReason.Io: {
        // the I/O qualification fits 32 bits
        const qn = Number(q);
        const size = ((qn & 7) + 1) as 1 | 2 | 4;
        const input = (qn & 8) !== 0;
        const port = (qn >>> 16) & 0xffff;
        if (qn & 16) return this.#stringIo(raw, port, size, input, (qn & 32) !== 0, len);
        const data = new Uint8Array(size);
        if (input) {
          this.#completion = { kind: "io-in", size, data, length: len };
        } else {
          // bits 31:0 of RAX: size is at most 4
          const eax = Number(this.#cpu.getGpr(0) & 0xffffffffn);
          for (let i = 0; i < size; i++) data[i] = (eax >>> (i * 8)) & 0xff;
          // as on KVM, an OUT is complete when it reaches the loop: RIP is already past it
          this.#advance(len);
        }
        return { kind: "io", direction: input ? "in" : "out", port, size, count: 1, data, raw };
      }
      case ExitReason.EptViolation: {
        const access = lp.mmioAccess;
        lp.mmioAccess = undefined;
        if (!access) {
          // what KVM does with a fetch from guest-physical memory it has no memslot for: it cannot
          // emulate the instruction and stops with an emulation failure (test/kvm/outside-ram.test.ts)
          const gpa = lp.vmread(F.GUEST_PHYSICAL_ADDRESS);
          const what = (q & 4n) !== 0n ? "instruction fetch from" : "paging-structure read the EPT denies at";
          return {
            kind: "internal-error",
            suberror: 1,
            data: [gpa, q],
            message: `emulation failure: ${what} guest-physical 0x${gpa.toString(16)}, where there is no RAM or ROM`,
            raw,
          };
        }
        if (!access.write && this.shared.localMmioRead) {
          const value = this.shared.localMmioRead(access.gpa, access.size);
          if (value !== undefined) {
            // completed here as the machine would complete it; the instruction runs again with it
            lp.completeMmio({ gpa: access.gpa, size: access.size, write: false, value: value >>> 0, hi: 0 });
            return undefined;
          }
        }
        if (access.write && this.shared.localMmioWrite?.(access.gpa, access.size, access.lo)) {
          lp.completeMmio({ gpa: access.gpa, size: access.size, write: true, value: 0 });
          return undefined;
        }
        const data = new Uint8Array(access.size);
        if (access.write) {
          for (let i = 0; i < access.size; i++) {
            data[i] = i < 4 ? (access.lo >>> (i * 8)) & 0xff : (access.hi >>> ((i - 4) * 8)) & 0xff;
          }
          this.#completion = { kind: "mmio-write", gpa: access.gpa, size: access.size };
        } else {
          this.#completion = { kind: "mmio-read", gpa: access.gpa, size: access.size, data };
        }
        return { kind: "mmio", address: access.gpa, length: access.size, write: access.write, data, raw };
      }
      case ExitReason.Pause:
        // PAUSE-loop exiting (several vCPUs): the guest spin-waits for another vCPU; the PAUSE is
        // done, and the loop gives that one its turn
        this.#advance(len);
        this.#yielded = true;
        return { kind: "intr", raw };
      case ExitReason.Hlt:
        // the host completes HLT: past it, in the HLT activity state until an interrupt wakes it
        this.#advance(len);
        lp.vmwrite(F.GUEST_ACTIVITY_STATE, 1);
        this.#lastRaw = raw;
        return { kind: "hlt", raw };
      case ExitReason.Cpuid: {
        const cpu = this.#cpu;
        const leaf = Number(cpu.getGpr(0) & 0xffffffffn);
        const sub = Number(cpu.getGpr(1) & 0xffffffffn);
        const [a, b, c, d] = answerCpuid(
          leaf,
          sub,
          this.index,
          this.shared.vcpus,
          this.#lapic() !== undefined,
          this.lp.vmreadNumber(F.GUEST_CR4),
        );
        cpu.setGpr(0, BigInt(a >>> 0));
        cpu.setGpr(3, BigInt(b >>> 0));
        cpu.setGpr(1, BigInt(c >>> 0));
        cpu.setGpr(2, BigInt(d >>> 0));
        this.#advance(len);
        return undefined;
      }
      case ExitReason.Rdmsr: {
        const cpu = this.#cpu;
        const index = Number(cpu.getGpr(1) & 0xffffffffn);
        const v = this.#readMsr(index);
        if (v === undefined) this.#injectGp();
        else {
          cpu.setGpr(0, v & 0xffffffffn);
          cpu.setGpr(2, (v >> 32n) & 0xffffffffn);
          this.#advance(len);
        }
        return undefined;
      }
      case ExitReason.Wrmsr: {
        const cpu = this.#cpu;
        const index = Number(cpu.getGpr(1) & 0xffffffffn);
        const v = ((cpu.getGpr(2) & 0xffffffffn) << 32n) | (cpu.getGpr(0) & 0xffffffffn);
        if (!this.#writeMsr(index, v)) {
          this.#injectGp();
          return undefined;
        }
        this.#advance(len);
        // a timer reprogrammed or an IPI sent: the loop looks at device deadlines and the other
        // vCPUs again, as after the xAPIC page's MMIO exits
        return APIC_WAKE_MSRS.has(index) && this.#lapic() ? { kind: "intr", raw } : undefined;
      }
      case ExitReason.Vmcall: {
        const cpu = this.#cpu;
        const exit = {
          kind: "hypercall" as const,
          nr: cpu.getGpr(0),
          args: [3, 1, 2, 6].map((i) => cpu.getGpr(i)),
          ret: 0n,
          raw,
        };
        this.#completion = { kind: "hypercall", exit, length: len };
        return exit;
      }
      case ExitReason.CrAccess:
        return this.#crAccess(raw, q, len);
      case ExitReason.TaskSwitch:
        this.#taskEmulator ??= createTaskEmulator(this.shared.memory, this.shared.ept.eptp);
        return this.#taskSwitch(raw);
      case ExitReason.InterruptWindow:
        return undefined;
      case ExitReason.PreemptionTimer:
      case ExitReason.ExternalInterrupt:
        // the budget ran out, or the host's timer or a kick interrupted the guest
        return { kind: "intr", raw };
      case ExitReason.TripleFault:
        return { kind: "shutdown", raw };
      case ExitReason.Init:
        // the guest's INIT: this host resets the vCPU to the INIT state; an AP waits for SIPI (the
        // next entry takes a SIPI already pending, else returns "intr"), the BSP runs on
        this.#enterInitState();
        return undefined;
      case ExitReason.Sipi:
        writeSipiStart(lp, Number(q & 0xffn));
        return undefined;
      case ExitReason.Invd:
        // caches are not modelled: INVD completes as a no-op, as KVM emulates it
        this.#advance(len);
        return undefined;
      case ExitReason.Xsetbv:
      case ExitReason.Getsec:
      case ExitReason.Vmclear:
      case ExitReason.Vmlaunch:
      case ExitReason.Vmptrld:
      case ExitReason.Vmptrst:
      case ExitReason.Vmread:
      case ExitReason.Vmresume:
      case ExitReason.Vmwrite:
      case ExitReason.Vmxoff:
      case ExitReason.Vmxon:
      case ExitReason.Invept:
      case ExitReason.Invvpid:
      case ExitReason.Vmfunc:
        // the virtual CPU advertises neither XSAVE, SMX nor VMX: these are undefined opcodes
        this.#injectException(6);
        return undefined;
      default:
        return { kind: "unknown", code: raw.reason, raw };
    }
  }

  /** an INIT, or an NMI the guest does not block, ends a halt (interrupts: #injectInterrupts) */
  #wakeEvent(): boolean {
    const lp = this.lp;
    return lp.initPending || (lp.nmiPending && (lp.vmreadNumber(F.GUEST_INTERRUPTIBILITY_INFO) & 8) === 0);
  }

  /**
   * The INIT state (at an INIT exit, and for an application processor from the start): the VMCS
   * fields by VMWRITE (writeInitGuest: real mode at F000:FFF0, waiting for SIPI unless this is the
   * bootstrap processor, IA32_APIC_BASE bit 8, which runs from there), the registers
   * outside the VMCS here: general registers 0 but EDX = the processor signature, CR2 = 0,
   * DR0-DR3 = 0, DR6 = FFFF0FF0. x87/SSE, PAT, MTRRs, the TSC and IA32_APIC_BASE stay, as INIT
   * leaves them (SDM vol. 3 table 9-1); the local APIC resets itself (10.4.7.3). A pending NMI
   * goes, as KVM's INIT reset drops it, and so does an instruction left half done.
   */
  #enterInitState(): void {
    const lp = this.lp;
    const cpu = lp.cpu;
    writeInitGuest(lp, ((cpu.getMsr(APIC_BASE_MSR) ?? 0n) & 0x100n) !== 0n);
    for (let i = 0; i < 16; i++) cpu.setGpr(i, 0n);
    cpu.setGpr(2, BigInt(CPU_SIGNATURE));
    cpu.setControl("cr2", 0n);
    cpu.setControl("cr8", 0n);
    cpu.setControl("dr6", 0xffff0ff0n);
    (cpu as { dr?: Float64Array }).dr?.fill(0, 0, 4);
    lp.nmiPending = false;
    lp.mmioReplay.drop();
    this.#completion = undefined;
    this.#pendingExit = undefined;
    this.#lastRaw = undefined;
  }

  /**
   * INIT, SIPI (vector: its 8 bits) or NMI from the APIC bus, latched on this vCPU's logical
   * processor; the VM entry takes them (exits 3 and 4, NMI delivery). A SIPI reaches only a vCPU
   * waiting for SIPI (or one with an INIT pending, which will be): any other drops it as it
   * arrives, as the active and HLT states block SIPIs (SDM 26.6.2).
   */
  signal(kind: CpuSignal, vector?: number): void {
    const lp = this.lp;
    switch (kind) {
      case "init":
        lp.postInit();
        break;
      case "nmi":
        lp.nmiPending = true;
        break;
      case "sipi":
        if (vector === undefined || !Number.isInteger(vector) || vector < 0 || vector > 0xff) {
          throw new RangeError(`SIPI vector must be an integer 0..255, got ${vector}`);
        }
        if (lp.initPending || lp.vmreadNumber(F.GUEST_ACTIVITY_STATE) === Activity.WaitForSipi)
          lp.postSipi(vector);
        break;
      default:
        throw new RangeError(`unknown CPU signal ${String(kind)}`);
    }
    if (this.#running) this.kick();
  }

  /**
   * False while waiting for SIPI with none pending, or halted with nothing it would take: no
   * INIT, no NMI it does not block, no event to inject, no interrupt from its controller with
   * IF=1 and no interrupt shadow.
   */
  /** whether the last exit was a PAUSE loop: the guest waits for another vCPU (reading clears it) */
  takeYield(): boolean {
    const y = this.#yielded;
    this.#yielded = false;
    return y;
  }

  /**
   * Held by a debugger (lib/vmm/debug-soft.ts) while another vCPU steps: not runnable, whatever
   * its state, so the loop's turns pass it by.
   */
  held = false;

  runnable(): boolean {
    if (this.held) return false;
    const lp = this.lp;
    switch (lp.vmreadNumber(F.GUEST_ACTIVITY_STATE)) {
      case Activity.WaitForSipi:
        return lp.sipiVector >= 0;
      case Activity.Hlt:
        return (
          this.#wakeEvent() ||
          lp.vmreadNumber(F.VM_ENTRY_INTR_INFO_FIELD) >>> 31 === 1 ||
          (this.#irq?.hasInterrupt() === true && this.#interruptible())
        );
      default:
        return true;
    }
  }

  /**
   * The local APIC behind this CPU's APIC MSRs, once it is on the machine (a machine without
   * platform devices has the controllers but never attaches them: no x2APIC, no TSC-deadline).
   */
  #lapic(): ApicMsrAccess | undefined {
    const apic = this.#apic;
    return apic?.attached ? apic : undefined;
  }

  /** MSRs kept in the VMCS guest-state area are read there (the VMCS is the guest's truth). */
  #readMsr(index: number): bigint | undefined {
    const lp = this.lp;
    switch (index) {
      case 0xc0000080:
        return lp.vmread(F.GUEST_IA32_EFER);
      case 0x277:
        return lp.vmread(F.GUEST_IA32_PAT);
      case 0x3a:
        return 1n; // IA32_FEATURE_CONTROL locked with VMX disabled: the guest sees no VMX
    }
    if (index >= 0x480 && index <= 0x491) return undefined;
    const apic = this.#lapic();
    if (apic) {
      if (isApicMsr(index)) return apic.readMsr(index);
      // EXTD is the APIC's mode; the interpreter keeps the rest of IA32_APIC_BASE
      if (index === APIC_BASE_MSR && apic.x2apic) return (this.#cpu.getMsr(index) ?? 0n) | APIC_EXTD;
    }
    return this.#cpu.getMsr(index);
  }

  /**
   * IA32_APIC_BASE with a local APIC that has x2APIC mode: EN=0 with EXTD=1 is invalid, and a guest
   * may not go from x2APIC to xAPIC mode nor from disabled to x2APIC (SDM vol. 3 10.12.5, #GP); the
   * host may, as KVM lets user space. The interpreter checks the other bits (base, reserved).
   */
  #writeApicBase(apic: ApicMsrAccess, v: bigint, host: boolean): boolean {
    const extd = (v & APIC_EXTD) !== 0n;
    const en = (v & APIC_EN) !== 0n;
    if (extd && !en) return false;
    if (!host) {
      const wasEn = ((this.#cpu.getMsr(APIC_BASE_MSR) ?? 0n) & APIC_EN) !== 0n;
      if (apic.x2apic && en && !extd) return false;
      if (!wasEn && extd) return false;
    }
    if (!this.#cpu.setMsr(APIC_BASE_MSR, v & ~APIC_EXTD)) return false;
    apic.setX2apic(extd);
    return true;
  }

  #writeMsr(index: number, v: bigint, host = false): boolean {
    const lp = this.lp;
    switch (index) {
      case 0xc0000080: {
        // reserved bits, LME changed while paging is on: #GP; LMA is not writable (control-checks.ts)
        const old = lp.vmreadNumber(F.GUEST_IA32_EFER);
        if (eferFault(old, v, lp.vmreadNumber(F.GUEST_CR0)) !== undefined) return false;
        lp.vmwrite(F.GUEST_IA32_EFER, eferStored(old, v));
        return true;
      }
      case 0x277:
        // a reserved memory type is #GP; stored, it would fail the next VM entry
        if (!patValid(v)) return false;
        lp.vmwrite(F.GUEST_IA32_PAT, v);
        return true;
      case 0x3a:
        return false; // IA32_FEATURE_CONTROL reads as locked (#readMsr): writes are #GP
    }
    if (index >= 0x480 && index <= 0x491) return false;
    const apic = this.#lapic();
    if (apic) {
      if (isApicMsr(index)) return apic.writeMsr(index, v);
      if (index === APIC_BASE_MSR) return this.#writeApicBase(apic, v, host);
    }
    return this.#cpu.setMsr(index, v);
  }

  /** the guest's CR0/CR4 (as it sees them), EFER and CS/TR, for the MOV to CRn rules */
  #controlState(): ControlState {
    const lp = this.lp;
    const view = (actual: number, shadow: number, mask: bigint) =>
      Number((lp.vmread(actual) & ~mask) | (lp.vmread(shadow) & mask));
    const trType = lp.vmreadNumber(F.GUEST_TR_AR_BYTES) & 0xf;
    return {
      cr0: view(F.GUEST_CR0, F.CR0_READ_SHADOW, CR0_OWNED),
      cr3Low: lp.vmreadNumber(F.GUEST_CR3) % 4096,
      cr4: view(F.GUEST_CR4, F.CR4_READ_SHADOW, CR4_OWNED),
      efer: lp.vmreadNumber(F.GUEST_IA32_EFER),
      csL: (lp.vmreadNumber(F.GUEST_CS_AR_BYTES) & 0x2000) !== 0,
      tr16: trType === 1 || trType === 3,
    };
  }

  /** MOV to CR0/CR4 that touched a host-owned bit (NE, VMXE): emulate it as the guest asked. */
  #crAccess(raw: SoftRaw, q: bigint, len: number): VmExit | undefined {
    const lp = this.lp;
    const cr = Number(q & 0xfn);
    const type = Number((q >> 4n) & 3n);
    const gpr = Number((q >> 8n) & 0xfn);
    const source = (): bigint => (gpr === 4 ? lp.vmread(F.GUEST_RSP) : this.#cpu.getGpr(gpr));
    if (type === 0 && cr === 0) {
      const full = source();
      const old = lp.vmread(F.GUEST_CR0);
      const efer = lp.vmread(F.GUEST_IA32_EFER);
      // what MOV to CR0 faults on (#GP(0)) is what the interpreter checks (control-checks.ts);
      // written as asked, the next VM entry would fail instead
      const lo = Number(full & 0xffffffffn);
      if (cr0Fault(this.#controlState(), lo, Number(full >> 32n)) !== undefined) {
        this.#injectGp();
        return undefined;
      }
      const value = BigInt(cr0Stored(lo));
      const pgOn = (value & 0x80000000n) !== 0n;
      lp.vmwrite(F.CR0_READ_SHADOW, value);
      lp.vmwrite(F.GUEST_CR0, value | CR0_OWNED);
      if (pgOn !== ((old & 0x80000000n) !== 0n) && efer & 0x100n) {
        const entry = lp.vmread(F.VM_ENTRY_CONTROLS);
        const ia32e = BigInt(EntryCtl.IA32E_MODE);
        lp.vmwrite(F.GUEST_IA32_EFER, pgOn ? efer | 0x400n : efer & ~0x400n);
        lp.vmwrite(F.VM_ENTRY_CONTROLS, pgOn ? entry | ia32e : entry & ~ia32e);
      }
      this.#advance(len);
      return undefined;
    }
    if (type === 0 && cr === 4) {
      const value = source();
      // bits this processor lacks (VMXE too: VMX is hidden from the guest) and clearing PAE in
      // IA-32e mode are #GP(0), as on KVM; written as asked, the next VM entry would fail instead
      const lo = Number(value & 0xffffffffn);
      if (cr4Fault(this.#controlState(), lo, Number(value >> 32n), CR4_OFFERED) !== undefined) {
        this.#injectGp();
        return undefined;
      }
      lp.vmwrite(F.CR4_READ_SHADOW, value);
      lp.vmwrite(F.GUEST_CR4, value | CR4_OWNED);
      this.#advance(len);
      return undefined;
    }
    if (cr === 8 && (type === 0 || type === 1)) {
      if (type === 0) this.#setCr8(source() & 0xfn);
      else if (gpr === 4) lp.vmwrite(F.GUEST_RSP, this.#cr8());
      else this.#cpu.setGpr(gpr, this.#cr8());
      this.#advance(len);
      return undefined;
    }
    if (type === 3) {
      // LMSW: bits 3:0 of CR0 from the source (PE cannot be cleared)
      const src = (q >> 16n) & 0xfn;
      const shadow = lp.vmread(F.CR0_READ_SHADOW);
      const value = (shadow & ~0xen) | (src & 0xfn) | (shadow & 1n);
      lp.vmwrite(F.CR0_READ_SHADOW, value);
      lp.vmwrite(F.GUEST_CR0, (lp.vmread(F.GUEST_CR0) & ~0xfn) | (value & 0xfn));
      this.#advance(len);
      return undefined;
    }
    return { kind: "unknown", code: raw.reason, raw };
  }

  /**
   * INS/OUTS: the host reads or writes the memory operand itself, at the guest-linear address the
   * exit reports, with the address size from the instruction information (IA32_VMX_BASIC[54]).
   * A REP prefix moves up to a page per exit; the instruction re-executes until rCX reaches 0.
   * The exit comes before the processor touches the operand, so a page fault on it is this host's
   * to deliver (with CR2 and the error code), as a hypervisor emulating the access does.
   */
  #stringIo(
    raw: SoftRaw,
    port: number,
    size: 1 | 2 | 4,
    input: boolean,
    rep: boolean,
    len: number,
  ): VmExit | undefined {
    const lp = this.lp;
    const cpu = this.#cpu;
    const guestMemory = this.shared.guestMemory;
    const addressSize = (Number(lp.vmread(F.VMX_INSTRUCTION_INFO)) >>> 7) & 7;
    const width = addressSize === 2 ? 64n : addressSize === 1 ? 32n : 16n;
    const mask = (1n << width) - 1n;
    const down = (lp.vmread(F.GUEST_RFLAGS) & 0x400n) !== 0n;
    const indexReg = input ? 7 : 6;
    const offset = cpu.getGpr(indexReg) & mask;
    const linearRaw = lp.vmread(F.GUEST_LINEAR_ADDRESS);
    // signed: exact for every canonical address, as the page walk takes it
    const linear = Number(BigInt.asIntN(64, linearRaw));
    const rcx = cpu.getGpr(1) & mask;
    if (rep && rcx === 0n) {
      this.#advance(len);
      return this.run();
    }
    let count = 1;
    if (rep && !down) {
      const inPage = Math.floor((4096 - (((linear % 4096) + 4096) % 4096)) / size);
      count = Math.max(1, Math.min(Number(rcx < 4096n ? rcx : 4096n), inPage));
      // no more iterations than the instruction budget has left, as the interpreter's own REPs
      if (this.#budgetEnd !== undefined) count = Math.max(1, Math.min(count, this.#budgetEnd - this.#work()));
    }
    // the guest's own paging, over this host's EPT, with the checks the processor makes
    const at = this.#stringOperand(linear, size, input);
    if (at !== undefined && "errorCode" in at) {
      cpu.setControl("cr2", BigInt.asUintN(64, BigInt(at.cr2)));
      this.#injectException(14, at.errorCode);
      return undefined;
    }
    const gpa = at?.gpa;
    if (gpa !== undefined && !guestMemory.find(gpa, size)) {
      return this.#stringIoMmio(raw, port, size, input, rep, len, {
        gpa,
        indexReg,
        offset,
        width,
        down,
        rcx,
      });
    }
    const bytes = size * count;
    // an element that crosses into a page mapped elsewhere: its bytes in two places
    const split = at !== undefined && at.gpaLast !== at.gpa + size - 1 ? 4096 - (at.gpa % 4096) : 0;
    const second = split > 0 && at !== undefined ? at.gpaLast - (size - split - 1) : 0;
    if (
      gpa === undefined ||
      !guestMemory.find(gpa, split || bytes) ||
      (split > 0 && !guestMemory.find(second, size - split))
    ) {
      return {
        kind: "internal-error",
        suberror: 1,
        data: [raw.qualification, linearRaw],
        message: "string I/O operand is not in guest RAM",
        raw,
      };
    }
    const data = new Uint8Array(bytes);
    // read(), not view(): the host only reads here (no host write for the generation to count)
    if (!input && split > 0) {
      data.set(guestMemory.read(gpa, split));
      data.set(guestMemory.read(second, size - split), split);
    } else if (!input) data.set(guestMemory.read(gpa, bytes));
    const step = BigInt(bytes) * (down ? -1n : 1n);
    const finish = () => {
      if (input && split > 0) {
        guestMemory.write(gpa, data.subarray(0, split));
        guestMemory.write(second, data.subarray(split));
      } else if (input) guestMemory.write(gpa, data);
      // a 16-bit address size keeps the register's upper bits; 32-bit writes zero-extend
      const keep = width === 16n ? ~mask : 0n;
      cpu.setGpr(indexReg, (cpu.getGpr(indexReg) & keep) | ((offset + step) & mask));
      if (rep) {
        cpu.setGpr(1, (cpu.getGpr(1) & keep) | ((rcx - BigInt(count)) & mask));
        // iterations this host did are work like those the interpreter does (budgets count them)
        this.#hostIterations += count;
      }
      if (!rep || rcx === BigInt(count)) this.#advance(len);
    };
    if (input) this.#completion = { kind: "string-io", finish };
    else finish();
    return { kind: "io", direction: input ? "in" : "out", port, size, count, data, raw };
  }

  /**
   * A task switch, done by this host's emulator: it writes guest memory (the old TSS, busy bits in
   * the GDT, an error code on the new stack) behind this vCPU's interpreter, which must re-check
   * code it cached from there, as after any host write (the range is not known here: all of RAM)
   */
  #taskSwitch(raw: SoftRaw): VmExit | undefined {
    try {
      return emulateTaskSwitch(this.lp, this.#taskEmulator!, raw);
    } finally {
      const ram = this.shared.guestMemory;
      for (const r of ram.regions) ram.hostWrote(r.guestPhysAddr, r.size);
    }
  }

  /** where the string I/O operand at `linear` is, or the #PF the guest's paging raises for it */
  #stringOperand(linear: number, size: number, input: boolean): ReturnType<typeof translateData> {
    const lp = this.lp;
    const cpu = this.#cpu;
    const cr4 = Number(cpu.getControl("cr4"));
    this.#taskEmulator ??= createTaskEmulator(this.shared.memory, this.shared.ept.eptp);
    return translateData(
      this.#taskEmulator,
      {
        cr0: Number(cpu.getControl("cr0")),
        cr3: Number(cpu.getControl("cr3")),
        cr4,
        efer: Number(cpu.getControl("efer")),
        cpl: (lp.vmreadNumber(F.GUEST_SS_AR_BYTES) >>> 5) & 3,
        rflags: cpu.getRflagsNumber(),
        // PKRU matters only with CR4.PKE; copying the x87/SSE state for it costs otherwise
        pkru: cr4 & CR4_PKE ? (cpu.getExtendedState().pkru ?? 0) : 0,
      },
      linear,
      size,
      input,
    );
  }

  /**
   * One element of INS/OUTS (REP: one iteration) whose memory operand is MMIO: two exits, in the
   * order the processor makes the accesses, as KVM's emulator does. OUTS reads the device (an MMIO
   * read exit), then writes the port with what it read; INS reads the port, then writes the device.
   * The registers move when the second access reaches the loop (an OUT, an MMIO write: complete as
   * they are reported); a REP re-executes for the next element.
   */
  #stringIoMmio(
    raw: SoftRaw,
    port: number,
    size: 1 | 2 | 4,
    input: boolean,
    rep: boolean,
    len: number,
    at: { gpa: number; indexReg: number; offset: bigint; width: bigint; down: boolean; rcx: bigint },
  ): VmExit {
    const cpu = this.#cpu;
    const mask = (1n << at.width) - 1n;
    const step = () => {
      const keep = at.width === 16n ? ~mask : 0n;
      const delta = BigInt(size) * (at.down ? -1n : 1n);
      cpu.setGpr(at.indexReg, (cpu.getGpr(at.indexReg) & keep) | ((at.offset + delta) & mask));
      if (rep) {
        cpu.setGpr(1, (cpu.getGpr(1) & keep) | ((at.rcx - 1n) & mask));
        this.#hostIterations += 1;
      }
      if (!rep || at.rcx === 1n) this.#advance(len);
    };
    const data = new Uint8Array(size);
    if (input) {
      this.#completion = {
        kind: "string-mmio",
        next: () => {
          step();
          return { kind: "mmio", address: at.gpa, length: size, write: true, data, raw };
        },
      };
      return { kind: "io", direction: "in", port, size, count: 1, data, raw };
    }
    this.#completion = {
      kind: "string-mmio",
      next: () => {
        step();
        return { kind: "io", direction: "out", port, size, count: 1, data, raw };
      },
    };
    return { kind: "mmio", address: at.gpa, length: size, write: false, data, raw };
  }

  /**
   * Moves this vCPU to a fresh logical processor (with its own interpreter), the VT-x way: VMCLEAR
   * on the old one flushes the VMCS to memory, VMPTRLD on the new one binds it, and the next run()
   * uses VMLAUNCH. Registers outside the VMCS (general registers, CR2, CR8, the MSRs the interpreter
   * keeps) are moved by this host, as a hypervisor's context switch does.
   */
  migrate(): LogicalProcessor {
    const old = this.lp;
    const cpu = new Interpreter();
    const lp = new LogicalProcessor({
      memory: this.shared.memory,
      cpu,
      id: old.id,
      kickWord: this.#kickWord,
      memoryGeneration: this.#memoryGeneration(),
    });
    const vmxon = this.shared.memory.allocatePage();
    this.shared.memory.writeU32(vmxon, VMCS_REVISION_ID);
    lp.vmxon(vmxon);
    old.vmclear(this.vmcs);
    old.vmxoff();
    lp.vmptrld(this.vmcs);
    for (let i = 0; i < 16; i++) cpu.setGpr(i, old.cpu.getGpr(i));
    cpu.setControl("cr2", old.cpu.getControl("cr2"));
    cpu.setControl("cr8", old.cpu.getControl("cr8"));
    cpu.setExtendedState(old.cpu.getExtendedState());
    for (const msr of MIGRATED_MSRS) {
      const v = old.cpu.getMsr(msr);
      if (v !== undefined) cpu.setMsr(msr, v);
    }
    // an instruction with MMIO accesses completed goes on where it was on the new processor
    const rip = lp.vmread(F.GUEST_RIP);
    if (old.mmioReplay.current(old.cpu.work(), rip)) lp.mmioReplay.adopt(old.mmioReplay, cpu.work(), rip);
    // events latched on the old processor go with the vCPU
    lp.nmiPending = old.nmiPending;
    lp.initPending = old.initPending;
    lp.sipiVector = old.sipiVector;
    this.lp = lp;
    this.#launched = false;
    return lp;
  }

  /**
   * No exit waits for its completion (an IN's or MMIO read's data, the rest of a string I/O): the
   * vCPU may leave this logical processor (depart) before its next entry.
   */
  get departable(): boolean {
    return this.#completion === undefined && this.#pendingExit === undefined && !this.#running;
  }

  /**
   * Leaves this logical processor for one in another thread (a pool of fewer threads than vCPUs):
   * VMCLEAR writes the VMCS back to its region (launch state clear), and what this host keeps
   * outside it comes back as data, for `new SoftVcpu(index, shared, { vmcs, context })` there.
   * The object is done with afterwards.
   */
  depart(): SoftVcpuContext {
    if (!this.departable) throw new Error(`vCPU ${this.index} has an exit waiting for its completion`);
    const ctx = departContext(this.lp, this.vmcs, {
      lastRaw: this.#lastRaw,
      hostIterations: this.#hostIterations,
      work: this.#work(),
    });
    this.#closed = true;
    return ctx;
  }

  getRegs(): Regs {
    return readRegs(this.lp);
  }
  setRegs(regs: Regs): void {
    writeRegs(this.lp, regs);
  }
  getSregs(): SpecialRegs {
    const apicBase = this.#readMsr(APIC_BASE_MSR);
    return { ...readSregs(this.lp), cr8: this.#cr8(), ...(apicBase === undefined ? {} : { apicBase }) };
  }
  setSregs(sregs: SpecialRegs): void {
    writeSregs(this.lp, sregs);
    this.#setCr8(sregs.cr8 & 0xfn);
    // EXTD goes to the local APIC (writeSregs gives the interpreter what it holds)
    if (this.#lapic() && sregs.apicBase) this.#writeMsr(APIC_BASE_MSR, sregs.apicBase, true);
  }

  /** CR8 = TPR[7:4] of the local APIC when the machine has one, else the interpreter's own register */
  #cr8(): bigint {
    const tpr = this.#irq?.taskPriority;
    return tpr ? BigInt(tpr.get() >> 4) : this.#cpu.getControl("cr8");
  }
  #setCr8(value: bigint): void {
    const tpr = this.#irq?.taskPriority;
    if (tpr) tpr.set(Number(value) << 4);
    this.#cpu.setControl("cr8", value);
  }
  getMsr(index: number): bigint | undefined {
    return this.#readMsr(index);
  }
  setMsr(index: number, value: bigint): void {
    if (!this.#writeMsr(index, value, true))
      throw new RangeError(`MSR 0x${index.toString(16)} cannot be written`);
  }
  /**
   * The vCPU's state for a snapshot (saved-state.ts): plain data, so that a vCPU in a worker thread
   * hands it over as it is. Taken while parked, after settling (lib/snapshot/index.ts).
   */
  captureSoftState(): SoftSavedState {
    return captureSoftVcpu(this.lp, this.#readMsr(TSC_MSR));
  }
  /**
   * Puts a snapshot's state back (the registers, sregs and MSRs go through their own calls first);
   * returns what the vCPU could not take or will show differently.
   */
  applySoftState(state: { soft?: SoftVcpuState | undefined; arch?: ArchVcpuState | undefined }): string[] {
    return applySoftVcpu(this.lp, state);
  }
  /** an instruction is half done: MMIO accesses this host completed wait to be replayed at the next entry */
  mmioInFlight(): boolean {
    return this.lp.mmioReplay.done.length !== 0;
  }
  /** guest memory changed behind the guest's back (a restore, a debugger's write): drop code compiled from it */
  invalidateCode(gpa: number, length: number): void {
    (this.lp.cpu as { invalidateCode?(gpa: number, length: number): void }).invalidateCode?.(gpa, length);
  }

  // The debugger's operations (lib/vmm/debug-soft.ts), as a VT-x hypervisor does them: through the
  // VMCS of this vCPU. Each is plain data in and out, so that a vCPU in a worker thread
  // (threads.ts) does the same as a call; they are made while the vCPU is parked.

  /** guest #BP exits to the host (exception bitmap bit 3) and/or the monitor trap flag, as given */
  setDebugControls(c: { trapBreakpoints?: boolean; monitorTrap?: boolean }): void {
    const lp = this.lp;
    if (c.trapBreakpoints !== undefined) {
      const bitmap = lp.vmreadNumber(F.EXCEPTION_BITMAP);
      const bit = 1 << BP_VECTOR;
      lp.vmwrite(F.EXCEPTION_BITMAP, (c.trapBreakpoints ? bitmap | bit : bitmap & ~bit) >>> 0);
    }
    if (c.monitorTrap !== undefined) {
      const proc = lp.vmreadNumber(F.CPU_BASED_VM_EXEC_CONTROL);
      const bit = Proc.MONITOR_TRAP_FLAG;
      lp.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, (c.monitorTrap ? proc | bit : proc & ~bit) >>> 0);
    }
  }
  /** the vector of the exception or NMI behind the last exit (VM-exit interruption information), -1: none */
  exitVector(): number {
    const info = this.lp.vmreadNumber(F.VM_EXIT_INTR_INFO);
    return info >>> 31 === 1 ? info & 0xff : -1;
  }
  /** the guest's own INT3 that an exit intercepted goes to the guest at the next entry, as if nobody had looked */
  reflectBreakpoint(): void {
    const lp = this.lp;
    lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, INJECT_BP);
    lp.vmwrite(F.VM_ENTRY_INSTRUCTION_LEN, Math.max(1, lp.vmreadNumber(F.VM_EXIT_INSTRUCTION_LEN)));
  }
  /** the host changed EPT permissions: cached translations go (INVEPT, all contexts) */
  flushEpt(): void {
    this.lp.invept(2);
  }
  /** the EPT pointer this vCPU's guest runs under (its paging structures are the machine's, shared) */
  eptPointer(): bigint {
    return this.shared.ept.eptp;
  }
  /**
   * Maps host-physical memory allocated on another thread (EPT paging structures a debugger split
   * there); chunks already mapped are left alone. A vCPU on the machine's thread shares its memory.
   */
  attachHostChunks(chunks: readonly SharedChunk[]): void {
    const mem = this.shared.memory;
    mem.attach(chunks.filter((c) => !mem.isBacked(c.base)));
  }
  /** guest time from now on: the TSC counts the machine's clock at TSC_HZ */
  useClock(clock: Clock): void {
    const perNs = TSC_HZ / 1e9;
    this.lp.cpu.tscClock = () => clock.nowNs() * perNs;
  }

  kick(): void {
    // a host interrupt: it ends the entry in progress, or the next one at once
    this.lp.hostKick = true;
  }
  setInstructionBudget(n: number | undefined): void {
    this.#budgetEnd = n === undefined ? undefined : this.#work() + Math.max(0, n);
  }
  setEntryDeadline(atMs: number | undefined): void {
    this.#deadline = atMs;
  }
  /** instructions retired plus exceptions/interrupts delivered and REP iterations (what budgets count) */
  instructionsRetired(): number {
    return this.#work();
  }
  close(): void {
    this.#closed = true;
  }
}

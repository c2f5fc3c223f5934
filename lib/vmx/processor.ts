// A logical processor with VMX: VMXON/VMXOFF, VMPTRLD/VMPTRST/VMCLEAR, VMREAD/VMWRITE,
// VMLAUNCH/VMRESUME, INVEPT/INVVPID, with the architectural outcomes (SDM Vol. 3C ch. 30-31).
// VM entry runs the interpreter in non-root operation until a VM exit, then returns to the caller
// (the host) with host state loaded, exactly where a hypervisor would continue at HOST_RIP.

import type { GuestCpu } from "../cpu/guest-cpu.js";
import { type EventType, StopReason, Window } from "../cpu/hooks.js";
import { CAPABILITY_MSRS, MAXPHYADDR, PREEMPTION_TIMER_RATE, VMCS_REVISION_ID } from "./capabilities.js";
import {
  Activity,
  EXIT_REASON_ENTRY_FAILURE,
  ExitCtl,
  ExitReason,
  IntrType,
  Pin,
  Proc,
  Proc2,
} from "./constants.js";
import { checkControls, checkGuestState, checkHostState } from "./entry-checks.js";
import { VmxError, VmxFaultError, VmxInstructionError } from "./errors.js";
import { F, resolveField } from "./fields.js";
import { loadGuestState, savedSlots, saveEntryMode, syncSlot } from "./guest-state.js";
import type { HostMemory } from "./host-memory.js";
import { type MmioCompletion, MmioReplay } from "./mmio-replay.js";
import { type MmioAccess, NonRootOperation, type PendingExit } from "./nonroot.js";
import { LaunchState, type LiveGuest, memoCheck, VmcsData, vmcsGet, vmcsGet32, vmcsSet } from "./vmcs.js";

/** The INTR line as the processor sees it (the emulated PIC satisfies this). */
export interface InterruptSource {
  hasInterrupt(): boolean;
  acknowledge(): number;
}

/** The guest ran into a state no event can leave (HLT with nothing that could wake it). */
export class VmxDeadlockError extends Error {
  override name = "VmxDeadlockError";
}

/** Host state loaded at VM exit (the TypeScript host continues after vmlaunch/vmresume). */
export interface HostState {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  rsp: bigint;
  rip: bigint;
  efer?: bigint;
  pat?: bigint;
  /** MSRs loaded from the VM-exit MSR-load list */
  msrs: ReadonlyMap<number, bigint>;
}

/**
 * Instructions per interpreter run between the processor's checks for pending events. With an
 * interrupt source of its own (a PIC wired to this processor), external interrupts are seen
 * every CHUNK instructions; without one, every event that can arrive is the host's (hostPoll)
 * or recorded by a hook, and each return costs the compiled blocks dearly (measured: about half
 * the MIPS at 2^16), so runs are long.
 */
const CHUNK = 1 << 16;
const LONG_CHUNK = 1 << 24;
/** vectors the host's own interrupts are acknowledged with (as Linux numbers its timer and IPIs) */
export const HOST_TIMER_VECTOR = 0xec;
export const HOST_KICK_VECTOR = 0xfd;
const NO_MSRS: ReadonlyMap<number, bigint> = new Map();
const HOST_STATE_KEY = {};

/** the host state a VM exit loads, from the host-state area (without MSR-load list entries) */
function hostStateOf(v: VmcsData): HostState {
  const exitCtl = vmcsGet32(v, F.VM_EXIT_CONTROLS);
  return {
    cr0: vmcsGet(v, F.HOST_CR0),
    cr3: vmcsGet(v, F.HOST_CR3),
    cr4: vmcsGet(v, F.HOST_CR4),
    rsp: vmcsGet(v, F.HOST_RSP),
    rip: vmcsGet(v, F.HOST_RIP),
    ...(exitCtl & ExitCtl.LOAD_EFER ? { efer: vmcsGet(v, F.HOST_IA32_EFER) } : {}),
    ...(exitCtl & ExitCtl.LOAD_PAT ? { pat: vmcsGet(v, F.HOST_IA32_PAT) } : {}),
    msrs: NO_MSRS,
  };
}
const PHYS_LIMIT = 2 ** MAXPHYADDR;

export interface LogicalProcessorOptions {
  memory: HostMemory;
  cpu: GuestCpu;
  interrupts?: InterruptSource;
  id?: number;
  /**
   * Where the host's kick is latched (index 0, non-zero = pending): an Int32Array over a
   * SharedArrayBuffer lets another thread kick this processor while it runs the guest.
   */
  kickWord?: Int32Array;
  /**
   * A number that moves whenever the host may have written guest memory (or anything else but this
   * processor's interpreter: another vCPU interleaved on the same thread). Given, the cached code of
   * the interpreter is re-checked against memory at a VM entry only when it moved since the last
   * slice this processor ran; without it, at every entry.
   */
  memoryGeneration?: () => number;
}

export class LogicalProcessor {
  readonly memory: HostMemory;
  readonly cpu: GuestCpu;
  readonly id: number;
  interrupts: InterruptSource | undefined;
  /** an NMI is pending on the processor's NMI pin */
  nmiPending = false;
  /**
   * An INIT is latched (from the APIC bus). In VMX non-root operation it causes a VM exit (basic
   * reason 3) unless the processor waits for SIPI, which blocks it (SDM 25.2): it is dropped then,
   * as KVM's nested VMX does, the processor being in the state an INIT would leave it in.
   */
  initPending = false;
  /**
   * The vector of a latched start-up IPI, or -1. Only the wait-for-SIPI activity state takes it
   * (a VM exit, reason 4, qualification = vector); in any other state it is discarded (SDM 26.6.2),
   * unless an INIT is pending: that INIT's exit comes first and leaves the processor to the host,
   * which puts it in wait-for-SIPI, as happens on hardware where the INIT exit precedes the SIPI.
   */
  sipiVector = -1;
  /** RFLAGS arithmetic flags as the last VMX instruction left them (CF=1 fail-invalid, ZF=1 fail-valid) */
  rflags = 0x2;
  hostState: HostState | undefined;
  /** the MMIO access behind the last EPT-violation exit, for the host's emulation */
  mmioAccess: MmioAccess | undefined;
  /** the MMIO accesses of the instruction in progress the host completed (see completeMmio) */
  readonly mmioReplay = new MmioReplay();
  get mmioCompletions(): MmioCompletion[] {
    return this.mmioReplay.done;
  }

  #vmxon: number | null = null;
  /** names this processor's NonRootOperation memo in a VMCS (see memoCheck) */
  readonly #nonRootKey = {};
  #current: VmcsData | null = null;
  #lastEntered: VmcsData | null = null;
  /** VMCS regions launched in this VMX session (VMXOFF ends it): VMRESUME of another is error 6 */
  readonly #launchedHere = new Set<number>();
  /** TSC ticks spent halted (the TSC is retired instructions, delivered events and REP iterations plus idle time) */
  #idle = 0;
  /**
   * The host's timer (performance.now() time; Infinity when not armed) and a pending kick: the
   * host's own interrupts. In non-root operation with external-interrupt exiting they end the guest
   * with an external-interrupt exit (reason 1) within a few dozen blocks, whatever the guest runs,
   * as a host's timer tick or IPI does on VT-x.
   */
  hostTimerAt = Number.POSITIVE_INFINITY;
  readonly #kick: Int32Array;
  get hostKick(): boolean {
    return Atomics.load(this.#kick, 0) !== 0;
  }
  set hostKick(on: boolean) {
    Atomics.store(this.#kick, 0, on ? 1 : 0);
  }
  /** this processor's interpreter as the holder of a VMCS's live guest state (VmcsData.live) */
  readonly #live: LiveGuest = { sync: (v, slot) => syncSlot(this.cpu, v, slot) };
  /** NMIs are not blocked by NMI or MOV-SS blocking (one closure, not one per entry) */
  readonly #nmiUnblocked = (): boolean => (this.cpu.interruptibility & 0xa) === 0;
  /** the interpreter's hostPoll while external-interrupt exiting is on (one closure, not one per entry) */
  readonly #hostPoll = (): boolean => this.initPending || this.hostInterruptPending();
  /** see LogicalProcessorOptions.memoryGeneration */
  readonly #memoryGeneration: (() => number) | undefined;
  /** memoryGeneration() when the interpreter last ran */
  #seenGeneration = Number.NaN;
  /**
   * The VMCS and EPT pointer (-1: no EPT) the last entry ran under: either changing, or an INVEPT
   * or INVVPID, re-checks cached code (#recheck), whose guest-physical pages may now map other bytes
   */
  #ranVmcs: VmcsData | null = null;
  #ranEptp = -1n;
  /** with memoryGeneration: the interpreter's next slice re-checks cached code whatever the generation */
  #recheck = true;

  constructor(opts: LogicalProcessorOptions) {
    this.memory = opts.memory;
    this.cpu = opts.cpu;
    this.interrupts = opts.interrupts;
    this.id = opts.id ?? 0;
    this.#kick = opts.kickWord ?? new Int32Array(1);
    this.#memoryGeneration = opts.memoryGeneration;
  }

  get inVmxOperation(): boolean {
    return this.#vmxon !== null;
  }
  /** the time-stamp counter of this processor */
  get tsc(): number {
    return this.cpu.work() + this.#idle;
  }

  /** latches an INIT signal (see initPending) */
  postInit(): void {
    this.initPending = true;
  }
  /** latches a start-up IPI with its 8-bit vector (see sipiVector) */
  postSipi(vector: number): void {
    this.sipiVector = vector & 0xff;
  }

  /** a host interrupt is pending: a kick, or the host timer has expired */
  hostInterruptPending(): boolean {
    return this.hostKick || performance.now() >= this.hostTimerAt;
  }

  /** the pending host interrupt (the kick first) ends non-root operation: exit reason 1 */
  #hostExit(nr: NonRootOperation, ackOnExit: boolean): void {
    let vector = HOST_TIMER_VECTOR;
    if (this.hostKick) {
      this.hostKick = false;
      vector = HOST_KICK_VECTOR;
    } else this.hostTimerAt = Number.POSITIVE_INFINITY;
    nr.record(ExitReason.ExternalInterrupt, ackOnExit ? { intrInfo: (vector | 0x80000000) >>> 0 } : {});
  }

  /** RDMSR of a VMX capability MSR (undefined for any other index). */
  readMsr(index: number): bigint | undefined {
    return CAPABILITY_MSRS.get(index);
  }

  // --- outcomes ---------------------------------------------------------------------------------
  #succeed(): void {
    this.rflags = 0x2;
  }
  #failInvalid(instruction: string, detail?: string): never {
    this.rflags = 0x3;
    throw new VmxInstructionError(instruction, "VMfailInvalid", 0, detail);
  }
  #fail(instruction: string, error: number, detail?: string): never {
    if (!this.#current) this.#failInvalid(instruction, detail);
    this.rflags = 0x42;
    vmcsSet(this.#current, F.VM_INSTRUCTION_ERROR, error);
    throw new VmxInstructionError(instruction, "VMfailValid", error, detail);
  }
  #requireVmx(instruction: string): void {
    if (this.#vmxon === null) throw new VmxFaultError(instruction, "#UD", "not in VMX operation");
  }
  #addressOk(hpa: number): boolean {
    return (
      Number.isSafeInteger(hpa) &&
      hpa >= 0 &&
      hpa % 4096 === 0 &&
      hpa < PHYS_LIMIT &&
      this.memory.isBacked(hpa, 4096)
    );
  }

  // --- VMXON / VMXOFF -----------------------------------------------------------------------------
  vmxon(hpa: number): void {
    if (this.#vmxon !== null) this.#fail("VMXON", VmxError.VmxonInRoot);
    if (!this.#addressOk(hpa)) this.#failInvalid("VMXON", `bad VMXON region address 0x${hpa.toString(16)}`);
    if ((this.memory.readU32(hpa) & 0x7fffffff) !== VMCS_REVISION_ID || this.memory.readU32(hpa) >>> 31) {
      this.#failInvalid("VMXON", "VMXON region revision identifier does not match IA32_VMX_BASIC");
    }
    this.#vmxon = hpa;
    this.#current = null;
    this.#succeed();
  }

  vmxoff(): void {
    this.#requireVmx("VMXOFF");
    // software should VMCLEAR first; the cached copy is written back so nothing is silently lost
    if (this.#current) this.#current.flush(this.memory);
    this.#current = null;
    this.#lastEntered = null;
    this.#launchedHere.clear();
    this.#vmxon = null;
    this.#succeed();
  }

  // --- VMCS pointer instructions ------------------------------------------------------------------
  vmptrld(hpa: number): void {
    this.#requireVmx("VMPTRLD");
    if (!this.#addressOk(hpa)) this.#fail("VMPTRLD", VmxError.VmptrldInvalidAddress, `0x${hpa.toString(16)}`);
    if (hpa === this.#vmxon) this.#fail("VMPTRLD", VmxError.VmptrldVmxonPointer);
    const rev = this.memory.readU32(hpa);
    if ((rev & 0x7fffffff) !== VMCS_REVISION_ID || rev >>> 31) {
      this.#fail(
        "VMPTRLD",
        VmxError.VmptrldBadRevision,
        `region has 0x${(rev >>> 0).toString(16)}, expected 0x${VMCS_REVISION_ID.toString(16)}`,
      );
    }
    if (this.#current?.address !== hpa) {
      // only the current VMCS is cached: switching writes the previous one back
      this.#current?.flush(this.memory);
      this.#current = VmcsData.load(this.memory, hpa);
    }
    this.#succeed();
  }

  /** VMPTRST: the current-VMCS pointer, all-ones when there is none. */
  vmptrst(): bigint {
    this.#requireVmx("VMPTRST");
    this.#succeed();
    return this.#current ? BigInt(this.#current.address) : 0xffffffffffffffffn;
  }

  vmclear(hpa: number): void {
    this.#requireVmx("VMCLEAR");
    if (!this.#addressOk(hpa)) this.#fail("VMCLEAR", VmxError.VmclearInvalidAddress, `0x${hpa.toString(16)}`);
    if (hpa === this.#vmxon) this.#fail("VMCLEAR", VmxError.VmclearVmxonPointer);
    if (this.#current?.address === hpa) {
      this.#current.launchState = LaunchState.Clear;
      this.#current.flush(this.memory);
      this.#current = null;
    } else {
      this.memory.writeU32(hpa + 8, LaunchState.Clear);
    }
    if (this.#lastEntered?.address === hpa) this.#lastEntered = null;
    this.#launchedHere.delete(hpa);
    this.#succeed();
  }

  // --- VMREAD / VMWRITE ---------------------------------------------------------------------------
  vmread(encoding: number | bigint): bigint {
    this.#requireVmx("VMREAD");
    if (!this.#current) this.#failInvalid("VMREAD");
    const r = resolveField(encoding);
    if (!r) this.#fail("VMREAD", VmxError.UnsupportedComponent, `encoding 0x${encoding.toString(16)}`);
    this.#succeed();
    return this.#current.read(r);
  }

  /**
   * VMREAD returning a number: the same checks and outcome as vmread, for callers that know the
   * field's value is below 2^53 (32-bit fields, RIP outside 64-bit mode...): no BigInt on the
   * exit path. Above 2^53 the number is rounded; use vmread there.
   */
  vmreadNumber(encoding: number): number {
    this.#requireVmx("VMREAD");
    if (!this.#current) this.#failInvalid("VMREAD");
    const r = resolveField(encoding);
    if (!r) this.#fail("VMREAD", VmxError.UnsupportedComponent, `encoding 0x${encoding.toString(16)}`);
    this.#succeed();
    return this.#current.readNumber(r);
  }

  vmwrite(encoding: number | bigint, value: bigint | number): void {
    this.#requireVmx("VMWRITE");
    if (!this.#current) this.#failInvalid("VMWRITE");
    const r = resolveField(encoding);
    if (!r) this.#fail("VMWRITE", VmxError.UnsupportedComponent, `encoding 0x${encoding.toString(16)}`);
    if (r.info.readOnly) this.#fail("VMWRITE", VmxError.WriteReadOnly, r.info.name);
    if (typeof value === "number" && value >= 0 && Number.isSafeInteger(value))
      this.#current.writeNumber(r, value);
    else this.#current.write(r, BigInt.asUintN(64, typeof value === "number" ? BigInt(value) : value));
    this.#succeed();
  }

  // --- INVEPT / INVVPID ---------------------------------------------------------------------------
  /** type 1 single-context, 2 all-context. */
  invept(type: number): void {
    this.#requireVmx("INVEPT");
    if (type !== 1 && type !== 2) this.#fail("INVEPT", VmxError.InvalidInvOperand, `type ${type}`);
    this.cpu.flushTlb();
    this.#recheck = true;
    this.#succeed();
  }
  /** type 0 individual-address, 1 single-context, 2 all-context, 3 single-context-retaining-globals. */
  invvpid(type: number, vpid = 1): void {
    this.#requireVmx("INVVPID");
    if (type < 0 || type > 3 || (type !== 2 && vpid === 0)) this.#fail("INVVPID", VmxError.InvalidInvOperand);
    this.cpu.flushTlb();
    this.#recheck = true;
    this.#succeed();
  }

  // --- MMIO completion ----------------------------------------------------------------------------
  /** Queues the result of an MMIO access the host emulated; the re-executed instruction consumes it. */
  completeMmio(completion: MmioCompletion): void {
    this.mmioReplay.complete(completion);
  }

  // --- VM entry -----------------------------------------------------------------------------------
  /** VMLAUNCH: returns the exit-reason field of the VM exit that ended non-root operation. */
  vmlaunch(): number {
    return this.#enter(true);
  }
  /** VMRESUME: returns the exit-reason field of the VM exit that ended non-root operation. */
  vmresume(): number {
    return this.#enter(false);
  }

  #enter(launch: boolean): number {
    const name = launch ? "VMLAUNCH" : "VMRESUME";
    this.#requireVmx(name);
    const v = this.#current;
    if (!v) this.#failInvalid(name);
    if (launch && v.launchState !== LaunchState.Clear) this.#fail(name, VmxError.VmlaunchNonClear);
    if (!launch && v.launchState !== LaunchState.Launched) this.#fail(name, VmxError.VmresumeNonLaunched);
    if (!launch && !this.#launchedHere.has(v.address)) this.#fail(name, VmxError.VmresumeAfterVmxoff);
    const controls = checkControls(v);
    if (controls.kind === "vmfail") this.#fail(name, controls.error, controls.rule);
    if (!v.hostStateChecked) {
      const hostCheck = checkHostState(v);
      if (hostCheck.kind === "vmfail") this.#fail(name, hostCheck.error, hostCheck.rule);
      v.hostStateChecked = true;
    }
    this.#succeed();
    const guestCheck = checkGuestState(v);
    if (guestCheck.kind === "guest") {
      return this.#entryFailure(v, ExitReason.InvalidGuestState, guestCheck.qualification, guestCheck.rule);
    }
    const msrFail = this.#loadEntryMsrs(v);
    if (msrFail)
      return this.#entryFailure(v, ExitReason.MsrLoading, msrFail, "VM-entry MSR-load list entry rejected");
    if (launch) {
      v.launchState = LaunchState.Launched;
      this.#launchedHere.add(v.address);
    }
    return this.#runGuest(v);
  }

  /** why the last entry failed (for diagnostics; hardware only reports the reason number) */
  lastEntryFailure: string | undefined;

  #entryFailure(v: VmcsData, reason: number, qualification: number, rule: string): number {
    this.lastEntryFailure = rule;
    const field = (reason | EXIT_REASON_ENTRY_FAILURE) >>> 0;
    vmcsSet(v, F.VM_EXIT_REASON, field);
    vmcsSet(v, F.EXIT_QUALIFICATION, BigInt(qualification));
    vmcsSet(v, F.VM_EXIT_INTR_INFO, 0);
    vmcsSet(v, F.VM_EXIT_INSTRUCTION_LEN, 0);
    this.#loadHostState(v);
    return field;
  }

  #loadEntryMsrs(v: VmcsData): number {
    const n = vmcsGet32(v, F.VM_ENTRY_MSR_LOAD_COUNT);
    const base = Number(vmcsGet(v, F.VM_ENTRY_MSR_LOAD_ADDR));
    for (let i = 0; i < n; i++) {
      const at = base + i * 16;
      if (!this.memory.isBacked(at, 16)) return i + 1;
      const index = this.memory.readU32(at);
      if (this.memory.readU32(at + 4) !== 0 || !this.cpu.setMsr(index, this.memory.readU64(at + 8)))
        return i + 1;
    }
    return 0;
  }

  #runGuest(v: VmcsData): number {
    const cpu = this.cpu;
    this.lastEntryFailure = undefined;
    // the controls non-root operation consults, read again only when one of them changed
    const nr = memoCheck(v, this.#nonRootKey, (v) => new NonRootOperation(this, v, () => this.cpu.retired));
    nr.reset();
    // "use TSC offsetting": the guest's RDTSC, RDTSCP and RDMSR IA32_TSC add the (signed) TSC offset
    cpu.tscGuestOffset = nr.proc & Proc.TSC_OFFSETTING ? BigInt.asIntN(64, vmcsGet(v, F.TSC_OFFSET)) : 0n;
    const vpid = (nr.proc2 & Proc2.VPID) !== 0;
    if (!vpid || this.#lastEntered !== v) cpu.flushTlb();
    this.#lastEntered = v;
    // the guest state the last exit left in this interpreter needs only what VMWRITE changed since
    // (an entry MSR-load list, which wrote the interpreter already, has everything loaded as before)
    loadGuestState(cpu, v, v.live === this.#live && vmcsGet32(v, F.VM_ENTRY_MSR_LOAD_COUNT) === 0);
    v.clearWritten();
    cpu.hooks = nr;
    nr.workAtEntry = cpu.retired + cpu.eventsDelivered;
    nr.nmiUnblocked = this.#nmiUnblocked;
    this.mmioAccess = undefined;

    // the timer runs from VM entry: an event injected now counts against it as the budgets that
    // program it count delivered events (else every entry with an injection overshot by one)
    const timerOn = (nr.pin & Pin.PREEMPTION_TIMER) !== 0;
    const deadline = this.tsc + vmcsGet32(v, F.VMX_PREEMPTION_TIMER_VALUE) * 2 ** PREEMPTION_TIMER_RATE;

    let idtVectoring = 0;
    let idtError: number | undefined;
    const info = vmcsGet32(v, F.VM_ENTRY_INTR_INFO_FIELD);
    if (info & 0x80000000) {
      const type = (info >>> 8) & 7;
      const code = info & (1 << 11) ? vmcsGet32(v, F.VM_ENTRY_EXCEPTION_ERROR_CODE) : undefined;
      cpu.activity = 0;
      const length = vmcsGet32(v, F.VM_ENTRY_INSTRUCTION_LEN);
      // the RIP this entry loaded (the GUEST_RIP slot may be the interpreter's, which delivery moves)
      const entryRip = cpu.getRipNumber();
      const stop = cpu.deliverEvent(info & 0xff, type as EventType, code, length);
      if (nr.pending) {
        // the exit interrupted the injected event's delivery: report it as IDT vectoring
        idtVectoring = info & 0x80000fff;
        idtError = code;
        if (
          type === IntrType.SoftwareInterrupt ||
          type === IntrType.PrivilegedSoftwareException ||
          type === IntrType.SoftwareException
        ) {
          // the software event did not happen: RIP stays at its instruction, whose length the
          // exit reports (SDM 27.2.4) so that the host can re-inject or complete it
          cpu.setRipNumber(entryRip);
          nr.pending.instructionLength = length;
        }
      } else if (stop === StopReason.Shutdown) nr.record(ExitReason.TripleFault);
      if (type === IntrType.Nmi) cpu.interruptibility |= 8;
    }

    // pending debug exceptions (B0-B3, BS) the entry loaded: a #DB before the first instruction
    // unless an event was injected (SDM 26.7.3)
    const pendingDbg = vmcsGet32(v, F.GUEST_PENDING_DBG_EXCEPTIONS) & 0x400f;
    if (pendingDbg !== 0 && !(info & 0x80000000) && !nr.pending && cpu.raiseDebug) {
      if (cpu.raiseDebug(pendingDbg) === StopReason.Shutdown && !nr.pending)
        nr.record(ExitReason.TripleFault);
    }

    cpu.windowRequests =
      (nr.proc & Proc.INTERRUPT_WINDOW ? Window.Interrupt : 0) |
      (nr.proc & Proc.NMI_WINDOW ? Window.Nmi : 0) |
      (nr.proc & Proc.MONITOR_TRAP_FLAG ? Window.MonitorTrap : 0);
    const hostExits = (nr.pin & Pin.EXTERNAL_INTERRUPT) !== 0;
    const ackOnExit = (vmcsGet32(v, F.VM_EXIT_CONTROLS) & ExitCtl.ACK_INTR_ON_EXIT) !== 0;
    cpu.hostPoll = hostExits ? this.#hostPoll : null;

    // cached code is re-checked against memory when something but this interpreter may have
    // written it since it last ran. With memoryGeneration, that is when the generation moved (the
    // host, devices, another vCPU on this thread), or the VMCS or the EPT pointer changed, or an
    // INVEPT/INVVPID ran. Without, the first slice of every entry re-checks (the host ran since the
    // last one), and a slice after an event delivered here (a device may have raised it for memory
    // it just wrote).
    const generation = this.#memoryGeneration;
    let memoryMoved = generation === undefined;
    if (generation !== undefined) {
      const eptp = nr.eptEnabled ? vmcsGet(v, F.EPT_POINTER) : -1n;
      if (this.#ranVmcs !== v || this.#ranEptp !== eptp) {
        this.#ranVmcs = v;
        this.#ranEptp = eptp;
        this.#recheck = true;
      }
    }
    while (!nr.pending) {
      // INIT ranks above the preemption timer, NMIs and interrupts (SDM 6.9, 25.2)
      if (
        (this.initPending || this.sipiVector >= 0 || cpu.activity === Activity.WaitForSipi) &&
        this.#startup(nr, ackOnExit)
      )
        break;
      if (timerOn && this.tsc >= deadline) {
        nr.record(ExitReason.PreemptionTimer);
        break;
      }
      if (hostExits && this.hostInterruptPending()) {
        this.#hostExit(nr, ackOnExit);
        break;
      }
      if (nr.pin & Pin.NMI_EXITING && this.nmiPending && nr.nmiUnblocked()) {
        this.nmiPending = false;
        nr.record(ExitReason.ExceptionNmi, { intrInfo: (2 | (IntrType.Nmi << 8) | 0x80000000) >>> 0 });
        break;
      }
      if (!(nr.pin & Pin.NMI_EXITING) && this.nmiPending && nr.nmiUnblocked() && cpu.activity !== 2) {
        // without NMI exiting the NMI is the guest's: delivered through its IDT, blocking further NMIs
        this.nmiPending = false;
        cpu.activity = 0;
        cpu.deliverEvent(2, IntrType.Nmi as number as EventType, undefined, 0);
        cpu.interruptibility |= 8;
        if (generation === undefined) memoryMoved = true;
        continue;
      }
      const intr = this.interrupts;
      if (hostExits && intr?.hasInterrupt() && !(cpu.interruptibility & 3)) {
        nr.record(
          ExitReason.ExternalInterrupt,
          ackOnExit ? { intrInfo: (intr.acknowledge() | 0x80000000) >>> 0 } : {},
        );
        break;
      }
      const interruptible = (cpu.getRflagsNumber() & 0x200) !== 0 && (cpu.interruptibility & 3) === 0;
      if (cpu.windowRequests && cpu.activity === 0 && nr.boundary(interruptible)) break;
      if (cpu.activity === 1) {
        if (!(nr.pin & Pin.EXTERNAL_INTERRUPT) && intr?.hasInterrupt() && interruptible) {
          cpu.activity = 0;
          cpu.deliverEvent(intr.acknowledge(), IntrType.External as number as EventType, undefined, 0);
          if (generation === undefined) memoryMoved = true;
          continue;
        }
        if (nr.proc & Proc.INTERRUPT_WINDOW && interruptible) {
          nr.record(ExitReason.InterruptWindow);
          break;
        }
        if (timerOn) {
          this.#idle += deadline - this.tsc;
          continue;
        }
        if (hostExits && Number.isFinite(this.hostTimerAt)) {
          // halted until the host's timer: its interrupt ends the wait
          this.#hostExit(nr, ackOnExit);
          break;
        }
        cpu.hooks = null;
        cpu.hostPoll = null;
        throw new VmxDeadlockError("guest halted (HLT not exiting) with no event that could wake it");
      }
      if (cpu.activity === 2) {
        nr.record(ExitReason.TripleFault);
        break;
      }
      const chunk = intr ? CHUNK : LONG_CHUNK;
      const budget = timerOn ? Math.min(chunk, deadline - this.tsc) : chunk;
      if (generation !== undefined) {
        const g = generation();
        if (g !== this.#seenGeneration || this.#recheck) {
          this.#seenGeneration = g;
          this.#recheck = false;
          memoryMoved = true;
        }
      }
      const stop = cpu.run(budget, memoryMoved);
      memoryMoved = false;
      // StopReason.HostInterrupt: the exit is recorded at the top of the loop
      if (stop === StopReason.Shutdown && !nr.pending) nr.record(ExitReason.TripleFault);
      if (stop === StopReason.Halted && cpu.activity === 0) cpu.activity = 1;
    }
    const p = nr.pending!;
    // a #DB held over a MOV SS shadow when the exit came stays pending in the VMCS (SDM 27.3.4):
    // B0-B3, BS, and bit 12 when a breakpoint matched
    const held = cpu.takePendingDebug?.() ?? 0;
    if (held !== 0 || pendingDbg !== 0)
      vmcsSet(
        v,
        F.GUEST_PENDING_DBG_EXCEPTIONS,
        held === 0 ? 0 : (held & 0x400f) | (held & 0xf ? 0x1000 : 0),
      );
    if (!idtVectoring && p.idtVectoring) {
      idtVectoring = p.idtVectoring;
      idtError = p.idtError;
    }
    this.#completeExit(v, p, timerOn ? Math.max(0, deadline - this.tsc) : 0, idtVectoring, idtError);
    return vmcsGet32(v, F.VM_EXIT_REASON);
  }

  /**
   * INIT and SIPI in non-root operation, and the wait-for-SIPI state, in which the processor runs
   * nothing and takes nothing else: external interrupts and NMIs are blocked (NMIs stay pending),
   * and the preemption timer does not exit (SDM 25.5.1). With no SIPI to take it returns to the
   * host as from a HLT nothing wakes: the host's interrupt (reason 1), at once. True when an exit
   * was recorded.
   */
  #startup(nr: NonRootOperation, ackOnExit: boolean): boolean {
    if (this.cpu.activity !== Activity.WaitForSipi) {
      if (this.initPending) {
        this.initPending = false;
        nr.record(ExitReason.Init);
        return true;
      }
      // active, HLT and shutdown block SIPIs: discarded, no exit
      this.sipiVector = -1;
      return false;
    }
    this.initPending = false;
    if (this.sipiVector >= 0) {
      const vector = this.sipiVector;
      this.sipiVector = -1;
      nr.record(ExitReason.Sipi, { qualification: BigInt(vector) });
      return true;
    }
    this.#hostExit(nr, ackOnExit);
    return true;
  }

  #completeExit(
    v: VmcsData,
    p: PendingExit,
    timerLeft: number,
    idtVectoring: number,
    idtError?: number,
  ): void {
    const cpu = this.cpu;
    const exitCtl = vmcsGet32(v, F.VM_EXIT_CONTROLS);
    // the guest state stays in the interpreter, synced field by field as it is read (vmcs.ts)
    saveEntryMode(cpu, v);
    v.leaveLive(this.#live, savedSlots(exitCtl));
    if (exitCtl & ExitCtl.SAVE_PREEMPTION_TIMER) {
      vmcsSet(v, F.VMX_PREEMPTION_TIMER_VALUE, Math.floor(timerLeft / 2 ** PREEMPTION_TIMER_RATE));
    }
    vmcsSet(v, F.VM_EXIT_REASON, p.reason);
    vmcsSet(v, F.EXIT_QUALIFICATION, p.qualification);
    vmcsSet(v, F.VM_EXIT_INSTRUCTION_LEN, p.instructionLength);
    vmcsSet(v, F.VMX_INSTRUCTION_INFO, p.instructionInfo);
    vmcsSet(v, F.VM_EXIT_INTR_INFO, p.intrInfo ?? 0);
    vmcsSet(v, F.VM_EXIT_INTR_ERROR_CODE, p.intrError ?? 0);
    vmcsSet(v, F.IDT_VECTORING_INFO_FIELD, idtVectoring);
    vmcsSet(v, F.IDT_VECTORING_ERROR_CODE, idtError ?? 0);
    if (p.guestLinear !== undefined && !Number.isNaN(p.guestLinear))
      vmcsSet(v, F.GUEST_LINEAR_ADDRESS, p.guestLinear);
    if (p.guestPhysical !== undefined) vmcsSet(v, F.GUEST_PHYSICAL_ADDRESS, p.guestPhysical);
    // every VM exit clears the valid bit of the VM-entry interruption-information field
    vmcsSet(v, F.VM_ENTRY_INTR_INFO_FIELD, vmcsGet32(v, F.VM_ENTRY_INTR_INFO_FIELD) & 0x7fffffff);
    const n = vmcsGet32(v, F.VM_EXIT_MSR_STORE_COUNT);
    const base = Number(vmcsGet(v, F.VM_EXIT_MSR_STORE_ADDR));
    for (let i = 0; i < n; i++) {
      const at = base + i * 16;
      if (this.memory.isBacked(at, 16))
        this.memory.writeU64(at + 8, cpu.getMsr(this.memory.readU32(at)) ?? 0n);
    }
    cpu.hooks = null;
    cpu.hostPoll = null;
    cpu.windowRequests = 0;
    this.#loadHostState(v);
  }

  #loadHostState(v: VmcsData): void {
    // most hosts use no MSR-load list: the host state is then a function of VMCS fields alone,
    // built again only when one of them changed (no object and BigInts on every exit)
    if (vmcsGet32(v, F.VM_EXIT_MSR_LOAD_COUNT) === 0) {
      this.hostState = memoCheck(v, HOST_STATE_KEY, hostStateOf);
      return;
    }
    const n = vmcsGet32(v, F.VM_EXIT_MSR_LOAD_COUNT);
    const loaded = new Map<number, bigint>();
    const base = Number(vmcsGet(v, F.VM_EXIT_MSR_LOAD_ADDR));
    for (let i = 0; i < n; i++) {
      const at = base + i * 16;
      if (this.memory.isBacked(at, 16)) loaded.set(this.memory.readU32(at), this.memory.readU64(at + 8));
    }
    this.hostState = { ...hostStateOf(v), msrs: loaded };
  }
}

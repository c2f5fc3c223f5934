// KvmVcpu: a vCPU fd and its kvm_run mapping. run() returns the decoded exit (views into kvm_run).

import type { KvmBinding } from "./binding.js";
import { CoalescedRing } from "./coalesced.js";
import { KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP } from "./constants.js";
import { KvmClosedError } from "./errors.js";
import { type KvmExit, KvmRunDecoder } from "./exits.js";
import {
  KVM_GET_CPUID2,
  KVM_GET_DEBUGREGS,
  KVM_GET_FPU,
  KVM_GET_LAPIC,
  KVM_GET_MP_STATE,
  KVM_GET_MSRS,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_VCPU_EVENTS,
  KVM_GET_XCRS,
  KVM_GET_XSAVE,
  KVM_SET_CPUID2,
  KVM_SET_DEBUGREGS,
  KVM_SET_FPU,
  KVM_SET_GUEST_DEBUG,
  KVM_SET_LAPIC,
  KVM_SET_MP_STATE,
  KVM_SET_MSRS,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_VCPU_EVENTS,
  KVM_SET_XCRS,
  KVM_SET_XSAVE,
  KVM_TRANSLATE,
} from "./ioctls.js";
import { LAYOUTS } from "./layouts.js";
import {
  type CpuidEntry,
  cpuidBuffer,
  type KvmRegs,
  type KvmSregs,
  readCpuid,
  readRegs,
  readSregs,
  writeCpuid,
  writeRegs,
  writeSregs,
} from "./structs.js";
import { asKvmError, ioctl } from "./syscall.js";
import type { KvmVm } from "./vm.js";

/** struct kvm_fpu: the x87 and SSE state (KVM_GET_FPU / KVM_SET_FPU). */
export interface KvmFpu {
  /** 8 x87 registers, 16 bytes each */
  fpr: Uint8Array;
  /** x87 control word. */
  fcw: number;
  /** x87 status word. */
  fsw: number;
  /** Abridged x87 tag word (one bit per register, as FXSAVE). */
  ftwx: number;
  /** Opcode of the last x87 instruction. */
  lastOpcode: number;
  /** Address of the last x87 instruction. */
  lastIp: bigint;
  /** Address of the last x87 memory operand. */
  lastDp: bigint;
  /** 16 XMM registers, 16 bytes each */
  xmm: Uint8Array;
  /** SSE control and status register. */
  mxcsr: number;
}

/** KVM_TRANSLATE's answer for a guest-linear address. */
export interface KvmTranslation {
  /** The address translated. */
  linearAddress: bigint;
  /** The guest-physical address (meaningful when `valid`). */
  physicalAddress: bigint;
  /** Whether the page tables map it. */
  valid: boolean;
  /** Whether the mapping allows writes. */
  writeable: boolean;
  /** Whether the mapping allows user-mode accesses. */
  usermode: boolean;
}

/** struct kvm_vcpu_events, decoded: pending or injected exception, interrupt and NMI, and the SIPI vector. */
export interface KvmVcpuEvents {
  /** The exception being injected, if `injected`: vector `nr` and its error code. */
  exception: { injected: boolean; nr: number; hasErrorCode: boolean; errorCode: number };
  /** The external or software interrupt being injected, and the interrupt shadow (STI/MOV SS blocking). */
  interrupt: { injected: boolean; nr: number; soft: boolean; shadow: number };
  /** NMI state: being injected, pending, and whether NMIs are blocked. */
  nmi: { injected: boolean; pending: boolean; masked: boolean };
  /** The vector of a pending SIPI. */
  sipiVector: number;
  /** KVM_VCPUEVENT_VALID_* flags saying which fields hold. */
  flags: number;
  /** the whole struct as read, so fields not decoded above survive a get/modify/set */
  raw: Uint8Array;
}

/** struct kvm_debugregs: the guest's debug registers. */
export interface KvmDebugRegs {
  /** DR0-DR3 */
  db: [bigint, bigint, bigint, bigint];
  /** DR6 (debug status). */
  dr6: bigint;
  /** DR7 (debug control). */
  dr7: bigint;
}

/** Options of KvmVcpu.setGuestDebug(): what makes the vCPU exit with KVM_EXIT_DEBUG. */
export interface GuestDebugOptions {
  /** trap after every instruction (KVM_EXIT_DEBUG, exception 1) */
  singleStep?: boolean;
  /** up to 4 linear addresses of execution breakpoints (DR0-DR3) */
  hwBreakpoints?: readonly bigint[];
}

/** A kvm_vcpu_events struct's fields (a saved copy, or what KVM_GET_VCPU_EVENTS filled). */
export function decodeVcpuEvents(raw: Uint8Array): KvmVcpuEvents {
  if (raw.length !== LAYOUTS.kvm_vcpu_events.size) {
    throw new RangeError(`kvm_vcpu_events is ${LAYOUTS.kvm_vcpu_events.size} bytes, got ${raw.length}`);
  }
  const f = LAYOUTS.kvm_vcpu_events.fields;
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  return {
    exception: {
      injected: raw[f["exception.injected"]] !== 0,
      nr: raw[f["exception.nr"]]!,
      hasErrorCode: raw[f["exception.has_error_code"]] !== 0,
      errorCode: dv.getUint32(f["exception.error_code"], true),
    },
    interrupt: {
      injected: raw[f["interrupt.injected"]] !== 0,
      nr: raw[f["interrupt.nr"]]!,
      soft: raw[f["interrupt.soft"]] !== 0,
      shadow: raw[f["interrupt.shadow"]]!,
    },
    nmi: {
      injected: raw[f["nmi.injected"]] !== 0,
      pending: raw[f["nmi.pending"]] !== 0,
      masked: raw[f["nmi.masked"]] !== 0,
    },
    sipiVector: dv.getUint32(f.sipi_vector, true),
    flags: dv.getUint32(f.flags, true),
    raw,
  };
}

function isEmptyEntry(e: CpuidEntry): boolean {
  return (e.function | e.index | e.flags | e.eax | e.ebx | e.ecx | e.edx) === 0;
}

/**
 * A KVM vCPU (KvmVm.createVcpu()): KVM_RUN over the mmap'd kvm_run page, and the register, MSR, CPUID, LAPIC,
 * XSAVE and event ioctls. Exits decode to the same VmExit shapes the machine uses.
 */
export class KvmVcpu {
  /** The VM it belongs to. */
  readonly vm: KvmVm;
  /** The vCPU id given to KVM_CREATE_VCPU (the initial APIC ID). */
  readonly index: number;
  /** The system-call binding in use. */
  readonly binding: KvmBinding;
  /** kvm_run, the shared page KVM fills at each exit */
  readonly runBuffer: ArrayBuffer;
  #fd: number;
  readonly #decoder: KvmRunDecoder;
  #ring: CoalescedRing | undefined;
  /** while ring writes are replayed: what the entry that found them returned (see run()) */
  #replayOf: boolean | undefined;
  #coalescedWrites = 0;
  readonly #runBytes: Uint8Array;
  readonly #onClose: () => void;
  readonly #regsBuf = new DataView(new ArrayBuffer(LAYOUTS.kvm_regs.size));
  readonly #sregsBuf = new DataView(new ArrayBuffer(LAYOUTS.kvm_sregs.size));

  /** @internal use KvmVm.createVcpu() */
  constructor(vm: KvmVm, fd: number, index: number, run: ArrayBuffer, onClose: () => void) {
    this.vm = vm;
    this.binding = vm.binding;
    this.index = index;
    this.#fd = fd;
    this.runBuffer = run;
    this.#runBytes = new Uint8Array(run);
    this.#decoder = new KvmRunDecoder(run);
    this.#onClose = onClose;
  }

  /** The vCPU file descriptor; throws KvmClosedError after close(). */
  get fd(): number {
    if (this.#fd < 0) throw new KvmClosedError(`KvmVcpu ${this.index}`);
    return this.#fd;
  }

  /** Whether close() was called (on it, its VM or its Kvm). */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /**
   * KVM_RUN until the next exit. An interrupted run (kick, signal, immediate_exit) is an "intr" exit.
   * With a coalesced ring (useCoalescedRing), the writes KVM queued during the entry come first,
   * one port/MMIO write exit each in guest order, then the exit that ended the entry: the loop sees
   * the exits it would have seen without coalescing (only later), and KVM_RUN is not re-entered
   * until all were taken.
   */
  run(): KvmExit {
    const fd = this.#fd;
    if (fd < 0) throw new KvmClosedError(`KvmVcpu ${this.index}`);
    if (this.#replayOf !== undefined) return this.#replay();
    let exited: boolean;
    try {
      exited = this.binding.run(fd);
    } catch (e) {
      throw asKvmError(e);
    }
    return this.#exit(exited);
  }

  #exit(exited: boolean): KvmExit {
    if (this.#ring?.pending) {
      this.#replayOf = exited;
      return this.#replay();
    }
    return exited ? this.#decoder.decode() : this.#decoder.intr();
  }

  #replay(): KvmExit {
    const write = this.#ring!.shift();
    if (write !== undefined) {
      this.#coalescedWrites++;
      return write;
    }
    const exited = this.#replayOf!;
    this.#replayOf = undefined;
    return exited ? this.#decoder.decode() : this.#decoder.intr();
  }

  /**
   * The exit of a KVM_RUN made elsewhere (another thread calling the addon's run(fd) on this vCPU):
   * `exited` is what that run() returned. Decoded from this thread's view of the same kvm_run.
   * While hasPendingExit, no KVM_RUN is to be made: this returns the next pending exit instead.
   */
  exitOf(exited: boolean): KvmExit {
    this.fd;
    if (this.#replayOf !== undefined) return this.#replay();
    return this.#exit(exited);
  }

  /** Exits are queued (coalesced writes, then the exit of their entry): the next run() makes no KVM_RUN. */
  get hasPendingExit(): boolean {
    return this.#replayOf !== undefined;
  }

  /** Replays the coalesced-write ring at `pageOffset` of the vCPU mapping (KvmVm.coalescedRingPage). */
  useCoalescedRing(pageOffset: number): void {
    this.fd;
    this.#ring = new CoalescedRing(this.runBuffer, pageOffset);
  }

  /** guest writes that reached run() through the coalesced ring rather than exits of their own */
  get coalescedWrites(): number {
    return this.#coalescedWrites;
  }

  /** Ends the run in progress (from any thread with the addon) or the next one, as an "intr" exit. */
  kick(): void {
    this.binding.kick(this.fd);
  }

  /** kvm_run.immediate_exit: while set, KVM_RUN returns at once as interrupted. */
  get immediateExit(): boolean {
    this.fd;
    return this.#runBytes[LAYOUTS.kvm_run.fields.immediate_exit] !== 0;
  }
  set immediateExit(v: boolean) {
    this.fd;
    this.#runBytes[LAYOUTS.kvm_run.fields.immediate_exit] = v ? 1 : 0;
  }

  /** kvm_run.request_interrupt_window: exit with "irq-window-open" when the guest can take an interrupt. */
  get requestInterruptWindow(): boolean {
    return this.#runBytes[LAYOUTS.kvm_run.fields.request_interrupt_window] !== 0;
  }
  set requestInterruptWindow(v: boolean) {
    this.fd;
    this.#runBytes[LAYOUTS.kvm_run.fields.request_interrupt_window] = v ? 1 : 0;
  }
  /** kvm_run.ready_for_interrupt_injection: an interrupt can be injected (KVM_INTERRUPT) now. */
  get readyForInterruptInjection(): boolean {
    return this.#runBytes[LAYOUTS.kvm_run.fields.ready_for_interrupt_injection] !== 0;
  }

  /** KVM_GET_REGS: the general registers, RIP and RFLAGS. */
  getRegs(): KvmRegs {
    ioctl(this.binding, this.fd, KVM_GET_REGS, this.#regsBuf);
    return readRegs(this.#regsBuf);
  }

  /** KVM_SET_REGS. */
  setRegs(regs: KvmRegs): void {
    const fd = this.fd;
    writeRegs(this.#regsBuf, regs);
    ioctl(this.binding, fd, KVM_SET_REGS, this.#regsBuf);
  }

  /** KVM_GET_SREGS: segments, descriptor tables, control registers, EFER, APIC base. */
  getSregs(): KvmSregs {
    ioctl(this.binding, this.fd, KVM_GET_SREGS, this.#sregsBuf);
    return readSregs(this.#sregsBuf);
  }

  /** KVM_SET_SREGS; the pending-interrupt bitmap is kept as KVM has it. */
  setSregs(sregs: KvmSregs): void {
    const fd = this.fd;
    ioctl(this.binding, fd, KVM_GET_SREGS, this.#sregsBuf);
    writeSregs(this.#sregsBuf, sregs);
    ioctl(this.binding, fd, KVM_SET_SREGS, this.#sregsBuf);
  }

  /** KVM_GET_FPU: the x87 and SSE registers. */
  getFpu(): KvmFpu {
    const f = LAYOUTS.kvm_fpu.fields;
    const buf = new ArrayBuffer(LAYOUTS.kvm_fpu.size);
    const dv = new DataView(buf);
    ioctl(this.binding, this.fd, KVM_GET_FPU, dv);
    return {
      fpr: new Uint8Array(buf, f.fpr, 128).slice(),
      fcw: dv.getUint16(f.fcw, true),
      fsw: dv.getUint16(f.fsw, true),
      ftwx: dv.getUint8(f.ftwx),
      lastOpcode: dv.getUint16(f.last_opcode, true),
      lastIp: dv.getBigUint64(f.last_ip, true),
      lastDp: dv.getBigUint64(f.last_dp, true),
      xmm: new Uint8Array(buf, f.xmm, 256).slice(),
      mxcsr: dv.getUint32(f.mxcsr, true),
    };
  }

  /** KVM_SET_FPU. */
  setFpu(fpu: KvmFpu): void {
    const f = LAYOUTS.kvm_fpu.fields;
    const buf = new ArrayBuffer(LAYOUTS.kvm_fpu.size);
    const dv = new DataView(buf);
    new Uint8Array(buf, f.fpr, 128).set(fpu.fpr.subarray(0, 128));
    dv.setUint16(f.fcw, fpu.fcw, true);
    dv.setUint16(f.fsw, fpu.fsw, true);
    dv.setUint8(f.ftwx, fpu.ftwx);
    dv.setUint16(f.last_opcode, fpu.lastOpcode, true);
    dv.setBigUint64(f.last_ip, fpu.lastIp, true);
    dv.setBigUint64(f.last_dp, fpu.lastDp, true);
    new Uint8Array(buf, f.xmm, 256).set(fpu.xmm.subarray(0, 256));
    dv.setUint32(f.mxcsr, fpu.mxcsr, true);
    ioctl(this.binding, this.fd, KVM_SET_FPU, dv);
  }

  /** KVM_GET_MSRS: the values of the MSRs KVM could read (undefined for the others). */
  getMsrs(indices: readonly number[]): (bigint | undefined)[] {
    const e = LAYOUTS.kvm_msr_entry;
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_msrs.size + indices.length * e.size));
    dv.setUint32(0, indices.length, true);
    indices.forEach((index, i) => {
      dv.setUint32(LAYOUTS.kvm_msrs.fields.entries + i * e.size + e.fields.index, index >>> 0, true);
    });
    const n = ioctl(this.binding, this.fd, KVM_GET_MSRS, dv);
    return indices.map((_, i) =>
      i < n ? dv.getBigUint64(LAYOUTS.kvm_msrs.fields.entries + i * e.size + e.fields.data, true) : undefined,
    );
  }

  /** KVM_SET_MSRS; returns how many were set (KVM stops at the first it refuses). */
  setMsrs(entries: readonly { index: number; value: bigint }[]): number {
    const e = LAYOUTS.kvm_msr_entry;
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_msrs.size + entries.length * e.size));
    dv.setUint32(0, entries.length, true);
    entries.forEach((m, i) => {
      const at = LAYOUTS.kvm_msrs.fields.entries + i * e.size;
      dv.setUint32(at + e.fields.index, m.index >>> 0, true);
      dv.setBigUint64(at + e.fields.data, BigInt.asUintN(64, m.value), true);
    });
    return ioctl(this.binding, this.fd, KVM_SET_MSRS, dv);
  }

  /** Reads one MSR (KVM_GET_MSRS); undefined when KVM does not have it. */
  getMsr(index: number): bigint | undefined {
    return this.getMsrs([index])[0];
  }

  /** Writes one MSR (KVM_SET_MSRS); RangeError when KVM refuses the value. */
  setMsr(index: number, value: bigint): void {
    if (this.setMsrs([{ index, value }]) !== 1) {
      throw new RangeError(`KVM refused MSR 0x${index.toString(16)} = 0x${value.toString(16)}`);
    }
  }

  /** KVM_SET_CPUID2: the CPUID the guest sees (set it before the first run). */
  setCpuid2(entries: readonly CpuidEntry[]): void {
    ioctl(this.binding, this.fd, KVM_SET_CPUID2, writeCpuid(entries));
  }

  /** KVM_GET_CPUID2: the CPUID entries set on this vCPU (room for `capacity` entries). */
  getCpuid2(capacity = 256): CpuidEntry[] {
    const dv = cpuidBuffer(capacity);
    ioctl(this.binding, this.fd, KVM_GET_CPUID2, dv);
    const entries = readCpuid(dv);
    // Kernels before 6.5 write nent back only when the buffer is too small; on success it still
    // holds our capacity, and the entries past the real ones are the zeroes we sent. No real entry
    // is all zero (leaf 0 reports the highest leaf in EAX), so those are dropped.
    if (dv.getUint32(0, true) === capacity) {
      while (entries.length > 0 && isEmptyEntry(entries[entries.length - 1]!)) entries.pop();
    }
    return entries;
  }

  /** KVM_MP_STATE_* (lib/kvm/constants.ts) */
  getMpState(): number {
    const dv = new DataView(new ArrayBuffer(4));
    ioctl(this.binding, this.fd, KVM_GET_MP_STATE, dv);
    return dv.getUint32(0, true);
  }

  /** KVM_SET_MP_STATE (KVM_MP_STATE_RUNNABLE, _UNINITIALIZED, _INIT_RECEIVED, _HALTED, _SIPI_RECEIVED). */
  setMpState(state: number): void {
    const dv = new DataView(new ArrayBuffer(4));
    dv.setUint32(0, state >>> 0, true);
    ioctl(this.binding, this.fd, KVM_SET_MP_STATE, dv);
  }

  /** KVM_GET_VCPU_EVENTS, decoded. */
  getVcpuEvents(): KvmVcpuEvents {
    const raw = new Uint8Array(LAYOUTS.kvm_vcpu_events.size);
    ioctl(this.binding, this.fd, KVM_GET_VCPU_EVENTS, raw);
    return decodeVcpuEvents(raw);
  }

  /** KVM_SET_VCPU_EVENTS (fields not decoded are kept from `ev.raw`). */
  setVcpuEvents(ev: KvmVcpuEvents): void {
    const f = LAYOUTS.kvm_vcpu_events.fields;
    const raw = new Uint8Array(LAYOUTS.kvm_vcpu_events.size);
    raw.set(ev.raw.subarray(0, raw.length));
    const dv = new DataView(raw.buffer);
    raw[f["exception.injected"]] = ev.exception.injected ? 1 : 0;
    raw[f["exception.nr"]] = ev.exception.nr;
    raw[f["exception.has_error_code"]] = ev.exception.hasErrorCode ? 1 : 0;
    dv.setUint32(f["exception.error_code"], ev.exception.errorCode >>> 0, true);
    raw[f["interrupt.injected"]] = ev.interrupt.injected ? 1 : 0;
    raw[f["interrupt.nr"]] = ev.interrupt.nr;
    raw[f["interrupt.soft"]] = ev.interrupt.soft ? 1 : 0;
    raw[f["interrupt.shadow"]] = ev.interrupt.shadow;
    raw[f["nmi.injected"]] = ev.nmi.injected ? 1 : 0;
    raw[f["nmi.pending"]] = ev.nmi.pending ? 1 : 0;
    raw[f["nmi.masked"]] = ev.nmi.masked ? 1 : 0;
    dv.setUint32(f.sipi_vector, ev.sipiVector >>> 0, true);
    dv.setUint32(f.flags, ev.flags >>> 0, true);
    ioctl(this.binding, this.fd, KVM_SET_VCPU_EVENTS, raw);
  }

  /** KVM_GET_LAPIC: the 1 KiB local-APIC register page (in-kernel irqchip only). */
  getLapic(): Uint8Array {
    const regs = new Uint8Array(LAYOUTS.kvm_lapic_state.size);
    ioctl(this.binding, this.fd, KVM_GET_LAPIC, regs);
    return regs;
  }

  /** KVM_SET_LAPIC: puts back the 1 KiB register page getLapic() returned. */
  setLapic(regs: Uint8Array): void {
    if (regs.length !== LAYOUTS.kvm_lapic_state.size) {
      throw new RangeError(`LAPIC state is ${LAYOUTS.kvm_lapic_state.size} bytes, got ${regs.length}`);
    }
    ioctl(this.binding, this.fd, KVM_SET_LAPIC, regs);
  }

  /**
   * KVM_GET_XSAVE: the guest's XSAVE area (the legacy FXSAVE image in its first 512 bytes, then
   * the XSAVE header and the components XCR0 enables) as one 4 KiB block (KVM_CAP_XSAVE).
   */
  getXsave(): Uint8Array {
    const region = new Uint8Array(LAYOUTS.kvm_xsave.size);
    ioctl(this.binding, this.fd, KVM_GET_XSAVE, region);
    return region;
  }

  /** KVM_SET_XSAVE: puts back the region getXsave() returned. */
  setXsave(region: Uint8Array): void {
    if (region.length !== LAYOUTS.kvm_xsave.size) {
      throw new RangeError(`the XSAVE area is ${LAYOUTS.kvm_xsave.size} bytes, got ${region.length}`);
    }
    ioctl(this.binding, this.fd, KVM_SET_XSAVE, region.slice());
  }

  /** KVM_GET_XCRS: the extended control registers (XCR0 on today's CPUs) as [index, value]. */
  getXcrs(): [number, bigint][] {
    const f = LAYOUTS.kvm_xcrs.fields;
    const x = LAYOUTS.kvm_xcr;
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_xcrs.size));
    ioctl(this.binding, this.fd, KVM_GET_XCRS, dv);
    const n = Math.min(dv.getUint32(f.nr_xcrs, true), 16);
    return Array.from({ length: n }, (_, i) => {
      const at = f.xcrs + i * x.size;
      return [dv.getUint32(at + x.fields.xcr, true), dv.getBigUint64(at + x.fields.value, true)];
    });
  }

  /** KVM_SET_XCRS: sets extended control registers, as [index, value] pairs. */
  setXcrs(xcrs: readonly [number, bigint][]): void {
    if (xcrs.length > 16) throw new RangeError(`at most 16 XCRs, got ${xcrs.length}`);
    const f = LAYOUTS.kvm_xcrs.fields;
    const x = LAYOUTS.kvm_xcr;
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_xcrs.size));
    dv.setUint32(f.nr_xcrs, xcrs.length, true);
    xcrs.forEach(([index, value], i) => {
      const at = f.xcrs + i * x.size;
      dv.setUint32(at + x.fields.xcr, index >>> 0, true);
      dv.setBigUint64(at + x.fields.value, BigInt.asUintN(64, value), true);
    });
    ioctl(this.binding, this.fd, KVM_SET_XCRS, dv);
  }

  /** KVM_GET_DEBUGREGS: the guest's own DR0-DR3, DR6 and DR7 (KVM_CAP_DEBUGREGS). */
  getDebugRegs(): KvmDebugRegs {
    const f = LAYOUTS.kvm_debugregs.fields;
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_debugregs.size));
    ioctl(this.binding, this.fd, KVM_GET_DEBUGREGS, dv);
    const db = [0, 1, 2, 3].map((i) => dv.getBigUint64(f.db + 8 * i, true)) as KvmDebugRegs["db"];
    return { db, dr6: dv.getBigUint64(f.dr6, true), dr7: dv.getBigUint64(f.dr7, true) };
  }

  /** KVM_SET_DEBUGREGS. */
  setDebugRegs(regs: KvmDebugRegs): void {
    const f = LAYOUTS.kvm_debugregs.fields;
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_debugregs.size));
    regs.db.forEach((v, i) => {
      dv.setBigUint64(f.db + 8 * i, BigInt.asUintN(64, v), true);
    });
    dv.setBigUint64(f.dr6, BigInt.asUintN(64, regs.dr6), true);
    dv.setBigUint64(f.dr7, BigInt.asUintN(64, regs.dr7), true);
    ioctl(this.binding, this.fd, KVM_SET_DEBUGREGS, dv);
  }

  /** KVM_TRANSLATE: a linear address through the guest's current paging. */
  translate(linearAddress: bigint): KvmTranslation {
    const f = LAYOUTS.kvm_translation.fields;
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_translation.size));
    dv.setBigUint64(f.linear_address, BigInt.asUintN(64, linearAddress), true);
    ioctl(this.binding, this.fd, KVM_TRANSLATE, dv);
    return {
      linearAddress,
      physicalAddress: dv.getBigUint64(f.physical_address, true),
      valid: dv.getUint8(f.valid) !== 0,
      writeable: dv.getUint8(f.writeable) !== 0,
      usermode: dv.getUint8(f.usermode) !== 0,
    };
  }

  /** KVM_SET_GUEST_DEBUG: single-step and hardware execution breakpoints; no options turns it off. */
  setGuestDebug(opts: GuestDebugOptions | null): void {
    const f = LAYOUTS.kvm_guest_debug.fields;
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_guest_debug.size));
    const bps = opts?.hwBreakpoints ?? [];
    if (bps.length > 4) throw new RangeError("x86 has 4 hardware breakpoints (DR0-DR3)");
    let control = 0;
    if (opts) {
      control = KVM_GUESTDBG_ENABLE;
      if (opts.singleStep) control |= KVM_GUESTDBG_SINGLESTEP;
      if (bps.length > 0) control |= KVM_GUESTDBG_USE_HW_BP;
    }
    dv.setUint32(f.control, control, true);
    let dr7 = 0n;
    bps.forEach((addr, i) => {
      dv.setBigUint64(f["arch.debugreg"] + 8 * i, BigInt.asUintN(64, addr), true);
      dr7 |= 2n << BigInt(2 * i); // Gn: global enable, R/W=00 (execute), LEN=00
    });
    dv.setBigUint64(f["arch.debugreg"] + 8 * 7, dr7, true);
    ioctl(this.binding, this.fd, KVM_SET_GUEST_DEBUG, dv);
  }

  /** Unmaps kvm_run and closes the fd. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    try {
      this.binding.munmap(this.runBuffer);
    } finally {
      this.binding.close(fd);
      this.#onClose();
    }
  }
}

// The KVM backend: a MachineBackend over lib/kvm. Guest RAM is anonymous mmap'd memory registered
// both with KVM (a memory slot) and as a GuestMemory region: the same bytes, no copies. The VM is set
// up as real VMMs do it: TSS and identity-map pages for VT-x real mode, the in-kernel irqchip and
// PIT, and each vCPU gets the CPUID KVM supports with its own APIC id and the machine's topology
// (cpuid-topology.ts). With several vCPUs, vCPU 0 is the bootstrap processor; the in-kernel irqchip
// keeps the others in the wait-for-SIPI state until the guest's INIT/SIPI reaches their local APIC.

import { existsSync } from "node:fs";
import {
  type CpuidEntry,
  cpuidForVcpu,
  type GsiRoute,
  type KickTarget,
  KVM_CAP_TSC_DEADLINE_TIMER,
  KVM_IRQCHIP,
  KVM_MP_STATE,
  Kvm,
  type KvmOpenOptions,
  type KvmProbe,
  type KvmVcpu,
  KvmVcpuLimitError,
  type KvmVm,
  probeKvm as probeKvmDevice,
} from "../../kvm/index.js";
import type { VmExit } from "../../types/exits.js";
import type { Regs, SpecialRegs } from "../../types/regs.js";
import type { IoeventSink, MachineBackend, VcpuBackend } from "../backend.js";
import { MachineConfigError } from "../errors.js";
import { PENDING_EXIT } from "../kvm-worker.js";
import { GuestMemory } from "../memory.js";

export interface KvmBackendOptions {
  memoryBytes: number;
  /** which binding lib/kvm uses (default: NODEVMM_BINDING, else the addon, else koffi) */
  binding?: KvmOpenOptions["binding"];
  /** vCPUs the machine creates (default 1): CPUID states this topology; at most MAX_KVM_VCPUS */
  vcpus?: number;
}

/** how long closing a vCPU waits for its thread to leave KVM_RUN after the kick */
const CLOSE_WAIT_MS = 2000;
/** xAPIC ids are 8 bits and the machine's tables (MP table, MADT) list at most this many CPUs */
export const MAX_KVM_VCPUS = 64;

const PAGE = 4096;
/** RAM above this goes above 4 GiB, leaving the 32-bit MMIO hole (and TSS/identity map) free */
const LOW_RAM_LIMIT = 0xc0000000;
const HIGH_RAM_BASE = 0x100000000;
const RAM_CHUNK = 0x40000000;
/** three pages for KVM_SET_TSS_ADDR and one for the identity map, just below the BIOS area as QEMU does */
const TSS_ADDRESS = 0xfffbd000;
const IDENTITY_MAP_ADDRESS = 0xfffbc000;

export class KvmVcpuBackend implements VcpuBackend {
  readonly index: number;
  readonly #vcpu: KvmVcpu;
  #thread: { close(): void; waitOut?(ms: number): boolean } | undefined;

  constructor(vcpu: KvmVcpu) {
    this.index = vcpu.index;
    this.#vcpu = vcpu;
  }

  /** the lib/kvm vCPU, for KVM-specific features (guest debug, translate, LAPIC, events) */
  get kvmVcpu(): KvmVcpu {
    return this.#vcpu;
  }

  run(): VmExit {
    return this.#vcpu.run();
  }
  getRegs(): Regs {
    return this.#vcpu.getRegs();
  }
  setRegs(regs: Regs): void {
    this.#vcpu.setRegs(regs);
  }
  getSregs(): SpecialRegs {
    return this.#vcpu.getSregs();
  }
  setSregs(sregs: SpecialRegs): void {
    this.#vcpu.setSregs(sregs);
  }
  getMsr(index: number): bigint | undefined {
    return this.#vcpu.getMsr(index);
  }
  setMsr(index: number, value: bigint): void {
    this.#vcpu.setMsr(index, value);
  }
  kick(): void {
    this.#vcpu.kick();
  }
  /** what a watchdog thread needs to kick this vCPU out of KVM_RUN, with either binding */
  crossThreadKick(): KickTarget | undefined {
    const b = this.#vcpu.binding;
    if (!b.crossThreadKick || this.#vcpu.closed) return undefined;
    const target = b.kickTarget?.(this.#vcpu.fd);
    if (!target) return undefined;
    // a vCPU thread (kvm-worker.ts) made from this target must not enter the guest while exits are
    // queued here (coalesced writes); a symbol key, so the target still clones to other threads
    const vcpu = this.#vcpu;
    return Object.assign(target, { [PENDING_EXIT]: () => vcpu.hasPendingExit });
  }
  /** The exit of a KVM_RUN a vCPU worker thread made (kvm-worker.ts); `exited` is its run() result. */
  exitOf(exited: boolean): VmExit {
    return this.#vcpu.exitOf(exited);
  }
  /**
   * In the kernel and not running: HLT (MP state HALTED) or waiting for INIT/SIPI (an AP before the
   * guest starts it, or after an INIT). Only while no thread is in KVM_RUN on this vCPU: the ioctl
   * waits for the run to end.
   */
  isHalted(): boolean {
    if (this.#vcpu.closed) return false;
    try {
      const s = this.#vcpu.getMpState();
      return (
        s === KVM_MP_STATE.HALTED || s === KVM_MP_STATE.UNINITIALIZED || s === KVM_MP_STATE.INIT_RECEIVED
      );
    } catch {
      return false;
    }
  }
  /** SMP: false while halted or waiting for SIPI (see isHalted(): only between entries). */
  runnable(): boolean {
    return !this.isHalted();
  }
  /**
   * A thread that enters the guest for this vCPU (SMP: kvm-threads.ts): closing the vCPU ends it,
   * the vCPU kicked first so that a KVM_RUN in progress returns.
   */
  attachThread(thread: { close(): void; waitOut?(ms: number): boolean }): void {
    this.#thread = thread;
  }
  close(): void {
    const t = this.#thread;
    this.#thread = undefined;
    t?.close();
    if (t && !this.#vcpu.closed) {
      this.#vcpu.kick();
      // out of the guest before its memory goes (the machine unmaps it next): a vCPU still in
      // KVM_RUN would fault on it, and unmapping pages in use makes KVM stop every CPU running it
      t.waitOut?.(CLOSE_WAIT_MS);
    }
    this.#vcpu.close();
  }
}

export class KvmMachineBackend implements MachineBackend {
  readonly kind = "kvm" as const;
  readonly memory = new GuestMemory();
  readonly kvm: Kvm;
  readonly vm: KvmVm;
  /**
   * Hypercall numbers whose VMCALL reaches the exit loop as a "hypercall" exit
   * (KVM_CAP_EXIT_HYPERCALL; on x86 only KVM_HC_MAP_GPA_RANGE = 12 can be). Empty when the kernel
   * lacks the capability; see also hypercallExitsReachLoop().
   */
  readonly hypercalls: readonly number[];
  /** vCPUs the machine creates (the topology CPUID states) */
  readonly vcpuCount: number;
  #cpuid: CpuidEntry[] | undefined;
  readonly #vcpus: KvmVcpu[] = [];
  /** page of the coalesced ring once a zone was registered */
  #ringPage = 0;

  constructor(opts: KvmBackendOptions) {
    const { memoryBytes } = opts;
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes <= 0 || memoryBytes % PAGE !== 0) {
      throw new RangeError(`memoryBytes must be a positive multiple of 4 KiB, got ${memoryBytes}`);
    }
    const count = opts.vcpus ?? 1;
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new RangeError(`vcpus must be a positive integer, got ${String(opts.vcpus)}`);
    }
    this.vcpuCount = count;
    this.kvm = Kvm.open(opts.binding === undefined ? {} : { binding: opts.binding });
    try {
      checkVcpuLimit(this.kvm, count);
      this.vm = this.kvm.createVm();
      this.vm.setTssAddress(TSS_ADDRESS);
      this.vm.setIdentityMapAddress(IDENTITY_MAP_ADDRESS);
      this.vm.createIrqchip();
      this.vm.setGsiRouting(pcGsiRoutes());
      this.vm.createPit2();
      this.hypercalls = enableHypercalls(this.vm);
      const low = Math.min(memoryBytes, LOW_RAM_LIMIT);
      this.#addRam(0, low);
      // one mapping is at most an ArrayBuffer's maximum (4 GiB on Node 20): high RAM goes in 1 GiB slots
      for (let done = low; done < memoryBytes; done += RAM_CHUNK) {
        this.#addRam(HIGH_RAM_BASE + (done - low), Math.min(RAM_CHUNK, memoryBytes - done));
      }
    } catch (e) {
      this.kvm.close();
      throw e;
    }
  }

  #addRam(guestPhysAddr: number, size: number): void {
    const region = this.vm.allocateMemory(guestPhysAddr, size);
    this.memory.addRegion(guestPhysAddr, region.bytes);
    this.#ramSlots.push(region.slot);
  }

  /** KVM's slot of each RAM region, in `memory.regions` order */
  readonly #ramSlots: number[] = [];
  #dirtyLogging = false;

  /** Whether KVM logs the guest's writes to RAM (startDirtyLog()). */
  get dirtyLogging(): boolean {
    return this.#dirtyLogging;
  }

  /**
   * Has KVM log the pages the guest writes (KVM_MEM_LOG_DIRTY_PAGES on every RAM slot), from now
   * on; incremental snapshots save those. Writes of the host (loaders, devices) are not in KVM's
   * log: GuestMemory.trackHostWrites() keeps those.
   */
  startDirtyLog(): void {
    if (this.#dirtyLogging) return;
    for (const slot of this.#ramSlots) this.vm.setDirtyLogging(slot, true);
    this.#dirtyLogging = true;
  }

  /**
   * The pages the guest wrote since the last call or startDirtyLog(), one bit per 4 KiB page for
   * each RAM region in `memory.regions` order (KVM_GET_DIRTY_LOG, which also clears the log).
   * Only while no vCPU runs: a page written during the call could be reported on either side.
   */
  takeDirtyLog(): BigUint64Array[] {
    if (!this.#dirtyLogging) throw new Error("the dirty log is not started (startDirtyLog())");
    return this.#ramSlots.map((slot) => this.vm.getDirtyLog(slot));
  }

  /** Firmware ROM: a KVM_MEM_READONLY slot, so the guest's writes exit as MMIO (QEMU maps its -bios so). */
  mapRom(gpa: number, bytes: Uint8Array): void {
    let region: { bytes: Uint8Array };
    try {
      region = this.vm.allocateMemory(gpa, bytes.length, { readonly: true });
    } catch (e) {
      throw new MachineConfigError(
        `KVM cannot map read-only memory at 0x${gpa.toString(16)}: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    region.bytes.set(bytes);
  }

  /** CPUID.1:EAX as the vCPUs report it (cpuidForVcpu keeps the host's signature). */
  cpuSignature(): number {
    this.#cpuid ??= this.kvm.getSupportedCpuid();
    return this.#cpuid.find((e) => e.function === 1)?.eax ?? 0;
  }

  createVcpu(index: number): KvmVcpuBackend {
    if (index >= this.vcpuCount) {
      throw new RangeError(`vCPU ${index} is past the ${this.vcpuCount} this backend was opened for`);
    }
    const vcpu = this.vm.createVcpu(index);
    this.#cpuid ??= this.kvm.getSupportedCpuid();
    try {
      // the in-kernel irqchip (always created here) emulates TSC-deadline mode where KVM says so
      const tscDeadline = this.kvm.checkExtension(KVM_CAP_TSC_DEADLINE_TIMER) > 0;
      vcpu.setCpuid2(cpuidForVcpu(this.#cpuid, index, this.vcpuCount, { tscDeadline }));
    } catch (e) {
      vcpu.close();
      throw e;
    }
    if (this.#ringPage) vcpu.useCoalescedRing(this.#ringPage);
    this.#vcpus.push(vcpu);
    return new KvmVcpuBackend(vcpu);
  }

  /**
   * Guest writes to this range stop exiting one by one (KVM coalesced MMIO/PIO): KVM queues them and
   * the vCPUs replay them, in order, before the next exit they report (KvmVcpu.run). For devices
   * that only record writes (debug console, POST codes): their handlers run later, never out of
   * order. False when this KVM cannot (no KVM_CAP_COALESCED_MMIO, or _PIO for ports).
   */
  coalesceWrites(space: "io" | "mmio", base: number, length: number): boolean {
    const page = this.vm.coalescedRingPage;
    if (page <= 0 || (space === "io" && !this.vm.coalescedPio)) return false;
    this.vm.registerCoalesced(base, length, space === "io");
    if (!this.#ringPage) {
      this.#ringPage = page;
      for (const v of this.#vcpus) v.useCoalescedRing(page);
    }
    return true;
  }

  /** 4-byte MMIO writes of a value (datamatch) signal an eventfd in the kernel: no exit to user space */
  ioevents(): IoeventSink {
    const vm = this.vm;
    const opts = (value: number) => ({ length: 4, datamatch: BigInt(value >>> 0) }) as const;
    return {
      eventfd: () => vm.binding.eventfd(0, 0),
      add: (fd, address, value) => vm.registerIoevent(fd, address, opts(value)),
      remove: (fd, address, value) => vm.unregisterIoevent(fd, address, opts(value)),
    };
  }

  setIrqLine(line: number, level: boolean): void {
    this.vm.setIrqLine(line, level);
  }

  close(): void {
    this.kvm.close();
  }
}

/**
 * The PC's interrupt routing as QEMU sets it (kvm_pc_setup_irq_routing): ISA IRQs 0-15 to the 8259
 * pair (not the cascade, 2) and GSIs 0-23 to the I/O APIC, except that IRQ 0 (the PIT) reaches I/O
 * APIC pin 2, the interrupt source override firmware describes, and GSI 2 no I/O APIC pin. KVM's
 * own default sends GSI 0 to pin 0; the soft backend's router (lib/devices/pc-interrupts.ts) has
 * the override, so both backends route alike.
 */
function pcGsiRoutes(): GsiRoute[] {
  const routes: GsiRoute[] = [];
  for (let irq = 0; irq < 16; irq++) {
    if (irq === 2) continue;
    routes.push({
      gsi: irq,
      irqchip: irq < 8 ? KVM_IRQCHIP.PIC_MASTER : KVM_IRQCHIP.PIC_SLAVE,
      pin: irq % 8,
    });
  }
  for (let gsi = 0; gsi < 24; gsi++) {
    if (gsi === 2) continue;
    routes.push({ gsi, irqchip: KVM_IRQCHIP.IOAPIC, pin: gsi === 0 ? 2 : gsi });
  }
  return routes;
}

// The guest-side hypercall channel (examples/guests/hypercall.md) uses KVM_HC_MAP_GPA_RANGE because
// it is the one number KVM_CAP_EXIT_HYPERCALL lets through to user space.
function enableHypercalls(vm: KvmVm): number[] {
  try {
    return vm.enableHypercallExits();
  } catch {
    return []; // a kernel that lists the capability but refuses it: VMCALL stays in the kernel
  }
}

/**
 * Whether a VMCALL enabled through KVM_CAP_EXIT_HYPERCALL actually comes back from KVM_RUN here.
 * Not on kvm-pvm (the "pagetable virtual machine" KVM some cloud sandboxes run guests on): its
 * VMCALL path is the PVM hypervisor's own and the guest's VMCALL never completes KVM_RUN, so a
 * guest using the channel would hang there. Detected by the module; false means "known not to".
 */
export function hypercallExitsReachLoop(): { ok: boolean; reason?: string } {
  if (existsSync("/sys/module/kvm_pvm")) {
    return { ok: false, reason: "kvm-pvm host: VMCALL does not reach user space (KVM_RUN blocks)" };
  }
  return { ok: true };
}

/** More vCPUs than KVM_CAP_MAX_VCPUS (or MAX_KVM_VCPUS) allows: a KvmVcpuLimitError. */
function checkVcpuLimit(kvm: Kvm, count: number): void {
  if (count <= 1) return;
  const { max } = kvm.vcpuLimits();
  if (count > MAX_KVM_VCPUS) {
    throw new KvmVcpuLimitError(count, Math.min(max, MAX_KVM_VCPUS), "nodevmm's limit on KVM");
  }
  if (count > max) throw new KvmVcpuLimitError(count, max, "this KVM's KVM_CAP_MAX_VCPUS");
}

export function createKvmBackend(opts: KvmBackendOptions): MachineBackend {
  return new KvmMachineBackend(opts);
}

/** Whether the KVM backend can run here; never throws. */
export function probeKvm(): { usable: boolean; reason?: string; apiVersion?: number; binding?: string } {
  const p: KvmProbe = probeKvmDevice();
  return p;
}

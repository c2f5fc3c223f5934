// KvmVm: a VM fd. Owns its memory slots (and the memory it allocated for them) and its vCPUs.

import type { KvmBinding } from "./binding.js";
import {
  KVM_CAP,
  KVM_HC_MAP_GPA_RANGE,
  KVM_IOEVENTFD_FLAG_DATAMATCH,
  KVM_IOEVENTFD_FLAG_DEASSIGN,
  KVM_IOEVENTFD_FLAG_PIO,
  KVM_IRQ_ROUTING_IRQCHIP,
  KVM_IRQFD_FLAG_DEASSIGN,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_PIT_SPEAKER_DUMMY,
} from "./constants.js";
import { KvmClosedError, KvmMemoryRegionError } from "./errors.js";
import {
  KVM_CHECK_EXTENSION,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_PIT2,
  KVM_CREATE_VCPU,
  KVM_ENABLE_CAP,
  KVM_GET_CLOCK,
  KVM_GET_IRQCHIP,
  KVM_GET_PIT2,
  KVM_IOEVENTFD,
  KVM_IRQ_LINE,
  KVM_IRQFD,
  KVM_REGISTER_COALESCED_MMIO,
  KVM_SET_CLOCK,
  KVM_SET_GSI_ROUTING,
  KVM_SET_IDENTITY_MAP_ADDR,
  KVM_SET_IRQCHIP,
  KVM_SET_PIT2,
  KVM_SET_TSS_ADDR,
  KVM_UNREGISTER_COALESCED_MMIO,
} from "./ioctls.js";
import type { Kvm } from "./kvm.js";
import { LAYOUTS } from "./layouts.js";
import { ioctl, sys } from "./syscall.js";
import { KvmVcpu } from "./vcpu.js";

const PAGE = 4096;

/** A guest memory slot (KVM_SET_USER_MEMORY_REGION) and the host memory behind it. */
export interface KvmMemoryRegion {
  /** The slot number. */
  readonly slot: number;
  /** Guest-physical address of the first byte (page-aligned). */
  readonly guestPhysAddr: number;
  /** Length in bytes (a multiple of 4 KiB). */
  readonly size: number;
  /** KVM_MEM_* flags (LOG_DIRTY_PAGES, READONLY). */
  readonly flags: number;
  /** the host memory behind the slot (an mmap'd ArrayBuffer) */
  readonly buffer: ArrayBuffer;
  /** buffer as bytes: guest-physical guestPhysAddr + i is bytes[i] */
  readonly bytes: Uint8Array;
  /** the VM allocated the memory and unmaps it when the slot goes */
  readonly owned: boolean;
}

/** Options of KvmVm.addMemoryRegion() and setMemoryRegion(). */
export interface MemoryRegionOptions {
  /** The slot to use; default the lowest free one. */
  slot?: number;
  /** track writes for getDirtyLog() (KVM_MEM_LOG_DIRTY_PAGES) */
  logDirtyPages?: boolean;
  /** KVM_MEM_READONLY: guest writes exit as MMIO. */
  readonly?: boolean;
}

/** Options of KvmVm.registerIoevent() (and the matching unregisterIoevent()). */
export interface IoeventOptions {
  /** port I/O (true) or MMIO (false, default) */
  pio?: boolean;
  /** access width the event matches: 0 (any, MMIO only), 1, 2, 4 or 8 */
  length?: 0 | 1 | 2 | 4 | 8;
  /** only writes of this value signal the eventfd */
  datamatch?: bigint;
}

/** KVM_GET_CLOCK's answer. */
export interface KvmClock {
  /** The guest's kvmclock, in nanoseconds. */
  clock: bigint;
  /** KVM_CLOCK_* flags (e.g. KVM_CLOCK_TSC_STABLE). */
  flags: number;
}

function checkAddress(v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${what} must be a non-negative integer`);
}

/** One route from a GSI to an irqchip pin (KVM_IRQCHIP: 0 PIC master, 1 PIC slave, 2 I/O APIC). */
export interface GsiRoute {
  /** The global system interrupt. */
  gsi: number;
  /** 0 PIC master, 1 PIC slave, 2 I/O APIC. */
  irqchip: 0 | 1 | 2;
  /** The pin on that chip. */
  pin: number;
}

/**
 * A KVM virtual machine (Kvm.createVm()): memory slots, vCPUs, the in-kernel irqchip and PIT, ioeventfd,
 * irqfd and coalesced writes. Closing it closes its vCPUs and unmaps the memory it allocated.
 */
export class KvmVm {
  /** The Kvm that made it. */
  readonly kvm: Kvm;
  /** The system-call binding in use. */
  readonly binding: KvmBinding;
  #fd: number;
  readonly #onClose: () => void;
  readonly #regions = new Map<number, KvmMemoryRegion>();
  readonly #vcpus = new Map<number, KvmVcpu>();

  /** @internal use Kvm.createVm() */
  constructor(kvm: Kvm, fd: number, onClose: () => void) {
    this.kvm = kvm;
    this.binding = kvm.binding;
    this.#fd = fd;
    this.#onClose = onClose;
  }

  /** The VM file descriptor; throws KvmClosedError after close(). */
  get fd(): number {
    if (this.#fd < 0) throw new KvmClosedError("KvmVm");
    return this.#fd;
  }

  /** Whether close() was called (on it or on its Kvm). */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** The memory slots in use. */
  get regions(): readonly KvmMemoryRegion[] {
    return [...this.#regions.values()];
  }

  /** KVM_CHECK_EXTENSION on the VM fd (answers for this VM): 0 when capability `cap` is missing. */
  checkExtension(cap: number): number {
    return ioctl(this.binding, this.fd, KVM_CHECK_EXTENSION, cap);
  }

  /** KVM_ENABLE_CAP on the VM with up to four arguments. */
  enableCap(cap: number, args: readonly (number | bigint)[] = [], flags = 0): void {
    if (args.length > 4) throw new RangeError(`KVM_ENABLE_CAP takes at most 4 arguments, got ${args.length}`);
    const f = LAYOUTS.kvm_enable_cap.fields;
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_enable_cap.size));
    dv.setUint32(f.cap, cap >>> 0, true);
    dv.setUint32(f.flags, flags >>> 0, true);
    args.forEach((a, i) => {
      dv.setBigUint64(f.args + 8 * i, BigInt.asUintN(64, BigInt(a)), true);
    });
    ioctl(this.binding, this.fd, KVM_ENABLE_CAP, dv);
  }

  /**
   * Asks KVM to hand VMCALLs with these hypercall numbers (RAX) to user space as "hypercall" exits
   * (KVM_CAP_EXIT_HYPERCALL). The kernel offers only some numbers (on x86 only
   * KVM_HC_MAP_GPA_RANGE); returns the numbers enabled, none when the kernel lacks the capability.
   */
  enableHypercallExits(numbers: readonly number[] = [KVM_HC_MAP_GPA_RANGE]): number[] {
    const offered = this.checkExtension(KVM_CAP.EXIT_HYPERCALL);
    const wanted = numbers.reduce((m, n) => m | (n < 31 ? 1 << n : 0), 0);
    const mask = offered & wanted;
    if (mask === 0) return [];
    this.enableCap(KVM_CAP.EXIT_HYPERCALL, [mask >>> 0]);
    return numbers.filter((n) => n < 31 && (mask & (1 << n)) !== 0);
  }

  /**
   * Registers host memory (an ArrayBuffer from binding.mmap/mmapAnonymous) as guest-physical
   * memory. Unaligned, empty, overlapping or duplicate-slot regions are refused before any ioctl.
   */
  setMemoryRegion(
    guestPhysAddr: number,
    buffer: ArrayBuffer,
    opts: MemoryRegionOptions = {},
    owned = false,
  ): KvmMemoryRegion {
    const fd = this.fd;
    checkAddress(guestPhysAddr, "guestPhysAddr");
    if (!(buffer instanceof ArrayBuffer))
      throw new TypeError("guest memory must be an ArrayBuffer from mmap");
    const size = buffer.byteLength;
    if (guestPhysAddr % PAGE !== 0) {
      throw new KvmMemoryRegionError(`guest address 0x${guestPhysAddr.toString(16)} is not 4 KiB aligned`);
    }
    if (size === 0 || size % PAGE !== 0) {
      throw new KvmMemoryRegionError(
        `region size 0x${size.toString(16)} is not a non-zero multiple of 4 KiB`,
      );
    }
    const slot = opts.slot ?? this.#freeSlot();
    if (!Number.isInteger(slot) || slot < 0 || slot > 0x7fff)
      throw new KvmMemoryRegionError(`bad slot ${slot}`);
    if (this.#regions.has(slot)) throw new KvmMemoryRegionError(`slot ${slot} is in use`);
    for (const r of this.#regions.values()) {
      if (guestPhysAddr < r.guestPhysAddr + r.size && r.guestPhysAddr < guestPhysAddr + size) {
        throw new KvmMemoryRegionError(
          `region [0x${guestPhysAddr.toString(16)}, +0x${size.toString(16)}) overlaps slot ${r.slot} at 0x${r.guestPhysAddr.toString(16)}`,
        );
      }
    }
    const flags = (opts.logDirtyPages ? KVM_MEM_LOG_DIRTY_PAGES : 0) | (opts.readonly ? KVM_MEM_READONLY : 0);
    sys(() => this.binding.setUserMemoryRegion(fd, slot, flags, guestPhysAddr, buffer));
    const region: KvmMemoryRegion = {
      slot,
      guestPhysAddr,
      size,
      flags,
      buffer,
      bytes: new Uint8Array(buffer),
      owned,
    };
    this.#regions.set(slot, region);
    return region;
  }

  /** Allocates zeroed anonymous memory and registers it; the VM unmaps it when the slot goes. */
  allocateMemory(guestPhysAddr: number, size: number, opts: MemoryRegionOptions = {}): KvmMemoryRegion {
    this.fd;
    checkAddress(size, "size");
    if (size === 0 || size % PAGE !== 0) {
      throw new KvmMemoryRegionError(
        `region size 0x${size.toString(16)} is not a non-zero multiple of 4 KiB`,
      );
    }
    const buffer = sys(() => this.binding.mmapAnonymous(size));
    try {
      return this.setMemoryRegion(guestPhysAddr, buffer, opts, true);
    } catch (e) {
      this.binding.munmap(buffer);
      throw e;
    }
  }

  /**
   * Removes a slot (and unmaps its memory when the VM allocated it); KvmMemoryRegionError when the slot is
   * not in use.
   */
  deleteMemoryRegion(slot: number): void {
    const fd = this.fd;
    const r = this.#regions.get(slot);
    if (!r) throw new KvmMemoryRegionError(`slot ${slot} is not in use`);
    sys(() => this.binding.setUserMemoryRegion(fd, slot, 0, r.guestPhysAddr, null));
    this.#regions.delete(slot);
    if (r.owned) this.binding.munmap(r.buffer);
  }

  #freeSlot(): number {
    let s = 0;
    while (this.#regions.has(s)) s++;
    return s;
  }

  /**
   * Turns KVM_MEM_LOG_DIRTY_PAGES on or off for a slot in use: the same KVM_SET_USER_MEMORY_REGION
   * with only the flags changed, which KVM takes on a live slot (the memory stays mapped). The log
   * starts empty when it is turned on.
   */
  setDirtyLogging(slot: number, enabled: boolean): KvmMemoryRegion {
    const fd = this.fd;
    const r = this.#regions.get(slot);
    if (!r) throw new KvmMemoryRegionError(`slot ${slot} is not in use`);
    const flags = enabled ? r.flags | KVM_MEM_LOG_DIRTY_PAGES : r.flags & ~KVM_MEM_LOG_DIRTY_PAGES;
    if (flags === r.flags) return r;
    sys(() => this.binding.setUserMemoryRegion(fd, slot, flags, r.guestPhysAddr, r.buffer));
    const region: KvmMemoryRegion = { ...r, flags };
    this.#regions.set(slot, region);
    return region;
  }

  /** KVM_GET_DIRTY_LOG: one bit per page of the slot written since the last call (clears it). */
  getDirtyLog(slot: number): BigUint64Array {
    const fd = this.fd;
    const r = this.#regions.get(slot);
    if (!r) throw new KvmMemoryRegionError(`slot ${slot} is not in use`);
    if ((r.flags & KVM_MEM_LOG_DIRTY_PAGES) === 0) {
      throw new KvmMemoryRegionError(`slot ${slot} was not registered with logDirtyPages`);
    }
    const bitmap = new BigUint64Array(Math.ceil(r.size / PAGE / 64));
    sys(() => this.binding.getDirtyLog(fd, slot, bitmap));
    return bitmap;
  }

  /** The guest-physical addresses of the pages getDirtyLog() reports dirty. */
  dirtyPages(slot: number): number[] {
    const bitmap = this.getDirtyLog(slot);
    const base = this.#regions.get(slot)!.guestPhysAddr;
    const out: number[] = [];
    bitmap.forEach((word, i) => {
      for (let b = 0; word !== 0n; b++, word >>= 1n) if (word & 1n) out.push(base + (i * 64 + b) * PAGE);
    });
    return out;
  }

  /** KVM_CREATE_VCPU; maps its kvm_run. */
  createVcpu(index: number): KvmVcpu {
    const fd = this.fd;
    if (!Number.isInteger(index) || index < 0)
      throw new RangeError("vCPU index must be a non-negative integer");
    if (this.#vcpus.has(index)) throw new RangeError(`vCPU ${index} already exists`);
    const mmapSize = this.kvm.vcpuMmapSize();
    const vcpuFd = ioctl(this.binding, fd, KVM_CREATE_VCPU, index);
    let run: ArrayBuffer;
    try {
      run = sys(() => this.binding.mmap(vcpuFd, mmapSize, 0));
    } catch (e) {
      this.binding.close(vcpuFd);
      throw e;
    }
    const vcpu = new KvmVcpu(this, vcpuFd, index, run, () => this.#vcpus.delete(index));
    this.#vcpus.set(index, vcpu);
    return vcpu;
  }

  /** KVM_CREATE_IRQCHIP: in-kernel PIC pair, IOAPIC and per-vCPU LAPICs (before creating vCPUs). */
  createIrqchip(): void {
    ioctl(this.binding, this.fd, KVM_CREATE_IRQCHIP, 0);
  }

  /** KVM_CREATE_PIT2: in-kernel i8254 (after the irqchip). */
  createPit2(opts: { speakerDummy?: boolean } = {}): void {
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_pit_config.size));
    dv.setUint32(0, opts.speakerDummy === false ? 0 : KVM_PIT_SPEAKER_DUMMY, true);
    ioctl(this.binding, this.fd, KVM_CREATE_PIT2, dv);
  }

  /** KVM_IRQ_LINE: level of a GSI of the in-kernel irqchip. */
  setIrqLine(irq: number, level: boolean): void {
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_irq_level.size));
    dv.setUint32(LAYOUTS.kvm_irq_level.fields.irq, irq >>> 0, true);
    dv.setUint32(LAYOUTS.kvm_irq_level.fields.level, level ? 1 : 0, true);
    ioctl(this.binding, this.fd, KVM_IRQ_LINE, dv);
  }

  /**
   * KVM_SET_GSI_ROUTING: the whole table of GSI-to-irqchip-pin routes (it replaces the one KVM_CREATE_IRQCHIP
   * installed). A GSI may drive several pins (a PIC pin and an I/O APIC pin).
   */
  setGsiRouting(routes: readonly GsiRoute[]): void {
    const { kvm_irq_routing: head, kvm_irq_routing_entry: entry } = LAYOUTS;
    const dv = new DataView(new ArrayBuffer(head.size + routes.length * entry.size));
    dv.setUint32(head.fields.nr, routes.length, true);
    routes.forEach((r, i) => {
      if (!Number.isInteger(r.gsi) || r.gsi < 0 || r.gsi > 0xffffffff)
        throw new RangeError(`bad GSI ${r.gsi}`);
      if (!Number.isInteger(r.pin) || r.pin < 0 || r.pin > 23)
        throw new RangeError(`bad irqchip pin ${r.pin}`);
      const at = head.fields.entries + i * entry.size;
      dv.setUint32(at + entry.fields.gsi, r.gsi, true);
      dv.setUint32(at + entry.fields.type, KVM_IRQ_ROUTING_IRQCHIP, true);
      dv.setUint32(at + entry.fields["u.irqchip.irqchip"], r.irqchip, true);
      dv.setUint32(at + entry.fields["u.irqchip.pin"], r.pin, true);
    });
    ioctl(this.binding, this.fd, KVM_SET_GSI_ROUTING, dv);
  }

  /** KVM_SET_TSS_ADDR: three pages of guest-physical space VT-x needs for real mode (below 4 GiB). */
  setTssAddress(address: number): void {
    checkAddress(address, "TSS address");
    ioctl(this.binding, this.fd, KVM_SET_TSS_ADDR, address);
  }

  /** KVM_SET_IDENTITY_MAP_ADDR: one page for the EPT identity map VT-x uses in real mode. */
  setIdentityMapAddress(address: number): void {
    checkAddress(address, "identity map address");
    const dv = new DataView(new ArrayBuffer(8));
    dv.setBigUint64(0, BigInt(address), true);
    ioctl(this.binding, this.fd, KVM_SET_IDENTITY_MAP_ADDR, dv);
  }

  #ioeventfd(eventFd: number, address: number, opts: IoeventOptions, deassign: boolean): void {
    checkAddress(address, "address");
    const f = LAYOUTS.kvm_ioeventfd.fields;
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_ioeventfd.size));
    dv.setBigUint64(f.datamatch, opts.datamatch ?? 0n, true);
    dv.setBigUint64(f.addr, BigInt(address), true);
    dv.setUint32(f.len, opts.length ?? (opts.pio ? 1 : 0), true);
    dv.setInt32(f.fd, eventFd, true);
    let flags = 0;
    if (opts.pio) flags |= KVM_IOEVENTFD_FLAG_PIO;
    if (opts.datamatch !== undefined) flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    if (deassign) flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
    dv.setUint32(f.flags, flags, true);
    ioctl(this.binding, this.fd, KVM_IOEVENTFD, dv);
  }

  /** KVM_IOEVENTFD: guest writes to address signal eventFd in the kernel, without an exit. */
  registerIoevent(eventFd: number, address: number, opts: IoeventOptions = {}): void {
    this.#ioeventfd(eventFd, address, opts, false);
  }

  /** Removes an ioeventfd registered with the same eventFd, address and options. */
  unregisterIoevent(eventFd: number, address: number, opts: IoeventOptions = {}): void {
    this.#ioeventfd(eventFd, address, opts, true);
  }

  #irqfd(eventFd: number, gsi: number, deassign: boolean): void {
    const f = LAYOUTS.kvm_irqfd.fields;
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_irqfd.size));
    dv.setUint32(f.fd, eventFd >>> 0, true);
    dv.setUint32(f.gsi, gsi >>> 0, true);
    dv.setUint32(f.flags, deassign ? KVM_IRQFD_FLAG_DEASSIGN : 0, true);
    ioctl(this.binding, this.fd, KVM_IRQFD, dv);
  }

  /** KVM_IRQFD: writing to eventFd raises GSI gsi of the in-kernel irqchip. */
  registerIrqfd(eventFd: number, gsi: number): void {
    this.#irqfd(eventFd, gsi, false);
  }

  /** Removes an irqfd registered with the same eventFd and gsi. */
  unregisterIrqfd(eventFd: number, gsi: number): void {
    this.#irqfd(eventFd, gsi, true);
  }

  /**
   * The page of the vCPU mapping that holds the coalesced-write ring (KVM_CAP_COALESCED_MMIO),
   * 0 when KVM has none; ports need KVM_CAP_COALESCED_PIO as well (coalescedPio).
   */
  get coalescedRingPage(): number {
    return this.checkExtension(KVM_CAP.COALESCED_MMIO);
  }

  /** Whether port writes can be coalesced too (KVM_CAP_COALESCED_PIO besides the MMIO ring). */
  get coalescedPio(): boolean {
    return this.coalescedRingPage > 0 && this.checkExtension(KVM_CAP.COALESCED_PIO) > 0;
  }

  #coalesced(address: number, size: number, pio: boolean, request: number): void {
    if (
      !Number.isSafeInteger(address) ||
      address < 0 ||
      !Number.isInteger(size) ||
      size < 1 ||
      size > 0xffffffff
    ) {
      throw new RangeError(`coalesced zone ${address}+${size} is not a valid range`);
    }
    if (pio && address + size > 0x10000) throw new RangeError(`ports ${address}+${size} are past 0xffff`);
    const dv = new DataView(new ArrayBuffer(16));
    dv.setBigUint64(0, BigInt(address), true);
    dv.setUint32(8, size, true);
    dv.setUint32(12, pio ? 1 : 0, true);
    ioctl(this.binding, this.fd, request, dv);
  }

  /**
   * KVM_REGISTER_COALESCED_MMIO: guest writes to [address, address + size) (I/O ports with `pio`)
   * no longer exit; KVM queues them in the ring each vCPU's run() replays (KvmVcpu). Reads still exit.
   */
  registerCoalesced(address: number, size: number, pio: boolean): void {
    this.#coalesced(address, size, pio, KVM_REGISTER_COALESCED_MMIO);
  }

  /** KVM_UNREGISTER_COALESCED_MMIO: writes to that zone exit one by one again. */
  unregisterCoalesced(address: number, size: number, pio: boolean): void {
    this.#coalesced(address, size, pio, KVM_UNREGISTER_COALESCED_MMIO);
  }

  /** KVM_GET_CLOCK: the guest's kvmclock in nanoseconds. */
  getClock(): KvmClock {
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_clock_data.size));
    ioctl(this.binding, this.fd, KVM_GET_CLOCK, dv);
    return {
      clock: dv.getBigUint64(LAYOUTS.kvm_clock_data.fields.clock, true),
      flags: dv.getUint32(LAYOUTS.kvm_clock_data.fields.flags, true),
    };
  }

  /** KVM_SET_CLOCK: sets the guest's kvmclock, in nanoseconds. */
  setClock(clock: bigint): void {
    const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_clock_data.size));
    dv.setBigUint64(LAYOUTS.kvm_clock_data.fields.clock, clock, true);
    ioctl(this.binding, this.fd, KVM_SET_CLOCK, dv);
  }

  /**
   * KVM_GET_IRQCHIP: one chip of the in-kernel irqchip (KVM_IRQCHIP_ID: the 8259s' kvm_pic_state,
   * or the I/O APIC's kvm_ioapic_state), the 512-byte union as the kernel fills it.
   */
  getIrqchip(chipId: number): Uint8Array {
    const f = LAYOUTS.kvm_irqchip.fields;
    const buf = new Uint8Array(LAYOUTS.kvm_irqchip.size);
    new DataView(buf.buffer).setUint32(f.chip_id, chipId >>> 0, true);
    ioctl(this.binding, this.fd, KVM_GET_IRQCHIP, buf);
    return buf.slice(f.chip, f.chip + 512);
  }

  /** KVM_SET_IRQCHIP: puts back a chip's state as getIrqchip() returned it (at most 512 bytes). */
  setIrqchip(chipId: number, chip: Uint8Array): void {
    const f = LAYOUTS.kvm_irqchip.fields;
    if (chip.length > 512) throw new RangeError(`an irqchip state is at most 512 bytes, got ${chip.length}`);
    const buf = new Uint8Array(LAYOUTS.kvm_irqchip.size);
    new DataView(buf.buffer).setUint32(f.chip_id, chipId >>> 0, true);
    buf.set(chip, f.chip);
    ioctl(this.binding, this.fd, KVM_SET_IRQCHIP, buf);
  }

  /** KVM_GET_PIT2: the in-kernel i8254's kvm_pit_state2 (count_load_time is host ktime, ns). */
  getPit2(): Uint8Array {
    const buf = new Uint8Array(LAYOUTS.kvm_pit_state2.size);
    ioctl(this.binding, this.fd, KVM_GET_PIT2, buf);
    return buf;
  }

  /**
   * KVM_SET_PIT2: puts back the in-kernel PIT state getPit2() returned (kvm_pit_state2, exactly its size).
   */
  setPit2(state: Uint8Array): void {
    if (state.length !== LAYOUTS.kvm_pit_state2.size) {
      throw new RangeError(`kvm_pit_state2 is ${LAYOUTS.kvm_pit_state2.size} bytes, got ${state.length}`);
    }
    ioctl(this.binding, this.fd, KVM_SET_PIT2, state.slice());
  }

  /** Closes the vCPUs, deletes and unmaps owned memory, then closes the VM fd. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    for (const v of [...this.#vcpus.values()]) v.close();
    const fd = this.#fd;
    this.#fd = -1;
    try {
      this.binding.close(fd);
    } finally {
      // the VM is gone, so no slot references the memory any more
      for (const r of this.#regions.values()) if (r.owned) this.binding.munmap(r.buffer);
      this.#regions.clear();
      this.#onClose();
    }
  }
}

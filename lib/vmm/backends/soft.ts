// The soft backend: guests run on the software VT-x (lib/vmx) over the x86 interpreter (lib/cpu).
// Host-physical memory holds guest RAM, and this hypervisor's own pages: VMCS regions, EPT paging
// structures, I/O and MSR bitmaps.

import {
  createSharedMemoryState,
  type Interpreter,
  noteHostWrite,
  type SharedMemoryState,
} from "../../cpu/index.js";
import type { Clock } from "../../devices/device.js";
import { EPT_EXEC, EPT_READ, EptBuilder, HostMemory } from "../../vmx/index.js";
import type { InterruptController, MachineBackend, VcpuBackend } from "../backend.js";
import { MachineClock } from "../clock.js";
import { MachineConfigError } from "../errors.js";
import { GuestMemory } from "../memory.js";
import { CPU_SIGNATURE } from "./soft/cpuid.js";
import { APIC_SHADOW, CONTROL_BYTES } from "./soft/thread-protocol.js";
import { SoftThreadVcpu, SoftVcpuThreads } from "./soft/threads.js";
import { SoftVcpuPool } from "./soft/threads-pool.js";
import { SoftVcpu, type SoftVcpuShared } from "./soft/vcpu.js";
import { softWorkerUrl } from "./soft/worker-script.js";

export { SoftVcpu } from "./soft/vcpu.js";

const PAGE = 4096;

export interface SoftBackendOptions {
  memoryBytes: number;
  interruptController?: InterruptController;
  /**
   * vCPUs the machine will create (default 1): the topology CPUID states, one package of that many
   * cores (QEMU's `-smp N`). Creating more raises it.
   */
  vcpus?: number;
  /**
   * The URL of the vCPU thread's module (softWorkerUrl): each vCPU then runs in a worker thread of
   * its own over shared memory (threads.ts); the machine runs them through vcpuThreads().
   */
  threadModule?: string;
  /**
   * With threadModule: the worker threads the vCPUs run on (default one per vCPU). Fewer than
   * vCPUs: each thread is a logical processor that runs one vCPU at a time, and the vCPUs move
   * between them (VMCLEAR on one, VMPTRLD on another; threads-pool.ts).
   */
  threads?: number;
}

/** guest RAM below the 32-bit PCI hole; the rest is mapped from 4 GiB (as lib/vmm/backends/kvm.ts does) */
const LOW_RAM_LIMIT = 0xc0000000;
const HIGH_RAM_BASE = 0x100000000;
const RAM_CHUNK = 0x40000000;
/** the machine's own bound (createMachine's memoryMiB) */
const MAX_RAM = 2 ** 36;

/** Where each vCPU thread's own host-physical allocations begin (VMXON and VMCS regions): 1 GiB apiece above 256 GiB. */
const THREAD_HPA_BASE = 2 ** 38;
const THREAD_HPA_STRIDE = 2 ** 30;

export class SoftBackend implements MachineBackend {
  readonly kind = "soft" as const;
  readonly memory = new GuestMemory();
  readonly host: HostMemory;
  readonly #shared: SoftVcpuShared;
  /** the EPT the vCPUs walk (RAM, and firmware ROM once mapped) */
  readonly #ept: EptBuilder;
  readonly #vcpus: SoftVcpu[] = [];
  /** guest RAM: where each region is in guest-physical and host-physical memory */
  readonly ram: { gpa: number; hpa: number; size: number }[] = [];
  readonly #threadModule: string | undefined;
  readonly #threaded: SoftThreadVcpu[] = [];
  #threads: SoftVcpuThreads | undefined;
  readonly #doorbell = new SharedArrayBuffer(4);
  #smp: SharedMemoryState | undefined;
  /** the worker threads of vCPU threads (created with the first vCPU) */
  #pool: SoftVcpuPool | undefined;
  readonly #threadCount: number | undefined;

  constructor(opts: SoftBackendOptions) {
    this.#threadModule = opts.threadModule;
    const threads = opts.threads;
    if (threads !== undefined && (!Number.isSafeInteger(threads) || threads < 1 || threads > 255)) {
      throw new RangeError(`threads must be an integer from 1 to 255, got ${threads}`);
    }
    this.#threadCount = threads;
    this.host = new HostMemory({ shared: opts.threadModule !== undefined });
    const size = opts.memoryBytes;
    const vcpus = opts.vcpus ?? 1;
    if (!Number.isSafeInteger(vcpus) || vcpus < 1 || vcpus > 255) {
      throw new RangeError(`vcpus must be an integer from 1 to 255, got ${vcpus}`);
    }
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE !== 0 || size > MAX_RAM) {
      throw new RangeError(`memoryBytes must be a positive multiple of 4 KiB up to 64 GiB, got ${size}`);
    }
    const ept = new EptBuilder(this.host);
    this.#ept = ept;
    // a PC's layout, as the KVM backend maps it: up to 3 GiB from 0, the rest from 4 GiB (the
    // 32-bit PCI hole between), in chunks of at most 1 GiB (an ArrayBuffer's size is bounded)
    const low = Math.min(size, LOW_RAM_LIMIT);
    const layout: [number, number][] = [[0, low]];
    for (let done = low; done < size; done += RAM_CHUNK) {
      layout.push([HIGH_RAM_BASE + (done - low), Math.min(RAM_CHUNK, size - done)]);
    }
    for (const [gpa, bytes] of layout) {
      const ram = this.host.allocate(bytes);
      this.memory.addRegion(gpa, ram.bytes);
      ept.map(gpa, ram.hpa, bytes);
      this.ram.push({ gpa, hpa: ram.hpa, size: bytes });
    }
    const ioBitmapA = this.host.allocatePage();
    const ioBitmapB = this.host.allocatePage();
    // every port exits: the machine's buses own all of port space
    for (const page of [ioBitmapA, ioBitmapB]) {
      for (let i = 0; i < PAGE; i += 4) this.host.writeU32(page + i, 0xffffffff);
    }
    const msrBitmap = this.host.allocatePage();
    // the VMX capability MSRs and IA32_FEATURE_CONTROL exit; the rest of the low range and the
    // high range are the interpreter's (MSRs outside both ranges always exit)
    for (let msr = 0x480; msr <= 0x491; msr++) {
      for (const off of [0, 0x800]) {
        const at = msrBitmap + off + (msr >> 3);
        this.host.writeU8(at, this.host.readU8(at) | (1 << (msr & 7)));
      }
    }
    for (const off of [0, 0x800]) this.host.writeU8(msrBitmap + off + (0x3a >> 3), 1 << (0x3a & 7));
    // EFER and PAT live in the VMCS (load/save controls): their accesses exit so the VMCS stays the truth
    for (const [msr, base] of [
      [0xc0000080, 0x400],
      [0x277, 0],
    ] as const) {
      for (const w of [0, 0x800]) {
        const at = msrBitmap + base + w + ((msr & 0x1fff) >> 3);
        this.host.writeU8(at, this.host.readU8(at) | (1 << (msr & 7)));
      }
    }
    this.#shared = {
      memory: this.host,
      ept,
      ioBitmapA,
      ioBitmapB,
      msrBitmap,
      interrupts: opts.interruptController,
      guestMemory: this.memory,
      vcpus,
      memoryGeneration: (vcpu) => this.#memoryGeneration(vcpu),
    };
  }

  /** the vCPU on this thread that asked memoryGeneration last (the one that ran last) */
  #lastRunner = -1;
  /** times the vCPU asking was not the one that asked before (another vCPU ran in between) */
  #handoffs = 0;

  /**
   * What vCPU `vcpu` (on this thread) compares to know whether its cached code may be stale: host
   * writes (GuestMemory.generation), plus a turn of another vCPU, whose interpreter writes memory
   * this one's does not guard (so vCPUs interleaved on one thread see one another's code writes at
   * their next entry, as they did when every entry re-checked)
   */
  #memoryGeneration(vcpu: number): number {
    if (vcpu !== this.#lastRunner) {
      this.#lastRunner = vcpu;
      this.#handoffs++;
    }
    return this.memory.generation + this.#handoffs;
  }

  createVcpu(index: number): VcpuBackend {
    this.#shared.vcpus = Math.max(this.#shared.vcpus, index + 1);
    if (this.#threadModule !== undefined) return this.#createThreadVcpu(index);
    const vcpu = new SoftVcpu(index, this.#shared);
    this.#vcpus.push(vcpu);
    return vcpu;
  }

  #createThreadVcpu(index: number): SoftThreadVcpu {
    const clock = this.#shared.clock;
    if (clock !== undefined && !(clock instanceof MachineClock)) {
      throw new MachineConfigError(
        "vCPU threads need the host clock (deterministic runs interleave vCPUs on one thread)",
      );
    }
    if (this.#threads)
      throw new MachineConfigError("vCPU threads are already running: no vCPU can join them");
    const s = this.#shared;
    const interrupts = s.interrupts?.forCpu?.(index) ?? s.interrupts;
    this.#pool ??= new SoftVcpuPool({
      url: this.#threadModule!,
      threads: this.#threadCount,
      doorbell: this.#doorbell,
      firstHpa: (worker) => THREAD_HPA_BASE + worker * THREAD_HPA_STRIDE,
      // read as the workers start, once every vCPU is created
      common: () => ({
        chunks: this.host.sharedChunks(),
        ram: this.ram,
        eptp: s.ept.eptp,
        ioBitmapA: s.ioBitmapA,
        ioBitmapB: s.ioBitmapB,
        msrBitmap: s.msrBitmap,
        clock: clock?.share(),
        interrupts: interrupts !== undefined,
        smp: this.#smpState(),
      }),
    });
    const control = new SharedArrayBuffer(CONTROL_BYTES);
    const apicShadow = new SharedArrayBuffer(APIC_SHADOW.WORDS * 4);
    // the VMCS region in host memory every worker maps: the vCPU's VMCS moves with VMCLEAR/VMPTRLD
    const vmcs = this.host.allocatePage();
    try {
      this.#pool.add(index, { control, apicShadow, vmcs });
    } catch (e) {
      throw new MachineConfigError((e as Error).message);
    }
    const v = new SoftThreadVcpu({
      pool: this.#pool,
      control,
      apicShadow,
      eptp: s.ept.eptp,
      index,
      clock,
      interrupts,
      onChange: () => this.#threads?.sync(),
    });
    this.#threaded.push(v);
    return v;
  }

  /**
   * Several vCPU threads: the state their interpreters share over guest memory (one for all; the
   * machine creates every vCPU before any runs, and the last one created sets the count)
   */
  #smpState(): SharedMemoryState | undefined {
    const vcpus = this.#shared.vcpus;
    if (vcpus < 2) return undefined;
    if (!this.#smp) {
      const top = Math.max(...this.ram.map((r) => r.gpa + r.size));
      const smp = createSharedMemoryState(top, vcpus);
      this.#smp = smp;
      // devices and the host write guest memory while the vCPUs run in their threads
      this.memory.onHostWrite = (gpa, length) => {
        noteHostWrite(smp, gpa, length);
      };
    }
    return this.#smp;
  }

  /**
   * The vCPUs' threads, once every vCPU is created and its thread started (undefined when the
   * vCPUs run on the caller's thread). The machine's runs go through them (loop-threads.ts).
   */
  async vcpuThreads(): Promise<SoftVcpuThreads | undefined> {
    if (this.#threadModule === undefined) return undefined;
    if (!this.#threads) {
      await Promise.all(this.#threaded.map((v) => v.ready()));
      this.#threads = new SoftVcpuThreads(this.#threaded, this.#doorbell, this.#pool!);
      this.#threads.sync();
    }
    return this.#threads;
  }

  /**
   * The host (a loader, a snapshot restore, a debugger's breakpoint) wrote guest-physical
   * [gpa, gpa + length): every vCPU forgets the code it decoded from there. Guest writes need no
   * call: a vCPU drops its own blocks as it writes them, and the first VM entry of another after
   * it ran re-checks a block's bytes before it first runs (#memoryGeneration, Interpreter.runEpoch),
   * so all vCPUs interleaved on this thread see one another's code writes at their next entry at
   * the latest.
   */
  invalidateCode(gpa: number, length: number): void {
    for (const v of this.#vcpus) (v.lp.cpu as Partial<Interpreter>).invalidateCode?.(gpa, length);
    for (const v of this.#threaded) v.invalidateCode(gpa, length);
  }

  /**
   * Firmware ROM: host memory the EPT maps readable and executable but not writable, so the
   * guest's writes are EPT violations that exit as MMIO. vCPU threads attached host memory when
   * they started, so they never see it: refused there.
   */
  mapRom(gpa: number, bytes: Uint8Array): void {
    if (this.#threaded.length > 0) {
      throw new MachineConfigError(
        "firmware ROM cannot be mapped for soft vCPU threads (run without vcpuThread)",
      );
    }
    const rom = this.host.allocate(bytes.length);
    rom.bytes.set(bytes);
    this.#ept.map(gpa, rom.hpa, bytes.length, EPT_READ | EPT_EXEC);
    // a vCPU may have cached the range as MMIO (an earlier run): as INVEPT after changing EPT
    for (const v of this.#vcpus) v.lp.cpu.flushTlb();
    this.invalidateCode(gpa, bytes.length);
  }

  /** CPUID.1:EAX as the soft vCPUs answer it */
  cpuSignature(): number {
    return CPU_SIGNATURE;
  }

  useClock(clock: Clock): void {
    if (this.#threaded.length > 0)
      throw new MachineConfigError("the clock of vCPU threads is set before they start");
    this.#shared.clock = clock;
    for (const v of this.#vcpus) v.useClock(clock);
  }

  setIrqLine(line: number, level: boolean): void {
    this.#shared.interrupts?.setIrq(line, level);
    // vCPU threads see interrupts through their pending words
    this.#threads?.sync();
  }

  close(): void {
    for (const v of this.#vcpus) v.close();
    for (const v of this.#threaded) v.close();
    this.#pool?.close();
  }
}

export function createSoftBackend(opts: SoftBackendOptions): MachineBackend {
  return new SoftBackend(opts);
}

/** the module vCPU threads load (SoftBackendOptions.threadModule); rejects when this build has none */
export { softWorkerUrl };

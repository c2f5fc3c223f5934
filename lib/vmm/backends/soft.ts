// The soft backend: guests run on the software VT-x (lib/vmx) over the x86 interpreter (lib/cpu).
// Host-physical memory holds guest RAM, and this hypervisor's own pages: VMCS regions, EPT paging
// structures, I/O and MSR bitmaps.

import type { Interpreter } from "../../cpu/index.js";
import type { Clock } from "../../devices/device.js";
import { EptBuilder, HostMemory } from "../../vmx/index.js";
import type { InterruptController, MachineBackend, VcpuBackend } from "../backend.js";
import { GuestMemory } from "../memory.js";
import { SoftVcpu, type SoftVcpuShared } from "./soft/vcpu.js";

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
}

export class SoftBackend implements MachineBackend {
  readonly kind = "soft" as const;
  readonly memory = new GuestMemory();
  readonly host = new HostMemory();
  readonly #shared: SoftVcpuShared;
  readonly #vcpus: SoftVcpu[] = [];
  readonly ramHpa: number;

  constructor(opts: SoftBackendOptions) {
    const size = opts.memoryBytes;
    const vcpus = opts.vcpus ?? 1;
    if (!Number.isSafeInteger(vcpus) || vcpus < 1 || vcpus > 255) {
      throw new RangeError(`vcpus must be an integer from 1 to 255, got ${vcpus}`);
    }
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE !== 0 || size > 0xc0000000) {
      throw new RangeError(`memoryBytes must be a positive multiple of 4 KiB up to 3 GiB, got ${size}`);
    }
    const ram = this.host.allocate(size);
    this.ramHpa = ram.hpa;
    this.memory.addRegion(0, ram.bytes);
    const ept = new EptBuilder(this.host);
    ept.map(0, ram.hpa, size);
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
    };
  }

  createVcpu(index: number): VcpuBackend {
    this.#shared.vcpus = Math.max(this.#shared.vcpus, index + 1);
    const vcpu = new SoftVcpu(index, this.#shared);
    this.#vcpus.push(vcpu);
    return vcpu;
  }

  /**
   * The host (a loader, a snapshot restore, a debugger's breakpoint) wrote guest-physical
   * [gpa, gpa + length): every vCPU forgets the code it decoded from there. Guest writes need no
   * call: a vCPU drops its own blocks as it writes them, and each VM entry of another re-checks a
   * block's bytes before it first runs (Interpreter.runEpoch), so all vCPUs interleaved on this
   * thread see one another's code writes at their next entry at the latest.
   */
  invalidateCode(gpa: number, length: number): void {
    for (const v of this.#vcpus) (v.lp.cpu as Partial<Interpreter>).invalidateCode?.(gpa, length);
  }

  useClock(clock: Clock): void {
    this.#shared.clock = clock;
    for (const v of this.#vcpus) v.useClock(clock);
  }

  setIrqLine(line: number, level: boolean): void {
    this.#shared.interrupts?.setIrq(line, level);
  }

  close(): void {
    for (const v of this.#vcpus) v.close();
  }
}

export function createSoftBackend(opts: SoftBackendOptions): MachineBackend {
  return new SoftBackend(opts);
}

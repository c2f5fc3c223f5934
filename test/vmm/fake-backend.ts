// A scripted MachineBackend for tests: run() hands out a fixed sequence of exits and records what
// the loop did (data filled for "in" exits, IRQ levels, kicks, instruction budgets).

import type { RawExit, VmExit } from "../../lib/types/exits.js";
import { emptyRegs, type Regs, type Segment, type SpecialRegs, segment } from "../../lib/types/regs.js";
import type { MachineBackend, VcpuBackend } from "../../lib/vmm/backend.js";
import { GuestMemory } from "../../lib/vmm/memory.js";

export const KVM_RAW = (code: number): RawExit => ({ backend: "kvm", code });

export const io = (
  direction: "in" | "out",
  port: number,
  size: 1 | 2 | 4,
  bytes: number[] = [],
  count = 1,
): VmExit => ({
  kind: "io",
  direction,
  port,
  size,
  count,
  data: direction === "out" ? Uint8Array.from(bytes) : new Uint8Array(size * count),
  raw: KVM_RAW(2),
});

export const hlt = (): VmExit => ({ kind: "hlt", raw: KVM_RAW(5) });
export const intr = (): VmExit => ({ kind: "intr", raw: KVM_RAW(10) });

/** Real-mode segment `selector` (base selector * 16, 64 KiB limit) of descriptor type `type`. */
export function realSeg(selector = 0, type = 3): Segment {
  return segment({ selector, base: BigInt(selector) << 4n, type });
}

export function resetSregs(): SpecialRegs {
  return {
    cs: realSeg(0, 0xb),
    ds: realSeg(),
    es: realSeg(),
    fs: realSeg(),
    gs: realSeg(),
    ss: realSeg(),
    tr: { ...realSeg(0, 0xb), s: false },
    ldt: { ...realSeg(0, 2), s: false },
    gdt: { base: 0n, limit: 0xffff },
    idt: { base: 0n, limit: 0x3ff },
    cr0: 0x60000010n,
    cr2: 0n,
    cr3: 0n,
    cr4: 0n,
    cr8: 0n,
    efer: 0n,
    apicBase: 0xfee00900n,
  };
}

/** A step of the script: an exit, or a function producing one (it may look at the vCPU). */
export type Step = VmExit | ((vcpu: FakeVcpu) => VmExit);

export class FakeVcpu implements VcpuBackend {
  regs = emptyRegs();
  sregs = resetSregs();
  readonly msrs = new Map<number, bigint>();
  /** exits returned so far, in order */
  readonly returned: VmExit[] = [];
  kicks = 0;
  runs = 0;
  closed = false;
  budget: number | undefined;
  readonly budgets: (number | undefined)[] = [];
  retired = 0;
  #pos = 0;

  constructor(
    readonly index: number,
    readonly script: Step[],
    /** what run() returns when the script is exhausted */
    readonly tail: () => VmExit = hlt,
    readonly countsInstructions = false,
  ) {
    if (!countsInstructions) {
      this.setInstructionBudget = undefined;
      this.instructionsRetired = undefined;
    }
  }

  run(): VmExit {
    this.runs++;
    const step = this.#pos < this.script.length ? this.script[this.#pos++]! : this.tail;
    const exit = typeof step === "function" ? step(this) : step;
    this.returned.push(exit);
    return exit;
  }
  getRegs(): Regs {
    return { ...this.regs };
  }
  setRegs(regs: Regs): void {
    this.regs = { ...regs };
  }
  getSregs(): SpecialRegs {
    return structuredClone(this.sregs);
  }
  setSregs(sregs: SpecialRegs): void {
    this.sregs = structuredClone(sregs);
  }
  getMsr(index: number): bigint | undefined {
    return this.msrs.get(index);
  }
  setMsr(index: number, value: bigint): void {
    this.msrs.set(index, value);
  }
  kick(): void {
    this.kicks++;
  }
  close(): void {
    this.closed = true;
  }
  setInstructionBudget?: ((n: number | undefined) => void) | undefined = (n) => {
    this.budget = n;
    this.budgets.push(n);
  };
  instructionsRetired?: (() => number) | undefined = () => this.retired;
}

export class FakeBackend implements MachineBackend {
  readonly memory = new GuestMemory();
  readonly irqEvents: [number, boolean][] = [];
  readonly vcpus: FakeVcpu[] = [];
  closed = false;

  constructor(
    readonly script: Step[],
    readonly opts: {
      kind?: "kvm" | "soft";
      memoryBytes?: number;
      tail?: () => VmExit;
      countsInstructions?: boolean;
    } = {},
  ) {
    this.memory.addRegion(0, new Uint8Array(opts.memoryBytes ?? 1 << 20));
  }

  get kind(): "kvm" | "soft" {
    return this.opts.kind ?? "kvm";
  }

  createVcpu(index: number): FakeVcpu {
    const v = new FakeVcpu(index, this.script, this.opts.tail, this.opts.countsInstructions);
    this.vcpus.push(v);
    return v;
  }
  setIrqLine(line: number, level: boolean): void {
    this.irqEvents.push([line, level]);
  }
  close(): void {
    this.closed = true;
  }
}

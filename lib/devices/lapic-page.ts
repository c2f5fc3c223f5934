// The 0xFEE00000 page on a machine with several local APICs. Every CPU sees its own APIC at the same
// address, so the bus has one device, and each access goes to the APIC of the CPU that made it
// (`current`, which the machine sets before handling each exit). Timers tick whoever runs: poll()
// serves every APIC's. Its snapshot holds every APIC's state.

import { describeValue } from "../types/describe-value.js";
import type { Device, DeviceContext, DeviceRange } from "./device.js";
import { DeviceConfigError } from "./errors.js";
import { LocalApic, type LocalApicState } from "./lapic.js";

/** The snapshot of a {@link LapicPage}: every CPU's local APIC. */
export interface LapicPageState {
  /** one state per CPU, index = CPU number */
  lapics: LocalApicState[];
}

/**
 * The local APIC page (0xFEE00000) of a machine with several CPUs: one device whose accesses go to the
 * APIC of the CPU that made them (PcInterrupts.lapicPage).
 */
export class LapicPage implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "lapic";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[];
  /** the local APICs, index = CPU number */
  readonly lapics: readonly LocalApic[];
  #current = 0;

  constructor(lapics: readonly LocalApic[]) {
    if (!Array.isArray(lapics)) {
      throw new DeviceConfigError(this.name, "lapics", `must be an array, got ${describeValue(lapics)}`);
    }
    if (lapics.length === 0)
      throw new DeviceConfigError(this.name, "lapics", "at least one local APIC is needed");
    const ids = new Set<number>();
    lapics.forEach((a: unknown, i) => {
      if (!(a instanceof LocalApic)) {
        throw new DeviceConfigError(
          this.name,
          `lapics[${i}]`,
          `must be a LocalApic, got ${describeValue(a)}`,
        );
      }
      // one page serves them all: an APIC elsewhere would be reached at the wrong address
      if (a.ranges[0]!.base !== lapics[0]!.ranges[0]!.base) {
        throw new DeviceConfigError(this.name, `lapics[${i}]`, "is not at the first APIC's base address");
      }
      // the APIC bus addresses CPUs by APIC ID: two with one ID would both take its messages
      const id = a.x2apicId; // the initial APIC ID, whatever the guest wrote to the ID register
      if (ids.has(id)) throw new DeviceConfigError(this.name, `lapics[${i}]`, `APIC ID ${id} is taken`);
      ids.add(id);
    });
    this.lapics = lapics;
    this.ranges = lapics[0]!.ranges;
  }

  /** the CPU whose APIC the page serves */
  get current(): number {
    return this.#current;
  }
  set current(cpu: number) {
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.lapics.length) {
      throw new DeviceConfigError(
        this.name,
        "currentCpu",
        `${describeValue(cpu)} is not a CPU 0-${this.lapics.length - 1}`,
      );
    }
    this.#current = cpu;
  }

  /** {@inheritDoc Device.attach} */
  attach(ctx: DeviceContext): void {
    for (const a of this.lapics) a.attach(ctx);
  }

  /** {@inheritDoc Device.read} */
  read(offset: number, size: number, rangeIndex: number): number {
    return this.lapics[this.#current]!.read(offset, size, rangeIndex);
  }

  /** {@inheritDoc Device.write} */
  write(offset: number, size: number, value: number, rangeIndex: number): void {
    this.lapics[this.#current]!.write(offset, size, value, rangeIndex);
  }

  /** every APIC's timer; ns until the first of them next needs a call */
  poll(nowNs: number): number | undefined {
    let next: number | undefined;
    for (const a of this.lapics) {
      const n = a.poll(nowNs);
      if (n !== undefined && (next === undefined || n < next)) next = n;
    }
    return next;
  }

  /** {@inheritDoc Device.reset} */
  reset(): void {
    for (const a of this.lapics) a.reset();
  }

  /** {@inheritDoc SnapshottableDevice.snapshot} */
  snapshot(): LapicPageState {
    return { lapics: this.lapics.map((a) => a.snapshot()) };
  }

  /** takes a LapicPageState, or one LocalApicState (a snapshot from before SMP) on a 1-CPU machine */
  restore(s: LapicPageState | LocalApicState): void {
    const states =
      s && Array.isArray((s as Partial<LapicPageState>).lapics) ? (s as LapicPageState).lapics : [s];
    if (states.length !== this.lapics.length) {
      throw new DeviceConfigError(
        this.name,
        "restore",
        `the state has ${states.length} local APICs, this machine ${this.lapics.length}`,
      );
    }
    states.forEach((st, i) => {
      this.lapics[i]!.restore(st as LocalApicState);
    });
  }
}

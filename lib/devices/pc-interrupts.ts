// The PC's interrupt routing for the soft backend, as KVM's in-kernel irqchip wires it: every
// interrupt line feeds both the i8259 pair and the I/O APIC; the I/O APIC's messages and the local
// APICs' IPIs travel the APIC bus (apic-bus.ts) to one local APIC per CPU (APIC ID = CPU index).
// A CPU takes its own local APIC's vector, or the 8259's through its LINT0 programmed ExtINT (the
// virtual wire, on at reset on the BSP only) or through an I/O APIC pin 0 entry programmed ExtINT
// whose destination selects it. forCpu(i) is what CPU i's vCPU asks, its APIC's MSRs (x2APIC,
// IA32_TSC_DEADLINE) included; the methods of the class itself are CPU 0's. It has the shape of
// lib/vmm's InterruptController (setIrq/hasInterrupt/acknowledge/taskPriority/apicMsrs/forCpu)
// without importing it.

import { describeValue } from "../types/describe-value.js";
import { ApicBus, type CpuSignalHandler } from "./apic-bus.js";
import type { Device } from "./device.js";
import { DeviceConfigError } from "./errors.js";
import { I8259Pair } from "./i8259.js";
import { type ApicMessage, IOAPIC_PINS, IoApic } from "./ioapic.js";
import { LocalApic } from "./lapic.js";
import { LapicPage } from "./lapic-page.js";
import type { TscSource } from "./lapic-timer.js";
import { DeviceOptionReader } from "./options.js";

/** xAPIC IDs are 8 bits and 0xFF is the broadcast, so 255 CPUs at most */
export const MAX_APIC_CPUS = 255;

/** Options of {@link PcInterrupts}; controllers left out are made with their defaults. */
export interface PcInterruptsOptions {
  /** CPUs, one local APIC each (APIC ID = CPU index); default 1 */
  cpus?: number;
  /** The i8259 pair to use. */
  i8259?: I8259Pair;
  /** The I/O APIC to use. */
  ioapic?: IoApic;
  /** CPU 0's local APIC (the others are made with IDs 1..cpus-1 at its base) */
  lapic?: LocalApic;
  /**
   * The I/O APIC pin ISA IRQ 0 (the PIT) drives; default 2, the interrupt source override of
   * PC firmware and QEMU (ISA IRQ 2, the 8259 cascade, then reaches no I/O APIC pin).
   */
  irq0Pin?: number;
}

/** the highest line setIrq takes: ISA IRQs 0-15 and the I/O APIC's other pins as GSIs 16-23 */
export const MAX_INTERRUPT_LINE = IOAPIC_PINS - 1;

/** the interrupt controller as one CPU sees it (lib/vmm's InterruptController shape) */
export interface CpuInterrupts {
  /** Drives interrupt line `line` (0 to MAX_INTERRUPT_LINE: ISA IRQs 0-15, GSIs 16-23) to `level`. */
  setIrq(line: number, level: boolean): void;
  /** Whether an interrupt is pending for the CPU (its local APIC, or the 8259 through ExtINT). */
  hasInterrupt(): boolean;
  /** Acknowledges the highest-priority pending interrupt and returns its vector (the CPU's INTA cycle). */
  acknowledge(): number;
  /** the CPU's LAPIC TPR, which CR8 aliases (bits 3:0 of CR8 are TPR bits 7:4) */
  readonly taskPriority: { get(): number; set(value: number): void };
  /** the CPU's own LAPIC as its RDMSR/WRMSR reach it */
  readonly apicMsrs: LocalApicMsrs;
  /**
   * The vector acknowledge() would return now when the CPU's local APIC answers it (its highest
   * IRR above the PPR), without taking it; -1 when nothing is pending or the 8259 would answer
   * (its vector is decided by its own INTA cycle)
   */
  nextApicVector(): number;
}

/**
 * A local APIC's MSRs, for the CPU that owns it: the x2APIC registers (0x800-0x8FF) and
 * IA32_TSC_DEADLINE (readMsr undefined / writeMsr false: #GP), the mode IA32_APIC_BASE.EXTD
 * selects, and the CPU's TSC for TSC-deadline mode.
 */
export interface LocalApicMsrs {
  /** on a machine (a bare one leaves the controllers unattached: then the CPU has no APIC MSRs) */
  readonly attached: boolean;
  /** Reads an x2APIC register or IA32_TSC_DEADLINE; undefined when RDMSR would #GP. */
  readMsr(index: number): bigint | undefined;
  /** Writes one; false when WRMSR would #GP. */
  writeMsr(index: number, value: bigint): boolean;
  /** Whether the APIC is in x2APIC mode (IA32_APIC_BASE.EXTD). */
  readonly x2apic: boolean;
  /** Switches x2APIC mode on or off, as IA32_APIC_BASE.EXTD does. */
  setX2apic(on: boolean): void;
  /** The CPU's TSC, for TSC-deadline mode. */
  tsc: TscSource | undefined;
}

/**
 * The soft backend's PC interrupt routing, wired as KVM's in-kernel irqchip: every line feeds both the i8259
 * pair and the I/O APIC, whose messages (and IPIs) reach one local APIC per CPU. `vm.pic` when the machine
 * made it; its own methods act for CPU 0, forCpu(i) for CPU i.
 */
export class PcInterrupts {
  /** The legacy PIC pair. */
  readonly i8259: I8259Pair;
  /** The I/O APIC. */
  readonly ioapic: IoApic;
  /** one local APIC per CPU, index = CPU number = initial APIC ID */
  readonly lapics: readonly LocalApic[];
  /** CPU 0's local APIC */
  readonly lapic: LocalApic;
  /** the APIC bus the I/O APIC and the IPIs travel */
  readonly bus: ApicBus;
  /** the device at 0xFEE00000 that serves the current CPU's APIC */
  readonly lapicPage: LapicPage;
  readonly #pinOf: Int8Array;
  readonly #views: CpuInterrupts[];

  constructor(opts?: PcInterruptsOptions) {
    const o: DeviceOptionReader<PcInterruptsOptions> = new DeviceOptionReader("pc-interrupts", opts);
    const cpus = o.integer("cpus", 1, 1, MAX_APIC_CPUS);
    const irq0Pin = o.integer("irq0Pin", 2, 0, MAX_INTERRUPT_LINE);
    const given = <C>(
      key: "i8259" | "ioapic" | "lapic",
      cls: abstract new (...a: never[]) => C,
    ): C | undefined => {
      const v = o.raw(key);
      if (v !== undefined && !(v instanceof cls))
        o.fail(key, `must be an instance of ${cls.name}, got ${describeValue(v)}`);
      return v as C | undefined;
    };
    const lapic = given("lapic", LocalApic);
    // the others take IDs 1..cpus-1
    if (lapic && !lapic.isBsp) o.fail("lapic", `must be CPU 0's, with APIC ID 0 (it has ${lapic.x2apicId})`);
    this.i8259 = given("i8259", I8259Pair) ?? new I8259Pair();
    this.ioapic = given("ioapic", IoApic) ?? new IoApic();
    this.lapic = lapic ?? new LocalApic();
    const base = this.lapic.ranges[0]!.base;
    const lapics = [this.lapic];
    for (let id = 1; id < cpus; id++) lapics.push(new LocalApic({ id, base }));
    this.lapics = lapics;
    this.#pinOf = new Int8Array(IOAPIC_PINS);
    for (let line = 0; line < IOAPIC_PINS; line++) this.#pinOf[line] = line;
    if (irq0Pin !== 0) {
      this.#pinOf[0] = irq0Pin;
      this.#pinOf[irq0Pin] = -1;
    }
    this.bus = new ApicBus(lapics);
    this.lapicPage = new LapicPage(lapics);
    this.ioapic.deliver = (msg: ApicMessage) => this.bus.deliver(msg);
    for (const apic of lapics) {
      // EOIs are broadcast: any CPU's EOI of a level-triggered vector reaches the I/O APIC
      apic.onEoi = (vector) => this.ioapic.eoi(vector);
      apic.sendIpi = (ipi) => {
        this.bus.deliver(ipi, ipi);
      };
    }
    this.#views = lapics.map((_, i) => this.#view(i));
  }

  /** How many CPUs (local APICs) it routes to. */
  get cpus(): number {
    return this.lapics.length;
  }

  /** the devices to map on the machine's buses */
  get devices(): readonly Device[] {
    return [this.i8259, this.ioapic, this.lapicPage];
  }

  /** the CPU whose accesses the 0xFEE00000 page serves; the machine sets it before each exit */
  get currentCpu(): number {
    return this.lapicPage.current;
  }
  set currentCpu(cpu: number) {
    this.lapicPage.current = cpu;
  }

  /** INIT, SIPI and NMI messages on the APIC bus, for the CPU they address */
  get onCpuSignal(): CpuSignalHandler | undefined {
    return this.bus.onCpuSignal;
  }
  set onCpuSignal(fn: CpuSignalHandler | undefined) {
    this.bus.onCpuSignal = fn;
  }

  /** the controller as CPU `index` sees it: its own local APIC, the 8259 if its ExtINT path is open */
  forCpu(index: number): CpuInterrupts {
    const v = this.#views[index];
    if (!Number.isInteger(index) || !v) {
      throw new DeviceConfigError(
        "pc-interrupts",
        "forCpu",
        `${String(index)} is not a CPU 0-${this.cpus - 1}`,
      );
    }
    return v;
  }

  /** the I/O APIC pin `line` drives, or -1 */
  ioapicPin(line: number): number {
    return this.#pinOf[line] ?? -1;
  }

  /**
   * Drives interrupt line `line` (0 to MAX_INTERRUPT_LINE: ISA IRQs 0-15, GSIs 16-23) to `level`; throws
   * DeviceConfigError for another line.
   */
  setIrq(line: number, level: boolean): void {
    if (!Number.isInteger(line) || line < 0 || line > MAX_INTERRUPT_LINE) {
      throw new DeviceConfigError(
        "pc-interrupts",
        "setIrq",
        `line ${String(line)} is not an interrupt line 0-${MAX_INTERRUPT_LINE}`,
      );
    }
    if (line < 16) this.i8259.setIrq(line, level);
    const pin = this.#pinOf[line]!;
    if (pin >= 0) this.ioapic.setPin(pin, level);
  }

  /** whether the 8259's INTR reaches CPU `cpu`: its LINT0, or an I/O APIC ExtINT entry addressed to it */
  extIntOpen(cpu: number): boolean {
    const apic = this.lapics[cpu]!;
    if (apic.acceptsExtInt()) return true;
    if (!this.ioapic.routesExtInt() || !apic.hardwareEnabled()) return false;
    const [low, high] = this.ioapic.entry(0);
    return apic.matchesDestination(high >>> 24, (low & (1 << 11)) !== 0);
  }

  /** CPU 0's TPR (see CpuInterrupts.taskPriority) */
  get taskPriority(): CpuInterrupts["taskPriority"] {
    return this.#views[0]!.taskPriority;
  }

  /** Whether an interrupt is pending for CPU 0. */
  hasInterrupt(): boolean {
    return this.#views[0]!.hasInterrupt();
  }

  /** CPU 0 takes an interrupt (see forCpu) */
  acknowledge(): number {
    return this.#views[0]!.acknowledge();
  }

  #view(cpu: number): CpuInterrupts {
    const apic = this.lapics[cpu]!;
    const i8259 = this.i8259;
    return {
      setIrq: (line, level) => this.setIrq(line, level),
      hasInterrupt: () => (i8259.hasInterrupt() && this.extIntOpen(cpu)) || apic.pendingVector() >= 0,
      // the 8259 first, as KVM's kvm_cpu_get_interrupt() takes ExtINT before the APIC's vectors
      acknowledge: () =>
        i8259.hasInterrupt() && this.extIntOpen(cpu) ? i8259.acknowledge() : apic.acknowledge(),
      taskPriority: {
        get: () => apic.tpr,
        set: (value) => {
          apic.tpr = value & 0xff;
        },
      },
      apicMsrs: apic,
      nextApicVector: () => (i8259.hasInterrupt() && this.extIntOpen(cpu) ? -1 : apic.pendingVector()),
    };
  }
}

// The PC's interrupt routing for the soft backend, as KVM's in-kernel irqchip wires it: every
// interrupt line feeds both the i8259 pair and the I/O APIC; the CPU takes the local APIC's vector,
// or the 8259's through LINT0 programmed ExtINT (the virtual wire, on at reset) or through an I/O
// APIC pin 0 entry programmed ExtINT. It has the shape of lib/vmm's InterruptController
// (setIrq/hasInterrupt/acknowledge) without importing it.

import type { Device } from "./device.js";
import { DeviceConfigError } from "./errors.js";
import { I8259Pair } from "./i8259.js";
import { type ApicMessage, IOAPIC_PINS, IoApic } from "./ioapic.js";
import { LocalApic } from "./lapic.js";

export interface PcInterruptsOptions {
  i8259?: I8259Pair;
  ioapic?: IoApic;
  lapic?: LocalApic;
  /**
   * The I/O APIC pin ISA IRQ 0 (the PIT) drives; default 2, the interrupt source override of
   * PC firmware and QEMU (ISA IRQ 2, the 8259 cascade, then reaches no I/O APIC pin).
   */
  irq0Pin?: number;
}

/** the highest line setIrq takes: ISA IRQs 0-15 and the I/O APIC's other pins as GSIs 16-23 */
export const MAX_INTERRUPT_LINE = IOAPIC_PINS - 1;

export class PcInterrupts {
  readonly i8259: I8259Pair;
  readonly ioapic: IoApic;
  readonly lapic: LocalApic;
  readonly #pinOf: Int8Array;

  constructor(opts: PcInterruptsOptions = {}) {
    this.i8259 = opts.i8259 ?? new I8259Pair();
    this.ioapic = opts.ioapic ?? new IoApic();
    this.lapic = opts.lapic ?? new LocalApic();
    const irq0Pin = opts.irq0Pin ?? 2;
    if (!Number.isInteger(irq0Pin) || irq0Pin < 0 || irq0Pin > MAX_INTERRUPT_LINE) {
      throw new DeviceConfigError("pc-interrupts", "irq0Pin", `${String(irq0Pin)} is not an I/O APIC pin`);
    }
    this.#pinOf = new Int8Array(IOAPIC_PINS);
    for (let line = 0; line < IOAPIC_PINS; line++) this.#pinOf[line] = line;
    if (irq0Pin !== 0) {
      this.#pinOf[0] = irq0Pin;
      this.#pinOf[irq0Pin] = -1;
    }
    this.ioapic.deliver = (msg) => this.#deliver(msg);
    this.lapic.onEoi = (vector) => this.ioapic.eoi(vector);
  }

  /** the devices to map on the machine's buses */
  get devices(): readonly Device[] {
    return [this.i8259, this.ioapic, this.lapic];
  }

  /** the I/O APIC pin `line` drives, or -1 */
  ioapicPin(line: number): number {
    return this.#pinOf[line] ?? -1;
  }

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

  #extIntOpen(): boolean {
    return this.lapic.acceptsExtInt() || this.ioapic.routesExtInt();
  }

  /** the LAPIC's TPR, which CR8 aliases (bits 3:0 of CR8 are TPR bits 7:4) */
  readonly taskPriority = {
    get: (): number => this.lapic.tpr,
    set: (value: number): void => {
      this.lapic.tpr = value & 0xff;
    },
  };

  hasInterrupt(): boolean {
    if (this.i8259.hasInterrupt() && this.#extIntOpen()) return true;
    return this.lapic.pendingVector() >= 0;
  }

  /** the 8259 first, as KVM's kvm_cpu_get_interrupt() takes ExtINT before the APIC's vectors */
  acknowledge(): number {
    if (this.i8259.hasInterrupt() && this.#extIntOpen()) return this.i8259.acknowledge();
    return this.lapic.acknowledge();
  }

  #deliver(msg: ApicMessage): boolean {
    // fixed and lowest priority (one APIC: it is the lowest); NMI/SMI/INIT have no path yet
    if (msg.deliveryMode !== 0 && msg.deliveryMode !== 1) return false;
    if (!this.lapic.matchesDestination(msg.destination, msg.logical)) return false;
    return this.lapic.acceptInterrupt(msg.vector, msg.levelTriggered);
  }
}

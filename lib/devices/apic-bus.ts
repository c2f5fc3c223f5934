// The APIC bus of a multiprocessor PC: the messages of the I/O APIC and the IPIs of every local
// APIC reach the local APICs their destination selects (Intel SDM vol. 3 10.6). Destinations are
// physical (APIC ID, 0xFF all) or logical (flat or cluster model, from each APIC's DFR/LDR; 0xFF
// all), or an IPI's shorthand. Fixed messages land in every selected APIC's IRR; lowest priority
// in one: the lowest processor priority, ties broken as KVM breaks them (vector hashing: the
// (vector mod n)-th of the n tied APICs in index order). NMI, INIT and SIPI are the CPU's
// business: INIT resets the target APIC (keeping its ID) and each goes to onCpuSignal. SMI and
// ExtINT messages are dropped (no SMM; the 8259's ExtINT reaches a CPU through its LINT0 or an
// I/O APIC ExtINT entry, which PcInterrupts checks). Edge cases follow KVM's irq_comm.c/lapic.c:
// a physical broadcast in lowest-priority mode is delivered as fixed, an INIT level de-assert does
// nothing, hardware-disabled APICs (IA32_APIC_BASE.EN clear) are off the bus. An IPI from an APIC
// in x2APIC mode carries a 32-bit destination (0xFFFFFFFF the broadcast), which each target matches
// as its own mode says (LocalApic.matchesDestination).

import type { ApicMessage } from "./ioapic.js";
import type { IpiShorthand, LocalApic } from "./lapic.js";

/** what an APIC bus message asks of a CPU itself */
export type CpuSignalKind = "init" | "sipi" | "nmi";

/** `vector` is the SIPI's 8-bit vector (0 for INIT and NMI) */
export type CpuSignalHandler = (cpu: number, kind: CpuSignalKind, vector: number) => void;

/** delivery modes (ICR and redirection entry bits 10:8) */
export const DeliveryMode = {
  FIXED: 0,
  LOWEST: 1,
  SMI: 2,
  NMI: 4,
  INIT: 5,
  STARTUP: 6,
  EXTINT: 7,
} as const;

/** How a message travels on the bus: who sent it and with which ICR shorthand. */
export interface BusDelivery {
  /** the sending APIC for IPIs (self shorthands need it); undefined for the I/O APIC */
  source?: LocalApic;
  /** ICR bits 19:18: 0 none (use the destination), 1 self, 2 all including self, 3 all excluding self */
  shorthand?: IpiShorthand;
  /** ICR level bit; false with a level-triggered INIT is the de-assert, which does nothing */
  assert?: boolean;
}

/**
 * The APIC bus of a machine's local APICs (PcInterrupts.bus): routes IPIs and I/O APIC messages to the
 * APICs their destination selects, and INIT/SIPI/NMI to the CPUs through `onCpuSignal`.
 */
export class ApicBus {
  /** the local APICs, index = CPU number */
  readonly lapics: readonly LocalApic[];
  /** where INIT, SIPI and NMI go (the machine's vCPUs); undefined drops them */
  onCpuSignal: CpuSignalHandler | undefined;

  constructor(lapics: readonly LocalApic[]) {
    this.lapics = lapics;
  }

  /** the CPUs (indexes) whose APICs a message selects, hardware-disabled APICs left out */
  targets(destination: number, logical: boolean, opts: BusDelivery = {}): number[] {
    const { source, shorthand = 0 } = opts;
    const wide = source?.x2apic === true;
    const out: number[] = [];
    this.lapics.forEach((apic, i) => {
      if (!apic.hardwareEnabled()) return;
      let hit: boolean;
      if (shorthand === 1) hit = apic === source;
      else if (shorthand === 2) hit = true;
      else if (shorthand === 3) hit = apic !== source;
      else hit = apic.matchesDestination(destination, logical, wide);
      if (hit) out.push(i);
    });
    return out;
  }

  /**
   * Delivers a message; true when some APIC (or CPU, for NMI/INIT/SIPI) took it, which is what
   * sets a level-triggered I/O APIC entry's Remote IRR.
   */
  deliver(msg: ApicMessage, opts: BusDelivery = {}): boolean {
    const cpus = this.targets(msg.destination, msg.logical, opts);
    if (cpus.length === 0) return false;
    let mode = msg.deliveryMode;
    const broadcast =
      opts.source?.x2apic === true ? msg.destination >>> 0 === 0xffffffff : (msg.destination & 0xff) === 0xff;
    // KVM: "phys broadcast and lowest prio" is delivered to every APIC as fixed
    if (mode === DeliveryMode.LOWEST && !msg.logical && broadcast && !opts.shorthand) {
      mode = DeliveryMode.FIXED;
    }
    switch (mode) {
      case DeliveryMode.FIXED: {
        let taken = false;
        for (const i of cpus)
          taken = this.lapics[i]!.acceptInterrupt(msg.vector, msg.levelTriggered) || taken;
        return taken;
      }
      case DeliveryMode.LOWEST: {
        const i = this.lowestPriority(cpus, msg.vector);
        return i >= 0 && this.lapics[i]!.acceptInterrupt(msg.vector, msg.levelTriggered);
      }
      case DeliveryMode.NMI:
        for (const i of cpus) this.onCpuSignal?.(i, "nmi", 0);
        return true;
      case DeliveryMode.INIT:
        if (msg.levelTriggered && opts.assert === false) return false;
        for (const i of cpus) {
          // EOIs its CPU posted before the INIT reach the APIC (and the I/O APIC) first
          this.lapics[i]!.settle?.();
          this.lapics[i]!.initReset();
          this.onCpuSignal?.(i, "init", 0);
        }
        return true;
      case DeliveryMode.STARTUP:
        for (const i of cpus) this.onCpuSignal?.(i, "sipi", msg.vector & 0xff);
        return true;
      default:
        // SMI (no SMM), ExtINT (the 8259 answers the CPU's INTA itself), reserved modes
        return false;
    }
  }

  /**
   * The CPU a lowest-priority message goes to: among the selected APICs that are software-enabled,
   * those with the lowest processor priority; of several, the (vector mod n)-th in index order,
   * KVM's vector hashing (kvm_vector_to_index). -1 when none is enabled.
   */
  lowestPriority(cpus: readonly number[], vector: number): number {
    let best = Number.POSITIVE_INFINITY;
    let tied: number[] = [];
    for (const i of cpus) {
      const apic = this.lapics[i]!;
      if (!apic.softwareEnabled) continue;
      const ppr = apic.ppr;
      if (ppr < best) {
        best = ppr;
        tied = [i];
      } else if (ppr === best) tied.push(i);
    }
    if (tied.length === 0) return -1;
    return tied[(vector & 0xff) % tied.length]!;
  }
}

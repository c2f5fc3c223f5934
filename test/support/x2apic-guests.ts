// The x2APIC and TSC-deadline team guests (test/soft/guests: tsc-deadline.S, x2apic-faults.S,
// x2apic-ipi.S), how a program runs them (createMachine + addPcDevices, debugcon output), and what
// they print where the SDM (vol. 3 10.5.4.1, 10.12) says a CPU does: shared by the soft tests
// (test/soft/x2apic-guests.test.ts) and the KVM comparison (test/kvm/x2apic-guests.test.ts).

import { LAPIC_VERSION } from "../../lib/devices/index.js";
import { runDebugconGuest } from "./debugcon-guest.js";

export { GUESTS } from "./debugcon-guest.js";
export const SOURCES = ["tsc-deadline", "x2apic-faults", "x2apic-ipi"] as const;
export type Guest = (typeof SOURCES)[number];
export type Bits = 32 | 64;

export function runGuest(name: Guest, bits: Bits, opts: { backend?: "soft" | "kvm"; vcpus?: number } = {}) {
  const backend = opts.backend ?? "soft";
  // soft runs are deterministic (guest time counts instructions): the deadline guest's margins
  // between two instructions must not depend on how busy the host is
  return runDebugconGuest(`${name}-${bits}.bin`, bits === 64 ? "long" : "protected", backend, 60_000, {
    vcpus: opts.vcpus ?? 1,
    deterministic: backend === "soft",
  });
}

export const hex = (v: number) => v.toString(16).padStart(8, "0");

export const TSC_DEADLINE_OUT =
  "cpuid.1:ecx.tsc-deadline=00000001 lvtt=00040040 armed-reads-back=00000001\n" +
  "fired tsc>=deadline=00000001 msr-in-isr=00000000 ticks=00000001\n" +
  "initial-count-ignored: init=00000000 cur=00000000\n" +
  "zero-disarms: msr=00000000 ticks=00000001\n" +
  "mode-change-disarms: msr-in-one-shot=00000000 msr-back-in-deadline-mode=00000000 ticks=00000001\n" +
  "past-deadline-fires-at-once: ticks=00000002\n" +
  "masked: ticks=00000002 msr=00000000 spurious=00000000\n";

/** 1 = the access raised #GP, 0 = it did not */
export const X2APIC_FAULTS_OUT =
  "cpuid.1:ecx.x2apic=00000001\n" +
  "xapic: rdmsr-id=00000001 wrmsr-tpr=00000001 extd-without-en=00000001\n" +
  // the BSP's IA32_APIC_BASE: BSP (8), EXTD (10), EN (11)
  "enter: xapic-to-x2apic=00000000 apic-base-low=00000d00 id=00000000 ldr=00000001 mmio-version=ffffffff\n" +
  "absent/ro/wo: apr=00000001 rrd=00000001 dfr=00000001 dfr=00000001 icr-high=00000001 cmci=00000001 " +
  "840=00000001 rd-eoi=00000001 rd-self-ipi=00000001 wr-id=00000001 wr-ldr=00000001 wr-version=00000001\n" +
  "reserved-bits: tpr-bit32=00000001 tpr-bit8=00000001 eoi-nonzero=00000001 esr-nonzero=00000001 " +
  "self-ipi-bit8=00000001 icr-bit13=00000001 tdcr-bit2=00000001 svr-bit12=00000001\n" +
  "legal: tpr=00000000 svr=00000000 tdcr=00000000 esr=00000000 eoi=00000000 tpr-reads=00000020\n" +
  `leave: x2apic-to-xapic=00000001 x2apic-to-disabled=00000000 disabled-to-x2apic=00000001 disabled-to-xapic=00000000 rdmsr-id=00000001 mmio-version=${hex(LAPIC_VERSION)}\n` +
  "spurious=00000000\n";

export const X2APIC_IPI_OUT =
  "cpuid.1:ecx.x2apic=00000001\n" +
  "cpu0 x2apic-id=00000000 ldr=00000001\n" +
  "self-ipi=00000001\n" +
  // an AP's IA32_APIC_BASE: EN and EXTD, no BSP bit; logical ID 1 << 1 in cluster 0
  "cpu1 x2apic-id=00000001 ldr=00000002 apic-base-low=00000c00\n" +
  "cpu1 took=00000003 cpu0 got replies=00000003 cpu1 id in its handler=00000001\n" +
  "spurious=00000000\n";

/**
 * KVM's in-kernel LAPIC, the reference where /dev/kvm works, checks fewer reserved bits than the
 * SDM asks for (TPR 31:8, a non-zero EOI, ICR and TDCR reserved bits, SVR bit 12 are taken there):
 * that line is left out of the comparison.
 */
export const kvmComparable = (out: string) => out.replace(/^reserved-bits:.*\n/m, "");

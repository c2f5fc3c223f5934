// CPUID as the soft hypervisor answers it: the interpreter's own model (vendor, family, exactly the
// features it implements), with VMX hidden, the hypervisor bit and leaves present, and the TSC's
// frequency stated so that a kernel need not calibrate it (Linux takes leaf 0x15 as known).

import { cpuidModel } from "../../../cpu/index.js";

/** the guest's TSC frequency: the machine's clock counted at this rate */
export const TSC_HZ = 2_000_000_000;
/** the core crystal clock, which is also the local APIC timer's (lib/devices/lapic-timer.ts: 1 GHz) */
export const CRYSTAL_HZ = 1_000_000_000;

/** highest basic leaf: 0x15 (TSC/crystal ratio) and 0x16 (frequencies in MHz) are answered */
const MAX_BASIC_LEAF = 0x16;
/** highest hypervisor leaf: 0x40000010 holds the TSC and APIC bus in kHz, as VMware's timing leaf */
const MAX_HV_LEAF = 0x40000010;

export function answerCpuid(leaf: number, subleaf: number, apicId: number): [number, number, number, number] {
  const l = leaf >>> 0;
  switch (l) {
    case 0: {
      const r = cpuidModel(0, 0, apicId);
      r[0] = Math.max(r[0], MAX_BASIC_LEAF);
      return r;
    }
    case 0x15:
      // TSC = crystal * EBX / EAX
      return [1, TSC_HZ / CRYSTAL_HZ, CRYSTAL_HZ, 0];
    case 0x16: {
      const mhz = TSC_HZ / 1e6;
      return [mhz, mhz, CRYSTAL_HZ / 1e6, 0];
    }
    case 0x40000000: {
      const r = cpuidModel(l, 0, apicId);
      r[0] = MAX_HV_LEAF;
      return r;
    }
    case 0x40000010:
      return [TSC_HZ / 1000, CRYSTAL_HZ / 1000, 0, 0];
    case 0x80000007:
      // invariant TSC (EDX bit 8): it counts the host's clock at one rate, halted or not (with
      // TSC_ADJUST, Linux then trusts it without a clocksource watchdog)
      return [0, 0, 0, 1 << 8];
  }
  const r = cpuidModel(l, subleaf >>> 0, apicId);
  if (l === 1) {
    r[2] = (r[2] & ~(1 << 5)) | (1 << 31); // no VMX for the guest; running under a hypervisor
  }
  return r;
}

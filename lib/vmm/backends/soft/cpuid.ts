// CPUID as the soft hypervisor answers it: the interpreter's own model (vendor, family, exactly the
// features it implements), with VMX hidden, the hypervisor bit and leaves present, and the TSC's
// frequency stated so that a kernel need not calibrate it (Linux takes leaf 0x15 as known).
// The topology is QEMU's for `-smp N` since its 6.2 machine types (cores preferred over sockets):
// one package of N cores with one thread each; CPU i has initial APIC ID i. x2APIC and the
// TSC-deadline timer are offered when the vCPU has a local APIC that implements them.

import { cpuidModel } from "../../../cpu/index.js";

/** the guest's TSC frequency: the machine's clock counted at this rate */
export const TSC_HZ = 2_000_000_000;
/** the core crystal clock, which is also the local APIC timer's (lib/devices/lapic-timer.ts: 1 GHz) */
export const CRYSTAL_HZ = 1_000_000_000;

/** highest basic leaf: 0x15 (TSC/crystal ratio) and 0x16 (frequencies in MHz) are answered */
const MAX_BASIC_LEAF = 0x16;
/** highest hypervisor leaf: 0x40000010 holds the TSC and APIC bus in kHz, as VMware's timing leaf */
const MAX_HV_LEAF = 0x40000010;

/** the processor signature (family, model, stepping): CPUID.1:EAX, and EDX after INIT */
export const CPU_SIGNATURE = cpuidModel(1, 0, 0)[0];

/** bits of the APIC ID that number the cores of the package: ceil(log2(cpus)) */
export function coreIdBits(cpus: number): number {
  let bits = 0;
  while (1 << bits < cpus) bits++;
  return bits;
}

/** leaf 4 (deterministic cache parameters): QEMU's legacy caches; [type|level, ways, sets, flags] */
const CACHES: readonly (readonly [number, number, number, number, number, number])[] = [
  // type, level, ways, sets, EDX (bit 0: WBINVD does not invalidate sharers' lower levels;
  // 1: inclusive; 2: complex indexing), shared by the package
  [1, 1, 8, 64, 1, 0], // L1d 32 KiB
  [2, 1, 8, 64, 1, 0], // L1i 32 KiB
  [3, 2, 16, 4096, 1, 0], // L2 4 MiB per core
  [3, 3, 16, 16384, 6, 1], // L3 16 MiB per package
];

function cacheLeaf(subleaf: number, cpus: number): [number, number, number, number] {
  const c = CACHES[subleaf];
  if (!c) return [0, 0, 0, 0];
  const [type, level, ways, sets, flags, perPackage] = c;
  const coreIds = (1 << coreIdBits(cpus)) - 1;
  // EAX: 4:0 type, 7:5 level, 8 self-initializing, 25:14 logical processors sharing it - 1,
  // 31:26 addressable core IDs in the package - 1
  const eax = type | (level << 5) | (1 << 8) | ((perPackage ? coreIds : 0) << 14) | (coreIds << 26);
  // EBX: 11:0 line size - 1 (64 bytes), 21:12 partitions - 1, 31:22 ways - 1
  return [eax >>> 0, (63 | ((ways - 1) << 22)) >>> 0, sets - 1, flags];
}

/** leaf 0xB (extended topology): level 0 the threads of a core (1), level 1 the cores of the package */
function topologyLeaf(subleaf: number, apicId: number, cpus: number): [number, number, number, number] {
  switch (subleaf) {
    case 0:
      return [0, 1, 1 << 8, apicId];
    case 1:
      return [coreIdBits(cpus), cpus, (2 << 8) | 1, apicId];
    default:
      return [0, 0, subleaf & 0xff, apicId];
  }
}

/** CPUID.1:ECX: x2APIC (21) and the local APIC timer's TSC-deadline mode (24) */
export const X2APIC_BIT = 1 << 21;
export const TSC_DEADLINE_BIT = 1 << 24;

/**
 * `lapicMsrs`: the vCPU's local APIC answers its MSRs (x2APIC registers, IA32_TSC_DEADLINE), as
 * lib/devices' LocalApic does; a vCPU without one (no platform devices) must not offer them.
 * `cr4`: the guest's CR4, which CPUID.7.0:ECX[4] (OSPKE) reflects.
 */
export function answerCpuid(
  leaf: number,
  subleaf: number,
  apicId: number,
  cpus = 1,
  lapicMsrs = false,
  cr4 = 0,
): [number, number, number, number] {
  const l = leaf >>> 0;
  switch (l) {
    case 4:
      return cacheLeaf(subleaf >>> 0, cpus);
    case 0xb:
      return topologyLeaf(subleaf >>> 0, apicId, cpus);
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
  const r = cpuidModel(l, subleaf >>> 0, apicId, cr4);
  if (l === 1) {
    r[2] = (r[2] & ~(1 << 5)) | (1 << 31); // no VMX for the guest; running under a hypervisor
    if (lapicMsrs) r[2] |= X2APIC_BIT | TSC_DEADLINE_BIT;
    // EBX[23:16]: logical processors in the package (with HTT, EDX[28], when more than one)
    r[1] = ((r[1] & ~0x00ff0000) | ((Math.min(cpus, 255) & 0xff) << 16)) >>> 0;
    if (cpus > 1) r[3] = (r[3] | (1 << 28)) >>> 0;
  }
  return r;
}

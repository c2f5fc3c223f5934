// The CPU topology a vCPU's CPUID states. KVM_GET_SUPPORTED_CPUID hands back the host's own
// topology fields (its APIC ids, core counts, cache sharing); a VMM rewrites them for the machine it
// builds, as QEMU does for -smp N: one package of N cores, one thread each, APIC id = vCPU index.
// Guests size their per-CPU data and count CPUs from these leaves (Linux's detect_extended_topology,
// amd_get_topology), so they must agree with each other and with the number of vCPUs created.

import type { CpuidEntry } from "./structs.js";

const INTEL_EBX = 0x756e6547; // "Genu"
/** CPUID.1:EDX.HTT: EBX[23:16] holds the package's logical processor count */
const HTT = 1 << 28;
/** KVM_CHECK_EXTENSION: the in-kernel LAPIC emulates TSC-deadline mode (`linux/kvm.h`) */
export const KVM_CAP_TSC_DEADLINE_TIMER = 72;
/** CPUID.1:ECX.TSC_DEADLINE_TIMER */
const TSC_DEADLINE = 1 << 24;
/**
 * CPUID.1:ECX[31], "running under a hypervisor": KVM_GET_SUPPORTED_CPUID leaves it clear and every
 * VMM sets it (QEMU, kvmtool). Linux looks for KVM's leaves (0x40000000 "KVMKVMKVM") only when it is
 * set: without it there is no kvm-clock, the TSC may fail to calibrate, and the clocksource falls
 * back to the ACPI PM timer, a port read (an exit to this process) per clock read.
 */
const HYPERVISOR = 1 << 31;
/** CPUID.80000001h:ECX.CmpLegacy (AMD): the package's cores are reported as its logical processors */
const CMP_LEGACY = 1 << 1;
/** leaf 0xB/0x1F level types (ECX[15:8]) */
const LEVEL_SMT = 1;
const LEVEL_CORE = 2;

/** Bits of an APIC id that number the cores of a package of `count` (0 for one). */
export function apicIdBits(count: number): number {
  let bits = 0;
  while (1 << bits < count) bits++;
  return bits;
}

/**
 * The CPUID of vCPU `index` of `count`, from what KVM supports: its APIC id (leaves 1, 0xB, 0x1F,
 * 0x8000001E) and a topology of one package with `count` single-thread cores (leaves 1, 4, 0xB,
 * 0x1F, 0x80000001, 0x80000008, 0x8000001E). Leaves KVM does not list stay absent; the
 * extended-topology leaves get exactly the sub-leaves the topology has (SMT, core, the end marker).
 * CPUID.1:ECX states the hypervisor (bit 31), as QEMU and kvmtool do.
 * x2APIC (CPUID.1:ECX[21]) is KVM's to offer and stays as it lists it; the TSC-deadline timer
 * (ECX[24]) older kernels leave out of the list (their API doc: it depends on the in-kernel
 * irqchip) and announce through KVM_CAP_TSC_DEADLINE_TIMER instead: `tscDeadline` adds it then, as
 * QEMU does.
 */
export function cpuidForVcpu(
  supported: readonly CpuidEntry[],
  index: number,
  count: number,
  opts: { tscDeadline?: boolean } = {},
): CpuidEntry[] {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`vCPU count must be >= 1, got ${count}`);
  if (!Number.isInteger(index) || index < 0 || index >= count) {
    throw new RangeError(`vCPU index ${index} is not in [0, ${count})`);
  }
  const intel = supported.find((e) => e.function === 0)?.ebx === INTEL_EBX;
  const bits = apicIdBits(count);
  const out: CpuidEntry[] = [];
  const topologyLeaves = new Set<number>();
  for (const e of supported) {
    switch (e.function) {
      case 1: {
        // EBX[23:16] with EDX.HTT: logical processors in the package (QEMU states the count)
        let ebx = (e.ebx & 0x0000ffff) | (index << 24);
        let edx = e.edx & ~HTT;
        if (count > 1) {
          ebx |= Math.min(255, count) << 16;
          edx |= HTT;
        }
        const ecx = (opts.tscDeadline ? e.ecx | TSC_DEADLINE : e.ecx) | HYPERVISOR;
        out.push({ ...e, ebx: ebx >>> 0, ecx: ecx >>> 0, edx: edx >>> 0 });
        break;
      }
      case 4: {
        // deterministic cache parameters (Intel): EAX[31:26] cores per package - 1, EAX[25:14]
        // logical processors sharing this cache - 1 (one thread per core: the package's caches,
        // level 3 and up, are shared by all its cores; levels 1 and 2 by the core alone)
        if ((e.eax & 0x1f) === 0) {
          out.push(e); // the list's end (cache type 0)
          break;
        }
        const level = (e.eax >>> 5) & 7;
        const sharing = level >= 3 ? (1 << bits) - 1 : 0;
        const eax = (e.eax & 0x3fff) | ((sharing & 0xfff) << 14) | ((((1 << bits) - 1) & 0x3f) << 26);
        out.push({ ...e, eax: eax >>> 0 });
        break;
      }
      case 0xb:
      case 0x1f:
        // rewritten whole below, once per leaf
        topologyLeaves.add(e.function);
        break;
      case 0x80000001:
        out.push({
          ...e,
          ecx: (count > 1 && !intel ? e.ecx | CMP_LEGACY : e.ecx & ~CMP_LEGACY) >>> 0,
        });
        break;
      case 0x80000008:
        // ECX[7:0] cores - 1, ECX[15:12] APIC id bits that number them (AMD; zero on Intel)
        out.push({
          ...e,
          ecx: intel ? e.ecx : ((e.ecx & ~0xf0ff) | ((bits & 0xf) << 12) | ((count - 1) & 0xff)) >>> 0,
        });
        break;
      case 0x8000001e:
        // extended APIC id; EBX[7:0] core id, EBX[15:8] threads per core - 1; ECX node 0 of 1
        out.push({ ...e, eax: index >>> 0, ebx: index & 0xff, ecx: 0, edx: 0 });
        break;
      default:
        out.push(e);
    }
  }
  for (const leaf of topologyLeaves) {
    const flags = supported.find((e) => e.function === leaf)?.flags ?? 0;
    const sub = (i: number, eax: number, ebx: number, type: number): CpuidEntry => ({
      function: leaf,
      index: i,
      flags,
      eax,
      ebx,
      ecx: ((type << 8) | i) >>> 0,
      edx: index >>> 0,
    });
    // EAX: shift of the APIC id to the next level's id; EBX: logical processors at this level
    out.push(sub(0, 0, 1, LEVEL_SMT), sub(1, bits, count, LEVEL_CORE), sub(2, 0, 0, 0));
  }
  return out;
}

// Model-specific registers the interpreter implements. Unknown indices return undefined/false and
// RDMSR/WRMSR turn that into #GP(0), as a real CPU does for an MSR it does not have.

import {
  canonicalBig,
  eferFault,
  eferStored,
  MAXPHYADDR,
  mtrrTypesValid,
  patValid,
} from "./control-checks.js";
import { type Interpreter, toBig, toNum } from "./interpreter.js";
import { updateMode } from "./system.js";

export const MSR = {
  TSC: 0x10,
  APIC_BASE: 0x1b,
  MTRRCAP: 0xfe,
  SYSENTER_CS: 0x174,
  SYSENTER_ESP: 0x175,
  SYSENTER_EIP: 0x176,
  MISC_ENABLE: 0x1a0,
  PAT: 0x277,
  MTRR_DEF_TYPE: 0x2ff,
  DEBUGCTL: 0x1d9,
  EFER: 0xc0000080,
  STAR: 0xc0000081,
  LSTAR: 0xc0000082,
  CSTAR: 0xc0000083,
  SFMASK: 0xc0000084,
  FS_BASE: 0xc0000100,
  GS_BASE: 0xc0000101,
  KERNEL_GS_BASE: 0xc0000102,
  TSC_AUX: 0xc0000103,
  TSC_ADJUST: 0x3b,
  ARCH_CAPABILITIES: 0x10a,
  SPEC_CTRL: 0x48,
  PRED_CMD: 0x49,
} as const;

/** MTRR_DEF_TYPE, the variable-range pairs IA32_MTRRCAP.VCNT (8) announces and the fixed ranges */
function isMtrr(index: number): boolean {
  return (
    index === MSR.MTRR_DEF_TYPE ||
    (index >= 0x200 && index < 0x200 + 2 * MTRR_VCNT) ||
    index === 0x250 ||
    index === 0x258 ||
    index === 0x259 ||
    (index >= 0x268 && index <= 0x26f)
  );
}
const MTRR_VCNT = 8;

/** Every MTRR the processor has (isMtrr's set), in order: what saving or moving a vCPU carries. */
export const MTRR_MSRS: readonly number[] = [
  MSR.MTRR_DEF_TYPE,
  ...Array.from({ length: 2 * MTRR_VCNT }, (_, i) => 0x200 + i),
  0x250,
  0x258,
  0x259,
  ...Array.from({ length: 8 }, (_, i) => 0x268 + i),
];

function isStoredOnly(index: number): boolean {
  // MTRRs, microcode/platform info and the like: stored, no effect
  return (
    isMtrr(index) ||
    index === 0x8b ||
    index === 0x79 ||
    index === 0x3a ||
    index === 0x179 ||
    index === 0x17a ||
    index === 0x17b ||
    // IA32_SPEC_CTRL: IBRS and BHI_DIS_S, which nothing here needs (no prediction to restrict),
    // kept as written
    index === MSR.SPEC_CTRL
  );
}

/** bits 63:MAXPHYADDR of a physical address */
const ABOVE_PHYS = ~((1n << BigInt(MAXPHYADDR)) - 1n) & 0xffffffffffffffffn;

/**
 * Whether WRMSR of `value` to one of the stored-only MSRs is allowed (SDM Vol. 3A 12.11 MTRRs; the
 * machine-check MSRs as KVM emulates them, Vol. 3B 16.3.1).
 */
function storedOnlyValid(cpu: Interpreter, index: number, value: bigint): boolean {
  if (index === MSR.MTRR_DEF_TYPE) return (value & ~0xcffn) === 0n && mtrrTypesValid(value, 1);
  if (index >= 0x200 && index < 0x210) {
    // PHYSBASEn: type in 7:0, 11:8 reserved; PHYSMASKn: valid in 11, 10:0 reserved; both: the
    // address bits stop below MAXPHYADDR
    if ((index & 1) === 0) return (value & (0xf00n | ABOVE_PHYS)) === 0n && mtrrTypesValid(value, 1);
    return (value & (0x7ffn | ABOVE_PHYS)) === 0n;
  }
  if (isMtrr(index)) return mtrrTypesValid(value, 8);
  switch (index) {
    case MSR.SPEC_CTRL:
      // IBRS (0) and BHI_DIS_S (10) (CPUID.7.2:EDX[4]); STIBP and SSBD are not enumerated
      return (value & ~0x401n) === 0n;
    case 0x3a:
      // IA32_FEATURE_CONTROL: writable until its lock bit is set
      return ((cpu.otherMsrs.get(0x3a) ?? 0n) & 1n) === 0n;
    case 0x179:
      return false; // IA32_MCG_CAP is read-only
    case 0x17a:
      return value === 0n; // IA32_MCG_STATUS: only cleared by software
    case 0x17b:
      return value === 0n || value === 0xffffffffffffffffn; // IA32_MCG_CTL: all banks off or on
  }
  return true;
}

/**
 * IA32_ARCH_CAPABILITIES, read-only: the "not affected" bits RDCL_NO (0), SSB_NO (4), MDS_NO (5),
 * TAA_NO (8), SBDR_SSDP_NO (13), FBSDP_NO (14), PSDP_NO (15), BHI_NO (20), PBRSB_NO (24), GDS_NO
 * (26), RFDS_NO (27), ITS_NO (62), and IBRS_ALL (1): IBRS (IA32_SPEC_CTRL, CPUID.7.0:EDX[26]) set
 * once restricts every indirect branch prediction, as it trivially does here
 */
const ARCH_CAPABILITIES_VALUE = [0n, 1n, 4n, 5n, 8n, 13n, 14n, 15n, 20n, 24n, 26n, 27n, 62n].reduce(
  (caps, bit) => caps | (1n << bit),
  0n,
);

/** the time-stamp counter before IA32_TSC writes: the host's clock when given one, else the work count */
function tscBase(cpu: Interpreter): bigint {
  const clock = cpu.tscClock;
  return BigInt(clock === null ? cpu.retired : Math.floor(clock()));
}

/** the TSC as the guest reads it (RDTSC, RDTSCP, RDMSR): the counter plus VMX's TSC offset */
export function tsc(cpu: Interpreter): bigint {
  return BigInt.asUintN(64, tscBase(cpu) + cpu.tscOffset + cpu.tscGuestOffset);
}

/**
 * The two offsets' sum as a number when it is a safe integer (else NaN), for the pair last asked
 * about: they change at IA32_TSC writes and VM entries, the count at every RDTSC.
 */
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
let lastOffset = 0n;
let lastGuestOffset = 0n;
let lastSum = 0;
function offsetSum(offset: bigint, guestOffset: bigint): number {
  if (offset !== lastOffset || guestOffset !== lastGuestOffset) {
    const sum = offset + guestOffset;
    lastOffset = offset;
    lastGuestOffset = guestOffset;
    lastSum = sum >= -MAX_SAFE && sum <= MAX_SAFE ? Number(sum) : Number.NaN;
  }
  return lastSum;
}

/**
 * tsc(cpu) as halves: the low 32 bits returned, the high ones in cpu.vh. Without BigInt while the
 * count, the offsets (IA32_TSC writes, VMX's TSC offset) and their sum are safe integers and the
 * sum is not negative (2^53 ticks: 52 days at 2 GHz): RDTSC runs in every delay loop and
 * sched_clock() of a Linux guest.
 */
export function tscHalves(cpu: Interpreter): number {
  const clock = cpu.tscClock;
  const count = clock === null ? cpu.retired : Math.floor(clock());
  const offset = cpu.tscOffset;
  const guestOffset = cpu.tscGuestOffset;
  // (a sum of safe integers that is itself safe is exact; NaN fails the test)
  const t = offset === 0n && guestOffset === 0n ? count : count + offsetSum(offset, guestOffset);
  if (t >= 0 && t <= Number.MAX_SAFE_INTEGER) {
    cpu.vh = Math.floor(t / 4294967296);
    return t >>> 0;
  }
  // the clock read once: tsc(cpu)'s sum from the same count
  const big = BigInt.asUintN(64, BigInt(count) + offset + guestOffset);
  cpu.vh = Number(big >> 32n);
  return Number(big & 0xffffffffn);
}

export function readMsr(cpu: Interpreter, index: number): bigint | undefined {
  switch (index) {
    case MSR.TSC:
      return tsc(cpu);
    case MSR.ARCH_CAPABILITIES:
      // an interpreter executes nothing speculatively: not affected by Rogue Data Cache Load
      // (Meltdown), Speculative Store Bypass, MDS, TSX Async Abort, the MMIO stale-data leaks,
      // Branch History Injection, post-barrier RSB predictions, Gather Data Sampling, Register File
      // Data Sampling or Indirect Target Selection. A kernel then needs no page-table isolation,
      // buffer clearing or BHB clearing, and no return thunks: Linux 6.1 under a hypervisor that
      // does not state ITS_NO sends every RET through a thunk (two blocks a return, here), and with
      // IBRS_ALL (enhanced IBRS) it makes indirect calls and jumps directly, not through retpolines
      // (three blocks a call).
      return ARCH_CAPABILITIES_VALUE;
    case MSR.TSC_ADJUST:
      return cpu.tscAdjust;
    case MSR.APIC_BASE:
      return cpu.apicBase;
    case MSR.MTRRCAP:
      return 0x508n;
    case MSR.SYSENTER_CS:
      return BigInt(cpu.sysenterCs);
    case MSR.SYSENTER_ESP:
      return toBig(cpu.sysenterEsp);
    case MSR.SYSENTER_EIP:
      return toBig(cpu.sysenterEip);
    case MSR.MISC_ENABLE:
      return cpu.miscEnable;
    case MSR.PAT:
      return cpu.pat;
    case MSR.DEBUGCTL:
      return cpu.debugctl;
    case MSR.EFER:
      return BigInt(cpu.efer);
    case MSR.STAR:
      return cpu.star;
    case MSR.LSTAR:
      return toBig(cpu.lstar);
    case MSR.CSTAR:
      return toBig(cpu.cstar);
    case MSR.SFMASK:
      return BigInt(cpu.sfmask >>> 0);
    case MSR.FS_BASE:
      return toBig(cpu.segBase[4]);
    case MSR.GS_BASE:
      return toBig(cpu.segBase[5]);
    case MSR.KERNEL_GS_BASE:
      return toBig(cpu.kernelGsBase);
    case MSR.TSC_AUX:
      return BigInt(cpu.tscAux >>> 0);
    default:
      if (isStoredOnly(index)) return cpu.otherMsrs.get(index) ?? 0n;
      return undefined;
  }
}

const canonical = canonicalBig;

/** IA32_APIC_BASE: BSP (8), EN (11) and the base below MAXPHYADDR; x2APIC (10) is not offered */
const APIC_BASE_WRITABLE = (~ABOVE_PHYS & ~0xfffn) | 0x900n;
/** IA32_DEBUGCTL bits defined on this family (LBR, BTF, TR, BTS..., FREEZE_*): 2-5 and 63:16 reserved */
const DEBUGCTL_DEFINED = 0xffc3n;

/** false: the MSR does not exist or the value is invalid (#GP) */
export function writeMsr(cpu: Interpreter, index: number, value: bigint): boolean {
  value = BigInt.asUintN(64, value);
  switch (index) {
    case MSR.TSC: {
      // IA32_TSC_ADJUST follows every write to the TSC (SDM Vol. 3B 18.17.3)
      const offset = value - tscBase(cpu);
      cpu.tscAdjust = BigInt.asUintN(64, cpu.tscAdjust + offset - cpu.tscOffset);
      cpu.tscOffset = offset;
      return true;
    }
    case MSR.TSC_ADJUST:
      // and writing it moves the TSC by the same amount
      cpu.tscOffset += BigInt.asIntN(64, value - cpu.tscAdjust);
      cpu.tscAdjust = value;
      return true;
    case MSR.APIC_BASE:
      if ((value & ~APIC_BASE_WRITABLE) !== 0n) return false;
      cpu.apicBase = value;
      return true;
    case MSR.SYSENTER_CS:
      cpu.sysenterCs = Number(value & 0xffffn);
      return true;
    case MSR.SYSENTER_ESP:
      if (!canonical(value)) return false;
      cpu.sysenterEsp = toNum(value);
      return true;
    case MSR.SYSENTER_EIP:
      if (!canonical(value)) return false;
      cpu.sysenterEip = toNum(value);
      return true;
    case MSR.MISC_ENABLE:
      cpu.miscEnable = value;
      return true;
    case MSR.PAT:
      if (!patValid(value)) return false;
      cpu.pat = value;
      return true;
    case MSR.DEBUGCTL:
      if ((value & ~DEBUGCTL_DEFINED) !== 0n) return false;
      cpu.debugctl = value;
      return true;
    case MSR.EFER: {
      // LME cannot change while paging is on; LMA is read-only
      if (eferFault(cpu.efer, value, cpu.cr0) !== undefined) return false;
      cpu.efer = eferStored(cpu.efer, value);
      updateMode(cpu);
      cpu.flushTlb();
      return true;
    }
    case MSR.STAR:
      cpu.star = value;
      return true;
    case MSR.LSTAR:
      if (!canonical(value)) return false;
      cpu.lstar = toNum(value);
      return true;
    case MSR.CSTAR:
      if (!canonical(value)) return false;
      cpu.cstar = toNum(value);
      return true;
    case MSR.SFMASK:
      cpu.sfmask = Number(value & 0xffffffffn);
      return true;
    case MSR.FS_BASE:
    case MSR.GS_BASE:
      if (!canonical(value)) return false;
      cpu.segBase[index === MSR.FS_BASE ? 4 : 5] = toNum(value);
      updateMode(cpu);
      return true;
    case MSR.KERNEL_GS_BASE:
      if (!canonical(value)) return false;
      cpu.kernelGsBase = toNum(value);
      return true;
    case MSR.TSC_AUX:
      if (value >> 32n !== 0n) return false;
      cpu.tscAux = Number(value & 0xffffffffn);
      return true;
    case MSR.PRED_CMD:
      // write-only: IBPB (0), a barrier with nothing to flush here
      return value === 0n || value === 1n;
    default:
      if (isStoredOnly(index)) {
        if (!storedOnlyValid(cpu, index, value)) return false;
        cpu.otherMsrs.set(index, value);
        return true;
      }
      return false;
  }
}

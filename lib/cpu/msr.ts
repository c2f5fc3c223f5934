// Model-specific registers the interpreter implements. Unknown indices return undefined/false and
// RDMSR/WRMSR turn that into #GP(0), as a real CPU does for an MSR it does not have.

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
} as const;

function isStoredOnly(index: number): boolean {
  // MTRRs, microcode/platform info and the like: stored, no effect
  return (
    (index >= 0x200 && index <= 0x26f) ||
    index === MSR.MTRR_DEF_TYPE ||
    index === 0x8b ||
    index === 0x79 ||
    index === 0x3a ||
    index === 0x179 ||
    index === 0x17a ||
    index === 0x17b
  );
}

export function tsc(cpu: Interpreter): bigint {
  return BigInt.asUintN(64, BigInt(cpu.retired) + cpu.tscOffset);
}

export function readMsr(cpu: Interpreter, index: number): bigint | undefined {
  switch (index) {
    case MSR.TSC:
      return tsc(cpu);
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

function canonical(v: bigint): boolean {
  const s = BigInt.asIntN(64, v);
  return s >= -(1n << 47n) && s < 1n << 47n;
}

/** false: the MSR does not exist or the value is invalid (#GP) */
export function writeMsr(cpu: Interpreter, index: number, value: bigint): boolean {
  value = BigInt.asUintN(64, value);
  switch (index) {
    case MSR.TSC:
      cpu.tscOffset = value - BigInt(cpu.retired);
      return true;
    case MSR.APIC_BASE:
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
      cpu.pat = value;
      return true;
    case MSR.DEBUGCTL:
      cpu.debugctl = value;
      return true;
    case MSR.EFER: {
      const v = Number(value & 0xffffffffn);
      if ((v & ~0xd01) !== 0 || value >> 32n !== 0n) return false;
      // LME cannot change while paging is on; LMA is read-only
      const old = cpu.efer;
      if ((cpu.cr0 & 0x80000000) !== 0 && ((v ^ old) & 0x100) !== 0) return false;
      cpu.efer = (v & ~0x400) | (old & 0x400);
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
      cpu.tscAux = Number(value & 0xffffffffn);
      return true;
    default:
      if (isStoredOnly(index)) {
        cpu.otherMsrs.set(index, value);
        return true;
      }
      return false;
  }
}

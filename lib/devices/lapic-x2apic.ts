// The x2APIC register interface (Intel SDM vol. 3 10.12.1.2, table 10-6): MSR 0x800 + (xAPIC
// offset >> 4) names each register. Which registers exist, which may be read or written, and which
// bits a WRMSR may set: everything else is #GP (10.12.1.3, "reserved bit checking"), as are reads of
// the write-only EOI and SELF IPI and writes of read-only registers. APR, RRD, DFR and the ICR's
// high half have no x2APIC register; neither has the CMCI LVT on an APIC whose version register
// announces six LVT entries.

import { LapicReg } from "./lapic.js";

export const X2APIC_MSR_FIRST = 0x800;
/** the last MSR of the APIC's range that a CPU hands to its APIC (none above 0x83F exists) */
export const X2APIC_MSR_LAST = 0x8ff;
/** IA32_TSC_DEADLINE */
export const TSC_DEADLINE_MSR = 0x6e0;
/** the 64-bit interrupt command register (destination in bits 63:32) */
export const X2APIC_ICR_MSR = 0x830;
/** SELF IPI: a fixed, edge-triggered IPI to this APIC with the vector written (write-only) */
export const X2APIC_SELF_IPI_MSR = 0x83f;
export const X2APIC_SELF_IPI = 0x3f0;

/**
 * ICR bits 31:0 software may set in x2APIC mode: vector, delivery mode, destination mode, level,
 * trigger mode, shorthand (the delivery status bit is gone, 10.12.9)
 */
export const X2APIC_ICR_LOW_BITS = 0x000ccfff;

/** the xAPIC register offset an x2APIC MSR names */
export const x2apicRegister = (msr: number): number => (msr - X2APIC_MSR_FIRST) << 4;

/** registers RDMSR may read */
function readable(reg: number): boolean {
  switch (reg) {
    case LapicReg.ID:
    case LapicReg.VERSION:
    case LapicReg.TPR:
    case LapicReg.PPR:
    case LapicReg.LDR:
    case LapicReg.SVR:
    case LapicReg.ESR:
    case LapicReg.ICR_LOW:
    case LapicReg.TIMER_INITIAL:
    case LapicReg.TIMER_CURRENT:
    case LapicReg.TIMER_DIVIDE:
      return true;
  }
  return (
    (reg >= LapicReg.ISR && reg < LapicReg.ESR) || (reg >= LapicReg.LVT_TIMER && reg <= LapicReg.LVT_ERROR)
  );
}

/**
 * The bits of a 32-bit register WRMSR may set (read-only status bits included: written they are
 * ignored, not reserved); undefined: the register cannot be written. EOI and ESR take only 0.
 */
function writableBits(reg: number): number | undefined {
  switch (reg) {
    case LapicReg.TPR:
      return 0xff;
    case LapicReg.EOI:
    case LapicReg.ESR:
      return 0;
    case LapicReg.SVR:
      // vector, APIC enable, focus checking; EOI-broadcast suppression (12) is not offered
      return 0x3ff;
    case LapicReg.LVT_TIMER:
      // vector, delivery status, mask, timer mode (one-shot, periodic, TSC-deadline)
      return 0x710ff;
    case LapicReg.LVT_THERMAL:
    case LapicReg.LVT_PERF:
      return 0x117ff;
    case LapicReg.LVT_LINT0:
    case LapicReg.LVT_LINT1:
      // with polarity, remote IRR (read-only) and trigger mode
      return 0x1f7ff;
    case LapicReg.LVT_ERROR:
      return 0x110ff;
    case LapicReg.TIMER_INITIAL:
      return 0xffffffff;
    case LapicReg.TIMER_DIVIDE:
      return 0xb;
    case X2APIC_SELF_IPI:
      return 0xff;
  }
  return undefined;
}

/** whether RDMSR of x2APIC MSR `msr` reads a register (false: #GP) */
export function x2apicReadable(msr: number): boolean {
  return msr >= X2APIC_MSR_FIRST && msr <= X2APIC_MSR_LAST && readable(x2apicRegister(msr));
}

/**
 * Whether WRMSR of `value` to x2APIC MSR `msr` is allowed (false: #GP): the register exists and
 * is writable, and no reserved bit is set (bits 63:32 are reserved in all but the ICR).
 */
export function x2apicWritable(msr: number, value: bigint): boolean {
  if (msr < X2APIC_MSR_FIRST || msr > X2APIC_MSR_LAST) return false;
  if (msr === X2APIC_ICR_MSR) return (Number(value & 0xffffffffn) & ~X2APIC_ICR_LOW_BITS) === 0;
  const bits = writableBits(x2apicRegister(msr));
  if (bits === undefined || value >> 32n !== 0n) return false;
  return (Number(value) & ~bits) === 0;
}

/** the logical x2APIC ID of x2APIC ID `id` (10.12.10.2): cluster in 31:16, one bit of 16 in 15:0 */
export function x2apicLogicalId(id: number): number {
  return (((id >>> 4) << 16) | (1 << (id & 0xf))) >>> 0;
}

// Segment and descriptor decoding: the attribute word QEMU prints, its CS64/DS/TSS summary, raw
// 8-byte GDT/LDT descriptors to Segment, and the CPU mode a register set is in.

import type { Segment, SpecialRegs } from "../types/regs.js";
import { bitSet } from "./flags.js";

/** Bits 8..23 of the descriptor's high dword (attributes and limit 19:16), as QEMU shows them. */
export function segmentAttributes(seg: Segment): number {
  // bits 19:16 of the raw limit sit in the same word (QEMU shows them: 00cf9b00 for flat code)
  const rawLimit = seg.g ? seg.limit >>> 12 : seg.limit;
  return (
    (((rawLimit >>> 16) & 0xf) << 16) |
    ((seg.type & 0xf) << 8) |
    (seg.s ? 1 << 12 : 0) |
    ((seg.dpl & 3) << 13) |
    (seg.present ? 1 << 15 : 0) |
    (seg.avl ? 1 << 20 : 0) |
    (seg.l ? 1 << 21 : 0) |
    (seg.db ? 1 << 22 : 0) |
    (seg.g ? 1 << 23 : 0)
  );
}

const SYSTEM_TYPES_32 = [
  "Reserved",
  "TSS16-avl",
  "LDT",
  "TSS16-busy",
  "CallGate16",
  "TaskGate",
  "IntGate16",
  "TrapGate16",
  "Reserved",
  "TSS32-avl",
  "Reserved",
  "TSS32-busy",
  "CallGate32",
  "Reserved",
  "IntGate32",
  "TrapGate32",
] as const;
const SYSTEM_TYPES_64 = [
  "<hiword>",
  "Reserved",
  "LDT",
  "Reserved",
  "Reserved",
  "Reserved",
  "Reserved",
  "Reserved",
  "Reserved",
  "TSS64-avl",
  "Reserved",
  "TSS64-busy",
  "CallGate64",
  "Reserved",
  "IntGate64",
  "TrapGate64",
] as const;

/**
 * QEMU's summary after the attribute word: "DPL=0 CS64 [-RA]", "DPL=3 DS   [-WA]", "DPL=0 TSS64-busy".
 * Empty in real mode or for a not-present segment, as QEMU prints it.
 */
export function describeSegment(seg: Segment, protectedMode: boolean, longMode: boolean): string {
  if (!protectedMode || !seg.present || seg.unusable) return "";
  const dpl = `DPL=${seg.dpl}`;
  if (!seg.s) {
    const names = longMode ? SYSTEM_TYPES_64 : SYSTEM_TYPES_32;
    return `${dpl} ${names[seg.type & 0xf]}`;
  }
  const accessed = seg.type & 1 ? "A" : "-";
  if (seg.type & 8) {
    const kind = seg.l ? "CS64" : seg.db ? "CS32" : "CS16";
    return `${dpl} ${kind} [${seg.type & 4 ? "C" : "-"}${seg.type & 2 ? "R" : "-"}${accessed}]`;
  }
  const kind = seg.db || longMode ? "DS  " : "DS16";
  return `${dpl} ${kind} [${seg.type & 4 ? "E" : "-"}${seg.type & 2 ? "W" : "-"}${accessed}]`;
}

/** Decodes an 8-byte GDT/LDT descriptor (as two 32-bit halves) into a Segment for `selector`. */
export function decodeDescriptor(low: number, high: number, selector = 0): Segment {
  const limitRaw = (low & 0xffff) | (high & 0x000f0000);
  const g = (high & (1 << 23)) !== 0;
  const base = ((low >>> 16) | ((high & 0xff) << 16) | (high & 0xff000000)) >>> 0;
  return {
    base: BigInt(base),
    limit: g ? ((limitRaw << 12) | 0xfff) >>> 0 : limitRaw,
    selector,
    type: (high >>> 8) & 0xf,
    s: (high & (1 << 12)) !== 0,
    dpl: (high >>> 13) & 3,
    present: (high & (1 << 15)) !== 0,
    avl: (high & (1 << 20)) !== 0,
    l: (high & (1 << 21)) !== 0,
    db: (high & (1 << 22)) !== 0,
    g,
    unusable: false,
  };
}

/**
 * The execution mode cpuMode() finds: real, virtual-8086, 16- or 32-bit protected, compatibility (32-bit code
 * in IA-32e mode) or 64-bit long mode.
 */
export type CpuMode = "real" | "virtual-8086" | "protected-16" | "protected-32" | "compatibility" | "long";

/** The execution mode a register set describes (CR0.PE, RFLAGS.VM, EFER.LMA, CS.L/D). */
export function cpuMode(sregs: Pick<SpecialRegs, "cr0" | "efer" | "cs">, rflags = 0n): CpuMode {
  if (!bitSet(sregs.cr0, 0)) return "real";
  if (bitSet(rflags, 17)) return "virtual-8086";
  if (bitSet(sregs.efer, 10)) return sregs.cs.l ? "long" : "compatibility";
  return sregs.cs.db ? "protected-32" : "protected-16";
}

/** Instruction bitness for a mode (what a disassembler needs). */
export function modeBitness(mode: CpuMode): 16 | 32 | 64 {
  if (mode === "long") return 64;
  if (mode === "protected-32" || mode === "compatibility") return 32;
  return 16;
}

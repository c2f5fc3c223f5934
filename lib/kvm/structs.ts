// DataView codecs of the register structs (offsets from LAYOUTS), in the shared register types.

import type { DescriptorTable, Regs, Segment, SpecialRegs } from "../types/regs.js";
import { LAYOUTS } from "./layouts.js";

/** struct kvm_regs, as the main package's `Regs`. */
export type KvmRegs = Regs;
/** struct kvm_segment, as the main package's `Segment`. */
export type KvmSegment = Segment;
/** struct kvm_dtable, as the main package's `DescriptorTable`. */
export type KvmDtable = DescriptorTable;
/** struct kvm_sregs (without interrupt_bitmap), as the main package's `SpecialRegs`. */
export type KvmSregs = SpecialRegs;

const R = LAYOUTS.kvm_regs.fields;
const REG_NAMES = Object.keys(R) as (keyof KvmRegs)[];

/** Decodes a kvm_regs buffer. */
export function readRegs(dv: DataView): KvmRegs {
  const out = {} as KvmRegs;
  for (const k of REG_NAMES) out[k] = dv.getBigUint64(R[k], true);
  return out;
}

/** Encodes `regs` into a kvm_regs buffer. */
export function writeRegs(dv: DataView, regs: KvmRegs): void {
  for (const k of REG_NAMES) dv.setBigUint64(R[k], BigInt.asUintN(64, regs[k]), true);
}

const SEG = LAYOUTS.kvm_segment.fields;
const SR = LAYOUTS.kvm_sregs.fields;
const DT = LAYOUTS.kvm_dtable.fields;
const SEGMENTS = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const;

/** Decodes the kvm_segment at byte offset `at`. */
export function readSegment(dv: DataView, at: number): KvmSegment {
  return {
    base: dv.getBigUint64(at + SEG.base, true),
    limit: dv.getUint32(at + SEG.limit, true),
    selector: dv.getUint16(at + SEG.selector, true),
    type: dv.getUint8(at + SEG.type),
    present: dv.getUint8(at + SEG.present) !== 0,
    dpl: dv.getUint8(at + SEG.dpl),
    db: dv.getUint8(at + SEG.db) !== 0,
    s: dv.getUint8(at + SEG.s) !== 0,
    l: dv.getUint8(at + SEG.l) !== 0,
    g: dv.getUint8(at + SEG.g) !== 0,
    avl: dv.getUint8(at + SEG.avl) !== 0,
    unusable: dv.getUint8(at + SEG.unusable) !== 0,
  };
}

/** Encodes `s` as a kvm_segment at byte offset `at`. */
export function writeSegment(dv: DataView, at: number, s: KvmSegment): void {
  dv.setBigUint64(at + SEG.base, BigInt.asUintN(64, s.base), true);
  dv.setUint32(at + SEG.limit, s.limit >>> 0, true);
  dv.setUint16(at + SEG.selector, s.selector & 0xffff, true);
  dv.setUint8(at + SEG.type, s.type & 0xf);
  dv.setUint8(at + SEG.present, s.present ? 1 : 0);
  dv.setUint8(at + SEG.dpl, s.dpl & 3);
  dv.setUint8(at + SEG.db, s.db ? 1 : 0);
  dv.setUint8(at + SEG.s, s.s ? 1 : 0);
  dv.setUint8(at + SEG.l, s.l ? 1 : 0);
  dv.setUint8(at + SEG.g, s.g ? 1 : 0);
  dv.setUint8(at + SEG.avl, s.avl ? 1 : 0);
  dv.setUint8(at + SEG.unusable, s.unusable ? 1 : 0);
}

/** Decodes a kvm_sregs buffer (interrupt_bitmap aside). */
export function readSregs(dv: DataView): KvmSregs {
  const seg = (k: (typeof SEGMENTS)[number]) => readSegment(dv, SR[k]);
  const dt = (at: number): KvmDtable => ({
    base: dv.getBigUint64(at + DT.base, true),
    limit: dv.getUint16(at + DT.limit, true),
  });
  return {
    cs: seg("cs"),
    ds: seg("ds"),
    es: seg("es"),
    fs: seg("fs"),
    gs: seg("gs"),
    ss: seg("ss"),
    tr: seg("tr"),
    ldt: seg("ldt"),
    gdt: dt(SR.gdt),
    idt: dt(SR.idt),
    cr0: dv.getBigUint64(SR.cr0, true),
    cr2: dv.getBigUint64(SR.cr2, true),
    cr3: dv.getBigUint64(SR.cr3, true),
    cr4: dv.getBigUint64(SR.cr4, true),
    cr8: dv.getBigUint64(SR.cr8, true),
    efer: dv.getBigUint64(SR.efer, true),
    apicBase: dv.getBigUint64(SR.apic_base, true),
  };
}

/** Writes everything but interrupt_bitmap, which keeps what dv holds (read it with GET_SREGS first). */
export function writeSregs(dv: DataView, s: KvmSregs): void {
  for (const k of SEGMENTS) writeSegment(dv, SR[k], s[k]);
  for (const [k, t] of [
    ["gdt", s.gdt],
    ["idt", s.idt],
  ] as const) {
    dv.setBigUint64(SR[k] + DT.base, BigInt.asUintN(64, t.base), true);
    dv.setUint16(SR[k] + DT.limit, t.limit & 0xffff, true);
  }
  dv.setBigUint64(SR.cr0, BigInt.asUintN(64, s.cr0), true);
  dv.setBigUint64(SR.cr2, BigInt.asUintN(64, s.cr2), true);
  dv.setBigUint64(SR.cr3, BigInt.asUintN(64, s.cr3), true);
  dv.setBigUint64(SR.cr4, BigInt.asUintN(64, s.cr4), true);
  dv.setBigUint64(SR.cr8, BigInt.asUintN(64, s.cr8), true);
  dv.setBigUint64(SR.efer, BigInt.asUintN(64, s.efer), true);
  dv.setBigUint64(SR.apic_base, BigInt.asUintN(64, s.apicBase), true);
}

/** struct kvm_cpuid_entry2: one CPUID leaf/subleaf and the registers it returns. */
export interface CpuidEntry {
  /** The leaf (EAX input). */
  function: number;
  /** The subleaf (ECX input), when flags has KVM_CPUID_FLAG_SIGNIFCANT_INDEX. */
  index: number;
  /** KVM_CPUID_FLAG_* bits. */
  flags: number;
  /** EAX output. */
  eax: number;
  /** EBX output. */
  ebx: number;
  /** ECX output. */
  ecx: number;
  /** EDX output. */
  edx: number;
}

const CE = LAYOUTS.kvm_cpuid_entry2;

/** A kvm_cpuid2 buffer with room for `capacity` entries (nent set to capacity). */
export function cpuidBuffer(capacity: number): DataView {
  const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_cpuid2.size + capacity * CE.size));
  dv.setUint32(0, capacity, true);
  return dv;
}

/** Decodes a kvm_cpuid2 buffer's entries (nent of them). */
export function readCpuid(dv: DataView): CpuidEntry[] {
  const n = dv.getUint32(0, true);
  const out: CpuidEntry[] = [];
  for (let i = 0; i < n; i++) {
    const at = LAYOUTS.kvm_cpuid2.fields.entries + i * CE.size;
    out.push({
      function: dv.getUint32(at + CE.fields.function, true),
      index: dv.getUint32(at + CE.fields.index, true),
      flags: dv.getUint32(at + CE.fields.flags, true),
      eax: dv.getUint32(at + CE.fields.eax, true),
      ebx: dv.getUint32(at + CE.fields.ebx, true),
      ecx: dv.getUint32(at + CE.fields.ecx, true),
      edx: dv.getUint32(at + CE.fields.edx, true),
    });
  }
  return out;
}

/** Encodes entries as a kvm_cpuid2 buffer (for KVM_SET_CPUID2). */
export function writeCpuid(entries: readonly CpuidEntry[]): DataView {
  const dv = cpuidBuffer(entries.length);
  entries.forEach((e, i) => {
    const at = LAYOUTS.kvm_cpuid2.fields.entries + i * CE.size;
    dv.setUint32(at + CE.fields.function, e.function >>> 0, true);
    dv.setUint32(at + CE.fields.index, e.index >>> 0, true);
    dv.setUint32(at + CE.fields.flags, e.flags >>> 0, true);
    dv.setUint32(at + CE.fields.eax, e.eax >>> 0, true);
    dv.setUint32(at + CE.fields.ebx, e.ebx >>> 0, true);
    dv.setUint32(at + CE.fields.ecx, e.ecx >>> 0, true);
    dv.setUint32(at + CE.fields.edx, e.edx >>> 0, true);
  });
  return dv;
}

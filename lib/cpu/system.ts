// System mechanics: mode bookkeeping, descriptor-table reads, segment loads with their checks,
// exception/interrupt delivery (IVT, 32-bit IDT with TSS stack switch, 64-bit IDT with IST),
// double/triple fault, far transfers, IRET, SYSCALL/SYSRET, SYSENTER/SYSEXIT. Task switches (TSS
// targets, task gates, IRET with NT=1) are in task-switch.ts, 64-bit call gates in call-gate64.ts.
//
// Delivery and far transfers read and write through the supervisor-privileged helpers below and
// commit registers only after every memory access succeeded, so a fault midway leaves the guest
// state as it was before the instruction or event (a task switch past its commit point excepted).

import { callGate64 } from "./call-gate64.js";
import { noteSharedWrite, serializeCode, sharedSysWrite } from "./code-coherence.js";
import { canonicalNumber } from "./control-checks.js";
import { DebugException, DR6_BD, reportDebug } from "./debug.js";
import { CpuFault, EXIT_SIGNAL, Vec } from "./faults.js";
import { FL_AC, FL_IF, FL_IOPL, FL_NT, FL_RF, FL_TF, FL_VM } from "./flags.js";
import { Access, EventType, MMIO, StopReason } from "./hooks.js";
import type { Interpreter } from "./interpreter.js";
import { translate } from "./mmu.js";
import { farTaskSwitch, taskCommitCount, taskGateEvent, taskReturn } from "./task-switch.js";

const TWO32 = 4294967296;
const AR_UNUSABLE = 0x10000;
/** lowest limit under which no access from a 16-bit offset (at most 512 bytes, FXSAVE) can end past it */
const FLAT16_LIMIT = 0xffff + 511;

/**
 * what cached blocks and their links depend on beyond the code bytes (updateMode compares it
 * before and after). Not the privilege: links are keyed by it (Interpreter.linkKey, with the TLB
 * bank a link skips), blocks are decoded alike at any CPL and their ops check it as they run, and
 * a compiled block keeps the current bank's TLB arrays only while it runs, which no change of
 * privilege within a block can outlast (events come between blocks, the instructions that change
 * it end their block; INT1, which does not, bumps codeEpoch itself: softwareInterrupt). Not the
 * FS/GS bases in 64-bit mode either: ops read them as they run, compiled blocks at their head and
 * again after each generic op (block-compile.ts), and SWAPGS ends its block.
 */
const MODE_SNAPSHOT = new Float64Array(22);

function snapshotMode(cpu: Interpreter, out: Float64Array): void {
  out.set(cpu.effBase, 0);
  out.set(cpu.segFastR, 6);
  out.set(cpu.segFastW, 12);
  out[18] =
    (cpu.mode64 ? 1 : 0) | (cpu.csD ? 2 : 0) | (cpu.ssB ? 4 : 0) | (cpu.pm ? 8 : 0) | (cpu.paging ? 16 : 0);
  out[19] = cpu.segChk16;
  out[20] = cpu.segChk32;
  out[21] = cpu.ssChk ? 1 : 0;
}

/** true when the state snapshotMode took in `was` still holds */
function sameMode(cpu: Interpreter, was: Float64Array): boolean {
  // 64-bit mode before and after: the FS/GS bases do not count (MODE_SNAPSHOT), nor SS.B, which
  // no stack access reads there (and which flips at each event from user mode: a null SS, B = 0)
  const long = (was[18] & 1) !== 0 && cpu.mode64;
  const bases = long ? 4 : 6;
  for (let i = 0; i < 6; i++) {
    if (
      (i < bases && was[i] !== cpu.effBase[i]) ||
      was[6 + i] !== cpu.segFastR[i] ||
      was[12 + i] !== cpu.segFastW[i]
    )
      return false;
  }
  const ignored = long ? 4 : 0;
  const mode =
    (cpu.mode64 ? 1 : 0) | (cpu.csD ? 2 : 0) | (cpu.ssB ? 4 : 0) | (cpu.pm ? 8 : 0) | (cpu.paging ? 16 : 0);
  return (
    (was[18] & ~ignored) === (mode & ~ignored) &&
    was[19] === cpu.segChk16 &&
    was[20] === cpu.segChk32 &&
    was[21] === (cpu.ssChk ? 1 : 0)
  );
}

export function updateMode(cpu: Interpreter): void {
  const oldUser = cpu.cpl === 3;
  const was = MODE_SNAPSHOT;
  snapshotMode(cpu, was);
  cpu.pm = (cpu.cr0 & 1) !== 0;
  const lma = (cpu.efer & 0x400) !== 0;
  cpu.mode64 = lma && (cpu.segAr[1] & 0x2000) !== 0;
  cpu.csD = (cpu.segAr[1] & 0x4000) !== 0;
  cpu.ssB = (cpu.segAr[2] & 0x4000) !== 0;
  cpu.defOsz = cpu.mode64 || cpu.csD ? 32 : 16;
  cpu.defAsz = cpu.mode64 ? 64 : cpu.csD ? 32 : 16;
  cpu.cpl = !cpu.pm ? 0 : (cpu.eflags & FL_VM) !== 0 ? 3 : (cpu.segAr[2] >> 5) & 3;
  cpu.paging = cpu.pm && (cpu.cr0 & 0x80000000) !== 0;
  for (let i = 0; i < 6; i++) cpu.effBase[i] = cpu.mode64 && i < 4 ? 0 : cpu.segBase[i];
  updateSegChecks(cpu);
  // TLB entries are filled under the privilege current at the time: a change between user and
  // supervisor switches to the other bank, whose entries were made under the new one (tlb-bank.ts)
  if (oldUser !== (cpu.cpl === 3)) cpu.privilegeChanged();
  cpu.fpBase = Number.NaN;
  cpu.fpEnd = 0;
  cpu.fpHi = 0;
  // blocks (compiled ones keep segment bases and bounds in locals) and their links depend on the
  // mode and the segments' bases and bounds: a reload that changed none of them (a VM entry's
  // guest state, an IRET or interrupt within the kernel, a system call and its return, a new
  // FS/GS base in 64-bit mode) leaves them valid
  if (!sameMode(cpu, was)) cpu.codeEpoch++;
}

/**
 * Which segments need limit/type checks: a segment is flat (no check) when it is a usable
 * expand-up writable data segment (readable code for CS) whose limit covers every access that
 * starts at an offset of the address size. With 16-bit addresses a 64 KiB limit does not: a word
 * at offset 0xFFFF ends past it, which is #GP (#SS for the stack) in real mode as in protected
 * mode (SDM Vol. 3B 21.1.1 / 20.1.1), not a wrap to offset 0 or an access above the segment.
 */
function updateSegChecks(cpu: Interpreter): void {
  let c16 = 0;
  let c32 = 0;
  if (!cpu.mode64) {
    for (let i = 0; i < 6; i++) {
      const ar = cpu.segAr[i];
      const limit = cpu.segLimit[i];
      const typeOk = cpu.pm
        ? (ar & AR_UNUSABLE) === 0 && (i === 1 ? (ar & 0x1a) === 0x1a : (ar & 0x1e) === 0x12)
        : (ar & 0x1c) !== 0x14;
      if (!typeOk || limit < 0xffffffff) c32 |= 1 << i;
      if (!typeOk || limit < FLAT16_LIMIT) c16 |= 1 << i;
    }
  }
  cpu.segChk16 = c16;
  cpu.segChk32 = c32;
  cpu.ssChk = ((cpu.ssB ? c32 : c16) & 4) !== 0;
  // a block's fast ops use only DS or SS with the default address size (anything with a segment
  // override or an address-size prefix is a generic op that single-steps through the checks):
  // they compare the offset of an access's last byte with these bounds and leave anything above
  // them to segCheck, so a segment with a base, a limit or an unusual type keeps blocks on
  const chk = cpu.defAsz === 16 ? c16 : cpu.defAsz === 32 ? c32 : 0;
  for (let i = 0; i < 6; i++) {
    let r = Number.POSITIVE_INFINITY;
    let w = r;
    if (((chk >> i) & 1) !== 0) {
      const ar = cpu.segAr[i];
      const limit = cpu.segLimit[i];
      if ((ar & 0x1c) === 0x14 || (cpu.pm && (ar & AR_UNUSABLE) !== 0)) {
        // expand-down or null: segCheck decides every access
        r = -1;
        w = -1;
      } else if (!cpu.pm) {
        r = limit;
        w = limit;
      } else {
        const code = (ar & 8) !== 0;
        r = code && (ar & 2) === 0 ? -1 : limit;
        w = code || (ar & 2) === 0 ? -1 : limit;
      }
    }
    cpu.segFastR[i] = r;
    cpu.segFastW[i] = w;
  }
}

// ------------------------------------------------------------------ supervisor memory access

// Two kinds of supervisor access go through here (SDM Vol. 3A 4.6.1). The processor's own reads and
// writes of the GDT, LDT, IDT and TSS are implicit supervisor accesses at any CPL: SMAP refuses
// them on a user page whatever EFLAGS.AC holds. The stack frames of event delivery and call gates
// are ordinary supervisor accesses made at the CPL of the moment: the SDM's pseudocode pushes them
// before CPL changes, so from CPL 3 they are implicit (translate counts any supervisor access at
// CPL 3 so), at CPL 0-2 explicit, where AC = 1 lets SMAP allow a user page.

/**
 * `bytes`: how many bytes from `lin` (within its page) the caller is about to write (0: a probe);
 * `implicit`: an access to a system structure (GDT, LDT, IDT, TSS) rather than a stack frame
 */
function sysByte(
  cpu: Interpreter,
  lin: number,
  write: boolean,
  bytes: number,
  implicit: boolean,
): { m: Uint8Array; p: number } {
  const access = write ? Access.Write : Access.Read;
  const gpa = cpu.paging ? translate(cpu, lin, access, false, implicit) : lin;
  cpu.xGpa = gpa;
  const map = cpu.mapPhys(gpa, access, lin, false);
  if (map === MMIO) throw new CpuFault(Vec.GP, 0);
  // supervisor writes (exception frames, TSS) bypass the TLB: keep the decode cache coherent
  if (bytes !== 0 && cpu.codePages.size !== 0) cpu.noteWrite(gpa, bytes);
  return { m: map.bytes, p: map.offset + (gpa % 4096) };
}

/** reads up to 8 bytes of a system structure (GDT, LDT, IDT, TSS): an implicit supervisor access */
export function sysRead(cpu: Interpreter, lin: number, size: number): number {
  if ((lin & 0xfff) + size <= 0x1000) {
    const { m, p } = sysByte(cpu, lin, false, 0, true);
    let v = 0;
    for (let k = size - 1; k >= 0; k--) v = v * 256 + m[p + k];
    return v;
  }
  let v = 0;
  for (let k = size - 1; k >= 0; k--) {
    const { m, p } = sysByte(cpu, cpu.addLin(lin, k), false, 0, true);
    v = v * 256 + m[p];
  }
  return v;
}

/**
 * writes a value of up to 8 bytes (lo, hi halves) with supervisor access; `implicit` false for a
 * stack frame, true (the default) for a system structure (accessed and busy bits, the TSS)
 */
export function sysWrite(
  cpu: Interpreter,
  lin: number,
  size: number,
  v: number,
  vh: number,
  implicit = true,
): void {
  const byte = (k: number) => (k < 4 ? v >> (8 * k) : vh >> (8 * (k - 4))) & 0xff;
  if ((lin & 0xfff) + size <= 0x1000) {
    const { m, p } = sysByte(cpu, lin, true, size, implicit);
    if (cpu.smp !== null) sharedSysWrite(cpu, m, p, size, v, vh);
    else for (let k = 0; k < size; k++) m[p + k] = byte(k);
    return;
  }
  for (let k = 0; k < size; k++) {
    const { m, p } = sysByte(cpu, cpu.addLin(lin, k), true, 1, implicit);
    m[p] = byte(k);
    if (cpu.smp !== null) noteSharedWrite(cpu, cpu.xGpa - (cpu.xGpa % 4096));
  }
}

/** checks that a stack-frame write is possible (makes multi-push sequences all-or-nothing) */
function stackProbe(cpu: Interpreter, lin: number, size: number): void {
  sysByte(cpu, lin, true, 0, false);
  if ((lin & 0xfff) + size > 0x1000) sysByte(cpu, cpu.addLin(lin, size - 1), true, 0, false);
}

// ------------------------------------------------------------------ descriptors

export interface Descriptor {
  lo: number;
  hi: number;
  /** linear address of the descriptor (to set the accessed/busy bit) */
  addr: number;
}

export function descBase(d: Descriptor): number {
  return ((d.lo >>> 16) | ((d.hi & 0xff) << 16) | (d.hi & 0xff000000)) >>> 0;
}
export function descLimit(d: Descriptor): number {
  const l = (d.lo & 0xffff) | (d.hi & 0xf0000);
  return (d.hi & 0x800000) !== 0 ? ((l << 12) | 0xfff) >>> 0 : l;
}
/** VMX access-rights layout */
export function descAr(d: Descriptor): number {
  return ((d.hi >>> 8) & 0xff) | ((d.hi >>> 8) & 0xf000);
}

/** reads the descriptor of `sel` from the GDT or LDT; null if beyond the table limit */
export function readDescriptor(cpu: Interpreter, sel: number): Descriptor | null {
  let base: number;
  let limit: number;
  if ((sel & 4) !== 0) {
    if ((cpu.segAr[6] & AR_UNUSABLE) !== 0 || (cpu.segSel[6] & ~3) === 0) return null;
    base = cpu.segBase[6];
    limit = cpu.segLimit[6];
  } else {
    base = cpu.gdtBase;
    limit = cpu.gdtLimit;
  }
  const off = sel & ~7;
  if (off + 7 > limit) return null;
  const addr = cpu.mode64 || (cpu.efer & 0x400) !== 0 ? base + off : (base + off) >>> 0;
  return { lo: sysRead(cpu, addr, 4), hi: sysRead(cpu, addr + 4, 4), addr };
}

export function markAccessed(cpu: Interpreter, d: Descriptor): void {
  if ((d.hi & 0x100) === 0) {
    d.hi |= 0x100;
    sysWrite(cpu, d.addr + 5, 1, (d.hi >>> 8) & 0xff, 0);
  }
}

export function setSegCache(cpu: Interpreter, seg: number, sel: number, d: Descriptor): void {
  cpu.segSel[seg] = sel;
  cpu.segBase[seg] = descBase(d);
  cpu.segLimit[seg] = descLimit(d);
  cpu.segAr[seg] = descAr(d);
}

function realSeg(cpu: Interpreter, seg: number, sel: number): void {
  cpu.segSel[seg] = sel & 0xffff;
  cpu.segBase[seg] = (sel & 0xffff) * 16;
  if ((cpu.eflags & FL_VM) !== 0) {
    cpu.segLimit[seg] = 0xffff;
    cpu.segAr[seg] = seg === 1 ? 0xf3 : 0xf3;
  } else if ((cpu.segAr[seg] & AR_UNUSABLE) !== 0 || (cpu.segAr[seg] & 0x80) === 0) {
    cpu.segAr[seg] = seg === 1 ? 0x9b : 0x93;
  }
}

const gp = (code: number): CpuFault => new CpuFault(Vec.GP, code);

/** MOV/POP Sreg, LDS/LES/LFS/LGS/LSS (not CS) */
export function loadSeg(cpu: Interpreter, seg: number, sel: number): void {
  sel &= 0xffff;
  if (!cpu.pm || (cpu.eflags & FL_VM) !== 0) {
    realSeg(cpu, seg, sel);
    updateMode(cpu);
    return;
  }
  const rpl = sel & 3;
  if ((sel & ~3) === 0) {
    if (seg === 2 && (!cpu.mode64 || cpu.cpl === 3 || rpl !== cpu.cpl)) throw gp(0);
    cpu.segSel[seg] = sel;
    if (seg === 2) cpu.segAr[seg] = AR_UNUSABLE | 0x93 | (cpu.cpl << 5) | (cpu.segAr[2] & 0x4000);
    else {
      cpu.segAr[seg] = AR_UNUSABLE;
      if (seg < 4) cpu.segBase[seg] = 0;
    }
    updateMode(cpu);
    return;
  }
  const d = readDescriptor(cpu, sel);
  if (d === null) throw gp(sel & ~3);
  const ar = descAr(d);
  const dpl = (ar >> 5) & 3;
  const type = ar & 0xf;
  if ((ar & 0x10) === 0) throw gp(sel & ~3);
  if (seg === 2) {
    if (rpl !== cpu.cpl || dpl !== cpu.cpl || (type & 0xa) !== 2) throw gp(sel & ~3);
    if ((ar & 0x80) === 0) throw new CpuFault(Vec.SS, sel & ~3);
  } else {
    const code = (type & 8) !== 0;
    if (code && (type & 2) === 0) throw gp(sel & ~3);
    const conforming = code && (type & 4) !== 0;
    if (!conforming && dpl < Math.max(cpu.cpl, rpl)) throw gp(sel & ~3);
    if ((ar & 0x80) === 0) throw new CpuFault(Vec.NP, sel & ~3);
  }
  markAccessed(cpu, d);
  const keepBase = cpu.mode64 && seg >= 4 ? cpu.segBase[seg] : -1;
  setSegCache(cpu, seg, sel, d);
  // in 64-bit mode a selector load sets only the low 32 bits of FS/GS base (upper cleared)
  if (keepBase !== -1) cpu.segBase[seg] = descBase(d);
  updateMode(cpu);
}

/** checks a code-segment descriptor for a direct far JMP/CALL; returns it */
function codeDescriptor(cpu: Interpreter, sel: number, forRet: boolean): Descriptor {
  if ((sel & ~3) === 0) throw gp(0);
  const d = readDescriptor(cpu, sel);
  if (d === null) throw gp(sel & ~3);
  const ar = descAr(d);
  if ((ar & 0x18) !== 0x18) throw gp(sel & ~3);
  const dpl = (ar >> 5) & 3;
  const rpl = sel & 3;
  const conforming = (ar & 4) !== 0;
  if (forRet) {
    if (rpl < cpu.cpl) throw gp(sel & ~3);
    if (conforming ? dpl > rpl : dpl !== rpl) throw gp(sel & ~3);
  } else if (conforming) {
    if (dpl > cpu.cpl) throw gp(sel & ~3);
  } else if (rpl > cpu.cpl || dpl !== cpu.cpl) throw gp(sel & ~3);
  if ((ar & 0x80) === 0) throw new CpuFault(Vec.NP, sel & ~3);
  if ((cpu.efer & 0x400) !== 0 && (ar & 0x2000) !== 0 && (ar & 0x4000) !== 0) throw gp(sel & ~3);
  return d;
}

export function loadCs(cpu: Interpreter, sel: number, d: Descriptor, cpl: number): void {
  markAccessed(cpu, d);
  setSegCache(cpu, 1, (sel & ~3) | cpl, d);
}

/** mask for an instruction pointer of operand size `osz` */
function maskIp(osz: number, ip: number): number {
  return osz === 16 ? ip & 0xffff : osz === 32 ? ip >>> 0 : ip;
}

/**
 * The offset a far transfer loads in real or virtual-8086 mode, checked before anything changes:
 * past the code segment's limit (the cached limit in real mode, 0xFFFF in virtual-8086 mode) it is
 * #GP(0), as the SDM's JMP/CALL/RET/IRET pseudo-code says; taken, the next VM entry would fail.
 */
function realTarget(cpu: Interpreter, osz: number, ip: number): number {
  const t = maskIp(osz, ip);
  const limit = (cpu.eflags & FL_VM) !== 0 ? 0xffff : cpu.segLimit[1]!;
  if (t > limit) throw gp(0);
  return t;
}

/**
 * The offset a far transfer (JMP, CALL, RET, IRET) loads with code segment `d`, checked before
 * anything changes: canonical when the target is 64-bit code, else within the segment limit
 * (#GP(0) either way: SDM Vol. 2A JMP/CALL/RET, Vol. 2B IRET). Without the limit check a 64-bit
 * operand could leave offset bits 63:32 set in compatibility mode, a RIP no VM entry accepts.
 */
function farTarget(cpu: Interpreter, d: Descriptor, ip: number, osz: number): number {
  if ((cpu.efer & 0x400) !== 0 && (descAr(d) & 0x2000) !== 0) {
    if (!canonicalNumber(ip)) throw gp(0);
    return ip;
  }
  const t = maskIp(osz, ip);
  if (t < 0 || t > descLimit(d)) throw gp(0);
  return t;
}

/** far JMP/CALL to sel:off; pushes CS:IP of the next instruction for CALL */
export function farTransfer(cpu: Interpreter, sel: number, off: number, call: boolean, osz: number): void {
  sel &= 0xffff;
  if (!cpu.pm || (cpu.eflags & FL_VM) !== 0) {
    const target = realTarget(cpu, osz, off);
    if (call) pushPair(cpu, osz, cpu.segSel[1], cpu.ip);
    realSeg(cpu, 1, sel);
    updateMode(cpu);
    cpu.ip = target;
    return;
  }
  if ((sel & ~3) === 0) throw gp(0);
  const d0 = readDescriptor(cpu, sel);
  if (d0 === null) throw gp(sel & ~3);
  if ((descAr(d0) & 0x10) === 0) {
    const type = descAr(d0) & 0xf;
    if ((cpu.efer & 0x400) !== 0) {
      // IA-32e mode: only 64-bit call gates; task gates and TSS targets are #GP
      if (type !== 0xc) throw gp(sel & ~3);
      callGate64(cpu, sel, d0, call);
    } else if (type === 0x4 || type === 0xc) callGate(cpu, sel, d0, call);
    else if (type === 0x5 || (type & 0x5) === 0x1) farTaskSwitch(cpu, sel, d0, call);
    else throw gp(sel & ~3);
    return;
  }
  const d = codeDescriptor(cpu, sel, false);
  const target = farTarget(cpu, d, off, osz);
  if (call) pushPair(cpu, osz, cpu.segSel[1], cpu.ip);
  loadCs(cpu, sel, d, cpu.cpl);
  updateMode(cpu);
  cpu.ip = target;
}

/**
 * Far JMP/CALL through a 16/32-bit call gate (legacy protected mode). A CALL to a more privileged
 * non-conforming segment switches to the inner stack from the TSS and copies the gate's parameter
 * count of words/dwords from the caller's stack; everything is checked before anything changes.
 */
function callGate(cpu: Interpreter, gateSel: number, g: Descriptor, call: boolean): void {
  const gar = descAr(g);
  const gdpl = (gar >> 5) & 3;
  if (gdpl < cpu.cpl || gdpl < (gateSel & 3)) throw gp(gateSel & ~3);
  if ((gar & 0x80) === 0) throw new CpuFault(Vec.NP, gateSel & ~3);
  const gate32 = (gar & 0xf) === 0xc;
  const sel = (g.lo >>> 16) & 0xffff;
  const target = gate32 ? ((g.hi & 0xffff0000) | (g.lo & 0xffff)) >>> 0 : g.lo & 0xffff;
  if ((sel & ~3) === 0) throw gp(0);
  const d = readDescriptor(cpu, sel);
  if (d === null) throw gp(sel & ~3);
  const ar = descAr(d);
  const dpl = (ar >> 5) & 3;
  const conforming = (ar & 4) !== 0;
  if ((ar & 0x18) !== 0x18 || dpl > cpu.cpl || (!call && !conforming && dpl !== cpu.cpl)) throw gp(sel & ~3);
  if ((ar & 0x80) === 0) throw new CpuFault(Vec.NP, sel & ~3);
  if (target > descLimit(d)) throw gp(0);
  const n = gate32 ? 4 : 2;
  const osz = gate32 ? 32 : 16;
  if (!call || conforming || dpl === cpu.cpl) {
    if (call) pushPair(cpu, osz, cpu.segSel[1], cpu.ip);
    loadCs(cpu, sel, d, cpu.cpl);
    updateMode(cpu);
    cpu.ip = target;
    return;
  }
  // more privilege: new SS:ESP from the TSS for the target's DPL
  const newCpl = dpl;
  const tss32 = (cpu.segAr[7] & 0xf) === 0xb || (cpu.segAr[7] & 0xf) === 0x9;
  const trBase = cpu.segBase[7];
  const slot = tss32 ? 4 + newCpl * 8 : 2 + newCpl * 4;
  const tr = cpu.segSel[7] & ~3;
  if (slot + (tss32 ? 5 : 3) > cpu.segLimit[7]) throw new CpuFault(Vec.TS, tr);
  const newSp = sysRead(cpu, (trBase + slot) >>> 0, tss32 ? 4 : 2);
  const ssSel = sysRead(cpu, (trBase + slot + (tss32 ? 4 : 2)) >>> 0, 2);
  if ((ssSel & ~3) === 0) throw new CpuFault(Vec.TS, 0);
  const ssD = readDescriptor(cpu, ssSel);
  if (ssD === null) throw new CpuFault(Vec.TS, ssSel & ~3);
  const sar = descAr(ssD);
  if ((ssSel & 3) !== newCpl || ((sar >> 5) & 3) !== newCpl || (sar & 0x1a) !== 0x12) {
    throw new CpuFault(Vec.TS, ssSel & ~3);
  }
  if ((sar & 0x80) === 0) throw new CpuFault(Vec.SS, ssSel & ~3);
  const ssBase = descBase(ssD);
  // caller's stack: parameters (the highest-addressed one is pushed first), at SP or ESP by its B bit
  const count = g.hi & 0x1f;
  const oldSp = cpu.sp();
  const params: number[] = [];
  for (let i = count - 1; i >= 0; i--) {
    const off = cpu.spAdd(oldSp, i * n);
    cpu.stackCheck(off, n, false);
    params.push(cpu.rd(osz, cpu.stackLin(off)));
  }
  const items = [cpu.segSel[2], cpu.lo[4] >>> 0, ...params, cpu.segSel[1], cpu.ip >>> 0];
  const top = pushStack(cpu, ssBase, sar, descLimit(ssD), newSp, items, n, ssSel & ~3);
  loadCs(cpu, sel, d, newCpl);
  commitSs(cpu, ssSel, ssD, newCpl);
  cpu.lo[4] = stackPointer(sar, newSp, top);
  updateMode(cpu);
  cpu.ip = target;
}

/**
 * Pushes `items` (first item highest, each `n` bytes) below offset `sp` of a stack segment with
 * base `base`, access rights `ar` and limit `limit`, with supervisor access and all or nothing:
 * #SS(code) unless every slot is within the limit where it lands (on a 16-bit stack, B = 0, the
 * offsets wrap at 64 KiB; an expand-down stack allows only offsets above its limit). Returns the
 * offset of the last item (stackPointer makes ESP of it). Event delivery and call-gate stack switches.
 */
function pushStack(
  cpu: Interpreter,
  base: number,
  ar: number,
  limit: number,
  sp: number,
  items: readonly number[],
  n: number,
  code: number,
): number {
  const big = (ar & 0x4000) !== 0;
  const wrap = (v: number) => (big ? v >>> 0 : v & 0xffff);
  const top = big ? 0xffffffff : 0xffff;
  const down = (ar & 0x1c) === 0x14;
  let p = sp;
  for (let i = 0; i < items.length; i++) {
    p = wrap(p - n);
    const end = p + n - 1;
    if (down ? p <= limit || end > top : end > limit) throw new CpuFault(Vec.SS, code);
  }
  p = sp;
  for (let i = 0; i < items.length; i++) {
    p = wrap(p - n);
    stackProbe(cpu, (base + p) >>> 0, n);
  }
  p = sp;
  for (const v of items) {
    p = wrap(p - n);
    sysWrite(cpu, (base + p) >>> 0, n, n === 2 ? v & 0xffff : v, 0, false);
  }
  return p;
}

/** ESP after pushes that started at `esp` and ended at offset `top` of a stack with access rights `ar` */
function stackPointer(ar: number, esp: number, top: number): number {
  return (ar & 0x4000) !== 0 ? top : ((esp & ~0xffff) | top) >>> 0;
}

/**
 * RSP after a return to another stack that popped `lo`/`hi` (hi 0 below a 64-bit operand size),
 * set once CS and SS are the new ones (updateMode done): 64-bit code or a 32-bit stack takes it
 * whole; a 16-bit stack (B = 0) only SP, and the rest of RSP stays as it was (what espfix works
 * around: an IRET to a 16-bit SS restores only the low 16 bits of the stack pointer).
 */
function setPoppedSp(cpu: Interpreter, lo: number, hi: number): void {
  if (cpu.mode64 || cpu.ssB) {
    cpu.lo[4] = lo;
    cpu.hi[4] = hi;
  } else cpu.lo[4] = (cpu.lo[4] & ~0xffff) | (lo & 0xffff);
}

/**
 * Writes `items` as quadwords below the 64-bit stack pointer `rsp` (first item highest) with
 * supervisor access, all or nothing; returns the new RSP. IA-32e mode stack switches.
 */
export function pushQuadwords(cpu: Interpreter, rsp: number, items: number[]): number {
  const top = rsp - items.length * 8;
  stackProbe(cpu, cpu.canon(top, 2), items.length * 8);
  let p = rsp;
  for (const v of items) {
    p -= 8;
    sysWrite(cpu, cpu.canon(p, 2), 8, v >>> 0, Math.floor(v / TWO32) | 0, false);
  }
  return top;
}

/** IA-32e mode: SS becomes a null selector carrying the new CPL (64-bit interrupt/call gates) */
export function nullSs(cpu: Interpreter, cpl: number): void {
  cpu.segSel[2] = cpl;
  cpu.segBase[2] = 0;
  cpu.segAr[2] = AR_UNUSABLE | 0x93 | (cpl << 5);
}

/** pushes CS then IP (each osz wide) as one all-or-nothing unit */
function pushPair(cpu: Interpreter, osz: number, cs: number, ip: number): void {
  const n = osz >> 3;
  const sp1 = cpu.spAdd(cpu.sp(), -n);
  const sp2 = cpu.spAdd(sp1, -n);
  // each slot where it lands: a 16-bit stack may wrap between them
  cpu.stackCheck(sp1, n, true);
  cpu.stackCheck(sp2, n, true);
  const a1 = cpu.stackLin(sp1);
  const a2 = cpu.stackLin(sp2);
  cpu.probeWrite(a1, n);
  cpu.probeWrite(a2, n);
  cpu.wr(osz, a1, cs, 0);
  cpu.wr(osz, a2, ip >>> 0, osz === 64 ? Math.floor(ip / TWO32) | 0 : 0);
  cpu.setSp(sp2);
}

/** RETF [imm16] */
export function farReturn(cpu: Interpreter, osz: number, imm: number): void {
  const n = osz >> 3;
  const ip = cpu.peek(osz, 0);
  const ipHi = cpu.vh;
  const sel = cpu.peek(osz, n) & 0xffff;
  const fullIp = osz === 64 ? ipHi * TWO32 + ip : ip;
  if (!cpu.pm || (cpu.eflags & FL_VM) !== 0) {
    const target = realTarget(cpu, osz, fullIp);
    realSeg(cpu, 1, sel);
    cpu.setSp(cpu.spAdd(cpu.sp(), 2 * n + imm));
    updateMode(cpu);
    cpu.ip = target;
    return;
  }
  const d = codeDescriptor(cpu, sel, true);
  const rpl = sel & 3;
  const target = farTarget(cpu, d, fullIp, osz);
  if (rpl === cpu.cpl) {
    loadCs(cpu, sel, d, rpl);
    cpu.setSp(cpu.spAdd(cpu.sp(), 2 * n + imm));
    updateMode(cpu);
    cpu.ip = target;
    return;
  }
  // return to an outer privilege level: SS:SP follow
  const sp = cpu.peek(osz, 2 * n + imm);
  const spHi = cpu.vh;
  const ss = cpu.peek(osz, 3 * n + imm) & 0xffff;
  const ssD = outerStack(cpu, ss, rpl, d);
  loadCs(cpu, sel, d, rpl);
  commitSs(cpu, ss, ssD, rpl);
  updateMode(cpu);
  // RETF imm releases the parameters on the outer stack too, in that stack's width
  const outerSp = osz === 64 ? spHi * TWO32 + (sp >>> 0) + imm : (sp >>> 0) + imm;
  setPoppedSp(cpu, osz === 64 ? outerSp : outerSp >>> 0, osz === 64 ? Math.floor(outerSp / TWO32) | 0 : 0);
  nullifyDataSegs(cpu, rpl);
  cpu.ip = target;
}

/** validates the SS to load when returning to privilege `rpl` in the code segment `cs` */
function outerStack(cpu: Interpreter, ss: number, rpl: number, cs: Descriptor): Descriptor | null {
  if ((ss & ~3) === 0) {
    // a null SS only for 64-bit code below CPL 3 (compatibility mode needs a stack segment)
    if ((cpu.efer & 0x400) !== 0 && rpl !== 3 && (descAr(cs) & 0x2000) !== 0) return null;
    throw gp(0);
  }
  const d = readDescriptor(cpu, ss);
  if (d === null) throw gp(ss & ~3);
  const ar = descAr(d);
  if ((ss & 3) !== rpl || ((ar >> 5) & 3) !== rpl || (ar & 0x1a) !== 0x12) throw gp(ss & ~3);
  if ((ar & 0x80) === 0) throw new CpuFault(Vec.SS, ss & ~3);
  return d;
}

function commitSs(cpu: Interpreter, ss: number, d: Descriptor | null, cpl: number): void {
  if (d === null) {
    cpu.segSel[2] = ss;
    cpu.segBase[2] = 0;
    cpu.segAr[2] = AR_UNUSABLE | 0x93 | (cpl << 5);
  } else {
    markAccessed(cpu, d);
    setSegCache(cpu, 2, ss, d);
  }
}

/** after a return to an outer level, data segments the new CPL may not use become null */
function nullifyDataSegs(cpu: Interpreter, cpl: number): void {
  for (const s of [0, 3, 4, 5]) {
    const ar = cpu.segAr[s];
    const dpl = (ar >> 5) & 3;
    const conformingCode = (ar & 0x1c) === 0x1c;
    if ((ar & AR_UNUSABLE) === 0 && !conformingCode && dpl < cpl) {
      cpu.segSel[s] = 0;
      cpu.segAr[s] = AR_UNUSABLE;
    }
  }
  updateMode(cpu);
}

// ------------------------------------------------------------------ IRET

export function iret(cpu: Interpreter, osz: number): void {
  // serializing (SDM 9.3): code other vCPUs wrote is seen after it
  if (cpu.smp !== null) serializeCode(cpu);
  try {
    iretBody(cpu, osz);
  } catch (e) {
    // a faulting IRET still ends NMI blocking; one that exits to the VMX layer has not executed
    if (e instanceof CpuFault) cpu.interruptibility &= ~8;
    throw e;
  }
  cpu.interruptibility &= ~8;
}

function iretBody(cpu: Interpreter, osz: number): void {
  const n = osz >> 3;
  const flagsNow = cpu.getFlags();
  if (!cpu.pm) {
    const ip = cpu.peek(osz, 0);
    const cs = cpu.peek(osz, n) & 0xffff;
    const fl = cpu.peek(osz, 2 * n);
    const target = realTarget(cpu, osz, ip);
    realSeg(cpu, 1, cs);
    cpu.setSp(cpu.spAdd(cpu.sp(), 3 * n));
    const mask = osz === 16 ? 0xffff : 0x257fd5;
    cpu.setFlags((flagsNow & ~mask) | (fl & mask));
    updateMode(cpu);
    cpu.ip = target;
    return;
  }
  if ((flagsNow & FL_VM) !== 0) throw gp(0); // virtual-8086 mode is not supported
  if ((flagsNow & FL_NT) !== 0) {
    if ((cpu.efer & 0x400) !== 0) throw gp(0);
    taskReturn(cpu);
    return;
  }
  const ip = cpu.peek(osz, 0);
  const ipHi = cpu.vh;
  const cs = cpu.peek(osz, n) & 0xffff;
  const fl = cpu.peek(osz, 2 * n);
  const fullIp = osz === 64 ? ipHi * TWO32 + ip : ip;
  if ((fl & FL_VM) !== 0 && cpu.cpl === 0 && osz === 32 && !cpu.mode64) throw gp(0);
  const d = codeDescriptor(cpu, cs, true);
  const rpl = cs & 3;
  const target = farTarget(cpu, d, fullIp, osz);
  let newFlags = applyFlags(cpu, flagsNow, fl, osz);
  if (rpl === cpu.cpl && !cpu.mode64) {
    loadCs(cpu, cs, d, rpl);
    cpu.setSp(cpu.spAdd(cpu.sp(), 3 * n));
    cpu.setFlags(newFlags);
    updateMode(cpu);
    cpu.ip = target;
    return;
  }
  const sp = cpu.peek(osz, 3 * n);
  const spHi = cpu.vh;
  const ss = cpu.peek(osz, 4 * n) & 0xffff;
  let ssD: Descriptor | null;
  if (rpl === cpu.cpl && (ss & ~3) === 0 && cpu.mode64 && rpl !== 3) ssD = null;
  else ssD = outerStack(cpu, ss, rpl, d);
  const outer = rpl > cpu.cpl;
  loadCs(cpu, cs, d, rpl);
  commitSs(cpu, ss, ssD, rpl);
  newFlags = newFlags >>> 0;
  cpu.setFlags(newFlags);
  updateMode(cpu);
  setPoppedSp(cpu, sp, osz === 64 ? spHi : 0);
  if (outer) nullifyDataSegs(cpu, rpl);
  cpu.ip = target;
}

/** EFLAGS loaded by IRET/POPF honouring CPL/IOPL (IOPL at CPL 0 only, IF when CPL <= IOPL) */
export function applyFlags(cpu: Interpreter, old: number, v: number, osz: number): number {
  let mask = 0x254dd5 | FL_NT | FL_RF | FL_AC;
  if (cpu.cpl === 0) mask |= FL_IOPL | FL_IF;
  else if (cpu.cpl <= (old & FL_IOPL) >> 12) mask |= FL_IF;
  if (!cpu.pm) mask |= FL_IOPL | FL_IF;
  if (osz === 16) mask &= 0xffff;
  return ((old & ~mask) | (v & mask) | 2) >>> 0;
}

// ------------------------------------------------------------------ exceptions and interrupts

const CONTRIBUTORY = new Set([0, 10, 11, 12, 13]);

function isDoubleFault(first: number, second: number): boolean {
  if (first === Vec.PF) return second === Vec.PF || CONTRIBUTORY.has(second);
  return CONTRIBUTORY.has(first) && CONTRIBUTORY.has(second);
}

function hasErrorCode(vector: number): boolean {
  return vector === 8 || (vector >= 10 && vector <= 14) || vector === 17 || vector === 21;
}

/**
 * Raises a fault caught by the run loop (RIP at the faulting instruction). `during` is the vector
 * whose delivery faulted, for double-fault classification. Returns a StopReason when the run must
 * stop (exit or shutdown).
 */
export function deliverFault(cpu: Interpreter, f: CpuFault, during = -1): StopReason | undefined {
  const hooks = cpu.requireHooks();
  let vector = f.vector;
  let code = hasErrorCode(vector) ? (f.code ?? 0) : undefined;
  let cr2 = f.cr2;
  // a #DB from a debug condition reports its DR6 bits (in DR6, or as the exit qualification)
  let dbBits = f instanceof DebugException ? f.dr6 : -1;
  // every fault-class exception but an instruction-breakpoint #DB pushes RF = 1, so that the
  // instruction it restarts cannot hit its own instruction breakpoint (SDM 17.3.1.1)
  if (!(f instanceof DebugException) || (f.fault && (f.dr6 & DR6_BD) !== 0)) cpu.eflags |= FL_RF;
  let prev = during;
  if (prev >= 0 && prev < 32) {
    if (prev === Vec.DF) return tripleFault(cpu);
    if (isDoubleFault(prev, vector)) {
      vector = Vec.DF;
      code = 0;
      cr2 = undefined;
    }
  }
  for (;;) {
    const ctx = { length: 0, linearRip: cpu.insnLin };
    const qual = vector === Vec.PF ? cr2 : vector === Vec.DB && dbBits >= 0 ? dbBits : undefined;
    if (hooks.event(vector, EventType.HardwareException, code, qual, ctx)) return StopReason.Exit;
    if (vector === Vec.PF && cr2 !== undefined) cpu.cr2 = cr2;
    if (vector === Vec.DB && dbBits >= 0) {
      reportDebug(cpu, dbBits);
      dbBits = -1;
    }
    try {
      deliver(cpu, vector, EventType.HardwareException, code, false);
      return undefined;
    } catch (e) {
      if (e === EXIT_SIGNAL) return StopReason.Exit;
      if (!(e instanceof CpuFault)) throw e;
      prev = vector;
      if (prev === Vec.DF) return tripleFault(cpu);
      if (isDoubleFault(prev, e.vector)) {
        vector = Vec.DF;
        code = 0;
        cr2 = undefined;
      } else {
        vector = e.vector;
        code = hasErrorCode(vector) ? (e.code ?? 0) : undefined;
        cr2 = e.cr2;
      }
    }
  }
}

function tripleFault(cpu: Interpreter): StopReason {
  if (cpu.requireHooks().tripleFault()) return StopReason.Exit;
  cpu.activity = 2;
  return StopReason.Shutdown;
}

/**
 * Delivers an event through the IVT/IDT with RIP = the return address. Throws CpuFault for a
 * fault during delivery (state unchanged).
 */
export function deliver(
  cpu: Interpreter,
  vector: number,
  type: EventType,
  errorCode: number | undefined,
  _nested: boolean,
): void {
  // event delivery serializes, as IRET does
  if (cpu.smp !== null) serializeCode(cpu);
  const soft =
    type === EventType.SoftwareInterrupt ||
    type === EventType.SoftwareException ||
    type === EventType.PrivilegedSoftwareException;
  // INT n, INT3 and INTO check the gate's DPL and clear EXT in error codes; INT1 (ICEBP) does
  // neither, as a debug exception from outside the program would not (SDM Vol. 2A INT n, 6.13)
  const program = soft && type !== EventType.PrivilegedSoftwareException;
  const ext = program ? 0 : 1;
  const flags = cpu.getFlags();
  cpu.activity = 0;
  // the handler starts with TF = 0: no single-step trap for the instruction that raised the event
  cpu.dbgNoStep = true;
  if (!cpu.pm) {
    if (vector * 4 + 3 > cpu.idtLimit) throw gp(vector * 8 + 2 + ext);
    const ent = sysRead(cpu, (cpu.idtBase + vector * 4) >>> 0, 4);
    // FLAGS, CS, IP at SS:SP (SS:ESP when SS's cached B bit is set), #SS if they do not fit
    const sp = cpu.sp();
    const items = [flags, cpu.segSel[1], cpu.rip];
    const top = pushStack(cpu, cpu.segBase[2], cpu.segAr[2], cpu.segLimit[2], sp, items, 2, 0);
    cpu.lo[4] = stackPointer(cpu.segAr[2], cpu.lo[4], top);
    cpu.setFlags(flags & ~(FL_IF | FL_TF | FL_AC | FL_RF));
    realSeg(cpu, 1, ent >>> 16);
    updateMode(cpu);
    cpu.rip = ent & 0xffff;
    return;
  }
  const long = (cpu.efer & 0x400) !== 0;
  const gsz = long ? 16 : 8;
  const idtErr = vector * 8 + 2 + ext;
  if (vector * gsz + gsz - 1 > cpu.idtLimit) throw gp(idtErr);
  const gAddr = long ? cpu.idtBase + vector * 16 : (cpu.idtBase + vector * 8) >>> 0;
  const glo = sysRead(cpu, gAddr, 4);
  const ghi = sysRead(cpu, gAddr + 4, 4);
  const gtype = (ghi >>> 8) & 0x1f;
  const gdpl = (ghi >>> 13) & 3;
  let gate32: boolean;
  if (long) {
    if (gtype !== 0xe && gtype !== 0xf) throw gp(idtErr);
    gate32 = true;
  } else {
    if (gtype !== 0xe && gtype !== 0xf && gtype !== 0x6 && gtype !== 0x7 && gtype !== 0x5) throw gp(idtErr);
    gate32 = (gtype & 8) !== 0;
  }
  if (program && gdpl < cpu.cpl) throw gp(idtErr);
  if ((ghi & 0x8000) === 0) throw new CpuFault(Vec.NP, idtErr);
  if (gtype === 0x5) {
    const event = { vector, type, errorCode: soft ? undefined : errorCode };
    const ctx =
      soft && softLen >= 0 ? { length: softLen, linearRip: softLin } : { length: 0, linearRip: cpu.insnLin };
    taskGateEvent(cpu, glo, event, ext, ctx);
    return;
  }
  const trapGate = (gtype & 1) !== 0;
  const sel = glo >>> 16;
  let target = (glo & 0xffff) | (ghi & 0xffff0000);
  target = target >>> 0;
  if (long) {
    const g2 = sysRead(cpu, gAddr + 8, 4);
    target = (g2 | 0) * TWO32 + target;
  } else if (!gate32) target &= 0xffff;
  // target code segment
  if ((sel & ~3) === 0) throw gp(ext);
  const d = readDescriptor(cpu, sel);
  if (d === null) throw gp((sel & ~3) + ext);
  const ar = descAr(d);
  const dpl = (ar >> 5) & 3;
  if ((ar & 0x18) !== 0x18 || dpl > cpu.cpl) throw gp((sel & ~3) + ext);
  if ((ar & 0x80) === 0) throw new CpuFault(Vec.NP, (sel & ~3) + ext);
  if (long && ((ar & 0x2000) === 0 || (ar & 0x4000) !== 0)) throw gp((sel & ~3) + ext);
  if (long && !canonicalNumber(target)) throw gp(ext);
  const conforming = (ar & 4) !== 0;
  const newCpl = conforming ? cpu.cpl : dpl;
  const hasCode = errorCode !== undefined && !soft;
  const oldSs = cpu.segSel[2];
  const oldCs = cpu.segSel[1];
  const ripLo = cpu.rip >>> 0;
  const ripHi = Math.floor(cpu.rip / TWO32) | 0;

  if (long) {
    const ist = ghi & 7;
    let rsp: number;
    const switching = newCpl < cpu.cpl;
    if (switching || ist !== 0) {
      const trBase = cpu.segBase[7];
      const off = ist !== 0 ? 0x24 + (ist - 1) * 8 : 4 + newCpl * 8;
      if (off + 7 > cpu.segLimit[7]) throw new CpuFault(Vec.TS, (cpu.segSel[7] & ~3) + ext);
      const l = sysRead(cpu, trBase + off, 4);
      const h = sysRead(cpu, trBase + off + 4, 4) | 0;
      rsp = h * TWO32 + l;
    } else {
      rsp = cpu.hi[4] * TWO32 + (cpu.lo[4] >>> 0);
    }
    rsp = rsp - (((rsp % 16) + 16) % 16);
    const oldRsp = cpu.hi[4] * TWO32 + (cpu.lo[4] >>> 0);
    const items: number[] = [oldSs, oldRsp, flags, oldCs, cpu.rip];
    if (hasCode) items.push(errorCode >>> 0);
    const top = pushQuadwords(cpu, rsp, items);
    void ripLo;
    void ripHi;
    loadCs(cpu, sel, d, newCpl);
    if (switching) nullSs(cpu, newCpl);
    cpu.lo[4] = top;
    cpu.hi[4] = Math.floor(top / TWO32);
    cpu.setFlags(flags & ~(FL_TF | FL_NT | FL_RF | FL_VM | (trapGate ? 0 : FL_IF)));
    updateMode(cpu);
    cpu.rip = target;
    return;
  }

  // 32-bit (or 16-bit gate) protected mode
  const n = gate32 ? 4 : 2;
  let ssSel = oldSs;
  let ssD: Descriptor | null = null;
  // the stack the frame goes on: the inner one from the TSS (ESP <- its stack pointer, then the
  // pushes), else the current one; SP or ESP by that stack's B bit
  let sp: number;
  let esp: number;
  let ssBase: number;
  let ssAr: number;
  let ssLimit: number;
  const switching = newCpl < cpu.cpl;
  if (switching) {
    const tss32 = (cpu.segAr[7] & 0xf) === 0xb || (cpu.segAr[7] & 0xf) === 0x9;
    const trBase = cpu.segBase[7];
    if (tss32) {
      sp = sysRead(cpu, (trBase + 4 + newCpl * 8) >>> 0, 4);
      ssSel = sysRead(cpu, (trBase + 8 + newCpl * 8) >>> 0, 2);
    } else {
      sp = sysRead(cpu, (trBase + 2 + newCpl * 4) >>> 0, 2);
      ssSel = sysRead(cpu, (trBase + 4 + newCpl * 4) >>> 0, 2);
    }
    if ((ssSel & ~3) === 0) throw new CpuFault(Vec.TS, ext);
    ssD = readDescriptor(cpu, ssSel);
    if (ssD === null) throw new CpuFault(Vec.TS, (ssSel & ~3) + ext);
    const sar = descAr(ssD);
    if ((ssSel & 3) !== newCpl || ((sar >> 5) & 3) !== newCpl || (sar & 0x1a) !== 0x12) {
      throw new CpuFault(Vec.TS, (ssSel & ~3) + ext);
    }
    if ((sar & 0x80) === 0) throw new CpuFault(Vec.SS, (ssSel & ~3) + ext);
    ssBase = descBase(ssD);
    ssAr = sar;
    ssLimit = descLimit(ssD);
    esp = sp;
  } else {
    sp = cpu.sp();
    esp = cpu.lo[4];
    ssBase = cpu.segBase[2];
    ssAr = cpu.segAr[2];
    ssLimit = cpu.segLimit[2];
  }
  const items: number[] = [];
  if (switching) items.push(oldSs, cpu.lo[4] >>> 0);
  items.push(flags, oldCs, cpu.rip >>> 0);
  if (hasCode) items.push(errorCode >>> 0);
  const ssCode = switching ? (ssSel & ~3) + ext : ext;
  const top = pushStack(cpu, ssBase, ssAr, ssLimit, sp, items, n, ssCode);
  loadCs(cpu, sel, d, newCpl);
  if (switching && ssD !== null) commitSs(cpu, ssSel, ssD, newCpl);
  cpu.lo[4] = stackPointer(ssAr, esp, top);
  cpu.setFlags(flags & ~(FL_TF | FL_NT | FL_RF | FL_VM | (trapGate ? 0 : FL_IF)));
  updateMode(cpu);
  cpu.rip = target;
}

/** INT n / INT3 / INTO / INT1 executed by an instruction: RIP of the return is cpu.ip */
export function softwareInterrupt(cpu: Interpreter, vector: number, type: EventType): void {
  if (type !== EventType.SoftwareInterrupt) {
    const ctx = { length: cpu.ip - cpu.rip, linearRip: cpu.insnLin };
    if (cpu.requireHooks().event(vector, type, undefined, undefined, ctx)) throw EXIT_SIGNAL;
  }
  if (cpu.pm && (cpu.eflags & FL_VM) !== 0) throw gp(0);
  const saved = cpu.rip;
  const user = cpu.cpl === 3;
  const commits = taskCommitCount();
  softLen = cpu.ip - saved;
  softLin = cpu.insnLin;
  cpu.rip = cpu.ip;
  try {
    deliver(cpu, vector, type, undefined, false);
  } catch (e) {
    // a fault past a task switch's commit point belongs to the new task, at its EIP
    if (taskCommitCount() === commits) cpu.rip = saved;
    throw e;
  } finally {
    softLen = -1;
  }
  cpu.ip = cpu.rip;
  // INT1 does not end its block (block-decode.ts endsBlock), which must not go on at the next
  // instruction (the handler's address, say) under the other privilege: its fetch rights, and the
  // TLB bank a compiled block holds, were the old privilege's
  if (user !== (cpu.cpl === 3)) cpu.codeEpoch++;
}

/** length (-1: none) and linear address of the INT n / INT3 / INTO / INT1 being delivered, for the
 * VM exit of a task switch through a task gate */
let softLen = -1;
let softLin = 0;

// ------------------------------------------------------------------ fast system calls

// The soft CPU is GenuineIntel: SYSCALL and SYSRET are #UD outside 64-bit mode (legacy and
// compatibility mode too, where AMD's run them through CSTAR/STAR), SDM Vol. 2B SYSCALL/SYSRET.

export function syscall(cpu: Interpreter): void {
  if ((cpu.efer & 1) === 0 || !cpu.mode64) throw new CpuFault(Vec.UD, undefined);
  const cs = Number((cpu.star >> 32n) & 0xfffcn);
  const flags = cpu.getFlags();
  cpu.segSel[1] = cs;
  cpu.segBase[1] = 0;
  cpu.segLimit[1] = 0xffffffff;
  cpu.segAr[1] = 0xa09b;
  cpu.segSel[2] = cs + 8;
  cpu.segBase[2] = 0;
  cpu.segLimit[2] = 0xffffffff;
  cpu.segAr[2] = 0xc093;
  const next = cpu.ip;
  cpu.lo[1] = next;
  cpu.hi[1] = Math.floor(next / TWO32);
  cpu.lo[11] = flags;
  cpu.hi[11] = 0;
  cpu.setFlags(flags & ~cpu.sfmask & ~FL_RF);
  // TF masked: no single-step trap after the SYSCALL (Linux reports it itself at syscall exit)
  if ((flags & cpu.sfmask & FL_TF) !== 0) cpu.dbgNoStep = true;
  updateMode(cpu);
  cpu.ip = cpu.lstar;
}

export function sysret(cpu: Interpreter, rexW: boolean): void {
  if ((cpu.efer & 1) === 0 || !cpu.mode64) throw new CpuFault(Vec.UD, undefined);
  if (cpu.cpl !== 0) throw gp(0);
  const base = Number((cpu.star >> 48n) & 0xffffn);
  let target: number;
  if (rexW) {
    target = cpu.hi[1] * TWO32 + (cpu.lo[1] >>> 0);
    // Intel faults in ring 0 on a non-canonical RCX (AMD would fault in ring 3)
    if (target >= 0x800000000000 || target < -0x800000000000) throw gp(0);
    cpu.segSel[1] = (base + 16) | 3;
    cpu.segAr[1] = 0xa0fb;
  } else {
    target = cpu.lo[1] >>> 0;
    cpu.segSel[1] = base | 3;
    cpu.segAr[1] = 0xc0fb;
  }
  cpu.setFlags((cpu.lo[11] & 0x3c7fd7) | 2);
  cpu.segBase[1] = 0;
  cpu.segLimit[1] = 0xffffffff;
  cpu.segSel[2] = (base + 8) | 3;
  cpu.segBase[2] = 0;
  cpu.segLimit[2] = 0xffffffff;
  cpu.segAr[2] = 0xc0f3;
  updateMode(cpu);
  cpu.ip = target;
}

export function sysenter(cpu: Interpreter): void {
  if (!cpu.pm) throw gp(0);
  const cs = cpu.sysenterCs & 0xfffc;
  if (cs === 0) throw gp(0);
  const long = (cpu.efer & 0x400) !== 0;
  cpu.setFlags(cpu.getFlags() & ~(FL_IF | FL_VM | FL_RF));
  cpu.segSel[1] = cs;
  cpu.segBase[1] = 0;
  cpu.segLimit[1] = 0xffffffff;
  cpu.segAr[1] = long ? 0xa09b : 0xc09b;
  cpu.segSel[2] = cs + 8;
  cpu.segBase[2] = 0;
  cpu.segLimit[2] = 0xffffffff;
  cpu.segAr[2] = 0xc093;
  updateMode(cpu);
  const sp = long ? cpu.sysenterEsp : cpu.sysenterEsp >>> 0;
  cpu.lo[4] = sp;
  cpu.hi[4] = long ? Math.floor(sp / TWO32) : 0;
  cpu.ip = long ? cpu.sysenterEip : cpu.sysenterEip >>> 0;
}

export function sysexit(cpu: Interpreter, rexW: boolean): void {
  const cs = cpu.sysenterCs & 0xfffc;
  if (!cpu.pm || cpu.cpl !== 0 || cs === 0) throw gp(0);
  if (rexW) {
    // the new RIP (RDX) and RSP (RCX) must be canonical
    const rdx = cpu.hi[2] * TWO32 + (cpu.lo[2] >>> 0);
    const rcx = cpu.hi[1] * TWO32 + (cpu.lo[1] >>> 0);
    if (!canonicalNumber(rdx) || !canonicalNumber(rcx)) throw gp(0);
    cpu.segSel[1] = (cs + 32) | 3;
    cpu.segAr[1] = 0xa0fb;
    cpu.segSel[2] = (cs + 40) | 3;
    cpu.ip = cpu.hi[2] * TWO32 + (cpu.lo[2] >>> 0);
    const sp = cpu.hi[1] * TWO32 + (cpu.lo[1] >>> 0);
    cpu.lo[4] = sp;
    cpu.hi[4] = Math.floor(sp / TWO32);
  } else {
    cpu.segSel[1] = (cs + 16) | 3;
    cpu.segAr[1] = 0xc0fb;
    cpu.segSel[2] = (cs + 24) | 3;
    cpu.ip = cpu.lo[2] >>> 0;
    cpu.lo[4] = cpu.lo[1];
    cpu.hi[4] = 0;
  }
  cpu.segBase[1] = 0;
  cpu.segLimit[1] = 0xffffffff;
  cpu.segBase[2] = 0;
  cpu.segLimit[2] = 0xffffffff;
  cpu.segAr[2] = 0xc0f3;
  updateMode(cpu);
}

/** LAR/LSL/VERR/VERW: the descriptor if visible at CPL/RPL, else null (ZF=0) */
export function probeDescriptor(
  cpu: Interpreter,
  sel: number,
  kind: "lar" | "lsl" | "verr" | "verw",
): Descriptor | null {
  if ((sel & ~3) === 0) return null;
  const d = readDescriptor(cpu, sel);
  if (d === null) return null;
  const ar = descAr(d);
  const dpl = (ar >> 5) & 3;
  const rpl = sel & 3;
  const s = (ar & 0x10) !== 0;
  const type = ar & 0xf;
  const conformingCode = s && (type & 0xc) === 0xc;
  if (!conformingCode && (dpl < cpu.cpl || dpl < rpl)) return null;
  if (!s) {
    const long = (cpu.efer & 0x400) !== 0;
    const okLar = long ? [2, 9, 0xb, 0xc].includes(type) : [1, 2, 3, 4, 5, 9, 0xb, 0xc].includes(type);
    const okLsl = long ? [2, 9, 0xb].includes(type) : [1, 2, 3, 9, 0xb].includes(type);
    if (kind === "lar" ? !okLar : kind === "lsl" ? !okLsl : true) return null;
    return d;
  }
  if (kind === "verr") return (type & 8) === 0 || (type & 2) !== 0 ? d : null;
  if (kind === "verw") return (type & 8) === 0 && (type & 2) !== 0 ? d : null;
  return d;
}

/** LTR: loads TR from an available TSS descriptor and marks it busy */
export function loadTr(cpu: Interpreter, sel: number): void {
  if ((sel & ~3) === 0 || (sel & 4) !== 0) throw gp(sel & ~3);
  const d = readDescriptor(cpu, sel);
  if (d === null) throw gp(sel & ~3);
  const ar = descAr(d);
  const type = ar & 0x1f;
  // IA-32e mode has only 64-bit TSSs (type 9): a 16-bit one there is #GP (and no VM entry takes it)
  if (type !== 0x9 && (type !== 0x1 || (cpu.efer & 0x400) !== 0)) throw gp(sel & ~3);
  if ((ar & 0x80) === 0) throw new CpuFault(Vec.NP, sel & ~3);
  let base = descBase(d);
  if ((cpu.efer & 0x400) !== 0) base = (sysRead(cpu, d.addr + 8, 4) | 0) * TWO32 + base;
  // IA-32e mode: the 16-byte descriptor's base must be canonical (SDM Vol. 2A LTR)
  if (!canonicalNumber(base)) throw gp(sel & ~3);
  d.hi |= 0x200;
  sysWrite(cpu, d.addr + 5, 1, (d.hi >>> 8) & 0xff, 0);
  cpu.segSel[7] = sel;
  cpu.segBase[7] = base;
  cpu.segLimit[7] = descLimit(d);
  cpu.segAr[7] = descAr(d);
}

export function loadLdt(cpu: Interpreter, sel: number): void {
  if ((sel & ~3) === 0) {
    cpu.segSel[6] = sel;
    cpu.segAr[6] = AR_UNUSABLE;
    return;
  }
  if ((sel & 4) !== 0) throw gp(sel & ~3);
  const d = readDescriptor(cpu, sel);
  if (d === null) throw gp(sel & ~3);
  const ar = descAr(d);
  if ((ar & 0x1f) !== 2) throw gp(sel & ~3);
  if ((ar & 0x80) === 0) throw new CpuFault(Vec.NP, sel & ~3);
  let base = descBase(d);
  if ((cpu.efer & 0x400) !== 0) base = (sysRead(cpu, d.addr + 8, 4) | 0) * TWO32 + base;
  if (!canonicalNumber(base)) throw gp(sel & ~3);
  cpu.segSel[6] = sel;
  cpu.segBase[6] = base;
  cpu.segLimit[6] = descLimit(d);
  cpu.segAr[6] = ar;
}

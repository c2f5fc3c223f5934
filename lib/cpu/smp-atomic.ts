// Locked operations and single-copy atomic accesses for interpreters that share guest memory with
// other threads (Interpreter.smp; SDM Vol. 3A 9.1 "Locked atomic operations").
//
// A LOCK-prefixed read-modify-write (and XCHG with memory) runs as a compare-and-swap: the
// destination is read atomically, the instruction computes as usual, and the write is an
// Atomics.compareExchange against the value read, on the naturally aligned unit that holds the
// operand (the operand itself, or the aligned 4- or 8-byte word around a misaligned one). A CAS
// that fails means another vCPU wrote the unit in between: the instruction starts over from its
// opcode with the flags it began with (lockedInsn), so results and flags are those of the attempt
// that succeeded and memory is written once, atomically. Atomics are sequentially consistent, so
// a locked operation is a full barrier (SDM 9.2.3.8), as MFENCE is (mfence).
//
// Split locks (an operand across an 8-byte boundary) and CMPXCHG16B (JavaScript has no 16-byte
// compare-and-swap) take a global lock word instead and read and write inside it: atomic only
// against other operations that take the same lock, not against plain stores of other vCPUs.
// Operands in MMIO keep the ordinary path (an exit, then the access by the device model).
//
// Faults stay precise: readRMW checks the destination for writing (probeWrite) before the read, so
// the only thing that can fail after the read is the CAS itself.
//
// Plain accesses: the interpreter's rd16/32/64, wr16/32/64 and slow paths become the versions
// below (own properties of the interpreter, installAtomicAccess), its TLB views AtomicViews, and
// compiled blocks use ld64/st64 for 8 bytes (block-compile.ts): every naturally aligned 2-, 4- or
// 8-byte access is one access. Not covered: 16-byte SSE accesses (two 8-byte halves, as the SDM
// allows without AVX), REP MOVS/STOS copied a page at a time (exec-string.ts bulk path: element
// stores of fast strings carry no such promise here), and descriptor accessed/busy bit updates
// (a plain store of the descriptor's high dword).

import { CODE_TAG } from "./block-cache.js";
import { SHARED_TAG } from "./code-coherence.js";
import { watchAccess } from "./debug.js";
import { FL_ZF } from "./flags.js";
import { Access } from "./hooks.js";
import type { Interpreter } from "./interpreter.js";
import { type AtomicView, type CasViews, casViewsOf, SmpWord } from "./smp-memory.js";

const TLB_MASK = 0xfff;

/** thrown by lockedWrite when its compare-and-swap failed: lockedInsn starts the instruction over */
const LOCK_RETRY = { lockRetry: true };

const enum Unit {
  /** MMIO: the ordinary path */
  Plain = 0,
  /** under the global lock word */
  Split = 1,
  U8 = 2,
  U16 = 3,
  I32 = 4,
  I64 = 5,
}

/** The locked access in progress (one per interpreter: instructions do not nest). */
class LockedAccess {
  unit = Unit.Plain;
  cv: CasViews | null = null;
  /** element index in the unit's array, and the operand's bit offset in the element */
  idx = 0;
  shift = 0;
  /** element value read (number for up to 32 bits, bigint for 64) */
  old = 0;
  old64 = 0n;
  /** TLB index and page of the destination (code checks on write) */
  tlb = 0;
  page = 0;
  /** the split lock is held by this interpreter */
  held = false;
}
const accesses = new WeakMap<Interpreter, LockedAccess>();
function accessOf(cpu: Interpreter): LockedAccess {
  let a = accesses.get(cpu);
  if (a === undefined) {
    a = new LockedAccess();
    accesses.set(cpu, a);
  }
  return a;
}

function splitLock(cpu: Interpreter, a: LockedAccess): void {
  const words = (cpu.smp as NonNullable<Interpreter["smp"]>).words;
  while (Atomics.compareExchange(words, SmpWord.SplitLock, 0, 1) !== 0) {
    // held briefly by another vCPU's instruction: wait for the release (or a moment)
    Atomics.wait(words, SmpWord.SplitLock, 1, 1);
  }
  a.held = true;
}
function splitUnlock(cpu: Interpreter, a: LockedAccess): void {
  if (!a.held) return;
  a.held = false;
  const words = (cpu.smp as NonNullable<Interpreter["smp"]>).words;
  Atomics.store(words, SmpWord.SplitLock, 0);
  Atomics.notify(words, SmpWord.SplitLock, 1);
}

/**
 * Runs the instruction whose opcode byte `b` was fetched (after its prefixes, LOCK among them) as
 * a locked read-modify-write, again from the opcode while its compare-and-swap fails.
 */
export function lockedInsn(cpu: Interpreter, b: number, run: (cpu: Interpreter, b: number) => void): void {
  const ip = cpu.ip;
  const fp = cpu.fp;
  const fpEnd = cpu.fpEnd;
  const fpBase = cpu.fpBase;
  const flags = saveFlags(cpu);
  const a = accessOf(cpu);
  for (;;) {
    cpu.lockRmw = true;
    try {
      run(cpu, b);
      return;
    } catch (e) {
      if (e !== LOCK_RETRY) throw e;
    } finally {
      cpu.lockRmw = false;
      splitUnlock(cpu, a);
    }
    restoreFlags(cpu, flags);
    cpu.ip = ip;
    if (cpu.fpBase === fpBase) {
      cpu.fp = fp;
      cpu.fpEnd = fpEnd;
    } else cpu.fpEnd = 0;
  }
}

/** XCHG with a memory operand (locked with or without the prefix): the value read, hi in vh */
export function lockedXchg(cpu: Interpreter, size: number, v: number, vh: number): number {
  const a = accessOf(cpu);
  for (;;) {
    cpu.lockRmw = true;
    try {
      const old = cpu.readRMW(size);
      const oldHi = cpu.vh;
      cpu.writeRM(size, v, vh);
      cpu.vh = oldHi;
      return old;
    } catch (e) {
      if (e !== LOCK_RETRY) throw e;
    } finally {
      cpu.lockRmw = false;
      splitUnlock(cpu, a);
    }
  }
}

function saveFlags(cpu: Interpreter): number[] {
  return [
    cpu.eflags,
    cpu.fOp,
    cpu.fSize,
    cpu.fA,
    cpu.fB,
    cpu.fRes,
    cpu.fAHi,
    cpu.fBHi,
    cpu.fResHi,
    cpu.fCf,
    cpu.fOf,
    cpu.fAf,
  ];
}
function restoreFlags(cpu: Interpreter, f: number[]): void {
  cpu.eflags = f[0];
  cpu.fOp = f[1];
  cpu.fSize = f[2];
  cpu.fA = f[3];
  cpu.fB = f[4];
  cpu.fRes = f[5];
  cpu.fAHi = f[6];
  cpu.fBHi = f[7];
  cpu.fResHi = f[8];
  cpu.fCf = f[9];
  cpu.fOf = f[10];
  cpu.fAf = f[11];
}

/**
 * readRMW of a locked instruction (the destination already checked for writing): reads the
 * operand atomically and remembers where it is. Returns what rd(size) would (hi in vh).
 */
export function lockedRead(cpu: Interpreter, size: number): number {
  const a = accessOf(cpu);
  const lin = cpu.ea;
  const n = size >> 3;
  const o = lin & 0xfff;
  const i = (lin >>> 12) & TLB_MASK;
  const page = lin - o;
  a.unit = Unit.Plain;
  if (o + n > 0x1000) {
    // across two pages: a split lock (both pages were checked for writing)
    splitLock(cpu, a);
    a.unit = Unit.Split;
    return cpu.rd(size, lin);
  }
  const tag = cpu.tlbWTag[i];
  if (tag !== page && tag !== page + CODE_TAG && tag !== page + SHARED_TAG && !cpu.fill(lin, Access.Write)) {
    // MMIO
    return cpu.rd(size, lin);
  }
  if (cpu.dbgData !== 0) watchAccess(cpu, lin, n, false);
  const m = cpu.tlbWMem[i];
  const p = cpu.tlbWOff[i] + o;
  const cv = casViewsOf(m);
  a.tlb = i;
  a.page = page;
  if (!cv.ok || (p & 7) + n > 8) {
    splitLock(cpu, a);
    a.unit = Unit.Split;
    return cpu.rd(size, lin);
  }
  a.cv = cv;
  if (n === 1) {
    a.unit = Unit.U8;
    a.idx = p;
    a.old = Atomics.load(cv.u8, p);
    return a.old;
  }
  if (n === 2 && (p & 1) === 0) {
    a.unit = Unit.U16;
    a.idx = p >> 1;
    a.old = Atomics.load(cv.u16, a.idx);
    return a.old;
  }
  if ((p & 3) + n <= 4) {
    a.unit = Unit.I32;
    a.idx = p >> 2;
    a.shift = (p & 3) * 8;
    a.old = Atomics.load(cv.i32, a.idx);
    const v = a.old >>> a.shift;
    return n === 4 ? v >>> 0 : v & (n === 2 ? 0xffff : 0xff);
  }
  a.unit = Unit.I64;
  a.idx = p >> 3;
  a.shift = (p & 7) * 8;
  a.old64 = Atomics.load(cv.i64, a.idx);
  const w = BigInt.asUintN(64, a.old64) >> BigInt(a.shift);
  const lo = Number(w & 0xffffffffn);
  if (n === 8) {
    cpu.vh = Number(w >> 32n) | 0;
    return lo;
  }
  return n === 4 ? lo : lo & (n === 2 ? 0xffff : 0xff);
}

/** writeRM of a locked instruction: a compare-and-swap against what lockedRead saw */
export function lockedWrite(cpu: Interpreter, size: number, v: number, vh: number): void {
  const a = accessOf(cpu);
  const lin = cpu.ea;
  const n = size >> 3;
  if (a.unit === Unit.Plain || a.unit === Unit.Split) {
    cpu.wr(size, lin, v, vh);
    return;
  }
  if (cpu.dbgData !== 0) watchAccess(cpu, lin, n, true);
  const cv = a.cv as CasViews;
  // the blocks of this vCPU decoded from the bytes go first (nothing is lost if the CAS fails)
  const tag = cpu.tlbWTag[a.tlb];
  if (tag !== a.page) {
    const cp = cpu.tlbWCode[a.tlb];
    if (cp?.live && cp.covers(lin & 0xfff, n)) cpu.codeWritten(cp, lin & 0xfff, n);
  }
  let ok: boolean;
  switch (a.unit) {
    case Unit.U8:
      ok = Atomics.compareExchange(cv.u8, a.idx, a.old, v & 0xff) === a.old;
      break;
    case Unit.U16:
      ok = Atomics.compareExchange(cv.u16, a.idx, a.old, v & 0xffff) === a.old;
      break;
    case Unit.I32: {
      let w: number;
      if (n === 4) w = v | 0;
      else {
        const mask = (n === 2 ? 0xffff : 0xff) << a.shift;
        w = (a.old & ~mask) | ((v << a.shift) & mask);
      }
      ok = Atomics.compareExchange(cv.i32, a.idx, a.old, w) === a.old;
      break;
    }
    default: {
      const val =
        n === 8
          ? (BigInt(vh >>> 0) << 32n) | BigInt(v >>> 0)
          : BigInt(n === 4 ? v >>> 0 : v & (n === 2 ? 0xffff : 0xff));
      const sh = BigInt(a.shift);
      const mask = ((1n << BigInt(8 * n)) - 1n) << sh;
      const w = BigInt.asIntN(64, (BigInt.asUintN(64, a.old64) & ~mask) | (val << sh));
      ok = Atomics.compareExchange(cv.i64, a.idx, a.old64, w) === a.old64;
    }
  }
  if (!ok) throw LOCK_RETRY;
  if (tag !== a.page && (tag === a.page + SHARED_TAG || cpu.smp?.isCode(cpu.tlbWGpa[a.tlb]) === true))
    Atomics.add((cpu.smp as NonNullable<Interpreter["smp"]>).words, SmpWord.CodeGen, 1);
}

/**
 * LOCK CMPXCHG8B / CMPXCHG16B (the destination checked for writing). CMPXCHG8B on an aligned
 * qword in RAM is one 64-bit compare-and-swap; misaligned, and CMPXCHG16B always, it runs under
 * the global lock word (atomic only against other split-locked operations and CMPXCHG16B).
 */
export function lockedCmpxchg8b16b(cpu: Interpreter, wide: boolean): void {
  const lin = cpu.ea;
  const o = lin & 0xfff;
  const i = (lin >>> 12) & TLB_MASK;
  const page = lin - o;
  if (!wide && (lin & 7) === 0) {
    const tag = cpu.tlbWTag[i];
    if (tag === page || tag === page + CODE_TAG || tag === page + SHARED_TAG || cpu.fill(lin, Access.Write)) {
      const m = cpu.tlbWMem[i];
      const p = cpu.tlbWOff[i] + o;
      const cv = casViewsOf(m);
      if (cv.ok && (p & 7) === 0) {
        if (cpu.dbgData !== 0) watchAccess(cpu, lin, 8, true);
        const t = cpu.tlbWTag[i];
        if (t !== page) {
          const cp = cpu.tlbWCode[i];
          if (cp?.live && cp.covers(o, 8)) cpu.codeWritten(cp, o, 8);
        }
        const expect = BigInt.asIntN(64, (BigInt(cpu.lo[2] >>> 0) << 32n) | BigInt(cpu.lo[0] >>> 0));
        const repl = BigInt.asIntN(64, (BigInt(cpu.lo[1] >>> 0) << 32n) | BigInt(cpu.lo[3] >>> 0));
        const old = Atomics.compareExchange(cv.i64, p >> 3, expect, repl);
        if (old === expect) {
          if (t !== page && (t === page + SHARED_TAG || cpu.smp?.isCode(cpu.tlbWGpa[i]) === true))
            Atomics.add((cpu.smp as NonNullable<Interpreter["smp"]>).words, SmpWord.CodeGen, 1);
          cpu.patchFlags(FL_ZF, FL_ZF);
        } else {
          const u = BigInt.asUintN(64, old);
          cpu.setReg(32, 0, Number(u & 0xffffffffn), 0);
          cpu.setReg(32, 2, Number(u >> 32n), 0);
          cpu.patchFlags(FL_ZF, 0);
        }
        return;
      }
    }
  }
  const a = accessOf(cpu);
  splitLock(cpu, a);
  try {
    plainCmpxchg8b16b(cpu, wide);
  } finally {
    splitUnlock(cpu, a);
  }
}

/** CMPXCHG8B/16B without LOCK (or under the split lock): the compare and the writes, access by access */
export function plainCmpxchg8b16b(cpu: Interpreter, wide: boolean): void {
  if (wide) {
    const l0 = cpu.rd64(cpu.ea);
    const h0 = cpu.vh;
    const a1 = cpu.addLin(cpu.ea, 8);
    const l1 = cpu.rd64(a1);
    const h1 = cpu.vh;
    if (l0 === cpu.lo[0] >>> 0 && h0 === cpu.hi[0] && l1 === cpu.lo[2] >>> 0 && h1 === cpu.hi[2]) {
      cpu.wr64(cpu.ea, cpu.lo[3], cpu.hi[3]);
      cpu.wr64(a1, cpu.lo[1], cpu.hi[1]);
      cpu.patchFlags(FL_ZF, FL_ZF);
    } else {
      cpu.wr64(cpu.ea, l0, h0);
      cpu.wr64(a1, l1, h1);
      cpu.setReg(64, 0, l0, h0);
      cpu.setReg(64, 2, l1, h1);
      cpu.patchFlags(FL_ZF, 0);
    }
    return;
  }
  const lo = cpu.rd64(cpu.ea);
  const hi = cpu.vh;
  if (lo === cpu.lo[0] >>> 0 && hi === cpu.lo[2]) {
    cpu.wr64(cpu.ea, cpu.lo[3], cpu.lo[1]);
    cpu.patchFlags(FL_ZF, FL_ZF);
  } else {
    cpu.wr64(cpu.ea, lo, hi);
    cpu.setReg(32, 0, lo, 0);
    cpu.setReg(32, 2, hi >>> 0, 0);
    cpu.patchFlags(FL_ZF, 0);
  }
}

/** MFENCE: a sequentially consistent read-modify-write is a full barrier */
export function mfence(cpu: Interpreter): void {
  const smp = cpu.smp;
  if (smp !== null) Atomics.add(smp.words, SmpWord.Fence, 1);
}

// ------------------------------------------------------------------ single-copy atomic accesses

type Self = Interpreter;

function view(cpu: Interpreter, w: boolean, i: number): AtomicView {
  return (w ? cpu.tlbWView[i] : cpu.tlbRView[i]) as unknown as AtomicView;
}

function smpRd16(this: Self, lin: number): number {
  const o = lin & 0xfff;
  const i = (lin >>> 12) & TLB_MASK;
  if (this.tlbRTag[i] === lin - o && o < 0xfff) return view(this, false, i).getUint16(this.tlbROff[i] + o);
  return this.rdSlow(lin, 2);
}
function smpRd32(this: Self, lin: number): number {
  const o = lin & 0xfff;
  const i = (lin >>> 12) & TLB_MASK;
  if (this.tlbRTag[i] === lin - o && o < 0xffd)
    return view(this, false, i).getInt32(this.tlbROff[i] + o) >>> 0;
  return this.rdSlow(lin, 4);
}
function smpRd64(this: Self, lin: number): number {
  const o = lin & 0xfff;
  const i = (lin >>> 12) & TLB_MASK;
  if (this.tlbRTag[i] !== lin - o || o >= 0xff9) {
    if (o >= 0xff9) {
      const b = this.rdBytes(lin, 8);
      this.vh = b[4] | (b[5] << 8) | (b[6] << 16) | (b[7] << 24);
      return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
    }
    if (this.dbgData !== 0) watchAccess(this, lin, 8, false);
    if (!this.fill(lin, Access.Read)) return this.mmioRead(lin, 8);
  }
  const m = view(this, false, i);
  const v = m.ld64(this.tlbROff[i] + o);
  this.vh = m.vh;
  return v >>> 0;
}
function smpRdSlow(this: Self, lin: number, size: number): number {
  if (this.dbgData !== 0) watchAccess(this, lin, size, false);
  const o = lin & 0xfff;
  if (o + size <= 0x1000) {
    const i = (lin >>> 12) & TLB_MASK;
    if (!this.fill(lin, Access.Read)) return this.mmioRead(lin, size);
    const m = view(this, false, i);
    const p = this.tlbROff[i] + o;
    if (size === 2) return m.getUint16(p);
    if (size === 4) return m.getInt32(p) >>> 0;
    let v = 0;
    for (let k = size - 1; k >= 0; k--) v = v * 256 + m.u8[p + k];
    return v;
  }
  const b = this.rdBytes(lin, size);
  let v = 0;
  for (let k = size - 1; k >= 0; k--) v = v * 256 + b[k];
  return v;
}
function smpWr16(this: Self, lin: number, v: number): void {
  const o = lin & 0xfff;
  const i = (lin >>> 12) & TLB_MASK;
  if (this.tlbWTag[i] === lin - o && o < 0xfff) view(this, true, i).setUint16(this.tlbWOff[i] + o, v);
  else this.wrSlow(lin, 2, v, 0);
}
function smpWr32(this: Self, lin: number, v: number): void {
  const o = lin & 0xfff;
  const i = (lin >>> 12) & TLB_MASK;
  if (this.tlbWTag[i] === lin - o && o < 0xffd) view(this, true, i).setInt32(this.tlbWOff[i] + o, v);
  else this.wrSlow(lin, 4, v, 0);
}
function smpWr64(this: Self, lin: number, v: number, vh: number): void {
  const o = lin & 0xfff;
  const i = (lin >>> 12) & TLB_MASK;
  if (this.tlbWTag[i] === lin - o && o < 0xff9) view(this, true, i).st64(this.tlbWOff[i] + o, v, vh);
  else this.wrSlow(lin, 8, v, vh);
}
/** Interpreter.wrSlow with one access per aligned word, and CodeGen bumped on shared code pages */
function smpWrSlow(this: Self, lin: number, size: number, v: number, vh: number): void {
  if (this.dbgData !== 0) watchAccess(this, lin, size, true);
  const o = lin & 0xfff;
  if (o + size > 0x1000) {
    const b = this.accBytes;
    b.fill(0);
    for (let k = 0; k < size; k++) b[k] = k < 4 ? v >> (8 * k) : vh >> (8 * (k - 4));
    this.wrBytes(lin, size);
    return;
  }
  const i = (lin >>> 12) & TLB_MASK;
  const page = lin - o;
  let tag = this.tlbWTag[i];
  if (tag !== page && tag !== page + SHARED_TAG && tag !== page + CODE_TAG) {
    if (!this.fill(lin, Access.Write)) {
      this.mmioWrite(lin, size, v, vh);
      return;
    }
    tag = this.tlbWTag[i];
  }
  let shared = false;
  if (tag !== page) {
    // a shared code page (or one a data breakpoint keeps untagged): own blocks hit go first
    const cp = this.tlbWCode[i];
    if (cp?.live && cp.covers(o, size)) this.codeWritten(cp, o, size);
    shared = tag === page + SHARED_TAG || (this.smp?.isCode(this.tlbWGpa[i]) ?? false);
  }
  const m = view(this, true, i);
  const p = this.tlbWOff[i] + o;
  if (size === 1) m.setUint8(p, v);
  else if (size === 2) m.setUint16(p, v);
  else if (size === 4) m.setInt32(p, v);
  else if (size === 8) m.st64(p, v, vh);
  else for (let k = 0; k < size; k++) m.u8[p + k] = k < 4 ? v >> (8 * k) : vh >> (8 * (k - 4));
  // after the store: a vCPU that sees the new generation sees the bytes
  if (shared) Atomics.add((this.smp as NonNullable<Interpreter["smp"]>).words, SmpWord.CodeGen, 1);
}

/**
 * Gives the interpreter the single-copy atomic memory paths, as own properties: the prototype's
 * (and every interpreter without shared memory) stay as they are, so single-threaded runs pay
 * nothing for this mode.
 */
export function installAtomicAccess(cpu: Interpreter): void {
  cpu.rd16 = smpRd16;
  cpu.rd32 = smpRd32;
  cpu.rd64 = smpRd64;
  cpu.rdSlow = smpRdSlow;
  cpu.wr16 = smpWr16;
  cpu.wr32 = smpWr32;
  cpu.wr64 = smpWr64;
  cpu.wrSlow = smpWrSlow;
}

// Debug registers, single-step and #DB (SDM vol. 3 17.2-17.3). The normal path pays nothing: only
// while DR7 enables a breakpoint, RFLAGS.TF or RF is set, or a #DB waits out a MOV SS shadow does
// the run loop single-step through debugBefore/debugAfter, and only while a data breakpoint is
// enabled are the pages it covers kept out of the TLB, so that every access to them reaches the
// slow paths, which call watchAccess.

import { CpuFault, Vec } from "./faults.js";
import { FL_RF, FL_TF } from "./flags.js";
import type { Interpreter } from "./interpreter.js";

export const DR6_BD = 0x2000;
export const DR6_BS = 0x4000;
/** DR7.GD: MOV DRn raises #DB (general detect) */
export const DR7_GD = 0x2000;
const CR4_DE = 8;

/**
 * #DB from a debug condition. dr6: the B0-B3/BD/BS bits it reports (into DR6, or the exit
 * qualification when the exception bitmap makes it a VM exit). fault: raised before the
 * instruction (instruction breakpoint, general detect), RIP still at it.
 */
export class DebugException extends CpuFault {
  constructor(
    readonly dr6: number,
    readonly fault: boolean,
  ) {
    super(Vec.DB, undefined);
  }
}

/** DR7's LENn field as a byte count (10b is 8 bytes, SDM 17.2.5) */
const LEN_BYTES = [1, 2, 8, 4];

function rwField(dr7: number, n: number): number {
  return (dr7 >>> (16 + 4 * n)) & 3;
}

/** the breakpoint's first byte as the current mode forms linear addresses, aligned to its length */
function bpStart(cpu: Interpreter, n: number, len: number): number {
  let a = cpu.dr[n];
  if (!cpu.mode64) a = a >>> 0;
  return a - (a & (len - 1));
}

/**
 * Recomputes what DR7 (and CR4.DE for I/O breakpoints) enables. Called after every write of DR7 or
 * CR4, and of DR0-DR3 (addressesChanged: the pages data breakpoints keep out of the TLB may move).
 */
export function syncDebug(cpu: Interpreter, addressesChanged = false): void {
  const d7 = cpu.dr[7];
  // VM entries load DR7 and CR4 every time: unchanged, they leave blocks and the TLB alone
  const key = d7 * 2 + ((cpu.cr4 & CR4_DE) !== 0 ? 1 : 0);
  if (key === cpu.dbgKey && !(addressesChanged && cpu.dbgData !== 0)) return;
  cpu.dbgKey = key;
  let exec = 0;
  let data = 0;
  let io = 0;
  for (let n = 0; n < 4; n++) {
    if (((d7 >>> (2 * n)) & 3) === 0) continue;
    const rw = rwField(d7, n);
    if (rw === 0) exec |= 1 << n;
    // R/W = 10b is an I/O breakpoint only with CR4.DE = 1; otherwise undefined: it never matches
    else if (rw === 2) {
      if ((cpu.cr4 & CR4_DE) !== 0) io |= 1 << n;
    } else data |= 1 << n;
  }
  const hadData = cpu.dbgData !== 0;
  cpu.dbgExec = exec;
  cpu.dbgData = data;
  cpu.dbgIo = io;
  cpu.dbgOn = (exec | data | io) !== 0;
  // TLB entries of watched pages must not exist (fill leaves them out), and a block running the
  // write that enabled a breakpoint must stop after it (codeEpoch, which flushTlb bumps)
  if (hadData || data !== 0) cpu.flushTlb();
  else cpu.codeEpoch++;
}

/** a data breakpoint covers the linear page `page`: fill keeps it out of the TLB */
export function pageWatched(cpu: Interpreter, page: number): boolean {
  const m = cpu.dbgData;
  const d7 = cpu.dr[7];
  for (let n = 0; n < 4; n++) {
    if (((m >> n) & 1) === 0) continue;
    const a = bpStart(cpu, n, LEN_BYTES[(d7 >>> (18 + 4 * n)) & 3]);
    if (a - (a & 0xfff) === page) return true;
  }
  return false;
}

/** a data access of `size` bytes at `lin`: records the data breakpoints it matches */
export function watchAccess(cpu: Interpreter, lin: number, size: number, write: boolean): void {
  const m = cpu.dbgData;
  const d7 = cpu.dr[7];
  for (let n = 0; n < 4; n++) {
    if (((m >> n) & 1) === 0) continue;
    // R/W = 01b: writes only; 11b: reads and writes
    if (!write && rwField(d7, n) === 1) continue;
    const len = LEN_BYTES[(d7 >>> (18 + 4 * n)) & 3];
    const a = bpStart(cpu, n, len);
    if (lin < a + len && lin + size > a) cpu.dbgHits |= 1 << n;
  }
}

/** an IN/OUT/INS/OUTS access of `size` bytes at `port`: records the I/O breakpoints it matches */
export function watchPort(cpu: Interpreter, port: number, size: number): void {
  const m = cpu.dbgIo;
  const d7 = cpu.dr[7];
  for (let n = 0; n < 4; n++) {
    if (((m >> n) & 1) === 0) continue;
    const len = LEN_BYTES[(d7 >>> (18 + 4 * n)) & 3];
    let a = cpu.dr[n] & 0xffff;
    a -= a & (len - 1);
    if (port < a + len && port + size > a) cpu.dbgHits |= 1 << n;
  }
}

/** the run loop must single-step through debugBefore/debugAfter */
export function debugActive(cpu: Interpreter): boolean {
  return cpu.dbgOn || (cpu.eflags & (FL_TF | FL_RF)) !== 0 || cpu.dbgPending !== 0;
}

/**
 * At the start of an instruction (RIP = its first byte): the instruction-breakpoint check (a
 * fault, skipped while RF = 1 and in a MOV SS shadow), then RF is cleared (17.3.1.1). Returns TF
 * as the instruction starts: the single-step trap follows an instruction that began with TF = 1.
 */
export function debugBefore(cpu: Interpreter): number {
  cpu.dbgHits = 0;
  cpu.dbgNoStep = false;
  const fl = cpu.eflags;
  if (cpu.dbgExec !== 0 && (fl & FL_RF) === 0 && (cpu.interruptibility & 2) === 0) {
    const lin = cpu.mode64 ? cpu.rip : (cpu.effBase[1] + cpu.rip) >>> 0;
    const m = cpu.dbgExec;
    let hits = 0;
    for (let n = 0; n < 4; n++) {
      if (((m >> n) & 1) === 0) continue;
      const a = cpu.mode64 ? cpu.dr[n] : cpu.dr[n] >>> 0;
      if (a === lin) hits |= 1 << n;
    }
    if (hits !== 0) throw new DebugException(hits, true);
  }
  cpu.dbgRf = fl & FL_RF;
  if (cpu.dbgRf !== 0) cpu.eflags = fl & ~FL_RF;
  return fl & FL_TF;
}

/**
 * After an instruction retired: the trap-class #DB for the data/I/O breakpoints it hit and for
 * single-step, unless the instruction set up a MOV SS shadow, which holds them until after the
 * next instruction. An event the instruction delivered (INT n, INT3, INTO, INT1) or a SYSCALL
 * that masked TF cancels the single-step trap: its handler starts with TF = 0.
 */
export function debugAfter(cpu: Interpreter, tf: number, startRip: number): void {
  cpu.dbgRf = 0;
  let bits = cpu.dbgHits | cpu.dbgPending;
  cpu.dbgHits = 0;
  if (tf !== 0 && !cpu.dbgNoStep) bits |= DR6_BS;
  if (bits === 0) return;
  if ((cpu.interruptibility & 2) !== 0 && cpu.shadowAt === cpu.retired) {
    cpu.dbgPending = bits;
    return;
  }
  cpu.dbgPending = 0;
  // a REP string instruction stopped after an iteration that was not its last (RIP still at it):
  // the RF pushed is 1, so that its own instruction breakpoint does not fire again on resuming
  if (cpu.rip === startRip && cpu.rep !== 0) cpu.eflags |= FL_RF;
  throw new DebugException(bits, false);
}

/**
 * A #DB is being delivered through the IDT (not a VM exit, which leaves DR6 alone): B0-B3 report
 * only this exception's breakpoints, BD and BS accumulate (17.2.3); general detect clears DR7.GD
 * so that the handler can use the debug registers.
 */
export function reportDebug(cpu: Interpreter, bits: number): void {
  cpu.dr[6] = ((cpu.dr[6] & ~0xf) | bits | 0xffff0ff0) >>> 0;
  if ((bits & DR6_BD) !== 0) cpu.dr[7] = (cpu.dr[7] & ~DR7_GD) >>> 0;
}

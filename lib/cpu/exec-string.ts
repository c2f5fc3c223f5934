// String instructions (MOVS CMPS STOS LODS SCAS INS OUTS) with REP/REPE/REPNE and the address
// size selecting SI/ESI/RSI, and port I/O. Each REP iteration commits its registers, so a fault
// or exit in the middle leaves the completed iterations done and RIP at the instruction. REP MOVS
// and REP STOS over flat segments copy or fill the part of a run that stays within mapped pages
// straight in guest memory (repBulk), with the same results and faults.

import { CODE_TAG } from "./block-cache.js";
import { debugActive, watchPort } from "./debug.js";
import { CpuFault, EXIT_SIGNAL, Vec } from "./faults.js";
import { FL_DF, FL_IOPL, FL_VM } from "./flags.js";
import type { IoInfo } from "./hooks.js";
import type { Interpreter } from "./interpreter.js";
import { sysRead } from "./system.js";

const TWO32 = 4294967296;

function getIdx(cpu: Interpreter, r: number): number {
  const asz = cpu.asz;
  if (asz === 64) return cpu.hi[r] * TWO32 + (cpu.lo[r] >>> 0);
  return asz === 32 ? cpu.lo[r] >>> 0 : cpu.lo[r] & 0xffff;
}

function setIdx(cpu: Interpreter, r: number, v: number): void {
  const asz = cpu.asz;
  if (asz === 64) {
    cpu.lo[r] = v;
    cpu.hi[r] = Math.floor(v / TWO32);
  } else if (asz === 32) {
    cpu.lo[r] = v;
    if (cpu.mode64) cpu.hi[r] = 0;
  } else cpu.lo[r] = (cpu.lo[r] & ~0xffff) | (v & 0xffff);
}

function wrapIdx(cpu: Interpreter, v: number): number {
  const asz = cpu.asz;
  if (asz === 64) {
    // wrap modulo 2^64 into our signed form
    if (v >= 2 ** 63) return v - 2 ** 64;
    if (v < -(2 ** 63)) return v + 2 ** 64;
    return v;
  }
  return asz === 32 ? v >>> 0 : v & 0xffff;
}

/** IOPL check, then the TSS I/O permission bitmap, as IN/OUT/INS/OUTS do in protected mode */
export function ioAllowed(cpu: Interpreter, port: number, size: number): void {
  if (!cpu.pm || (cpu.cpl <= (cpu.eflags & FL_IOPL) >> 12 && (cpu.eflags & FL_VM) === 0)) return;
  const type = cpu.segAr[7] & 0xf;
  const limit = cpu.segLimit[7];
  if ((type !== 0x9 && type !== 0xb) || limit < 0x67) throw new CpuFault(Vec.GP, 0);
  const base = cpu.segBase[7];
  const map = sysRead(cpu, cpu.addLin(base, 0x66), 2);
  const at = map + (port >>> 3);
  if (at + 1 > limit) throw new CpuFault(Vec.GP, 0);
  const bits = sysRead(cpu, cpu.addLin(base, at), 2);
  if (((bits >>> (port & 7)) & ((1 << size) - 1)) !== 0) throw new CpuFault(Vec.GP, 0);
}

export function ioIn(cpu: Interpreter, port: number, size: 1 | 2 | 4, immediate: boolean): void {
  ioAllowed(cpu, port, size);
  const hooks = cpu.requireHooks();
  const info: IoInfo = { port, size, in: true, string: false, rep: false, immediate };
  if (hooks.io(info, cpu.ctx())) {
    // execute() throws the exit (op1 returns at once after us)
    cpu.exitDeferred = true;
    return;
  }
  const v = hooks.portIn ? hooks.portIn(port, size) : size === 4 ? 0xffffffff : (1 << (8 * size)) - 1;
  cpu.devicesRan();
  if (cpu.dbgIo !== 0) watchPort(cpu, port, size);
  cpu.setReg(size * 8, 0, v >>> 0, 0);
}

export function ioOut(cpu: Interpreter, port: number, size: 1 | 2 | 4, immediate: boolean): void {
  ioAllowed(cpu, port, size);
  const hooks = cpu.requireHooks();
  const info: IoInfo = { port, size, in: false, string: false, rep: false, immediate };
  if (hooks.io(info, cpu.ctx())) {
    cpu.exitDeferred = true;
    return;
  }
  hooks.portOut?.(port, size, cpu.getReg(size * 8, 0));
  cpu.devicesRan();
  if (cpu.dbgIo !== 0) watchPort(cpu, port, size);
}

/**
 * Iterations of a REP string instruction done per execution: then the instruction ends without
 * advancing RIP and runs again, so that budgets, exits and interrupts are honoured during long
 * repeats (a real CPU may likewise take an interrupt between iterations).
 */
const REP_CHUNK = 4096;

/**
 * Iterations a REP may do before it restarts: a chunk, and no more than the current run's budget
 * has left, but at least one. An execution that retires (done, or restarting) counts one unit per
 * iteration, the first being the retirement itself (repEnd), so a chunk ends a run exactly at its
 * budget and every execution makes progress.
 */
function repChunk(cpu: Interpreter): number {
  // breakpoints and single-step trap after the iteration that hit them (SDM 17.3.1.2, 17.3.1.4)
  if (debugActive(cpu)) return 1;
  const left = cpu.workLimit - cpu.work();
  return Math.min(REP_CHUNK, Math.max(left, 1));
}

/**
 * A REP execution that retires, `start` being stringIterations when it began: its first iteration
 * is counted by the retirement. (One that ends in an exit or a fault keeps all its iterations: it
 * does not retire, and an MMIO access replayed after an exit must still count.)
 */
function repEnd(cpu: Interpreter, start: number): void {
  if (cpu.stringIterations !== start) cpu.stringIterations--;
}

function restart(cpu: Interpreter): void {
  cpu.ip = cpu.rip;
}

function counter(cpu: Interpreter): number {
  return getIdx(cpu, 1);
}

/** highest index value of the address size */
function idxMask(asz: number): number {
  return asz === 16 ? 0xffff : asz === 32 ? 0xffffffff : Number.POSITIVE_INFINITY;
}

/**
 * How many `n`-byte elements from index `idx` (moving by `step`) stay within the page of the
 * first one and wrap neither the index nor (64-bit) the canonical range, given the linear address
 * `lin` of the first; 0 when the first element itself crosses a page.
 */
function room(lin: number, idx: number, n: number, step: number, asz: number): number {
  const o = lin & 0xfff;
  if (o + n > 0x1000) return 0;
  if (step > 0) return Math.min(Math.floor((0x1000 - o) / n), Math.floor((idxMask(asz) - idx) / n) + 1);
  return Math.min(Math.floor(o / n) + 1, asz === 64 ? Number.POSITIVE_INFINITY : Math.floor(idx / n) + 1);
}

/** linear address of seg:idx for a string element, or NaN when it is not canonical (64-bit mode) */
function elementLinear(cpu: Interpreter, seg: number, idx: number, bytes: number): number {
  if (!cpu.mode64) return (cpu.effBase[seg] + idx) >>> 0;
  let lin = cpu.effBase[seg] + idx;
  // modulo 2^64, as Interpreter.canon
  if (lin >= 0x800000000000) lin -= 2 ** 64;
  else if (lin < -0x800000000000) lin += 2 ** 64;
  return lin >= -0x800000000000 && lin + bytes <= 0x800000000000 ? lin : Number.NaN;
}

/**
 * REP MOVS / REP STOS over the part of the next `max` iterations that stays within the current
 * source and destination pages, straight in guest memory: what the per-iteration loop does, in
 * the same order, with the same registers after it. Only where that loop would not fault: the
 * segments need no checks (the caller sees to it) and the pages are already in the TLB (the
 * loop's first iteration on a page fills the entry, and raises any fault, itself). A destination
 * page with cached blocks drops the blocks the range hits, as the loop's writes would. Returns
 * how many iterations were done (0: let the loop do the next one).
 */
function repBulk(
  cpu: Interpreter,
  movs: boolean,
  size: number,
  step: number,
  srcSeg: number,
  max: number,
): number {
  const n = size >> 3;
  const asz = cpu.asz;
  let k = Math.min(counter(cpu), max);
  const di = getIdx(cpu, 7);
  const dLin = elementLinear(cpu, 0, di, n);
  if (Number.isNaN(dLin)) return 0;
  const dOff = dLin & 0xfff;
  const dPage = dLin - dOff;
  const d = (dLin >>> 12) & 0xfff;
  const tag = cpu.tlbWTag[d];
  if (tag !== dPage && tag !== dPage + CODE_TAG) return 0;
  k = Math.min(k, room(dLin, di, n, step, asz));
  let si = 0;
  let src: Uint8Array | null = null;
  let sp = 0;
  if (movs) {
    si = getIdx(cpu, 6);
    const sLin = elementLinear(cpu, srcSeg, si, n);
    if (Number.isNaN(sLin)) return 0;
    const sOff = sLin & 0xfff;
    const s = (sLin >>> 12) & 0xfff;
    if (cpu.tlbRTag[s] !== sLin - sOff) return 0;
    k = Math.min(k, room(sLin, si, n, step, asz));
    src = cpu.tlbRMem[s];
    sp = cpu.tlbROff[s] + sOff;
  }
  if (k <= 0) return 0;
  // the bytes written, from the lowest
  const lo = step > 0 ? dOff : dOff - (k - 1) * n;
  if (tag !== dPage) {
    const cp = cpu.tlbWCode[d]!;
    if (!cp.live) cpu.tlbWTag[d] = dPage;
    else if (cp.covers(lo, k * n)) cpu.codeWritten(cp, lo, k * n);
  }
  const m = cpu.tlbWMem[d];
  const dp = cpu.tlbWOff[d] + dOff;
  if (src !== null) {
    // element by element, each read whole before it is written (overlapping copies repeat as
    // on the CPU)
    // (the two arrays are views of guest memory: compare where they sit in their buffer)
    const behind = src.buffer === m.buffer ? m.byteOffset - src.byteOffset : 0;
    for (let j = 0; j < k; j++) {
      const from = sp + j * step;
      const to = dp + j * step;
      if (n === 1) m[to] = src[from];
      else if (to + behind <= from) for (let b = 0; b < n; b++) m[to + b] = src[from + b];
      else for (let b = n - 1; b >= 0; b--) m[to + b] = src[from + b];
    }
    setIdx(cpu, 6, wrapIdx(cpu, si + k * step));
  } else {
    const v = cpu.getReg(size, 0);
    if (n === 1) m.fill(v, step > 0 ? dp : dp - (k - 1), step > 0 ? dp + k : dp + 1);
    else {
      const vh = size === 64 ? cpu.vh : 0;
      const first = step > 0 ? dp : dp - (k - 1) * n;
      // one element, then copies of what is written, doubling (the same bytes: every element
      // holds the same value)
      for (let b = 0; b < n; b++) m[first + b] = b < 4 ? v >>> (8 * b) : vh >>> (8 * (b - 4));
      const end = first + k * n;
      for (let done = n; first + done < end; done *= 2)
        m.copyWithin(first + done, first, Math.min(first + 2 * done, end) - done);
    }
  }
  setIdx(cpu, 7, wrapIdx(cpu, di + k * step));
  setIdx(cpu, 1, wrapIdx(cpu, counter(cpu) - k));
  return k;
}

export function stringOp(cpu: Interpreter, b: number): void {
  const size = b === 0x6c || b === 0x6e || (b & 1) === 0 ? 8 : cpu.osz;
  const n = size >> 3;
  const step = (cpu.eflags & FL_DF) !== 0 ? -n : n;
  const rep = cpu.rep !== 0;
  const srcSeg = cpu.segOv >= 0 ? cpu.segOv : 3;
  // segments needing limit/type checks (0 in 64-bit mode and for flat segments)
  const chk = cpu.asz === 16 ? cpu.segChk16 : cpu.mode64 ? 0 : cpu.segChk32;
  const srcChk = (chk >> srcSeg) & 1;
  const dstChk = chk & 1;
  if (b >= 0x6c && b <= 0x6f) {
    const port = cpu.lo[2] & 0xffff;
    ioAllowed(cpu, port, n);
    const hooks = cpu.requireHooks();
    const info: IoInfo = { port, size: n as 1 | 2 | 4, in: b < 0x6e, string: true, rep, immediate: false };
    if (rep && counter(cpu) === 0) return;
    if (hooks.io(info, cpu.ctx())) throw EXIT_SIGNAL;
    if (cpu.dbgIo !== 0) watchPort(cpu, port, n);
    const start = cpu.stringIterations;
    for (let chunk = repChunk(cpu); ; chunk--) {
      if (rep && counter(cpu) === 0) {
        repEnd(cpu, start);
        return;
      }
      if (chunk === 0) {
        restart(cpu);
        repEnd(cpu, start);
        return;
      }
      if (b < 0x6e) {
        const di = getIdx(cpu, 7);
        if (dstChk !== 0) cpu.segCheck(0, di, n, true);
        const lin = cpu.linear(0, di);
        cpu.probeWrite(lin, n);
        const v = hooks.portIn ? hooks.portIn(port, n) : -1;
        cpu.devicesRan();
        cpu.wr(size, lin, v >>> 0, 0);
        setIdx(cpu, 7, wrapIdx(cpu, di + step));
      } else {
        const si = getIdx(cpu, 6);
        if (srcChk !== 0) cpu.segCheck(srcSeg, si, n, false);
        const v = cpu.rd(size, cpu.linear(srcSeg, si));
        hooks.portOut?.(port, n, v);
        cpu.devicesRan();
        setIdx(cpu, 6, wrapIdx(cpu, si + step));
      }
      if (!rep) return;
      setIdx(cpu, 1, wrapIdx(cpu, counter(cpu) - 1));
      cpu.stringIterations++;
    }
  }
  const op = b & 0xfe;
  // REP MOVS and REP STOS over flat segments go a page at a time where the pages are mapped
  const bulk = rep && cpu.repBulk && (op === 0xa4 ? (srcChk | dstChk) === 0 : op === 0xaa && dstChk === 0);
  const start = cpu.stringIterations;
  for (let chunk = repChunk(cpu); ; chunk--) {
    if (rep && counter(cpu) === 0) {
      repEnd(cpu, start);
      return;
    }
    if (chunk === 0) {
      restart(cpu);
      repEnd(cpu, start);
      return;
    }
    if (bulk) {
      const done = repBulk(cpu, op === 0xa4, size, step, srcSeg, chunk);
      if (done !== 0) {
        chunk -= done - 1;
        cpu.stringIterations += done;
        continue;
      }
    }
    switch (op) {
      case 0xa4: {
        const si = getIdx(cpu, 6);
        const di = getIdx(cpu, 7);
        if (srcChk !== 0) cpu.segCheck(srcSeg, si, n, false);
        if (dstChk !== 0) cpu.segCheck(0, di, n, true);
        const v = cpu.rd(size, cpu.linear(srcSeg, si));
        cpu.wr(size, cpu.linear(0, di), v, cpu.vh);
        setIdx(cpu, 6, wrapIdx(cpu, si + step));
        setIdx(cpu, 7, wrapIdx(cpu, di + step));
        break;
      }
      case 0xaa: {
        const di = getIdx(cpu, 7);
        if (dstChk !== 0) cpu.segCheck(0, di, n, true);
        const v = cpu.getReg(size, 0);
        cpu.wr(size, cpu.linear(0, di), v, cpu.vh);
        setIdx(cpu, 7, wrapIdx(cpu, di + step));
        break;
      }
      case 0xac: {
        const si = getIdx(cpu, 6);
        if (srcChk !== 0) cpu.segCheck(srcSeg, si, n, false);
        const v = cpu.rd(size, cpu.linear(srcSeg, si));
        cpu.setReg(size, 0, v, cpu.vh);
        setIdx(cpu, 6, wrapIdx(cpu, si + step));
        break;
      }
      case 0xa6: {
        const si = getIdx(cpu, 6);
        const di = getIdx(cpu, 7);
        if (srcChk !== 0) cpu.segCheck(srcSeg, si, n, false);
        if (dstChk !== 0) cpu.segCheck(0, di, n, false);
        const a = cpu.rd(size, cpu.linear(srcSeg, si));
        const ah = cpu.vh;
        const v = cpu.rd(size, cpu.linear(0, di));
        cpu.alu(7, size, a, ah, v, cpu.vh);
        setIdx(cpu, 6, wrapIdx(cpu, si + step));
        setIdx(cpu, 7, wrapIdx(cpu, di + step));
        break;
      }
      default: {
        // SCAS
        const di = getIdx(cpu, 7);
        if (dstChk !== 0) cpu.segCheck(0, di, n, false);
        const v = cpu.rd(size, cpu.linear(0, di));
        const vh = cpu.vh;
        const a = cpu.getReg(size, 0);
        cpu.alu(7, size, a, cpu.vh, v, vh);
        setIdx(cpu, 7, wrapIdx(cpu, di + step));
      }
    }
    if (!rep) return;
    setIdx(cpu, 1, wrapIdx(cpu, counter(cpu) - 1));
    cpu.stringIterations++;
    if (op === 0xa6 || op === 0xae) {
      const zf = cpu.cond(4);
      if (cpu.rep === 0xf3 ? !zf : zf) {
        repEnd(cpu, start);
        return;
      }
    }
  }
}

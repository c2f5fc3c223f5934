// String instructions (MOVS CMPS STOS LODS SCAS INS OUTS) with REP/REPE/REPNE and the address
// size selecting SI/ESI/RSI, and port I/O. Each REP iteration commits its registers, so a fault
// or exit in the middle leaves the completed iterations done and RIP at the instruction.

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
  if (hooks.io(info, cpu.ctx())) throw EXIT_SIGNAL;
  const v = hooks.portIn ? hooks.portIn(port, size) : size === 4 ? 0xffffffff : (1 << (8 * size)) - 1;
  cpu.devicesRan();
  cpu.setReg(size * 8, 0, v >>> 0, 0);
}

export function ioOut(cpu: Interpreter, port: number, size: 1 | 2 | 4, immediate: boolean): void {
  ioAllowed(cpu, port, size);
  const hooks = cpu.requireHooks();
  const info: IoInfo = { port, size, in: false, string: false, rep: false, immediate };
  if (hooks.io(info, cpu.ctx())) throw EXIT_SIGNAL;
  hooks.portOut?.(port, size, cpu.getReg(size * 8, 0));
  cpu.devicesRan();
}

/**
 * Iterations of a REP string instruction done per execution: then the instruction ends without
 * advancing RIP and runs again, so that budgets, exits and interrupts are honoured during long
 * repeats (a real CPU may likewise take an interrupt between iterations).
 */
const REP_CHUNK = 4096;

function restart(cpu: Interpreter): void {
  cpu.ip = cpu.rip;
}

function counter(cpu: Interpreter): number {
  return getIdx(cpu, 1);
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
    for (let chunk = REP_CHUNK; ; chunk--) {
      if (rep && counter(cpu) === 0) return;
      if (chunk === 0) {
        restart(cpu);
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
    }
  }
  const op = b & 0xfe;
  for (let chunk = REP_CHUNK; ; chunk--) {
    if (rep && counter(cpu) === 0) return;
    if (chunk === 0) {
      restart(cpu);
      return;
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
    if (op === 0xa6 || op === 0xae) {
      const zf = cpu.cond(4);
      if (cpu.rep === 0xf3 ? !zf : zf) return;
    }
  }
}

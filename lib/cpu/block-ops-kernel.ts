// Fast ops for the instructions a Linux boot ran through the single-step decoder most often
// (PAUSE, RDTSC/RDTSCP, REP STOS, CMPXCHG, BSF/BSR/TZCNT/LZCNT, SHLD/SHRD, MOV r/m,Sreg, SWAPGS).
// Each handler does what the single-step executor does for its instruction, through the same
// helpers (the VM-exit hooks, rdtsc, stringOp, doubleShift, bitScanTo), with the operands decoded
// once: compiled blocks call it with the state synced (block-compile.ts callOut).
//
// An instruction that exits to the VMM does so as the executor's deferred exits do: RIP at the
// instruction, cpu.ip past it (the hook's InstructionContext length), EXIT_SIGNAL thrown.

import { eaAcc, genericOp, type Op, OpKind, readReg, writeReg } from "./block-ops.js";
import { bitScanTo, rdtsc, swapgs } from "./exec-0f.js";
import { doubleShift } from "./exec-arith.js";
import { stringOp } from "./exec-string.js";
import { EXIT_SIGNAL } from "./faults.js";
import type { Interpreter } from "./interpreter.js";

/** PAUSE: the "pause" hook decides whether it exits (PAUSE exiting, PAUSE-loop exiting) */
export function pause(cpu: Interpreter, op: Op): void {
  cpu.ip = cpu.rip + op.len;
  if (cpu.requireHooks().other("pause", cpu.ctx())) throw EXIT_SIGNAL;
  cpu.rip += op.len;
}

/** RDTSC / RDTSCP (sub 1): the privilege check, the exit and TSC offsetting are rdtsc's */
export function rdtscOp(cpu: Interpreter, op: Op): void {
  cpu.ip = cpu.rip + op.len;
  rdtsc(cpu, op.sub === 1);
  if (cpu.exitDeferred) {
    cpu.exitDeferred = false;
    throw EXIT_SIGNAL;
  }
  cpu.rip += op.len;
}

/**
 * SWAPGS. A new GS base in 64-bit mode leaves codeEpoch as it was (system.ts updateMode): the
 * block ends after it (block-decode.ts), and the next one reads the base as it starts.
 */
export function swapgsOp(cpu: Interpreter, op: Op): void {
  swapgs(cpu);
  cpu.rip += op.len;
}

/**
 * REP STOS: stringOp with the decoder state the prefixes would leave. It runs a chunk of the
 * iterations (the bulk fill where it can) and leaves RIP at the instruction when some remain.
 */
export function repStos(cpu: Interpreter, op: Op): void {
  cpu.ip = cpu.rip + op.len;
  cpu.osz = op.size === 8 ? cpu.defOsz : op.size;
  cpu.asz = op.imm;
  cpu.rep = 0xf3;
  cpu.segOv = -1;
  stringOp(cpu, op.size === 8 ? 0xaa : 0xab);
  cpu.rip = cpu.ip;
}

/**
 * CMPXCHG r/m, reg: memory is checked for a write, read, and written whether or not the compare
 * succeeds (once each, as the executor's readRMW/writeRM). LOCK over memory other vCPUs share is
 * the executor's compare-and-swap (smp-atomic.ts).
 */
export function cmpxchg(cpu: Interpreter, op: Op): void {
  if (op.sub === 1 && cpu.smp !== null) {
    genericOp(cpu, op);
    return;
  }
  const size = op.size;
  const d = readRmw(cpu, op);
  const lin = rmwLin;
  const dh = size === 64 ? cpu.vh : 0;
  const acc = readReg(cpu, size, 0);
  cpu.alu(7, size, acc, size === 64 ? cpu.vh : 0, d, dh);
  if (cpu.cond(4)) {
    const s = readReg(cpu, size, op.reg);
    if (op.mem) cpu.wr(size, lin, s, cpu.vh);
    else writeReg(cpu, size, op.rm, s, cpu.vh);
  } else {
    if (op.mem) cpu.wr(size, lin, d, dh);
    writeReg(cpu, size, 0, d, dh);
  }
  cpu.rip += op.len;
}

/** the linear address of readRmw's memory operand */
let rmwLin = 0;

/**
 * The r/m destination of a read-modify-write (bits 32-63 in cpu.vh for 64 bits): register rm, or
 * memory checked for a write and read once, as the executor's readRMW (its address in rmwLin)
 */
function readRmw(cpu: Interpreter, op: Op): number {
  const size = op.size;
  if (!op.mem) return readReg(cpu, size, op.rm);
  const lin = eaAcc(cpu, op, size >> 3, true);
  cpu.probeWrite(lin, size >> 3);
  rmwLin = lin;
  return cpu.rd(size, lin);
}

/** BSF / BSR / TZCNT / LZCNT reg, r/m */
export function bitScan(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const v = op.mem ? cpu.rd(size, eaAcc(cpu, op, size >> 3, false)) : readReg(cpu, size, op.rm);
  bitScanTo(cpu, size, op.reg, v, size === 64 ? cpu.vh : 0, (op.sub & 1) === 1, op.sub >= 2);
  cpu.rip += op.len;
}

/** SHLD / SHRD r/m, reg, imm8 or CL (a count that masks to 0 writes nothing, flags included) */
export function doubleShiftOp(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const d = readRmw(cpu, op);
  const lin = rmwLin;
  const dh = size === 64 ? cpu.vh : 0;
  const s = readReg(cpu, size, op.reg);
  const sh = size === 64 ? cpu.vh : 0;
  const count = op.imm >= 0 ? op.imm : cpu.lo[1] & 0xff;
  const r = doubleShift(cpu, op.sub === 0, size, d, dh, s, sh, count);
  if (r !== undefined) {
    if (op.mem) cpu.wr(size, lin, r, cpu.vh);
    else writeReg(cpu, size, op.rm, r, cpu.vh);
  } else if (size === 32 && !op.mem) cpu.hi[op.rm] = 0;
  cpu.rip += op.len;
}

/** MOV r/m, Sreg: a register gets the selector zero-extended (32/64 bits), memory 16 bits */
export function movSreg(cpu: Interpreter, op: Op): void {
  const sel = cpu.segSel[op.sub];
  if (op.mem) cpu.wr16(eaAcc(cpu, op, 2, true), sel);
  else writeReg(cpu, op.size, op.rm, sel, 0);
  cpu.rip += op.len;
}

/** the kinds of this file, whose handlers leave the lazy flags in the CPU */
export function kernelOpFlags(kind: OpKind): boolean {
  return kind === OpKind.Cmpxchg || kind === OpKind.BitScan || kind === OpKind.DoubleShift;
}

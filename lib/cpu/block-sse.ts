// Fast forms of the 128-bit SSE instructions that Linux's user space runs most (libc's string and
// memory functions, zeroing of stack buffers): register and memory moves, the bitwise logic ops,
// PCMPEQB and PMOVMSKB. Each does what sse.ts does for them, in the same order of checks: #UD
// (CR0.EM, no CR4.OSFXSR) and #NM (CR0.TS), then the operand's segment or canonical check, then
// the 16-byte alignment of the legacy encodings (#GP(0)), then the access. Anything else with an
// 0F opcode stays generic.

import { eaAcc, type Op } from "./block-ops.js";
import { CpuFault, Vec } from "./faults.js";
import type { Interpreter } from "./interpreter.js";

/** what an SSE op does (Op.sub) */
export const enum SseOp {
  Xor = 0,
  Or = 1,
  And = 2,
  AndNot = 3,
  /** xmm reg <- xmm rm or m128 */
  Load = 4,
  /** xmm rm or m128 <- xmm reg */
  Store = 5,
  PcmpeqB = 6,
  /** r32 reg <- the byte sign bits of xmm rm */
  MovMskB = 7,
}

const src = new Int32Array(4);

function checkSse(cpu: Interpreter): void {
  if ((cpu.cr0 & 4) !== 0 || (cpu.cr4 & 0x200) === 0) throw new CpuFault(Vec.UD, undefined);
  if ((cpu.cr0 & 8) !== 0) throw new CpuFault(Vec.NM, undefined);
}

/** the m128 operand's linear address; op.imm = 1: it must be 16-byte aligned */
function addr(cpu: Interpreter, op: Op, write: boolean): number {
  const lin = eaAcc(cpu, op, 16, write);
  if (op.imm !== 0 && lin % 16 !== 0) throw new CpuFault(Vec.GP, 0);
  return lin;
}

/** the source operand (xmm rm or m128) into `src` */
function source(cpu: Interpreter, op: Op): void {
  if (op.mem) cpu.rd128(addr(cpu, op, false), src, 0);
  else {
    const s = op.rm * 4;
    const xm = cpu.xmm;
    src[0] = xm[s];
    src[1] = xm[s + 1];
    src[2] = xm[s + 2];
    src[3] = xm[s + 3];
  }
}

/** 0xff in each byte of a where the bytes of a and b are equal */
function eqBytes(a: number, b: number): number {
  const x = a ^ b;
  let r = 0;
  if ((x & 0xff) === 0) r |= 0xff;
  if ((x & 0xff00) === 0) r |= 0xff00;
  if ((x & 0xff0000) === 0) r |= 0xff0000;
  if ((x & 0xff000000) === 0) r |= 0xff000000;
  return r;
}

/** the sign bits of a's four bytes, low byte first */
function signBits(a: number): number {
  return ((a >>> 7) & 1) | ((a >>> 14) & 2) | ((a >>> 21) & 4) | ((a >>> 28) & 8);
}

export function sseOp(cpu: Interpreter, op: Op): void {
  checkSse(cpu);
  const xm = cpu.xmm;
  const d = op.reg * 4;
  switch (op.sub) {
    case SseOp.Store:
      if (op.mem) cpu.wr128(addr(cpu, op, true), xm, d);
      else {
        const s = op.rm * 4;
        xm[s] = xm[d];
        xm[s + 1] = xm[d + 1];
        xm[s + 2] = xm[d + 2];
        xm[s + 3] = xm[d + 3];
      }
      break;
    case SseOp.MovMskB: {
      const s = op.rm * 4;
      const m =
        signBits(xm[s]) |
        (signBits(xm[s + 1]) << 4) |
        (signBits(xm[s + 2]) << 8) |
        (signBits(xm[s + 3]) << 12);
      cpu.lo[op.reg] = m;
      cpu.hi[op.reg] = 0;
      break;
    }
    default: {
      source(cpu, op);
      for (let i = 0; i < 4; i++) {
        const a = xm[d + i];
        const b = src[i];
        switch (op.sub) {
          case SseOp.Xor:
            xm[d + i] = a ^ b;
            break;
          case SseOp.Or:
            xm[d + i] = a | b;
            break;
          case SseOp.And:
            xm[d + i] = a & b;
            break;
          case SseOp.AndNot:
            xm[d + i] = ~a & b;
            break;
          case SseOp.PcmpeqB:
            xm[d + i] = eqBytes(a, b);
            break;
          default:
            xm[d + i] = b;
        }
      }
    }
  }
  cpu.rip += op.len;
}

// Decodes one instruction into an Op for the decode cache. Only the forms that dominate compiled
// and hand-written hot loops get a fast Op (register and memory ALU, INC/DEC, MOV incl. immediate
// to memory, LEA, TEST, Jcc, JMP, NOP; and, inline in compiled blocks only, MOVZX/MOVSX, CMOVcc,
// SETcc r8, shifts by a constant; through their handlers MUL/DIV, CBW..CQO and the SSE moves and
// logic of block-sse.ts; and the instructions of Linux's hot paths in block-ops-kernel.ts: PAUSE,
// RDTSC/RDTSCP, REP STOS, CMPXCHG, BSF/BSR/TZCNT/LZCNT, SHLD/SHRD, MOV r/m,Sreg, SWAPGS) and only
// without address-size prefixes, LOCK only on CMPXCHG m, REP only where it selects an SSE form,
// PAUSE, REP STOS or TZCNT/LZCNT, and segment overrides only where they matter (FS/GS on a memory
// operand) or are null (ES/CS/SS/DS in 64-bit mode); everything else becomes a Generic op that
// runs the single-step executor, so behaviour never depends on what is cached.

import {
  aluHandler,
  aluMI,
  aluMR,
  aluMR8,
  aluRM,
  aluRM8,
  aluRR8,
  bitOp,
  call,
  cmov,
  convert,
  EaKind,
  genericOp,
  hasMem,
  imul,
  incDec,
  incDec32,
  incDec64,
  incDecM,
  indirect,
  jcc,
  jmp,
  lea,
  leave,
  load,
  loadFast,
  mov8,
  movRI,
  movRR,
  movx,
  mulDiv,
  nop,
  Op,
  OpKind,
  pop,
  push,
  ret,
  setcc,
  shiftR,
  shiftRI,
  store,
  storeFast,
  storeImm,
  test8,
  testMI,
  testMR,
  testRI,
  testRR,
  unary,
} from "./block-ops.js";
import {
  bitScan,
  cmpxchg,
  doubleShiftOp,
  movSreg,
  pause,
  rdtscOp,
  repStos,
  swapgsOp,
} from "./block-ops-kernel.js";
import { SseOp, sseOp } from "./block-sse.js";

const s8 = (v: number) => (v << 24) >> 24;
const u16 = (m: Uint8Array, p: number) => m[p] | (m[p + 1] << 8);
const s32 = (m: Uint8Array, p: number) => m[p] | (m[p + 1] << 8) | (m[p + 2] << 16) | (m[p + 3] << 24);

/** 16-bit ModRM r/m: base, index (BX SI, BX DI, BP SI, BP DI, SI, DI, BP, BX) */
const EA16_BASE = [3, 3, 5, 5, 6, 7, 5, 3];
const EA16_INDEX = [6, 7, 6, 7, -1, -1, -1, -1];

/**
 * Decodes the ModRM memory operand at m[p] (mod != 3) into op; returns the position after it,
 * or -1 for a form left to the generic path.
 */
function decodeEa(op: Op, m: Uint8Array, p: number, rex: number, asz: number, mode64: boolean): number {
  const b = m[p++];
  const mod = b >> 6;
  const rm = b & 7;
  op.seg = 3;
  if (asz === 16) {
    op.eaKind = EaKind.A16;
    if (mod === 0 && rm === 6) {
      op.base = -1;
      op.index = -1;
      op.disp = u16(m, p);
      return p + 2;
    }
    op.base = EA16_BASE[rm];
    op.index = EA16_INDEX[rm];
    if (rm === 2 || rm === 3 || rm === 6) op.seg = 2;
    op.disp = 0;
    if (mod === 1) op.disp = s8(m[p++]);
    else if (mod === 2) {
      op.disp = u16(m, p);
      p += 2;
    }
    return p;
  }
  op.eaKind = mode64 ? EaKind.A64 : EaKind.A32;
  op.base = -1;
  op.index = -1;
  op.scale = 0;
  op.disp = 0;
  if (rm === 4) {
    const sib = m[p++];
    let base = (sib & 7) | ((rex & 1) << 3);
    const idx = ((sib >> 3) & 7) | ((rex & 2) << 2);
    op.scale = sib >> 6;
    if (idx !== 4) op.index = idx;
    if ((base & 7) === 5 && mod === 0) {
      base = -1;
      op.disp = s32(m, p);
      p += 4;
    } else if (base === 4 || base === 5) op.seg = 2;
    op.base = base;
  } else if (rm === 5 && mod === 0) {
    op.disp = s32(m, p);
    p += 4;
    if (mode64) op.eaKind = EaKind.RipRel;
  } else {
    op.base = rm | ((rex & 1) << 3);
    if (rm === 5) op.seg = 2;
  }
  if (mod === 1) op.disp += s8(m[p++]);
  else if (mod === 2) {
    op.disp += s32(m, p);
    p += 4;
  }
  return p;
}

/**
 * The fast Op for the instruction of length `len` at m[p], or null when it has none.
 * `mode64`/`csD` are the code segment's mode (part of the cache key). Prefixes: 66, and in 64-bit
 * mode REX and an FS/GS override (on forms with a memory operand: the segment's base is added).
 */
export function decodeFast(m: Uint8Array, p: number, len: number, mode64: boolean, csD: boolean): Op | null {
  let opsz = false;
  let segOv = -1;
  let nullSeg = false;
  let rep = 0;
  let rex = 0;
  let lock = false;
  let b = m[p];
  for (;;) {
    if (b === 0x66) opsz = true;
    else if (b === 0xf0) lock = true;
    else if (mode64 && (b === 0x64 || b === 0x65)) segOv = b - 0x60;
    // ES/CS/SS/DS overrides are null in 64-bit mode (SDM 3.3.7.1): Linux's "cs call" thunks and
    // "ds" / "cs nop" paddings
    else if (mode64 && (b === 0x26 || b === 0x2e || b === 0x36 || b === 0x3e)) nullSeg = true;
    else if (b === 0xf2 || b === 0xf3) rep = b;
    else break;
    b = m[++p];
  }
  if (mode64 && (b & 0xf0) === 0x40) {
    rex = b;
    b = m[++p];
  }
  // with FS/GS too, which override counts is the executor's business
  if (nullSeg && segOv >= 0) return null;
  let op: Op | null = null;
  if (lock || rep !== 0 || b === 0x8c || (b === 0x0f && KERNEL_0F[m[p + 1]] !== 0)) {
    // LOCK has a fast form only on CMPXCHG m
    op = decodeKernel(m, p, b, len, mode64, csD, opsz, rep, lock, rex);
    if (op !== null || lock) return op === null || segOv < 0 ? op : withSeg(op, segOv);
  }
  // F2/F3 select other instructions (or REP): only the SSE forms that name them are fast
  if (b === 0x0f) op = decodeSse(m, p + 1, len, opsz, rep, rex, mode64 ? 64 : csD ? 32 : 16, mode64);
  if (op === null && rep !== 0) return null;
  op ??= decodeOp(m, p + 1, b, len, mode64, csD, opsz, rex);
  if (op === null || segOv < 0) return op;
  return withSeg(op, segOv);
}

/** a segment override on anything but a memory operand (or on LEA, which ignores it): generic */
function withSeg(op: Op, segOv: number): Op | null {
  if (!hasMem(op) || op.kind === OpKind.Lea) return null;
  op.seg = segOv;
  return op;
}

/** 0F opcodes of block-ops-kernel.ts's forms: RDTSC, 0F 01 (RDTSCP, SWAPGS), SHLD/SHRD, CMPXCHG, BSF/BSR */
const KERNEL_0F = new Uint8Array(256);
for (const b2 of [0x01, 0x31, 0xa4, 0xa5, 0xac, 0xad, 0xb1, 0xbc, 0xbd]) KERNEL_0F[b2] = 1;

/**
 * block-ops-kernel.ts's forms (opcode b at m[p], prefixes read), or null: PAUSE, REP STOS,
 * TZCNT/LZCNT, LOCK CMPXCHG m, MOV r/m,Sreg, and the 0F forms of KERNEL_0F
 */
function decodeKernel(
  m: Uint8Array,
  p: number,
  b: number,
  len: number,
  mode64: boolean,
  csD: boolean,
  opsz: boolean,
  rep: number,
  lock: boolean,
  rex: number,
): Op | null {
  const op = sizedOp(len, mode64, csD, opsz, rex);
  const asz = mode64 ? 64 : csD ? 32 : 16;
  const b2 = m[p + 1];
  if (lock) {
    // the executor's #UD for LOCK on a register operand stays its own
    if (rep !== 0 || b !== 0x0f || b2 !== 0xb1 || m[p + 2] >= 0xc0) return null;
  } else if (rep !== 0) {
    if (b === 0x90 && rep === 0xf3 && rex === 0) {
      op.kind = OpKind.Pause;
      op.fn = pause;
      return op;
    }
    if (b === 0xaa || b === 0xab) {
      op.kind = OpKind.RepStos;
      op.fn = repStos;
      if (b === 0xaa) op.size = 8;
      op.imm = asz;
      op.ends = true;
      return op;
    }
    // TZCNT / LZCNT
    if (rep !== 0xf3 || b !== 0x0f || (b2 !== 0xbc && b2 !== 0xbd)) return null;
  }
  if (b === 0x8c) {
    const mr = m[p + 1];
    const s = (mr >> 3) & 7;
    if (s > 5) return null;
    op.kind = OpKind.MovSreg;
    op.fn = movSreg;
    op.sub = s;
    return modrmOperand(op, m, p + 1, rex, asz, mode64);
  }
  if (b !== 0x0f) return null;
  const mr = m[p + 2];
  switch (b2) {
    case 0x31:
      op.kind = OpKind.Rdtsc;
      op.fn = rdtscOp;
      return op;
    case 0x01:
      // 0F 01 F9 RDTSCP, F8 SWAPGS
      if (mr === 0xf9) {
        op.kind = OpKind.Rdtsc;
        op.fn = rdtscOp;
        op.sub = 1;
        return op;
      }
      if (mr !== 0xf8) return null;
      op.kind = OpKind.Swapgs;
      op.fn = swapgsOp;
      op.ends = true;
      return op;
    case 0xb1:
      op.kind = OpKind.Cmpxchg;
      op.fn = cmpxchg;
      op.sub = lock ? 1 : 0;
      break;
    case 0xbc:
    case 0xbd:
      op.kind = OpKind.BitScan;
      op.fn = bitScan;
      op.sub = (b2 & 1) | (rep === 0xf3 ? 2 : 0);
      break;
    default: {
      // SHLD (A4 imm8, A5 CL) / SHRD (AC, AD)
      op.kind = OpKind.DoubleShift;
      op.fn = doubleShiftOp;
      op.sub = b2 >= 0xac ? 1 : 0;
      const q = modrmOperand(op, m, p + 2, rex, asz, mode64) === null ? -1 : eaEnd;
      if (q < 0) return null;
      op.imm = (b2 & 1) === 0 ? m[q] : -1;
      return op;
    }
  }
  return modrmOperand(op, m, p + 2, rex, asz, mode64);
}

/** where the ModRM operand modrmOperand decoded last ends */
let eaEnd = 0;

/** the ModRM at m[p]: reg into op.reg, r/m into op.rm or the memory operand (op.mem) */
function modrmOperand(
  op: Op,
  m: Uint8Array,
  p: number,
  rex: number,
  asz: number,
  mode64: boolean,
): Op | null {
  const mr = m[p];
  op.reg = ((mr >> 3) & 7) | ((rex & 4) << 1);
  if (mr >= 0xc0) {
    op.rm = (mr & 7) | ((rex & 1) << 3);
    eaEnd = p + 1;
    return op;
  }
  eaEnd = decodeEa(op, m, p, rex, asz, mode64);
  if (eaEnd < 0) return null;
  op.mem = true;
  return op;
}

/**
 * 0F b2 (at m[p]) with its prefixes as one of block-sse.ts's forms, or null: the moves
 * MOVAPS/MOVAPD/MOVDQA (aligned) and MOVUPS/MOVUPD/MOVDQU, ANDPS..XORPS(D) and PAND/PANDN/POR/PXOR,
 * PCMPEQB and PMOVMSKB r32, xmm. op.imm = 1 where a memory operand must be 16-byte aligned.
 */
function decodeSse(
  m: Uint8Array,
  p: number,
  len: number,
  opsz: boolean,
  rep: number,
  rex: number,
  asz: number,
  mode64: boolean,
): Op | null {
  if (rep === 0xf2 || (rep === 0xf3 && opsz)) return null;
  const b2 = m[p];
  let sub: SseOp;
  let aligned = 1;
  switch (b2) {
    case 0x54:
    case 0x55:
    case 0x56:
    case 0x57:
      if (rep !== 0) return null;
      sub = LOGIC[b2 & 3]!;
      break;
    case 0xdb:
    case 0xdf:
    case 0xeb:
    case 0xef:
      // without 66: the MMX forms
      if (!opsz || rep !== 0) return null;
      sub = b2 === 0xdb ? SseOp.And : b2 === 0xdf ? SseOp.AndNot : b2 === 0xeb ? SseOp.Or : SseOp.Xor;
      break;
    case 0x74:
      if (!opsz || rep !== 0) return null;
      sub = SseOp.PcmpeqB;
      break;
    case 0x10:
    case 0x11:
      if (rep !== 0) return null;
      sub = b2 === 0x10 ? SseOp.Load : SseOp.Store;
      aligned = 0;
      break;
    case 0x28:
    case 0x29:
      if (rep !== 0) return null;
      sub = b2 === 0x28 ? SseOp.Load : SseOp.Store;
      break;
    case 0x6f:
    case 0x7f:
      if (!opsz && rep === 0) return null;
      sub = b2 === 0x6f ? SseOp.Load : SseOp.Store;
      aligned = rep === 0xf3 ? 0 : 1;
      break;
    case 0xd7:
      if (!opsz || rep !== 0 || m[p + 1] < 0xc0) return null;
      sub = SseOp.MovMskB;
      break;
    default:
      return null;
  }
  const op = new Op();
  op.len = len;
  op.kind = OpKind.Sse;
  op.fn = sseOp;
  op.sub = sub;
  op.imm = aligned;
  const mr = m[p + 1];
  op.reg = ((mr >> 3) & 7) | ((rex & 4) << 1);
  if (mr >= 0xc0) op.rm = (mr & 7) | ((rex & 1) << 3);
  else {
    if (decodeEa(op, m, p + 1, rex, asz, mode64) < 0) return null;
    op.mem = true;
  }
  return op;
}
/** 0F 54-57: ANDPS, ANDNPS, ORPS, XORPS (and the PD forms) */
const LOGIC = [SseOp.And, SseOp.AndNot, SseOp.Or, SseOp.Xor];

/** the stack operand size (PUSH/POP/CALL/RET/LEAVE), or 0 for the 16-bit form in 64-bit mode */
function stackSize(mode64: boolean, opsz: boolean, osz: number): number {
  return mode64 ? (opsz ? 0 : 64) : osz;
}

/** a new Op of `len` bytes with the operand size of the mode, the 66 prefix and REX.W */
function sizedOp(len: number, mode64: boolean, csD: boolean, opsz: boolean, rex: number): Op {
  const op = new Op();
  op.len = len;
  op.size = mode64 ? ((rex & 8) !== 0 ? 64 : opsz ? 16 : 32) : csD !== opsz ? 32 : 16;
  return op;
}

/** the opcode b (prefixes already read) with its ModRM at m[p] */
function decodeOp(
  m: Uint8Array,
  p: number,
  b: number,
  len: number,
  mode64: boolean,
  csD: boolean,
  opsz: boolean,
  rex: number,
): Op | null {
  const op = sizedOp(len, mode64, csD, opsz, rex);
  const osz = op.size;
  const asz = mode64 ? 64 : csD ? 32 : 16;
  if (b < 0x40 && (b & 7) < 4) {
    // ALU r/m,r and r,r/m (00-3B)
    const mr = m[p];
    op.sub = b >> 3;
    const toRm = (b & 2) === 0;
    if ((b & 1) === 0) {
      // byte forms
      op.size = 8;
      if (mr >= 0xc0) {
        op.kind = OpKind.AluRR;
        op.fn = aluRR8;
        if (toRm) {
          reg8(op, (mr & 7) | ((rex & 1) << 3), rex, true);
          reg8(op, ((mr >> 3) & 7) | ((rex & 4) << 1), rex);
        } else {
          reg8(op, ((mr >> 3) & 7) | ((rex & 4) << 1), rex, true);
          reg8(op, (mr & 7) | ((rex & 1) << 3), rex);
        }
        return op;
      }
      if (decodeEa(op, m, p, rex, asz, mode64) < 0) return null;
      reg8(op, ((mr >> 3) & 7) | ((rex & 4) << 1), rex, true);
      op.kind = toRm ? OpKind.AluMR : OpKind.AluRM;
      op.fn = toRm ? aluMR8 : aluRM8;
      return op;
    }
    const reg = ((mr >> 3) & 7) | ((rex & 4) << 1);
    if (mr >= 0xc0) {
      const rm = (mr & 7) | ((rex & 1) << 3);
      op.kind = OpKind.AluRR;
      op.fn = aluHandler(op.sub, osz, false);
      op.reg = toRm ? rm : reg;
      op.rm = toRm ? reg : rm;
      return op;
    }
    if (decodeEa(op, m, p, rex, asz, mode64) < 0) return null;
    op.reg = reg;
    op.kind = toRm ? OpKind.AluMR : OpKind.AluRM;
    op.fn = toRm ? aluMR : aluRM;
    return op;
  }
  if (b < 0x40 && (b & 7) < 6) {
    // ALU AL, imm8 / eAX, imm (04-3D)
    op.sub = b >> 3;
    op.reg = 0;
    op.kind = OpKind.AluRI;
    if ((b & 1) === 0) {
      op.size = 8;
      op.fn = aluRR8;
      op.imm = m[p];
      return op;
    }
    op.fn = aluHandler(op.sub, osz, true);
    const v = osz === 16 ? u16(m, p) : s32(m, p);
    op.imm = osz === 16 ? v : v >>> 0;
    op.immHi = osz === 64 ? v >> 31 : 0;
    return op;
  }
  switch (b) {
    case 0x80:
    case 0x81:
    case 0x83: {
      const mr = m[p];
      op.sub = (mr >> 3) & 7;
      let q = p + 1;
      if (b === 0x80) op.size = 8;
      if (mr >= 0xc0) {
        op.kind = OpKind.AluRI;
        if (b === 0x80) {
          reg8(op, (mr & 7) | ((rex & 1) << 3), rex, true);
          op.fn = aluRR8;
        } else {
          op.reg = (mr & 7) | ((rex & 1) << 3);
          op.fn = aluHandler(op.sub, osz, true);
        }
      } else {
        q = decodeEa(op, m, p, rex, asz, mode64);
        if (q < 0) return null;
        op.kind = OpKind.AluMI;
        op.fn = aluMI;
      }
      if (b === 0x80) {
        op.imm = m[q];
        return op;
      }
      let v: number;
      if (b === 0x83) v = s8(m[q]);
      else v = osz === 16 ? u16(m, q) : s32(m, q);
      op.imm = osz === 16 ? v & 0xffff : v >>> 0;
      op.immHi = osz === 64 ? v >> 31 : 0;
      return op;
    }
    case 0x84:
    case 0x85: {
      const mr = m[p];
      const reg = ((mr >> 3) & 7) | ((rex & 4) << 1);
      if (b === 0x84) {
        op.size = 8;
        op.fn = test8;
        reg8(op, reg, rex, true);
      } else op.reg = reg;
      if (mr < 0xc0) {
        if (decodeEa(op, m, p, rex, asz, mode64) < 0) return null;
        op.kind = OpKind.TestMR;
        if (b === 0x85) op.fn = testMR;
        return op;
      }
      op.kind = OpKind.TestRR;
      if (b === 0x85) {
        op.fn = testRR;
        op.rm = (mr & 7) | ((rex & 1) << 3);
      } else reg8(op, (mr & 7) | ((rex & 1) << 3), rex);
      return op;
    }
    case 0x88:
    case 0x8a: {
      // MOV r/m8, r8 / r8, r/m8
      const mr = m[p];
      op.size = 8;
      op.fn = mov8;
      const reg = ((mr >> 3) & 7) | ((rex & 4) << 1);
      if (mr >= 0xc0) {
        op.kind = OpKind.MovRR;
        if (b === 0x88) {
          reg8(op, (mr & 7) | ((rex & 1) << 3), rex, true);
          reg8(op, reg, rex);
        } else {
          reg8(op, reg, rex, true);
          reg8(op, (mr & 7) | ((rex & 1) << 3), rex);
        }
        return op;
      }
      if (decodeEa(op, m, p, rex, asz, mode64) < 0) return null;
      reg8(op, reg, rex, true);
      op.kind = b === 0x88 ? OpKind.Store : OpKind.Load;
      return op;
    }
    case 0x89:
    case 0x8b: {
      const mr = m[p];
      const reg = ((mr >> 3) & 7) | ((rex & 4) << 1);
      if (mr >= 0xc0) {
        const rm = (mr & 7) | ((rex & 1) << 3);
        op.kind = OpKind.MovRR;
        op.fn = movRR;
        op.reg = b === 0x89 ? rm : reg;
        op.rm = b === 0x89 ? reg : rm;
        return op;
      }
      if (decodeEa(op, m, p, rex, asz, mode64) < 0) return null;
      op.reg = reg;
      op.kind = b === 0x89 ? OpKind.Store : OpKind.Load;
      op.fn = b === 0x89 ? (osz === 16 ? store : storeFast) : osz === 16 ? load : loadFast;
      return op;
    }
    case 0x8d: {
      const mr = m[p];
      if (mr >= 0xc0) return null;
      if (decodeEa(op, m, p, rex, asz, mode64) < 0) return null;
      op.reg = ((mr >> 3) & 7) | ((rex & 4) << 1);
      op.kind = OpKind.Lea;
      op.fn = lea;
      return op;
    }
    case 0x90:
      // NOP, and XCHG AX, AX with 66 (REX.B: XCHG r8, rAX)
      if ((rex & 1) !== 0) return null;
      op.kind = OpKind.Nop;
      op.fn = nop;
      return op;
    case 0xa9: {
      op.kind = OpKind.TestRI;
      op.fn = testRI;
      op.reg = 0;
      const v = osz === 16 ? u16(m, p) : s32(m, p);
      op.imm = osz === 16 ? v : v >>> 0;
      op.immHi = osz === 64 ? v >> 31 : 0;
      return op;
    }
    case 0xa8:
      op.size = 8;
      op.kind = OpKind.TestRI;
      op.fn = test8;
      op.reg = 0;
      op.imm = m[p];
      return op;
    case 0xeb:
    case 0xe9:
      if (opsz) return null;
      op.kind = OpKind.Jmp;
      op.fn = jmp;
      op.imm = b === 0xeb ? s8(m[p]) : osz === 16 ? s16(u16(m, p)) : s32(m, p);
      op.size = mode64 ? 64 : osz;
      op.ends = true;
      return op;
    case 0xe8: {
      // in 64-bit mode a 66 prefix is ignored by Intel and honoured by AMD: generic
      const size = stackSize(mode64, opsz, osz);
      if (size === 0 || (mode64 && opsz)) return null;
      op.kind = OpKind.Call;
      op.fn = call;
      op.size = size;
      op.imm = size === 16 ? s16(u16(m, p)) : s32(m, p);
      op.ends = true;
      return op;
    }
    case 0xc2:
    case 0xc3: {
      const size = stackSize(mode64, opsz, osz);
      if (size === 0) return null;
      op.kind = OpKind.Ret;
      op.fn = ret;
      op.size = size;
      op.imm = b === 0xc2 ? u16(m, p) : 0;
      op.ends = true;
      return op;
    }
    case 0xc9: {
      const size = stackSize(mode64, opsz, osz);
      if (size === 0) return null;
      op.kind = OpKind.Leave;
      op.fn = leave;
      op.size = size;
      return op;
    }
    case 0x63: {
      // MOVSXD (64-bit mode; ARPL elsewhere)
      if (!mode64 || osz === 16) return null;
      const mr = m[p];
      op.reg = ((mr >> 3) & 7) | ((rex & 4) << 1);
      op.sub = 1;
      op.imm = 32;
      op.fn = movx;
      if (mr >= 0xc0) {
        op.kind = OpKind.MovxR;
        op.rm = (mr & 7) | ((rex & 1) << 3);
        return op;
      }
      if (decodeEa(op, m, p, rex, asz, mode64) < 0) return null;
      op.kind = OpKind.MovxM;
      return op;
    }
    case 0xfe:
    case 0xff: {
      const mr = m[p];
      const sub = (mr >> 3) & 7;
      if (b === 0xfe) {
        if (sub > 1 || mr >= 0xc0) return null;
        op.size = 8;
      }
      if (sub <= 1) {
        if (mr >= 0xc0) {
          op.kind = OpKind.IncDec;
          op.fn = osz === 32 ? incDec32 : osz === 64 ? incDec64 : incDec;
          op.sub = sub;
          op.reg = (mr & 7) | ((rex & 1) << 3);
          return op;
        }
        if (decodeEa(op, m, p, rex, asz, mode64) < 0) return null;
        op.kind = OpKind.IncDecM;
        op.fn = incDecM;
        op.sub = sub;
        return op;
      }
      if (sub !== 2 && sub !== 4) return null;
      // CALL / JMP near through r/m: 64-bit in 64-bit mode
      const size = stackSize(mode64, opsz, osz);
      if (size === 0) return null;
      op.kind = OpKind.Indirect;
      op.fn = indirect;
      op.sub = sub;
      op.size = size;
      op.ends = true;
      if (mr >= 0xc0) {
        op.rm = (mr & 7) | ((rex & 1) << 3);
        return op;
      }
      if (decodeEa(op, m, p, rex, asz, mode64) < 0) return null;
      op.mem = true;
      return op;
    }
    case 0xf6:
    case 0xf7: {
      const mr = m[p];
      const sub = (mr >> 3) & 7;
      if (sub === 1) return null;
      if (b === 0xf6) op.size = 8;
      let q = p + 1;
      if (mr >= 0xc0) {
        if (b === 0xf6) reg8(op, (mr & 7) | ((rex & 1) << 3), rex, sub === 0);
        else if (sub === 0) op.reg = (mr & 7) | ((rex & 1) << 3);
        else op.rm = (mr & 7) | ((rex & 1) << 3);
      } else {
        q = decodeEa(op, m, p, rex, asz, mode64);
        if (q < 0) return null;
        op.mem = true;
      }
      if (sub !== 0) {
        op.kind = sub <= 3 ? OpKind.Unary : OpKind.MulDiv;
        op.fn = sub <= 3 ? unary : mulDiv;
        op.sub = sub;
        return op;
      }
      // TEST r/m, imm
      op.kind = op.mem ? OpKind.TestMI : OpKind.TestRI;
      op.mem = false;
      if (b === 0xf6) {
        op.fn = op.kind === OpKind.TestMI ? testMI : test8;
        op.imm = m[q];
        return op;
      }
      op.fn = op.kind === OpKind.TestMI ? testMI : testRI;
      const v = osz === 16 ? u16(m, q) : s32(m, q);
      op.imm = osz === 16 ? v : v >>> 0;
      op.immHi = osz === 64 ? v >> 31 : 0;
      return op;
    }
    case 0x98:
    case 0x99:
      op.kind = OpKind.Convert;
      op.fn = convert;
      op.sub = b - 0x98;
      return op;
    case 0x69:
    case 0x6b: {
      const mr = m[p];
      op.kind = OpKind.Imul;
      op.fn = imul;
      op.sub = 1;
      op.reg = ((mr >> 3) & 7) | ((rex & 4) << 1);
      let q = p + 1;
      if (mr >= 0xc0) op.rm = (mr & 7) | ((rex & 1) << 3);
      else {
        q = decodeEa(op, m, p, rex, asz, mode64);
        if (q < 0) return null;
        op.mem = true;
      }
      const v = b === 0x6b ? s8(m[q]) : osz === 16 ? u16(m, q) : s32(m, q);
      op.imm = osz === 16 ? v & 0xffff : v >>> 0;
      op.immHi = v >> 31;
      return op;
    }
    case 0x0f: {
      const b2 = m[p];
      if (b2 >= 0x80 && b2 <= 0x8f) {
        if (opsz) return null;
        op.kind = OpKind.Jcc;
        op.fn = jcc;
        op.sub = b2 & 15;
        op.imm = osz === 16 ? s16(u16(m, p + 1)) : s32(m, p + 1);
        op.size = mode64 ? 64 : osz;
        op.ends = true;
        return op;
      }
      return decode0f(op, m, p, b2, rex, asz, mode64);
    }
    default:
      if (b >= 0x70 && b <= 0x7f) {
        if (opsz) return null;
        op.kind = OpKind.Jcc;
        op.fn = jcc;
        op.sub = b & 15;
        op.imm = s8(m[p]);
        op.size = mode64 ? 64 : osz;
        op.ends = true;
        return op;
      }
      if (b >= 0x40 && b <= 0x4f && !mode64) {
        op.kind = OpKind.IncDec;
        op.fn = osz === 32 ? incDec32 : incDec;
        op.sub = b < 0x48 ? 0 : 1;
        op.reg = b & 7;
        return op;
      }
      if (b >= 0x50 && b <= 0x5f) {
        const size = stackSize(mode64, opsz, osz);
        if (size === 0) return null;
        op.kind = b < 0x58 ? OpKind.Push : OpKind.Pop;
        op.fn = b < 0x58 ? push : pop;
        op.size = size;
        op.reg = (b & 7) | ((rex & 1) << 3);
        return op;
      }
      if (b === 0xc0 || b === 0xc1 || (b >= 0xd0 && b <= 0xd3)) {
        // shifts and rotates of a register: SHL/SAL, SHR, SAR by a constant that does not mask to
        // 0 are inline in compiled blocks; the rest (rotates, by CL, 8-bit) run their handler
        const mr = m[p];
        const sub = (mr >> 3) & 7;
        if (mr < 0xc0) return null;
        const wide = (b & 1) !== 0;
        const raw = b === 0xd0 || b === 0xd1 ? 1 : b === 0xd2 || b === 0xd3 ? -1 : m[p + 1];
        const count = raw & (osz === 64 ? 0x3f : 0x1f);
        if (wide && sub >= 4 && raw >= 0 && count !== 0) {
          op.kind = OpKind.ShiftRI;
          op.fn = shiftRI;
          op.sub = sub === 6 ? 4 : sub;
          op.reg = (mr & 7) | ((rex & 1) << 3);
          op.imm = count;
          return op;
        }
        op.kind = OpKind.Shift;
        op.fn = shiftR;
        op.sub = sub;
        op.imm = raw;
        if (wide) op.rm = (mr & 7) | ((rex & 1) << 3);
        else {
          op.size = 8;
          reg8(op, (mr & 7) | ((rex & 1) << 3), rex);
        }
        return op;
      }
      if (b === 0xc6 || b === 0xc7) {
        // MOV r/m, imm (/0 only); the immediate is sign-extended for 64-bit operands
        const mr = m[p];
        if ((mr & 0x38) !== 0) return null;
        let q = p + 1;
        if (b === 0xc6) op.size = 8;
        if (mr < 0xc0) {
          q = decodeEa(op, m, p, rex, asz, mode64);
          if (q < 0) return null;
          op.kind = OpKind.StoreImm;
          op.fn = storeImm;
        } else {
          op.kind = OpKind.MovRI;
          if (b === 0xc6) {
            reg8(op, (mr & 7) | ((rex & 1) << 3), rex, true);
            op.fn = mov8;
          } else {
            op.fn = movRI;
            op.reg = (mr & 7) | ((rex & 1) << 3);
          }
        }
        if (b === 0xc6) {
          op.imm = m[q];
          return op;
        }
        const v = osz === 16 ? u16(m, q) : s32(m, q);
        op.imm = osz === 16 ? v : v >>> 0;
        op.immHi = osz === 64 ? v >> 31 : 0;
        return op;
      }
      if (b >= 0xb0 && b <= 0xb7) {
        op.kind = OpKind.MovRI;
        op.fn = mov8;
        op.size = 8;
        reg8(op, (b & 7) | ((rex & 1) << 3), rex, true);
        op.imm = m[p];
        return op;
      }
      if (b >= 0xb8 && b <= 0xbf) {
        op.kind = OpKind.MovRI;
        op.fn = movRI;
        op.reg = (b & 7) | ((rex & 1) << 3);
        if (osz === 16) op.imm = u16(m, p);
        else {
          op.imm = s32(m, p) >>> 0;
          op.immHi = osz === 64 ? s32(m, p + 4) : 0;
        }
        return op;
      }
      return null;
  }
}

const s16 = (v: number) => (v << 16) >> 16;

/**
 * The 8-bit register r (REX bits included) into op.rm/byteHi, or op.reg/regHi with `intoReg`:
 * without REX, 4..7 are AH CH DH BH
 */
function reg8(op: Op, r: number, rex: number, intoReg = false): void {
  const high = rex === 0 && r >= 4;
  const n = high ? r - 4 : r;
  if (intoReg) {
    op.reg = n;
    op.regHi = high;
  } else {
    op.rm = n;
    op.byteHi = high;
  }
}

/** CMOVcc r, r; SETcc r8; MOVZX/MOVSX (0F b2, ModRM at m[p + 1]) */
function decode0f(
  op: Op,
  m: Uint8Array,
  p: number,
  b2: number,
  rex: number,
  asz: number,
  mode64: boolean,
): Op | null {
  const mr = m[p + 1];
  const reg = ((mr >> 3) & 7) | ((rex & 4) << 1);
  op.fn = genericOp;
  op.sub = b2 & 15;
  if (b2 === 0x1f || b2 === 0x18 || b2 === 0x0d) {
    // hint NOPs and prefetches: a memory operand is never accessed
    op.kind = OpKind.Nop;
    op.fn = nop;
    return op;
  }
  if ((b2 & 0xf0) === 0x40) {
    if (mr < 0xc0) return null;
    op.fn = cmov;
    op.kind = OpKind.CmovRR;
    op.reg = reg;
    op.rm = (mr & 7) | ((rex & 1) << 3);
    return op;
  }
  if ((b2 & 0xf0) === 0x90) {
    if (mr < 0xc0) return null;
    op.fn = setcc;
    op.kind = OpKind.SetccR;
    reg8(op, (mr & 7) | ((rex & 1) << 3), rex);
    return op;
  }
  const rm = (mr & 7) | ((rex & 1) << 3);
  if (b2 === 0xaf) {
    // IMUL reg, r/m
    op.kind = OpKind.Imul;
    op.fn = imul;
    op.sub = 0;
    op.reg = reg;
    if (mr >= 0xc0) op.rm = rm;
    else {
      if (decodeEa(op, m, p + 1, rex, asz, mode64) < 0) return null;
      op.mem = true;
    }
    return op;
  }
  if (b2 === 0xba || b2 === 0xa3 || b2 === 0xab || b2 === 0xb3 || b2 === 0xbb) {
    // BT/BTS/BTR/BTC on a register (a memory operand with a register offset reaches beyond it)
    if (mr < 0xc0) return null;
    op.kind = OpKind.BitOp;
    op.fn = bitOp;
    op.rm = rm;
    if (b2 === 0xba) {
      if (((mr >> 3) & 7) < 4) return null;
      op.sub = ((mr >> 3) & 7) - 4;
      op.imm = m[p + 2] & (op.size - 1);
    } else {
      op.sub = (b2 >> 3) & 3;
      op.reg = reg;
      op.imm = -1;
    }
    return op;
  }
  if (b2 !== 0xb6 && b2 !== 0xb7 && b2 !== 0xbe && b2 !== 0xbf) return null;
  op.fn = movx;
  op.sub = b2 >= 0xbe ? 1 : 0;
  op.imm = (b2 & 1) === 0 ? 8 : 16;
  op.reg = reg;
  if (mr >= 0xc0) {
    op.kind = OpKind.MovxR;
    if (op.imm === 8) reg8(op, (mr & 7) | ((rex & 1) << 3), rex);
    else op.rm = (mr & 7) | ((rex & 1) << 3);
    return op;
  }
  if (decodeEa(op, m, p + 1, rex, asz, mode64) < 0) return null;
  op.kind = OpKind.MovxM;
  return op;
}

/** opcodes after which straight-line decoding stops (control transfers, HLT, mode changes) */
export function endsBlock(m: Uint8Array, p: number, mode64: boolean): boolean {
  let b = m[p];
  let rep = false;
  while (
    b === 0x66 ||
    b === 0x67 ||
    b === 0xf2 ||
    b === 0xf3 ||
    b === 0xf0 ||
    (b & 0xe7) === 0x26 ||
    b === 0x64 ||
    b === 0x65 ||
    (mode64 && (b & 0xf0) === 0x40)
  ) {
    if (b === 0xf2 || b === 0xf3) rep = true;
    b = m[++p];
  }
  // a REP string instruction's iterations count against the budget that admitted the block by
  // its instruction count: the run loop looks at the budget again after it
  if (rep && ((b >= 0x6c && b <= 0x6f) || (b >= 0xa4 && b <= 0xa7) || (b >= 0xaa && b <= 0xaf))) return true;
  switch (b) {
    case 0x9a:
    case 0xc2:
    case 0xc3:
    case 0xca:
    case 0xcb:
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
    case 0xe8:
    case 0xe9:
    case 0xea:
    case 0xeb:
    case 0xf4:
    case 0xff:
      return true;
    case 0x0f: {
      const b2 = m[p + 1];
      // INVPCID (0F 38 82) flushes the TLB, as INVLPG (0F 01) does
      return (
        b2 === 0x05 ||
        b2 === 0x07 ||
        b2 === 0x0b ||
        b2 === 0x34 ||
        b2 === 0x35 ||
        b2 === 0x01 ||
        b2 === 0x22 ||
        (b2 === 0x38 && m[p + 2] === 0x82)
      );
    }
    default:
      return (b >= 0x70 && b <= 0x7f) || (b >= 0xe0 && b <= 0xe3);
  }
}

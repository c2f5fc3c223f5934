// Prefix decoding and the one-byte opcode map. The common instructions are handled inline here;
// groups and rarer instructions live in exec-*.ts.

import { exec0f } from "./exec-0f.js";
import { group3, shiftOp } from "./exec-arith.js";
import { ioIn, ioOut, stringOp } from "./exec-string.js";
import { CpuFault, EXIT_SIGNAL, Vec } from "./faults.js";
import {
  FL_AF,
  FL_CF,
  FL_DF,
  FL_IF,
  FL_IOPL,
  FL_OF,
  FL_RF,
  FL_SF,
  FL_VM,
  FL_ZF,
  lazyZf,
  PARITY,
} from "./flags.js";
import { EventType } from "./hooks.js";
import type { Interpreter } from "./interpreter.js";
import { mulS64, product } from "./mul64.js";
import { lockedInsn, lockedXchg } from "./smp-atomic.js";
import { applyFlags, farReturn, farTransfer, iret, loadSeg, softwareInterrupt } from "./system.js";
import { fwait, x87 } from "./x87.js";

const TWO32 = 4294967296;

export function execute(cpu: Interpreter): void {
  cpu.beginFetch();
  cpu.segOv = -1;
  cpu.rep = 0;
  cpu.rex = 0;
  cpu.osz = cpu.defOsz;
  cpu.asz = cpu.defAsz;
  cpu.opsizePrefix = false;
  // prefixes are opcodes of op1 that divert to prefixed(), so the common path pays nothing for them
  op1(cpu, cpu.fetch8());
  if (cpu.exitDeferred) {
    // thrown here rather than at the hook: a throw out of op1 (a huge function V8 rarely optimizes)
    // costs microseconds, spent mapping its baseline frame's return address to a bytecode offset
    // by walking its offset table
    cpu.exitDeferred = false;
    throw EXIT_SIGNAL;
  }
  cpu.rip = cpu.ip;
  // sequential execution past the top of the canonical range (an instruction ending at
  // 0x800000000000): #GP(0) at the next fetch, taken now so that no instruction boundary (and no
  // VM exit) ever sees a non-canonical RIP. Branches fault before they move RIP (checkTarget).
  if (cpu.mode64 && (cpu.ip >= 0x800000000000 || cpu.ip < -0x800000000000)) nonCanonicalNext(cpu);
}

function nonCanonicalNext(cpu: Interpreter): never {
  cpu.retired++;
  throw new CpuFault(Vec.GP, 0);
}

/** a near branch target in 64-bit mode must be canonical: #GP(0) at the branch, nothing changed */
export function checkTarget(cpu: Interpreter, t: number): void {
  if (cpu.mode64 && (t >= 0x800000000000 || t < -0x800000000000)) throw new CpuFault(Vec.GP, 0);
}

/** legacy prefix bytes and REX (64-bit mode) */
const IS_PREFIX = new Uint8Array(256);
for (const p of [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3]) IS_PREFIX[p] = 1;
for (let p = 0x40; p < 0x50; p++) IS_PREFIX[p] = 1;

/** a REX prefix with nothing before it (64-bit mode): the common case of 64-bit code */
function rexPrefix(cpu: Interpreter, rex: number): void {
  cpu.rex = rex;
  const b = cpu.fetch8();
  if (IS_PREFIX[b] !== 0) {
    prefixed(cpu, b);
    return;
  }
  if ((rex & 8) !== 0) cpu.osz = 64;
  op1(cpu, b);
}

/** legacy prefixes and REX; a REX prefix counts only when it immediately precedes the opcode */
function prefixed(cpu: Interpreter, b: number): void {
  cpu.lock = false;
  let opsz = false;
  let adsz = false;
  for (;;) {
    switch (b) {
      case 0x66:
        opsz = true;
        cpu.rex = 0;
        break;
      case 0x67:
        adsz = true;
        cpu.rex = 0;
        break;
      case 0x26:
      case 0x2e:
      case 0x36:
      case 0x3e:
        // 64-bit mode ignores these overrides: the default segment (SS for RSP/RBP) still decides
        // between #SS and #GP
        if (!cpu.mode64) cpu.segOv = (b >> 3) & 3;
        cpu.rex = 0;
        break;
      case 0x64:
      case 0x65:
        cpu.segOv = b - 0x60;
        cpu.rex = 0;
        break;
      case 0xf0:
        cpu.lock = true;
        cpu.rex = 0;
        break;
      case 0xf2:
      case 0xf3:
        cpu.rep = b;
        cpu.rex = 0;
        break;
      default:
        if (cpu.mode64) {
          if ((b & 0xf0) === 0x40) {
            cpu.rex = b;
            break;
          }
          cpu.osz = (cpu.rex & 8) !== 0 ? 64 : opsz ? 16 : 32;
          cpu.asz = adsz ? 32 : 64;
        } else {
          cpu.osz = cpu.csD !== opsz ? 32 : 16;
          cpu.asz = cpu.csD !== adsz ? 32 : 16;
        }
        cpu.opsizePrefix = opsz;
        if (cpu.lock) {
          checkLock(cpu, b);
          // other threads share the memory: a compare-and-swap, again until it succeeds
          if (cpu.smp !== null) {
            lockedInsn(cpu, b, op1);
            return;
          }
        }
        op1(cpu, b);
        return;
    }
    b = cpu.fetch8();
  }
}

/** one-byte opcodes that accept LOCK (with a memory destination); 2: only some ModRM.reg values */
const LOCKABLE1 = new Uint8Array(256);
for (const o of [
  0x00, 0x01, 0x08, 0x09, 0x10, 0x11, 0x18, 0x19, 0x20, 0x21, 0x28, 0x29, 0x30, 0x31, 0x86, 0x87,
])
  LOCKABLE1[o] = 1;
for (const o of [0x80, 0x81, 0x82, 0x83, 0xf6, 0xf7, 0xfe, 0xff]) LOCKABLE1[o] = 2;
const LOCKABLE2 = new Uint8Array(256);
for (const o of [0xab, 0xb3, 0xbb, 0xb0, 0xb1, 0xc0, 0xc1]) LOCKABLE2[o] = 1;
for (const o of [0xba, 0xc7]) LOCKABLE2[o] = 2;

/**
 * LOCK is legal only on the read-modify-write instructions with a memory destination (SDM Vol. 2
 * "LOCK"); anything else raises #UD before the instruction does anything. Peeks at the opcode
 * and ModRM, then rewinds the fetch so the instruction decodes normally.
 */
function checkLock(cpu: Interpreter, b: number): void {
  const ip = cpu.ip;
  const fp = cpu.fp;
  const fpEnd = cpu.fpEnd;
  const fpBase = cpu.fpBase;
  let op = b;
  let kind: number;
  if (b === 0x0f) {
    op = cpu.fetch8();
    kind = LOCKABLE2[op];
  } else kind = LOCKABLE1[op];
  if (kind === 0) ud();
  const m = cpu.fetch8();
  if (m >= 0xc0) ud();
  const reg = (m >> 3) & 7;
  if (kind === 2) {
    let ok: boolean;
    if (b === 0x0f) ok = op === 0xba ? reg >= 5 : reg === 1;
    else if (op <= 0x83) ok = reg !== 7;
    else if (op <= 0xf7) ok = reg === 2 || reg === 3;
    else ok = reg <= 1;
    if (!ok) ud();
  }
  cpu.ip = ip;
  if (cpu.fpBase === fpBase) {
    cpu.fp = fp;
    cpu.fpEnd = fpEnd;
  } else cpu.fpEnd = 0; // the peek crossed into the next page: refetch from ip
}

export function ud(): never {
  throw new CpuFault(Vec.UD, undefined);
}

/** sign-extended imm8 as an operand of `size`: lo in the return, hi in cpu.vh */
function simm8(cpu: Interpreter, size: number): number {
  const v = (cpu.fetch8() << 24) >> 24;
  cpu.vh = v >> 31;
  return size === 16 ? v & 0xffff : size === 8 ? v & 0xff : v >>> 0;
}

/** near branch target: ip + rel with the operand-size wrap */
export function branch(cpu: Interpreter, rel: number): void {
  const t = cpu.ip + rel;
  checkTarget(cpu, t);
  cpu.ip = cpu.mode64 ? t : cpu.osz === 16 ? t & 0xffff : t >>> 0;
}
/** rel16/rel32 displacement of JMP/Jcc near (16 bits only with a 16-bit operand size outside 64-bit mode) */
export function nearRel(cpu: Interpreter): number {
  return cpu.osz === 16 && !cpu.mode64 ? (cpu.fetch16() << 16) >> 16 : cpu.fetch32() | 0;
}
/** Jcc (70-7F, 0F 80-8F) */
export function jcc(cpu: Interpreter, cc: number, rel: number): void {
  // JZ/JNZ after an ALU op: ZF straight from the lazy result
  const taken = (cc & 0xe) === 4 && cpu.fOp !== 0 ? lazyZf(cpu) === (cc === 4) : cpu.cond(cc);
  if (taken) branch(cpu, rel);
}

/** operand size of stack operations (push/pop/call/ret): 64 in 64-bit mode unless 66 */
function stackOsz(cpu: Interpreter): number {
  return cpu.mode64 ? (cpu.opsizePrefix ? 16 : 64) : cpu.osz;
}
/** PUSH ES/CS/SS/DS/FS/GS */
export function pushSeg(cpu: Interpreter, seg: number): void {
  cpu.push(stackOsz(cpu), cpu.segSel[seg], 0);
}
/**
 * POP ES/SS/DS/FS/GS: the segment loads (and may fault) before RSP moves. The pop is the old stack's:
 * POP SS moves SP or ESP by the B bit of the SS it pops from, not of the one it loads.
 */
export function popSeg(cpu: Interpreter, seg: number): void {
  const size = stackOsz(cpu);
  const sel = cpu.peek(size, 0) & 0xffff;
  const lo = cpu.lo[4];
  const hi = cpu.hi[4];
  cpu.setSp(cpu.spAdd(cpu.sp(), size >> 3));
  const nextLo = cpu.lo[4];
  const nextHi = cpu.hi[4];
  cpu.lo[4] = lo;
  cpu.hi[4] = hi;
  loadSeg(cpu, seg, sel);
  cpu.lo[4] = nextLo;
  cpu.hi[4] = nextHi;
  if (seg === 2) shadow(cpu, 2);
}

/** the ModRM byte if it names two registers (mod = 3) and is in the fetch window, else -1 */
function peekRegModrm(cpu: Interpreter): number {
  const p = cpu.fp;
  if (p < cpu.fpEnd) {
    const m = cpu.fpMem[p];
    if (m >= 0xc0) {
      cpu.fp = p + 1;
      cpu.ip++;
      return m;
    }
  }
  return -1;
}

function aluRM(cpu: Interpreter, op: number, form: number): void {
  const size = (form & 1) === 0 ? 8 : cpu.osz;
  if (size >= 32) {
    // fast path: register to register
    const m = peekRegModrm(cpu);
    if (m >= 0) {
      const rex = cpu.rex;
      const reg = ((m >> 3) & 7) | ((rex & 4) << 1);
      const rm = (m & 7) | ((rex & 1) << 3);
      const d = form < 2 ? rm : reg;
      const sr = form < 2 ? reg : rm;
      const lo = cpu.lo;
      const hi = cpu.hi;
      const r = cpu.alu(op, size, lo[d] >>> 0, hi[d], lo[sr] >>> 0, hi[sr]);
      if (op !== 7) {
        lo[d] = r;
        hi[d] = size === 64 ? cpu.vh : 0;
      }
      return;
    }
  }
  cpu.modrm(0);
  if (cpu.mod === 3 && size === 32) {
    const lo = cpu.lo;
    const d = form < 2 ? cpu.rm : cpu.reg;
    const s = form < 2 ? cpu.reg : cpu.rm;
    const r = cpu.alu(op, 32, lo[d] >>> 0, 0, lo[s] >>> 0, 0);
    if (op !== 7) {
      lo[d] = r;
      cpu.hi[d] = 0;
    }
    return;
  }
  if (form < 2) {
    const a = op === 7 ? cpu.readRM(size) : cpu.readRMW(size);
    const ah = cpu.vh;
    const v = cpu.getReg(size, cpu.reg);
    const r = cpu.alu(op, size, a, ah, v, cpu.vh);
    if (op !== 7) cpu.writeRM(size, r, cpu.vh);
  } else {
    const v = cpu.readRM(size);
    const vh = cpu.vh;
    const a = cpu.getReg(size, cpu.reg);
    const r = cpu.alu(op, size, a, cpu.vh, v, vh);
    if (op !== 7) cpu.setReg(size, cpu.reg, r, cpu.vh);
  }
}

function op1(cpu: Interpreter, b: number): void {
  switch (b) {
    case 0x26:
    case 0x2e:
    case 0x36:
    case 0x3e:
    case 0x64:
    case 0x65:
    case 0x66:
    case 0x67:
    case 0xf0:
    case 0xf2:
    case 0xf3:
      prefixed(cpu, b);
      return;
    case 0x00:
    case 0x01:
    case 0x02:
    case 0x03:
    case 0x08:
    case 0x09:
    case 0x0a:
    case 0x0b:
    case 0x10:
    case 0x11:
    case 0x12:
    case 0x13:
    case 0x18:
    case 0x19:
    case 0x1a:
    case 0x1b:
    case 0x20:
    case 0x21:
    case 0x22:
    case 0x23:
    case 0x28:
    case 0x29:
    case 0x2a:
    case 0x2b:
    case 0x30:
    case 0x31:
    case 0x32:
    case 0x33:
    case 0x38:
    case 0x39:
    case 0x3a:
    case 0x3b:
      aluRM(cpu, b >> 3, b & 7);
      return;
    case 0x04:
    case 0x0c:
    case 0x14:
    case 0x1c:
    case 0x24:
    case 0x2c:
    case 0x34:
    case 0x3c: {
      const imm = cpu.fetch8();
      const r = cpu.alu(b >> 3, 8, cpu.lo[0] & 0xff, 0, imm, 0);
      if (b >> 3 !== 7) cpu.lo[0] = (cpu.lo[0] & ~0xff) | r;
      return;
    }
    case 0x05:
    case 0x0d:
    case 0x15:
    case 0x1d:
    case 0x25:
    case 0x2d:
    case 0x35:
    case 0x3d: {
      const size = cpu.osz;
      const imm = cpu.fetchImm(size);
      const ih = cpu.vh;
      const a = cpu.getReg(size, 0);
      const r = cpu.alu(b >> 3, size, a, cpu.vh, imm, ih);
      if (b >> 3 !== 7) cpu.setReg(size, 0, r, cpu.vh);
      return;
    }
    case 0x06:
    case 0x0e:
    case 0x16:
    case 0x1e:
      if (cpu.mode64) ud();
      pushSeg(cpu, b >> 3);
      return;
    case 0x07:
    case 0x17:
    case 0x1f:
      if (cpu.mode64) ud();
      popSeg(cpu, b >> 3);
      return;
    case 0x27:
    case 0x2f:
    case 0x37:
    case 0x3f:
      if (cpu.mode64) ud();
      bcd(cpu, b);
      return;
    case 0x40:
    case 0x41:
    case 0x42:
    case 0x43:
    case 0x44:
    case 0x45:
    case 0x46:
    case 0x47:
    case 0x48:
    case 0x49:
    case 0x4a:
    case 0x4b:
    case 0x4c:
    case 0x4d:
    case 0x4e:
    case 0x4f: {
      if (cpu.mode64) {
        rexPrefix(cpu, b);
        return;
      }
      // INC r (40-47) / DEC r (48-4F)
      const r = b & 7;
      const dec = b >= 0x48;
      if (cpu.osz === 32) {
        const v = cpu.lo[r] >>> 0;
        cpu.lo[r] = dec ? cpu.dec(32, v, 0) : cpu.inc(32, v, 0);
      } else {
        const v = cpu.lo[r] & 0xffff;
        cpu.setReg(16, r, dec ? cpu.dec(16, v, 0) : cpu.inc(16, v, 0), 0);
      }
      return;
    }
    case 0x50:
    case 0x51:
    case 0x52:
    case 0x53:
    case 0x54:
    case 0x55:
    case 0x56:
    case 0x57: {
      const r = (b & 7) | ((cpu.rex & 1) << 3);
      const size = stackOsz(cpu);
      const v = cpu.getReg(size, r);
      cpu.push(size, v, cpu.vh);
      return;
    }
    case 0x58:
    case 0x59:
    case 0x5a:
    case 0x5b:
    case 0x5c:
    case 0x5d:
    case 0x5e:
    case 0x5f: {
      const r = (b & 7) | ((cpu.rex & 1) << 3);
      const size = stackOsz(cpu);
      const v = cpu.pop(size);
      cpu.setReg(size, r, v, cpu.vh);
      return;
    }
    case 0x60:
      if (cpu.mode64) ud();
      pusha(cpu);
      return;
    case 0x61: {
      if (cpu.mode64) ud();
      const size = cpu.osz;
      const n = size >> 3;
      const vals: number[] = [];
      for (let i = 0; i < 8; i++) vals.push(cpu.peek(size, i * n));
      for (let i = 0; i < 8; i++) if (i !== 3) cpu.setReg(size, 7 - i, vals[i], 0);
      cpu.setSp(cpu.spAdd(cpu.sp(), 8 * n));
      return;
    }
    case 0x62:
      if (cpu.mode64) ud();
      bound(cpu);
      return;
    case 0x63:
      if (cpu.mode64) {
        // MOVSXD
        cpu.modrm(0);
        const v = cpu.readRM(32) | 0;
        if (cpu.osz === 64) cpu.setReg(64, cpu.reg, v >>> 0, v >> 31);
        else cpu.setReg(cpu.osz, cpu.reg, v >>> 0, 0);
        return;
      }
      arpl(cpu);
      return;
    case 0x68: {
      const size = stackOsz(cpu);
      const v = cpu.fetchImm(size === 64 ? 64 : size);
      cpu.push(size, v, size === 64 ? cpu.vh : 0);
      return;
    }
    case 0x6a: {
      const size = stackOsz(cpu);
      const v = simm8(cpu, size);
      cpu.push(size, v, cpu.vh);
      return;
    }
    case 0x69:
    case 0x6b: {
      const size = cpu.osz;
      cpu.modrm(b === 0x69 ? (size === 16 ? 2 : 4) : 1);
      const a = cpu.readRM(size);
      const ah = cpu.vh;
      let imm: number;
      let ih: number;
      if (b === 0x6b) {
        imm = simm8(cpu, size);
        ih = cpu.vh;
      } else {
        imm = cpu.fetchImm(size);
        ih = size === 64 ? cpu.vh : 0;
      }
      imulTrunc(cpu, size, cpu.reg, a, ah, imm, ih);
      return;
    }
    case 0x6c:
    case 0x6d:
    case 0x6e:
    case 0x6f:
    case 0xa4:
    case 0xa5:
    case 0xa6:
    case 0xa7:
    case 0xaa:
    case 0xab:
    case 0xac:
    case 0xad:
    case 0xae:
    case 0xaf:
      stringOp(cpu, b);
      return;
    case 0x70:
    case 0x71:
    case 0x72:
    case 0x73:
    case 0x74:
    case 0x75:
    case 0x76:
    case 0x77:
    case 0x78:
    case 0x79:
    case 0x7a:
    case 0x7b:
    case 0x7c:
    case 0x7d:
    case 0x7e:
    case 0x7f: {
      jcc(cpu, b & 15, (cpu.fetch8() << 24) >> 24);
      return;
    }
    case 0x80:
    case 0x81:
    case 0x82:
    case 0x83: {
      if (b === 0x82 && cpu.mode64) ud();
      const size = (b & 1) === 0 ? 8 : cpu.osz;
      if (size >= 32) {
        const m = peekRegModrm(cpu);
        if (m >= 0) {
          const op = (m >> 3) & 7;
          const rm = (m & 7) | ((cpu.rex & 1) << 3);
          let imm: number;
          let ih: number;
          if (b === 0x83) {
            const v = (cpu.fetch8() << 24) >> 24;
            imm = v >>> 0;
            ih = v >> 31;
          } else {
            imm = cpu.fetch32();
            ih = (imm | 0) >> 31;
          }
          const r = cpu.alu(op, size, cpu.lo[rm] >>> 0, cpu.hi[rm], imm, ih);
          if (op !== 7) {
            cpu.lo[rm] = r;
            cpu.hi[rm] = size === 64 ? cpu.vh : 0;
          }
          return;
        }
      }
      const immLen = b === 0x81 ? (size === 16 ? 2 : 4) : 1;
      cpu.modrm(immLen);
      const op = cpu.reg & 7;
      const a = op === 7 ? cpu.readRM(size) : cpu.readRMW(size);
      const ah = cpu.vh;
      let imm: number;
      let ih = 0;
      if (b === 0x83) {
        imm = simm8(cpu, size);
        ih = cpu.vh;
      } else {
        imm = cpu.fetchImm(size);
        if (size === 64) ih = cpu.vh;
      }
      const r = cpu.alu(op, size, a, ah, imm, ih);
      if (op !== 7) cpu.writeRM(size, r, cpu.vh);
      return;
    }
    case 0x84:
    case 0x85: {
      const size = b === 0x84 ? 8 : cpu.osz;
      cpu.modrm(0);
      const a = cpu.readRM(size);
      const ah = cpu.vh;
      const v = cpu.getReg(size, cpu.reg);
      cpu.logic(size, a & v, ah & cpu.vh);
      return;
    }
    case 0x86:
    case 0x87: {
      const size = b === 0x86 ? 8 : cpu.osz;
      cpu.modrm(0);
      // XCHG with memory is locked, prefix or not (SDM Vol. 2 XCHG)
      if (cpu.smp !== null && cpu.mod !== 3 && !cpu.lockRmw) {
        const v = cpu.getReg(size, cpu.reg);
        const old = lockedXchg(cpu, size, v, size === 64 ? cpu.vh : 0);
        cpu.setReg(size, cpu.reg, old, cpu.vh);
        return;
      }
      const a = cpu.readRMW(size);
      const ah = cpu.vh;
      const v = cpu.getReg(size, cpu.reg);
      cpu.writeRM(size, v, cpu.vh);
      cpu.setReg(size, cpu.reg, a, ah);
      return;
    }
    case 0x88:
      cpu.modrm(0);
      cpu.writeRM(8, cpu.getReg(8, cpu.reg), 0);
      return;
    case 0x89: {
      cpu.modrm(0);
      const size = cpu.osz;
      if (size === 32) {
        const v = cpu.lo[cpu.reg];
        if (cpu.mod === 3) {
          cpu.lo[cpu.rm] = v;
          cpu.hi[cpu.rm] = 0;
        } else {
          if (cpu.eaChk !== 0) cpu.checkEa(4, true);
          cpu.wr32(cpu.ea, v);
        }
        return;
      }
      const v = cpu.getReg(size, cpu.reg);
      cpu.writeRM(size, v, cpu.vh);
      return;
    }
    case 0x8a:
      cpu.modrm(0);
      cpu.setReg(8, cpu.reg, cpu.readRM(8), 0);
      return;
    case 0x8b: {
      cpu.modrm(0);
      const size = cpu.osz;
      if (size === 32) {
        if (cpu.eaChk !== 0 && cpu.mod !== 3) cpu.checkEa(4, false);
        const v = cpu.mod === 3 ? cpu.lo[cpu.rm] : cpu.rd32(cpu.ea);
        cpu.lo[cpu.reg] = v;
        cpu.hi[cpu.reg] = 0;
        return;
      }
      const v = cpu.readRM(size);
      cpu.setReg(size, cpu.reg, v, cpu.vh);
      return;
    }
    case 0x8c: {
      cpu.modrm(0);
      const s = cpu.reg & 7;
      if (s > 5) ud();
      if (cpu.mod === 3) cpu.setReg(cpu.osz === 16 ? 16 : cpu.osz, cpu.rm, cpu.segSel[s], 0);
      else {
        if (cpu.eaChk !== 0) cpu.checkEa(2, true);
        cpu.wr16(cpu.ea, cpu.segSel[s]);
      }
      return;
    }
    case 0x8d: {
      cpu.modrm(0);
      if (cpu.mod === 3) ud();
      const size = cpu.osz;
      cpu.setReg(size, cpu.reg, size === 16 ? cpu.eaOff & 0xffff : cpu.eaOff, size === 64 ? cpu.eaOffHi : 0);
      return;
    }
    case 0x8e: {
      cpu.modrm(0);
      const s = cpu.reg & 7;
      if (s === 1 || s > 5) ud();
      const sel = cpu.readRM(16);
      loadSeg(cpu, s, sel);
      if (s === 2) shadow(cpu, 2);
      return;
    }
    case 0x8f: {
      const size = stackOsz(cpu);
      // the destination address is computed with RSP after the pop
      const sp = cpu.sp();
      cpu.stackCheck(sp, size >> 3, false);
      const v = cpu.rd(size, cpu.stackLin(sp, size >> 3));
      const vh = cpu.vh;
      cpu.setSp(cpu.spAdd(sp, size >> 3));
      try {
        cpu.modrm(0);
        cpu.writeRM(size, v, vh);
      } catch (e) {
        cpu.setSp(sp);
        throw e;
      }
      return;
    }
    case 0x90:
      if ((cpu.rex & 1) !== 0) {
        xchgAcc(cpu, 8);
        return;
      }
      if (cpu.rep === 0xf3) {
        const ctx = cpu.ctx();
        if (cpu.requireHooks().other("pause", ctx)) cpu.exitDeferred = true;
      }
      return;
    case 0x91:
    case 0x92:
    case 0x93:
    case 0x94:
    case 0x95:
    case 0x96:
    case 0x97:
      xchgAcc(cpu, (b & 7) | ((cpu.rex & 1) << 3));
      return;
    case 0x98:
      if (cpu.osz === 16) cpu.lo[0] = (cpu.lo[0] & ~0xffff) | (((cpu.lo[0] << 24) >> 24) & 0xffff);
      else if (cpu.osz === 32) {
        cpu.lo[0] = (cpu.lo[0] << 16) >> 16;
        cpu.hi[0] = 0;
      } else cpu.hi[0] = cpu.lo[0] >> 31;
      return;
    case 0x99:
      if (cpu.osz === 16) cpu.lo[2] = (cpu.lo[2] & ~0xffff) | (((cpu.lo[0] << 16) >> 31) & 0xffff);
      else if (cpu.osz === 32) {
        cpu.lo[2] = cpu.lo[0] >> 31;
        cpu.hi[2] = 0;
      } else {
        cpu.lo[2] = cpu.hi[0] >> 31;
        cpu.hi[2] = cpu.hi[0] >> 31;
      }
      return;
    case 0x9a: {
      if (cpu.mode64) ud();
      const off = cpu.fetchImm(cpu.osz);
      const sel = cpu.fetch16();
      farTransfer(cpu, sel, off, true, cpu.osz);
      return;
    }
    case 0x9b:
      // FWAIT: #NM with CR0.MP and TS set, #MF for an unmasked x87 exception pending
      fwait(cpu);
      return;
    case 0x9c: {
      if (cpu.pm && (cpu.eflags & FL_VM) !== 0 && (cpu.eflags & FL_IOPL) >> 12 < 3)
        throw new CpuFault(Vec.GP, 0);
      const size = stackOsz(cpu);
      cpu.push(size, cpu.getFlags() & ~(FL_VM | FL_RF), 0);
      return;
    }
    case 0x9d: {
      const size = stackOsz(cpu);
      if (cpu.pm && (cpu.eflags & FL_VM) !== 0 && (cpu.eflags & FL_IOPL) >> 12 < 3)
        throw new CpuFault(Vec.GP, 0);
      const v = cpu.pop(size);
      const old = cpu.getFlags();
      const nf = applyFlags(cpu, old, v, size);
      cpu.setFlags((nf & ~(FL_VM | FL_RF)) | (old & FL_VM));
      return;
    }
    case 0x9e:
      cpu.patchFlags(FL_SF | FL_ZF | FL_AF | 0x4 | FL_CF, (cpu.lo[0] >> 8) & 0xd5);
      return;
    case 0x9f:
      cpu.lo[0] = (cpu.lo[0] & ~0xff00) | (((cpu.getFlags() & 0xd5) | 2) << 8);
      return;
    case 0xa0:
    case 0xa1:
    case 0xa2:
    case 0xa3: {
      const size = (b & 1) === 0 ? 8 : cpu.osz;
      let off: number;
      if (cpu.asz === 64) {
        const l = cpu.fetch32();
        off = (cpu.fetch32() | 0) * TWO32 + l;
      } else off = cpu.asz === 32 ? cpu.fetch32() : cpu.fetch16();
      const lin = cpu.dataLinear(cpu.segOv >= 0 ? cpu.segOv : 3, off, size >> 3, b >= 0xa2);
      if (b < 0xa2) {
        const v = cpu.rd(size, lin);
        cpu.setReg(size, 0, v, cpu.vh);
      } else {
        const v = cpu.getReg(size, 0);
        cpu.wr(size, lin, v, cpu.vh);
      }
      return;
    }
    case 0xa8:
      cpu.logic(8, cpu.lo[0] & cpu.fetch8() & 0xff, 0);
      return;
    case 0xa9: {
      const size = cpu.osz;
      const imm = cpu.fetchImm(size);
      const ih = cpu.vh;
      const a = cpu.getReg(size, 0);
      cpu.logic(size, a & imm, size === 64 ? cpu.vh & ih : 0);
      return;
    }
    case 0xb0:
    case 0xb1:
    case 0xb2:
    case 0xb3:
    case 0xb4:
    case 0xb5:
    case 0xb6:
    case 0xb7:
      cpu.setReg(8, (b & 7) | ((cpu.rex & 1) << 3), cpu.fetch8(), 0);
      return;
    case 0xb8:
    case 0xb9:
    case 0xba:
    case 0xbb:
    case 0xbc:
    case 0xbd:
    case 0xbe:
    case 0xbf: {
      const r = (b & 7) | ((cpu.rex & 1) << 3);
      if (cpu.osz === 64) {
        const l = cpu.fetch32();
        cpu.setReg(64, r, l, cpu.fetch32() | 0);
      } else cpu.setReg(cpu.osz, r, cpu.fetchImm(cpu.osz), 0);
      return;
    }
    case 0xc0:
    case 0xc1:
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
      const size = (b & 1) === 0 ? 8 : cpu.osz;
      cpu.modrm(b < 0xd0 ? 1 : 0);
      const a = cpu.readRMW(size);
      const ah = cpu.vh;
      const count = b < 0xd0 ? cpu.fetch8() : b < 0xd2 ? 1 : cpu.lo[1] & 0xff;
      const r = shiftOp(cpu, cpu.reg & 7, size, a, ah, count);
      if (r !== undefined) cpu.writeRM(size, r, cpu.vh);
      else if (size === 32 && cpu.mod === 3) cpu.hi[cpu.rm] = 0; // still a 32-bit register write
      return;
    }
    case 0xc2:
    case 0xc3: {
      const size = stackOsz(cpu);
      const imm = b === 0xc2 ? cpu.fetch16() : 0;
      const sp = cpu.sp();
      cpu.stackCheck(sp, size >> 3, false);
      const v = cpu.rd(size, cpu.stackLin(sp, size >> 3));
      const target = size === 64 ? cpu.vh * TWO32 + v : v;
      checkTarget(cpu, target);
      cpu.setSp(cpu.spAdd(sp, (size >> 3) + imm));
      cpu.ip = target;
      return;
    }
    case 0xc4:
    case 0xc5: {
      if (cpu.mode64) ud();
      cpu.modrm(0);
      if (cpu.mod === 3) ud();
      farPointerLoad(cpu, b === 0xc4 ? 0 : 3);
      return;
    }
    case 0xc6:
    case 0xc7: {
      const size = b === 0xc6 ? 8 : cpu.osz;
      cpu.modrm(size === 8 ? 1 : size === 16 ? 2 : 4);
      if ((cpu.reg & 7) !== 0) ud();
      const v = cpu.fetchImm(size);
      cpu.writeRM(size, v, size === 64 ? cpu.vh : 0);
      return;
    }
    case 0xc8:
      enter(cpu);
      return;
    case 0xc9: {
      const size = stackOsz(cpu);
      // RSP <- RBP (stack size), then pop RBP
      const bp = cpu.mode64
        ? cpu.hi[5] * TWO32 + (cpu.lo[5] >>> 0)
        : cpu.ssB
          ? cpu.lo[5] >>> 0
          : cpu.lo[5] & 0xffff;
      cpu.stackCheck(bp, size >> 3, false);
      const v = cpu.rd(size, cpu.stackLin(bp, size >> 3));
      const vh = cpu.vh;
      cpu.setSp(cpu.spAdd(bp, size >> 3));
      cpu.setReg(size, 5, v, vh);
      return;
    }
    case 0xca:
    case 0xcb: {
      const imm = b === 0xca ? cpu.fetch16() : 0;
      farReturn(cpu, cpu.osz, imm);
      return;
    }
    case 0xcc:
      softwareInterrupt(cpu, 3, EventType.SoftwareException);
      return;
    case 0xcd: {
      const v = cpu.fetch8();
      softwareInterrupt(cpu, v, EventType.SoftwareInterrupt);
      return;
    }
    case 0xce:
      if (cpu.mode64) ud();
      if (cpu.cond(0)) softwareInterrupt(cpu, 4, EventType.SoftwareException);
      return;
    case 0xcf:
      iret(cpu, cpu.osz);
      return;
    case 0xd4: {
      if (cpu.mode64) ud();
      const base = cpu.fetch8();
      if (base === 0) throw new CpuFault(Vec.DE, undefined);
      const al = cpu.lo[0] & 0xff;
      const r = ((Math.floor(al / base) & 0xff) << 8) | (al % base);
      cpu.lo[0] = (cpu.lo[0] & ~0xffff) | r;
      cpu.logic(8, r & 0xff, 0);
      return;
    }
    case 0xd5: {
      if (cpu.mode64) ud();
      const base = cpu.fetch8();
      const r = ((cpu.lo[0] & 0xff) + ((cpu.lo[0] >> 8) & 0xff) * base) & 0xff;
      cpu.lo[0] = (cpu.lo[0] & ~0xffff) | r;
      cpu.logic(8, r, 0);
      return;
    }
    case 0xd6:
      if (cpu.mode64) ud();
      cpu.lo[0] = (cpu.lo[0] & ~0xff) | (cpu.cf() ? 0xff : 0);
      return;
    case 0xd7: {
      const seg = cpu.segOv >= 0 ? cpu.segOv : 3;
      let off: number;
      const al = cpu.lo[0] & 0xff;
      if (cpu.asz === 64) off = cpu.hi[3] * TWO32 + (cpu.lo[3] >>> 0) + al;
      else if (cpu.asz === 32) off = (cpu.lo[3] + al) >>> 0;
      else off = (cpu.lo[3] + al) & 0xffff;
      cpu.lo[0] = (cpu.lo[0] & ~0xff) | cpu.rd8(cpu.dataLinear(seg, off, 1, false));
      return;
    }
    case 0xd8:
    case 0xd9:
    case 0xda:
    case 0xdb:
    case 0xdc:
    case 0xdd:
    case 0xde:
    case 0xdf:
      x87(cpu, b);
      return;
    case 0xe0:
    case 0xe1:
    case 0xe2:
    case 0xe3: {
      const rel = (cpu.fetch8() << 24) >> 24;
      // a LOOP whose target faults leaves rCX as it was
      const rcxLo = cpu.lo[1];
      const rcxHi = cpu.hi[1];
      let take: boolean;
      if (b === 0xe3) {
        take =
          cpu.asz === 16
            ? (cpu.lo[1] & 0xffff) === 0
            : cpu.asz === 32
              ? cpu.lo[1] === 0
              : cpu.lo[1] === 0 && cpu.hi[1] === 0;
      } else {
        let zero: boolean;
        if (cpu.asz === 16) {
          const c = (cpu.lo[1] - 1) & 0xffff;
          cpu.lo[1] = (cpu.lo[1] & ~0xffff) | c;
          zero = c === 0;
        } else if (cpu.asz === 32) {
          cpu.lo[1] = cpu.lo[1] - 1;
          if (cpu.mode64) cpu.hi[1] = 0;
          zero = cpu.lo[1] === 0;
        } else {
          if (cpu.lo[1] === 0) cpu.hi[1] = cpu.hi[1] - 1;
          cpu.lo[1] = cpu.lo[1] - 1;
          zero = cpu.lo[1] === 0 && cpu.hi[1] === 0;
        }
        take = !zero;
        if (b === 0xe0) take &&= !cpu.cond(4);
        else if (b === 0xe1) take &&= cpu.cond(4);
      }
      if (take && cpu.mode64) {
        const t = cpu.ip + rel;
        if (t >= 0x800000000000 || t < -0x800000000000) {
          cpu.lo[1] = rcxLo;
          cpu.hi[1] = rcxHi;
          checkTarget(cpu, t);
        }
      }
      if (take) branch(cpu, rel);
      return;
    }
    case 0xe4:
    case 0xe5:
      ioIn(cpu, cpu.fetch8(), b === 0xe4 ? 1 : cpu.osz === 16 ? 2 : 4, true);
      return;
    case 0xe6:
    case 0xe7:
      ioOut(cpu, cpu.fetch8(), b === 0xe6 ? 1 : cpu.osz === 16 ? 2 : 4, true);
      return;
    case 0xec:
    case 0xed:
      ioIn(cpu, cpu.lo[2] & 0xffff, b === 0xec ? 1 : cpu.osz === 16 ? 2 : 4, false);
      return;
    case 0xee:
    case 0xef:
      ioOut(cpu, cpu.lo[2] & 0xffff, b === 0xee ? 1 : cpu.osz === 16 ? 2 : 4, false);
      return;
    case 0xe8: {
      // in 64-bit mode near branches are 64-bit; a 66 prefix is ignored (Intel behaviour)
      const size = cpu.mode64 ? 64 : cpu.osz;
      const rel = size === 16 ? (cpu.fetch16() << 16) >> 16 : cpu.fetch32() | 0;
      const ret = cpu.ip;
      const t = ret + rel;
      checkTarget(cpu, t);
      cpu.push(size, ret >>> 0, Math.floor(ret / TWO32) | 0);
      cpu.ip = cpu.mode64 ? t : size === 16 ? t & 0xffff : t >>> 0;
      return;
    }
    case 0xe9:
      branch(cpu, nearRel(cpu));
      return;
    case 0xea: {
      if (cpu.mode64) ud();
      const off = cpu.fetchImm(cpu.osz);
      const sel = cpu.fetch16();
      farTransfer(cpu, sel, off, false, cpu.osz);
      return;
    }
    case 0xeb:
      branch(cpu, (cpu.fetch8() << 24) >> 24);
      return;
    case 0xf1:
      softwareInterrupt(cpu, 1, EventType.PrivilegedSoftwareException);
      return;
    case 0xf4: {
      if (cpu.cpl !== 0) throw new CpuFault(Vec.GP, 0);
      if (cpu.requireHooks().hlt(cpu.ctx())) {
        cpu.exitDeferred = true;
        return;
      }
      cpu.activity = 1;
      return;
    }
    case 0xf5:
      cpu.patchFlags(FL_CF, cpu.cf() ^ 1);
      return;
    case 0xf6:
    case 0xf7:
      group3(cpu, b === 0xf6 ? 8 : cpu.osz);
      return;
    case 0xf8:
      cpu.patchFlags(FL_CF, 0);
      return;
    case 0xf9:
      cpu.patchFlags(FL_CF, FL_CF);
      return;
    case 0xfa:
      if (cpu.pm && cpu.cpl > (cpu.eflags & FL_IOPL) >> 12) throw new CpuFault(Vec.GP, 0);
      cpu.eflags &= ~FL_IF;
      return;
    case 0xfb:
      if (cpu.pm && cpu.cpl > (cpu.eflags & FL_IOPL) >> 12) throw new CpuFault(Vec.GP, 0);
      if ((cpu.eflags & FL_IF) === 0) shadow(cpu, 1);
      cpu.eflags |= FL_IF;
      return;
    case 0xfc:
      cpu.eflags &= ~FL_DF;
      return;
    case 0xfd:
      cpu.eflags |= FL_DF;
      return;
    case 0xfe: {
      cpu.modrm(0);
      const op = cpu.reg & 7;
      if (op > 1) ud();
      const a = cpu.readRMW(8);
      cpu.writeRM(8, op === 0 ? cpu.inc(8, a, 0) : cpu.dec(8, a, 0), 0);
      return;
    }
    case 0xff: {
      // fast path: INC/DEC r32/r64
      const size = cpu.osz;
      if (size >= 32) {
        const p = cpu.fp;
        if (p < cpu.fpEnd) {
          const m = cpu.fpMem[p];
          if (m >= 0xc0 && m < 0xd0) {
            cpu.fp = p + 1;
            cpu.ip++;
            const r = (m & 7) | ((cpu.rex & 1) << 3);
            const v =
              m < 0xc8
                ? cpu.inc(size, cpu.lo[r] >>> 0, cpu.hi[r])
                : cpu.dec(size, cpu.lo[r] >>> 0, cpu.hi[r]);
            cpu.lo[r] = v;
            cpu.hi[r] = size === 64 ? cpu.vh : 0;
            return;
          }
        }
      }
      group5(cpu);
      return;
    }
    default:
      if (b === 0x0f) {
        exec0f(cpu, cpu.fetch8());
        return;
      }
      cpu.unimplemented(b);
  }
}

/** sets a STI (1) / MOV SS (2) interrupt shadow for the next instruction */
function shadow(cpu: Interpreter, bit: number): void {
  cpu.interruptibility |= bit;
  cpu.shadowAt = cpu.retired + 1;
}

function xchgAcc(cpu: Interpreter, r: number): void {
  const size = cpu.osz;
  const a = cpu.getReg(size, 0);
  const ah = cpu.vh;
  const v = cpu.getReg(size, r);
  cpu.setReg(size, 0, v, cpu.vh);
  cpu.setReg(size, r, a, ah);
}

/** IMUL with a truncated result into reg (0F AF, 69, 6B) */
export function imulTrunc(
  cpu: Interpreter,
  size: number,
  reg: number,
  a: number,
  ah: number,
  b: number,
  bh: number,
): void {
  if (size === 64) {
    // operands that are sign-extended 32-bit values (indexes times element sizes, mostly) whose
    // product a double holds exactly: no overflow is possible, and the halves come from the double
    if ((ah | bh) === 0) {
      // zero-extended 32-bit values ((u64)x * y in C): one partial product; the signed result
      // overflows when it reaches 2^63
      const x = a >>> 0;
      const y = b >>> 0;
      const lo = Math.imul(x, y) >>> 0;
      const hi = Math.round((x * y - lo) / 4294967296) | 0;
      const ovf = hi >>> 31;
      cpu.setReg(64, reg, lo, hi);
      cpu.setRes(64, lo, hi, ovf, ovf);
      return;
    }
    if ((ah | 0) === a >> 31 && (bh | 0) === b >> 31) {
      const p = (a | 0) * (b | 0);
      if (p <= 2 ** 53 && p >= -(2 ** 53)) {
        const lo = p >>> 0;
        const hi = Math.floor(p / 4294967296) | 0;
        cpu.setReg(64, reg, lo, hi);
        cpu.setRes(64, lo, hi, 0, 0);
        return;
      }
    }
    const ovf = mulS64(a, ah, b, bh) ? 1 : 0;
    const lo = product[0];
    const hi = product[1] | 0;
    cpu.setReg(64, reg, lo, hi);
    cpu.setRes(64, lo, hi, ovf, ovf);
    return;
  }
  const sh = 32 - size;
  const x = (a << sh) >> sh;
  const y = (b << sh) >> sh;
  // a double holds the 32 x 32-bit product exactly wherever it fits in 32 bits, and far from
  // any 32-bit value where it does not: comparing it with the truncated product finds overflow
  const p = x * y;
  const t = size === 32 ? Math.imul(x, y) : (p << sh) >> sh;
  const ovf = t !== p ? 1 : 0;
  const r = size === 32 ? t >>> 0 : t & 0xffff;
  cpu.setReg(size, reg, r, 0);
  cpu.setRes(size, r, 0, ovf, ovf);
}

function bcd(cpu: Interpreter, b: number): void {
  const f = cpu.getFlags();
  let al = cpu.lo[0] & 0xff;
  let cf = f & FL_CF;
  let af = f & FL_AF;
  switch (b) {
    case 0x27: {
      const old = al;
      const oldCf = cf;
      cf = 0;
      if ((al & 0xf) > 9 || af) {
        al = (al + 6) & 0xff;
        cf = oldCf || old + 6 > 0xff ? 1 : 0;
        af = FL_AF;
      } else af = 0;
      if (old > 0x99 || oldCf) {
        al = (al + 0x60) & 0xff;
        cf = 1;
      }
      break;
    }
    case 0x2f: {
      const old = al;
      const oldCf = cf;
      cf = 0;
      if ((al & 0xf) > 9 || af) {
        cf = oldCf || old < 6 ? 1 : 0;
        al = (al - 6) & 0xff;
        af = FL_AF;
      } else af = 0;
      if (old > 0x99 || oldCf) {
        al = (al - 0x60) & 0xff;
        cf = 1;
      }
      break;
    }
    case 0x37:
    case 0x3f: {
      let ax = cpu.lo[0] & 0xffff;
      if ((al & 0xf) > 9 || af) {
        ax = b === 0x37 ? ax + 0x106 : ax - 6;
        if (b === 0x3f) ax = (ax & 0xff) | ((((ax >> 8) - 1) & 0xff) << 8);
        af = FL_AF;
        cf = 1;
      } else {
        af = 0;
        cf = 0;
      }
      ax &= 0xff0f;
      cpu.lo[0] = (cpu.lo[0] & ~0xffff) | (ax & 0xffff);
      cpu.patchFlags(FL_CF | FL_AF, cf | af);
      return;
    }
  }
  cpu.lo[0] = (cpu.lo[0] & ~0xff) | al;
  const nf =
    (f & ~(FL_CF | FL_AF | FL_ZF | FL_SF | 4 | FL_OF)) |
    cf |
    af |
    PARITY[al] |
    (al === 0 ? FL_ZF : 0) |
    (al & 0x80 ? FL_SF : 0);
  cpu.setFlags(nf);
}

function bound(cpu: Interpreter): void {
  cpu.modrm(0);
  if (cpu.mod === 3) ud();
  const size = cpu.osz;
  const sh = 32 - size;
  const idx = (cpu.getReg(size, cpu.reg) << sh) >> sh;
  cpu.eaAccess(size >> 2, false);
  const lo = (cpu.rd(size, cpu.ea) << sh) >> sh;
  const hi = (cpu.rd(size, cpu.addLin(cpu.ea, size >> 3)) << sh) >> sh;
  if (idx < lo || idx > hi) throw new CpuFault(Vec.BR, undefined);
}

function arpl(cpu: Interpreter): void {
  if (!cpu.pm || (cpu.eflags & FL_VM) !== 0) ud();
  cpu.modrm(0);
  const d = cpu.readRMW(16);
  const s = cpu.getReg(16, cpu.reg);
  if ((d & 3) < (s & 3)) {
    cpu.writeRM(16, (d & ~3) | (s & 3), 0);
    cpu.patchFlags(FL_ZF, FL_ZF);
  } else cpu.patchFlags(FL_ZF, 0);
}

/** LES/LDS/LSS/LFS/LGS: m16:16/32/64 at cpu.ea */
export function farPointerLoad(cpu: Interpreter, seg: number): void {
  const size = cpu.osz;
  cpu.eaAccess((size >> 3) + 2, false);
  const off = cpu.rd(size, cpu.ea);
  const offHi = cpu.vh;
  const sel = cpu.rd16(cpu.addLin(cpu.ea, size >> 3));
  loadSeg(cpu, seg, sel);
  cpu.setReg(size, cpu.reg, off, offHi);
  if (seg === 2) shadow(cpu, 2);
}

/**
 * PUSHA/PUSHAD: every slot is checked (SS limit, then paging) before the first write, so a fault
 * leaves memory and ESP as they were (SDM: #SS(0) if the starting or ending stack address is
 * outside the stack segment limit). Slots are checked one by one: a 16-bit stack may wrap.
 */
function pusha(cpu: Interpreter): void {
  const size = cpu.osz;
  const n = size >> 3;
  const sp0 = cpu.sp();
  for (let i = 1; i <= 8; i++) cpu.stackCheck(cpu.spAdd(sp0, -i * n), n, true);
  for (let i = 1; i <= 8; i++) cpu.probeWrite(cpu.stackLin(cpu.spAdd(sp0, -i * n)), n);
  // the ESP slot holds the register as it was (all of ESP for PUSHAD, even on a 16-bit stack)
  const esp = cpu.getReg(size, 4);
  for (let i = 0; i < 8; i++) {
    const v = i === 4 ? esp : cpu.getReg(size, i);
    cpu.wr(size, cpu.stackLin(cpu.spAdd(sp0, -(i + 1) * n)), v, 0);
  }
  cpu.setSp(cpu.spAdd(sp0, -8 * n));
}

/**
 * ENTER imm16, imm8. The enclosing frame pointers are read first; then every slot to push and the
 * final stack pointer are checked (SS limit, then paging, as a write of the operand size at the
 * final RSP: the SDM's #SS(0) / #PF conditions) before anything is written; RBP and RSP change last.
 */
function enter(cpu: Interpreter): void {
  const alloc = cpu.fetch16();
  const level = cpu.fetch8() & 31;
  const size = stackOsz(cpu);
  const n = size >> 3;
  const bpSize = cpu.stackSize;
  const sp0 = cpu.sp();
  const frame = cpu.spAdd(sp0, -n);
  const frameHi = Math.floor(frame / TWO32) | 0;
  // values to push in order: RBP, level-1 frame pointers copied from the enclosing frame, the new frame
  const lo = [cpu.getReg(size, 5)];
  const hi = [cpu.vh];
  if (level > 0) {
    let bpOff =
      bpSize === 64
        ? cpu.hi[5] * TWO32 + (cpu.lo[5] >>> 0)
        : bpSize === 32
          ? cpu.lo[5] >>> 0
          : cpu.lo[5] & 0xffff;
    for (let i = 1; i < level; i++) {
      bpOff = cpu.spAdd(bpOff, -n);
      cpu.stackCheck(bpOff, n, false);
      lo.push(cpu.rd(size, cpu.stackLin(bpOff)));
      hi.push(cpu.vh);
    }
    lo.push(frame >>> 0);
    hi.push(frameHi);
  }
  const count = lo.length;
  const final = cpu.spAdd(sp0, -count * n - alloc);
  for (let k = 1; k <= count; k++) cpu.stackCheck(cpu.spAdd(sp0, -k * n), n, true);
  cpu.stackCheck(final, n, true);
  for (let k = 1; k <= count; k++) cpu.probeWrite(cpu.stackLin(cpu.spAdd(sp0, -k * n)), n);
  cpu.probeWrite(cpu.stackLin(final), n);
  for (let k = 0; k < count; k++) cpu.wr(size, cpu.stackLin(cpu.spAdd(sp0, -(k + 1) * n)), lo[k], hi[k]);
  cpu.setSp(final);
  if (bpSize === 16) cpu.lo[5] = (cpu.lo[5] & ~0xffff) | (frame & 0xffff);
  else cpu.setReg(bpSize === 64 ? 64 : 32, 5, frame >>> 0, frameHi);
}

function group5(cpu: Interpreter): void {
  cpu.modrm(0);
  const op = cpu.reg & 7;
  switch (op) {
    case 0:
    case 1: {
      const size = cpu.osz;
      const a = cpu.readRMW(size);
      const ah = cpu.vh;
      const r = op === 0 ? cpu.inc(size, a, ah) : cpu.dec(size, a, ah);
      cpu.writeRM(size, r, cpu.vh);
      return;
    }
    case 2:
    case 4: {
      const size = cpu.mode64 ? (cpu.opsizePrefix ? 16 : 64) : cpu.osz;
      const v = cpu.readRM(size);
      const target = size === 64 ? cpu.vh * TWO32 + v : v;
      checkTarget(cpu, target);
      if (op === 2) {
        const ret = cpu.ip;
        cpu.push(size, ret >>> 0, Math.floor(ret / TWO32) | 0);
      }
      cpu.ip = target;
      return;
    }
    case 3:
    case 5: {
      if (cpu.mod === 3) ud();
      const size = cpu.osz;
      cpu.eaAccess((size >> 3) + 2, false);
      const off = cpu.rd(size, cpu.ea);
      const offHi = cpu.vh;
      const sel = cpu.rd16(cpu.addLin(cpu.ea, size >> 3));
      farTransfer(cpu, sel, size === 64 ? offHi * TWO32 + off : off, op === 3, size);
      return;
    }
    case 6: {
      const size = stackOsz(cpu);
      const v = cpu.readRM(size);
      cpu.push(size, v, cpu.vh);
      return;
    }
    default:
      ud();
  }
}

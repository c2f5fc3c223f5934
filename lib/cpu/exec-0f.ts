// The two-byte opcode map (0F xx): system instructions, CMOV/SETcc/Jcc near, bit operations,
// MOVZX/MOVSX, CMPXCHG/XADD, CPUID/RDTSC/RDMSR/WRMSR; SSE is forwarded to sse.ts.

import { serializeCode } from "./code-coherence.js";
import {
  type ControlState,
  CR4_FSGSBASE,
  CR4_OFFERED,
  CR4_OSXSAVE,
  CR4_PCIDE,
  CR4_UMIP,
  CR4_VMXE,
  canonicalNumber,
  cr0Fault,
  cr0Stored,
  cr3Fault,
  cr3Stored,
  cr4Fault,
  xsetbvFault,
} from "./control-checks.js";
import { cpuidModel } from "./cpuid.js";
import { DebugException, DR6_BD, DR7_GD, syncDebug } from "./debug.js";
import { farPointerLoad, imulTrunc, jcc, nearRel, popSeg, pushSeg, ud } from "./exec.js";
import { big, doubleShift, popcount32 } from "./exec-arith.js";
import { CpuFault, EXIT_SIGNAL, Vec } from "./faults.js";
import { FL_AC, FL_CF, FL_VM, FL_ZF } from "./flags.js";
import { Access } from "./hooks.js";
import type { Interpreter } from "./interpreter.js";
import { EFER_LMA, EFER_LME, toBig, toNum } from "./interpreter.js";
import { smapAcCleared } from "./mmu.js";
import { readMsr, tscHalves, writeMsr } from "./msr.js";
import { rdpkru, wrpkru } from "./pku.js";
import { lockedCmpxchg8b16b, mfence, plainCmpxchg8b16b } from "./smp-atomic.js";
import { sse } from "./sse.js";
import {
  descAr,
  descLimit,
  loadLdt,
  loadTr,
  probeDescriptor,
  syscall,
  sysenter,
  sysexit,
  sysret,
  updateMode,
} from "./system.js";
import { fxrstor, fxsave } from "./x87.js";

const TWO32 = 4294967296;

function gp0(): never {
  throw new CpuFault(Vec.GP, 0);
}
function needCpl0(cpu: Interpreter): void {
  if (cpu.pm && cpu.cpl !== 0) gp0();
}
/**
 * SGDT, SIDT, SLDT, SMSW and STR outside CPL 0 with CR4.UMIP set: #GP(0), a privilege fault that
 * comes before a descriptor-table VM exit (SDM Vol. 3C 26.1.1)
 */
function umipCheck(cpu: Interpreter): void {
  if ((cpu.cr4 & CR4_UMIP) !== 0 && cpu.cpl > 0) gp0();
}
/** STAC and CLAC exist when CPUID offers SMAP (CPUID.7.0:EBX[20]) */
const SMAP_OFFERED = (cpuidModel(7, 0, 0)[1] & (1 << 20)) !== 0;

export function exec0f(cpu: Interpreter, op: number): void {
  // the condition-code rows by their high nibble: Jcc rel16/32 (8x), CMOVcc (4x), SETcc (9x)
  const row = op >> 4;
  if (row === 8) {
    jcc(cpu, op & 15, nearRel(cpu));
    return;
  }
  if (row === 4) {
    cpu.modrm(0);
    const size = cpu.osz;
    const v = cpu.readRM(size);
    const vh = cpu.vh;
    if (cpu.cond(op & 15)) cpu.setReg(size, cpu.reg, v, vh);
    else if (size === 32) cpu.hi[cpu.reg] = 0;
    return;
  }
  if (row === 9) {
    cpu.modrm(0);
    cpu.writeRM(8, cpu.cond(op & 15) ? 1 : 0, 0);
    return;
  }
  switch (op) {
    case 0x00:
      group6(cpu);
      return;
    case 0x01:
      group7(cpu);
      return;
    case 0x02:
    case 0x03: {
      if (!cpu.pm) ud();
      cpu.modrm(0);
      const sel = cpu.readRM(16);
      const d = probeDescriptor(cpu, sel, op === 2 ? "lar" : "lsl");
      if (d === null) {
        cpu.patchFlags(FL_ZF, 0);
        return;
      }
      const v = op === 2 ? (d.hi & 0x00f0ff00) >>> 0 : descLimit(d);
      cpu.setReg(cpu.osz === 16 ? 16 : cpu.osz, cpu.reg, cpu.osz === 16 ? v & 0xffff : v, 0);
      cpu.patchFlags(FL_ZF, FL_ZF);
      return;
    }
    case 0x05:
      if (!cpu.mode64 && (cpu.efer & EFER_LMA) === 0) ud();
      syscall(cpu);
      return;
    case 0x06:
      needCpl0(cpu);
      if (cpu.requireHooks().crAccess({ type: "clts" }, cpu.ctx())) throw EXIT_SIGNAL;
      cpu.cr0 &= ~8;
      return;
    case 0x07:
      if (!cpu.mode64 && (cpu.efer & EFER_LMA) === 0) ud();
      sysret(cpu, (cpu.rex & 8) !== 0);
      return;
    case 0x08:
    case 0x09:
      needCpl0(cpu);
      if (cpu.requireHooks().other(op === 8 ? "invd" : "wbinvd", cpu.ctx())) throw EXIT_SIGNAL;
      if (cpu.smp !== null) serializeCode(cpu);
      return;
    case 0x0b:
      throw new CpuFault(Vec.UD, undefined);
    case 0x0d:
    case 0x18:
    case 0x19:
    case 0x1a:
    case 0x1b:
    case 0x1c:
    case 0x1d:
    case 0x1e:
    case 0x1f:
      // prefetch and hint NOPs (ENDBR is F3 0F 1E)
      cpu.modrm(0);
      return;
    case 0x20:
    case 0x22:
      movCr(cpu, op === 0x22);
      return;
    case 0x21:
    case 0x23:
      movDr(cpu, op === 0x23);
      return;
    case 0x30: {
      needCpl0(cpu);
      const idx = cpu.lo[1] >>> 0;
      const value = (BigInt(cpu.lo[2] >>> 0) << 32n) | BigInt(cpu.lo[0] >>> 0);
      // deferred exits: execute() throws them (see Interpreter.exitDeferred)
      if (cpu.requireHooks().wrmsr(idx, value, cpu.ctx())) {
        cpu.exitDeferred = true;
        return;
      }
      if (!writeMsr(cpu, idx, value)) gp0();
      if (cpu.smp !== null) serializeCode(cpu);
      return;
    }
    case 0x31:
      rdtsc(cpu, false);
      return;
    case 0x32: {
      needCpl0(cpu);
      const idx = cpu.lo[1] >>> 0;
      if (cpu.requireHooks().rdmsr(idx, cpu.ctx())) {
        cpu.exitDeferred = true;
        return;
      }
      const v = readMsr(cpu, idx);
      if (v === undefined) gp0();
      cpu.setReg(32, 0, Number(v & 0xffffffffn), 0);
      cpu.setReg(32, 2, Number(v >> 32n), 0);
      return;
    }
    case 0x33:
      if (cpu.requireHooks().rdpmc(cpu.ctx())) throw EXIT_SIGNAL;
      gp0();
      return;
    case 0x34:
      sysenter(cpu);
      return;
    case 0x35:
      sysexit(cpu, (cpu.rex & 8) !== 0);
      return;
    case 0x78:
    case 0x79:
      // the operand is decoded first so that an exit reports the whole instruction's length
      cpu.modrm(0);
      vmx(cpu, op === 0x78 ? "vmread" : "vmwrite");
      return;
    case 0x38: {
      // of the three-byte map only INVEPT/INVVPID (66 0F 38 80/81), for VMX exits, and INVPCID
      // (66 0F 38 82) are here
      const op3 = cpu.fetch8();
      if (cpu.opsizePrefix && (op3 === 0x80 || op3 === 0x81)) {
        cpu.modrm(0);
        vmx(cpu, op3 === 0x80 ? "invept" : "invvpid");
        return;
      }
      if (cpu.opsizePrefix && cpu.rep === 0 && op3 === 0x82) {
        invpcid(cpu);
        return;
      }
      cpu.unimplemented(0x200 | op3);
      return;
    }
    case 0xa0:
    case 0xa8:
      pushSeg(cpu, op === 0xa0 ? 4 : 5);
      return;
    case 0xa1:
    case 0xa9:
      popSeg(cpu, op === 0xa1 ? 4 : 5);
      return;
    case 0xa2:
      cpuid(cpu);
      return;
    case 0xa3:
    case 0xab:
    case 0xb3:
    case 0xbb:
      bitOp(cpu, (op >> 3) & 3, false);
      return;
    case 0xba:
      bitOp(cpu, -1, true);
      return;
    case 0xa4:
    case 0xa5:
    case 0xac:
    case 0xad: {
      const size = cpu.osz;
      cpu.modrm((op & 1) === 0 ? 1 : 0);
      const d = cpu.readRMW(size);
      const dh = cpu.vh;
      const s = cpu.getReg(size, cpu.reg);
      const sh = cpu.vh;
      const count = (op & 1) === 0 ? cpu.fetch8() : cpu.lo[1] & 0xff;
      const r = doubleShift(cpu, op < 0xa8, size, d, dh, s, sh, count);
      if (r !== undefined) cpu.writeRM(size, r, cpu.vh);
      else if (size === 32 && cpu.mod === 3) cpu.hi[cpu.rm] = 0;
      return;
    }
    case 0xae:
      group15(cpu);
      return;
    case 0xaf: {
      cpu.modrm(0);
      const size = cpu.osz;
      const v = cpu.readRM(size);
      const vh = cpu.vh;
      const a = cpu.getReg(size, cpu.reg);
      imulTrunc(cpu, size, cpu.reg, a, cpu.vh, v, vh);
      return;
    }
    case 0xb0:
    case 0xb1: {
      const size = op === 0xb0 ? 8 : cpu.osz;
      cpu.modrm(0);
      const d = cpu.readRMW(size);
      const dh = cpu.vh;
      const acc = cpu.getReg(size, 0);
      const ach = cpu.vh;
      cpu.alu(7, size, acc, ach, d, dh);
      if (cpu.cond(4)) {
        const s = cpu.getReg(size, cpu.reg);
        cpu.writeRM(size, s, cpu.vh);
      } else {
        if (cpu.mod !== 3) cpu.writeRM(size, d, dh);
        cpu.setReg(size, 0, d, dh);
      }
      return;
    }
    case 0xb2:
    case 0xb4:
    case 0xb5:
      cpu.modrm(0);
      if (cpu.mod === 3) ud();
      farPointerLoad(cpu, op === 0xb2 ? 2 : op - 0xb0);
      return;
    case 0xb6:
    case 0xb7:
    case 0xbe:
    case 0xbf: {
      cpu.modrm(0);
      const from = (op & 1) === 0 ? 8 : 16;
      let v = cpu.readRM(from);
      if (op >= 0xbe) {
        v = from === 8 ? (v << 24) >> 24 : (v << 16) >> 16;
        const size = cpu.osz;
        cpu.setReg(size, cpu.reg, size === 16 ? v & 0xffff : v >>> 0, v >> 31);
      } else cpu.setReg(cpu.osz, cpu.reg, v, 0);
      return;
    }
    case 0xb8: {
      if (cpu.rep !== 0xf3) cpu.unimplemented(0x1b8);
      cpu.modrm(0);
      const size = cpu.osz;
      const v = cpu.readRM(size);
      const c = popcount32(size === 64 ? v : v) + (size === 64 ? popcount32(cpu.vh) : 0);
      cpu.setReg(size, cpu.reg, c, 0);
      cpu.patchFlags(0x8d5, c === 0 ? FL_ZF : 0);
      return;
    }
    case 0xbc:
    case 0xbd:
      bitScan(cpu, op === 0xbd);
      return;
    case 0xc0:
    case 0xc1: {
      const size = op === 0xc0 ? 8 : cpu.osz;
      cpu.modrm(0);
      const d = cpu.readRMW(size);
      const dh = cpu.vh;
      const s = cpu.getReg(size, cpu.reg);
      const r = cpu.alu(0, size, d, dh, s, cpu.vh);
      const rh = cpu.vh;
      // memory is written before the register (an exit on the write leaves the register as it
      // was); with two registers the destination is written last (XADD r, r with the same one)
      if (cpu.mod !== 3) cpu.writeRM(size, r, rh);
      cpu.setReg(size, cpu.reg, d, dh);
      if (cpu.mod === 3) cpu.writeRM(size, r, rh);
      return;
    }
    case 0xc7:
      group9(cpu);
      return;
    case 0xc8:
    case 0xc9:
    case 0xca:
    case 0xcb:
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf: {
      const r = (op & 7) | ((cpu.rex & 1) << 3);
      const sw = (v: number) => ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
      if (cpu.osz === 64) {
        const l = cpu.lo[r];
        cpu.lo[r] = sw(cpu.hi[r]);
        cpu.hi[r] = sw(l);
      } else if (cpu.osz === 32) {
        cpu.lo[r] = sw(cpu.lo[r]);
        cpu.hi[r] = 0;
      } else cpu.lo[r] &= ~0xffff; // BSWAP r16 is undefined; real CPUs give 0
      return;
    }
    default:
      sse(cpu, op);
  }
}

function vmx(
  cpu: Interpreter,
  insn: Parameters<NonNullable<Interpreter["hooks"]>["vmxInstruction"]>[0],
): void {
  if (cpu.requireHooks().vmxInstruction(insn, cpu.ctx())) throw EXIT_SIGNAL;
  ud();
}

/** RDTSC, and RDTSCP (which also returns TSC_AUX in ECX); an exit leaves cpu.exitDeferred set */
export function rdtsc(cpu: Interpreter, aux: boolean): void {
  const hooks = cpu.requireHooks();
  // VMX non-root with "enable RDTSCP" 0: #UD, before any other exception (SDM Vol. 3C 26.3)
  if (aux && hooks.rdtscpEnabled?.() === false) ud();
  if (cpu.pm && (cpu.cr4 & 4) !== 0 && cpu.cpl !== 0) gp0();
  if (hooks.rdtsc(aux, cpu.ctx())) {
    cpu.exitDeferred = true;
    return;
  }
  const lo = tscHalves(cpu);
  const hi = cpu.vh;
  cpu.setReg(32, 0, lo, 0);
  cpu.setReg(32, 2, hi, 0);
  if (aux) cpu.setReg(32, 1, cpu.tscAux >>> 0, 0);
}

/** SWAPGS: #UD outside 64-bit mode, #GP(0) outside CPL 0 */
export function swapgs(cpu: Interpreter): void {
  if (!cpu.mode64) ud();
  needCpl0(cpu);
  const t = cpu.segBase[5];
  cpu.segBase[5] = cpu.kernelGsBase;
  cpu.kernelGsBase = t;
  updateMode(cpu);
}

function cpuid(cpu: Interpreter): void {
  const leaf = cpu.lo[0] >>> 0;
  const sub = cpu.lo[1] >>> 0;
  if (cpu.requireHooks().cpuid(leaf, sub, cpu.ctx())) {
    cpu.exitDeferred = true;
    return;
  }
  // serializing (SDM 9.1.3): code other vCPUs wrote is seen from the next instruction on
  if (cpu.smp !== null) serializeCode(cpu);
  const r = cpuidModel(leaf, sub, 0, cpu.cr4);
  for (let i = 0; i < 4; i++) cpu.setReg(32, [0, 3, 1, 2][i], r[i] >>> 0, 0);
}

function bitOp(cpu: Interpreter, kind: number, imm: boolean): void {
  const size = cpu.osz;
  cpu.modrm(imm ? 1 : 0);
  let off: number;
  if (imm) {
    kind = (cpu.reg & 7) - 4;
    if (kind < 0) ud();
    off = cpu.fetch8() & (size - 1);
  } else {
    const raw = cpu.getReg(size, cpu.reg);
    off = size === 16 ? (raw << 16) >> 16 : raw | 0;
    if (cpu.mod === 3) off &= size - 1;
  }
  let v: number;
  let vh = 0;
  let bit: number;
  if (cpu.mod !== 3 && !imm) {
    // register bit offset addresses memory beyond the operand
    cpu.eaDisplace(Math.floor(off / size) * (size >> 3));
    off = ((off % size) + size) % size;
  }
  if (kind === 0) v = cpu.readRM(size);
  else v = cpu.readRMW(size);
  if (size === 64) vh = cpu.vh;
  if (off >= 32) bit = (vh >>> (off - 32)) & 1;
  else bit = (v >>> off) & 1;
  cpu.patchFlags(FL_CF, bit);
  if (kind === 0) return;
  const set = kind === 1 ? 1 : kind === 2 ? 0 : bit ^ 1;
  if (off >= 32) vh = set ? vh | (1 << (off - 32)) : vh & ~(1 << (off - 32));
  else v = (set ? v | (1 << off) : v & ~(1 << off)) >>> 0;
  cpu.writeRM(size, v, vh);
}

function bitScan(cpu: Interpreter, reverse: boolean): void {
  cpu.modrm(0);
  const size = cpu.osz;
  const v = cpu.readRM(size);
  bitScanTo(cpu, size, cpu.reg, v, size === 64 ? cpu.vh : 0, reverse, cpu.rep === 0xf3);
}

/**
 * BSF/BSR (TZCNT/LZCNT with `counts`) of v (vh: bits 32-63) of `size` bits into register `reg`:
 * a zero source leaves BSF/BSR's destination as it is (the high half of a 32-bit one too)
 */
export function bitScanTo(
  cpu: Interpreter,
  size: number,
  reg: number,
  v: number,
  vh: number,
  reverse: boolean,
  counts: boolean,
): void {
  const zero = v === 0 && vh === 0;
  let idx: number;
  if (!reverse) {
    if (v !== 0) idx = 31 - Math.clz32(v & -v);
    else if (vh !== 0) idx = 32 + 31 - Math.clz32(vh & -vh);
    else idx = size;
  } else if (vh !== 0) idx = 63 - Math.clz32(vh);
  else if (v !== 0) idx = 31 - Math.clz32(v);
  else idx = -1;
  if (counts) {
    // TZCNT / LZCNT: CF = source zero, ZF = result zero
    const r = reverse ? (zero ? size : size - 1 - idx) : idx;
    cpu.setReg(size, reg, r, 0);
    cpu.patchFlags(FL_CF | FL_ZF, (zero ? FL_CF : 0) | (r === 0 ? FL_ZF : 0));
    return;
  }
  if (zero) {
    cpu.patchFlags(FL_ZF, FL_ZF);
    return;
  }
  cpu.setReg(size, reg, idx, 0);
  cpu.patchFlags(FL_ZF, 0);
}

function group6(cpu: Interpreter): void {
  cpu.modrm(0);
  const op = cpu.reg & 7;
  // none of 0F 00 is recognized in real or virtual-8086 mode
  if (!cpu.pm || (cpu.eflags & FL_VM) !== 0) ud();
  const hooks = cpu.requireHooks();
  switch (op) {
    case 0:
    case 1: {
      umipCheck(cpu);
      if (hooks.descriptorTable(op === 0 ? "sldt" : "str", cpu.ctx())) throw EXIT_SIGNAL;
      const v = cpu.segSel[op === 0 ? 6 : 7];
      if (cpu.mod === 3) cpu.setReg(cpu.osz, cpu.rm, v, 0);
      else {
        cpu.eaAccess(2, true);
        cpu.wr16(cpu.ea, v);
      }
      return;
    }
    case 2:
    case 3: {
      needCpl0(cpu);
      const sel = cpu.readRM(16);
      if (hooks.descriptorTable(op === 2 ? "lldt" : "ltr", cpu.ctx())) throw EXIT_SIGNAL;
      if (cpu.smp !== null) serializeCode(cpu);
      if (op === 2) loadLdt(cpu, sel);
      else loadTr(cpu, sel);
      return;
    }
    case 4:
    case 5: {
      const sel = cpu.readRM(16);
      const d = probeDescriptor(cpu, sel, op === 4 ? "verr" : "verw");
      cpu.patchFlags(FL_ZF, d !== null ? FL_ZF : 0);
      void descAr;
      return;
    }
    default:
      ud();
  }
}

function group7(cpu: Interpreter): void {
  cpu.modrm(0);
  const op = cpu.reg & 7;
  const hooks = cpu.requireHooks();
  if (cpu.mod === 3) {
    const rm = cpu.rm & 7;
    const code = (op << 3) | rm;
    switch (code) {
      case 0o01:
        vmx(cpu, "vmcall");
        return;
      case 0o02:
        vmx(cpu, "vmlaunch");
        return;
      case 0o03:
        vmx(cpu, "vmresume");
        return;
      case 0o04:
        vmx(cpu, "vmxoff");
        return;
      case 0o10:
      case 0o11:
        needCpl0(cpu);
        if (hooks.other(rm === 0 ? "monitor" : "mwait", cpu.ctx())) throw EXIT_SIGNAL;
        return;
      case 0o12:
      case 0o13:
        // CLAC / STAC: #UD without SMAP, in virtual-8086 mode and outside CPL 0
        if (!SMAP_OFFERED || (cpu.pm && ((cpu.eflags & FL_VM) !== 0 || cpu.cpl !== 0))) ud();
        if (rm === 3) cpu.eflags |= FL_AC;
        else {
          cpu.eflags &= ~FL_AC;
          smapAcCleared(cpu);
        }
        return;
      case 0o20: {
        // XGETBV: #UD unless the OS enabled XSAVE (CR4.OSXSAVE); XCR0 is the only XCR offered
        if ((cpu.cr4 & CR4_OSXSAVE) === 0) ud();
        if (cpu.lo[1] !== 0) gp0();
        cpu.setReg(32, 0, Number(cpu.xcr0 & 0xffffffffn), 0);
        cpu.setReg(32, 2, 0, 0);
        return;
      }
      case 0o21:
        // XSETBV: #UD and the CPL check come before the VM exit (SDM Vol. 3C 26.1.1), the value
        // checks after it (the hypervisor emulates them)
        if ((cpu.cr4 & CR4_OSXSAVE) === 0) ud();
        needCpl0(cpu);
        if (hooks.other("xsetbv", cpu.ctx())) throw EXIT_SIGNAL;
        if (xsetbvFault(cpu.lo[1], cpu.lo[0], cpu.lo[2]) !== undefined) gp0();
        cpu.xcr0 = BigInt(cpu.lo[0] & 3);
        return;
      case 0o24:
        vmx(cpu, "vmfunc");
        return;
      case 0o56:
        rdpkru(cpu);
        return;
      case 0o57:
        wrpkru(cpu);
        return;
      case 0o70:
        swapgs(cpu);
        return;
      case 0o71:
        rdtsc(cpu, true);
        return;
      default:
        if (op === 4) {
          umipCheck(cpu);
          cpu.setReg(cpu.osz, cpu.rm, cpu.cr0 & (cpu.osz === 16 ? 0xffff : 0xffffffff), 0);
          return;
        }
        if (op === 6) {
          lmsw(cpu, cpu.getReg(16, cpu.rm), false);
          return;
        }
        cpu.unimplemented(0x101);
    }
  }
  switch (op) {
    case 0:
    case 1: {
      umipCheck(cpu);
      if (hooks.descriptorTable(op === 0 ? "sgdt" : "sidt", cpu.ctx())) throw EXIT_SIGNAL;
      const limit = op === 0 ? cpu.gdtLimit : cpu.idtLimit;
      const base = op === 0 ? cpu.gdtBase : cpu.idtBase;
      cpu.eaAccess(cpu.mode64 ? 10 : 6, true);
      cpu.probeWrite(cpu.ea, cpu.mode64 ? 10 : 6);
      cpu.wr16(cpu.ea, limit);
      if (cpu.mode64) cpu.wr64(cpu.addLin(cpu.ea, 2), base >>> 0, Math.floor(base / TWO32) | 0);
      else cpu.wr32(cpu.addLin(cpu.ea, 2), base >>> 0);
      return;
    }
    case 2:
    case 3: {
      needCpl0(cpu);
      cpu.eaAccess(cpu.mode64 ? 10 : 6, false);
      const limit = cpu.rd16(cpu.ea);
      let base: number;
      if (cpu.mode64) {
        const l = cpu.rd64(cpu.addLin(cpu.ea, 2));
        base = cpu.vh * TWO32 + l;
      } else {
        base = cpu.rd32(cpu.addLin(cpu.ea, 2));
        if (cpu.osz === 16) base &= 0xffffff;
      }
      if (hooks.descriptorTable(op === 2 ? "lgdt" : "lidt", cpu.ctx())) throw EXIT_SIGNAL;
      if (cpu.smp !== null) serializeCode(cpu);
      // a 64-bit base must be canonical (SDM Vol. 2A LGDT/LIDT: #GP(0) in 64-bit mode)
      if (cpu.mode64 && !canonicalNumber(base)) gp0();
      if (op === 2) {
        cpu.gdtBase = base;
        cpu.gdtLimit = limit;
      } else {
        cpu.idtBase = base;
        cpu.idtLimit = limit;
      }
      return;
    }
    case 4:
      umipCheck(cpu);
      cpu.eaAccess(2, true);
      cpu.wr16(cpu.ea, cpu.cr0 & 0xffff);
      return;
    case 6:
      needCpl0(cpu);
      cpu.eaAccess(2, false);
      lmsw(cpu, cpu.rd16(cpu.ea), true);
      return;
    case 7: {
      needCpl0(cpu);
      if (hooks.invlpg(cpu.ea, cpu.ctx())) throw EXIT_SIGNAL;
      cpu.flushPage(cpu.ea);
      return;
    }
    default:
      ud();
  }
}

/** INVPCID exists when CPUID offers it (CPUID.7.0:EBX[10]) */
const INVPCID_OFFERED = (cpuidModel(7, 0, 0)[1] & (1 << 10)) !== 0;

/**
 * INVPCID r32/r64, m128 (SDM Vol. 2A): invalidates by the type in the register: 0 one address of
 * one PCID, 1 one PCID, 2 everything, 3 everything but global translations. The TLB holds only the
 * current address space's (and global) translations, untagged, so each type maps onto a flush at
 * least as wide as the one asked for (the SDM lets INVPCID invalidate more than it names).
 */
function invpcid(cpu: Interpreter): void {
  const hooks = cpu.requireHooks();
  // VMX non-root with "enable INVPCID" 0: #UD before any other check (SDM Vol. 3C 25.3)
  if (!INVPCID_OFFERED || hooks.invpcidEnabled?.() === false) ud();
  cpu.modrm(0);
  if (cpu.mod === 3 || (cpu.eflags & FL_VM) !== 0) ud();
  needCpl0(cpu);
  // with INVLPG exiting: a VM exit, after the privilege check, before the operands are looked at
  if (hooks.invpcid?.(cpu.ctx()) === true) throw EXIT_SIGNAL;
  const typeHi = cpu.mode64 ? cpu.hi[cpu.reg] : 0;
  const type = cpu.lo[cpu.reg] >>> 0;
  if (typeHi !== 0 || type > 3) gp0();
  cpu.eaAccess(16, false);
  const pcid = cpu.rd32(cpu.ea);
  const descHi = cpu.rd32(cpu.addLin(cpu.ea, 4));
  const addrLo = cpu.rd32(cpu.addLin(cpu.ea, 8));
  const addrHi = cpu.rd32(cpu.addLin(cpu.ea, 12)) | 0;
  // bits 63:12 of the descriptor are reserved; without PCIDs only PCID 0 may be named
  if (descHi !== 0 || pcid >>> 12 !== 0) gp0();
  if (type <= 1 && (cpu.cr4 & CR4_PCIDE) === 0 && pcid !== 0) gp0();
  switch (type) {
    case 0: {
      const top = addrHi >> 15;
      if (top !== 0 && top !== -1) gp0();
      cpu.flushPage(addrHi * TWO32 + (addrLo >>> 0));
      return;
    }
    case 2:
      cpu.flushTlb();
      return;
    default:
      cpu.flushNonGlobal();
  }
}

function lmsw(cpu: Interpreter, v: number, mem: boolean): void {
  needCpl0(cpu);
  const access = mem
    ? { type: "lmsw" as const, source: v, memoryOperand: true, linear: cpu.ea }
    : { type: "lmsw" as const, source: v, memoryOperand: false };
  if (cpu.requireHooks().crAccess(access, cpu.ctx())) throw EXIT_SIGNAL;
  // LMSW sets PE but cannot clear it; it changes MP, EM, TS
  cpu.cr0 = (cpu.cr0 & ~0xe) | (v & 0xf) | (cpu.cr0 & 1);
  updateMode(cpu);
}

function movCr(cpu: Interpreter, toCr: boolean): void {
  cpu.modrmReg();
  const cr = cpu.reg;
  const gpr = cpu.rm;
  needCpl0(cpu);
  if (cr !== 0 && cr !== 2 && cr !== 3 && cr !== 4 && cr !== 8) ud();
  const size = cpu.mode64 ? 64 : 32;
  const hooks = cpu.requireHooks();
  // MOV to CR serializes (SDM 9.3); CR8 does not
  if (toCr && cr !== 8 && cpu.smp !== null) serializeCode(cpu);
  if (!toCr) {
    if (hooks.crAccess({ type: "mov-from", cr, gpr }, cpu.ctx())) throw EXIT_SIGNAL;
    let v: number;
    switch (cr) {
      case 0:
        v = cpu.cr0 >>> 0;
        break;
      case 2:
        v = cpu.cr2;
        break;
      case 3:
        v = cpu.cr3;
        break;
      case 4:
        v = cpu.cr4 >>> 0;
        break;
      default:
        v = cpu.cr8;
    }
    cpu.setReg(size, gpr, v >>> 0, Math.floor(v / TWO32) | 0);
    return;
  }
  const lo = cpu.lo[gpr] >>> 0;
  const hi = size === 64 ? cpu.hi[gpr] : 0;
  if (hooks.crAccess({ type: "mov-to", cr, gpr, value: big(lo, hi) }, cpu.ctx())) throw EXIT_SIGNAL;
  switch (cr) {
    case 0: {
      if (cr0Fault(controlState(cpu), lo, hi) !== undefined) gp0();
      const v = cr0Stored(lo);
      const pgOn = (v & 0x80000000) !== 0 && (cpu.cr0 & 0x80000000) === 0;
      const pgOff = (v & 0x80000000) === 0 && (cpu.cr0 & 0x80000000) !== 0;
      if (pgOn && (cpu.efer & EFER_LME) !== 0) cpu.efer |= EFER_LMA;
      if (pgOff) cpu.efer &= ~EFER_LMA;
      cpu.cr0 = v;
      updateMode(cpu);
      cpu.flushTlb();
      return;
    }
    case 2:
      cpu.cr2 = toNum(big(lo, hi));
      return;
    case 3: {
      const lma = (cpu.efer & EFER_LMA) !== 0;
      if (cr3Fault(lma, hi, (cpu.cr4 & CR4_PCIDE) !== 0) !== undefined) gp0();
      cpu.cr3 = cr3Stored(lma, lo, hi);
      // the TLB holds no PCID tags, only the current address space's translations (and global
      // ones): bit 63 (keep the new PCID's entries) cannot be honoured, so every load drops them,
      // which the SDM allows (a TLB may always hold fewer entries, Vol. 3A 4.10.4.1)
      cpu.flushNonGlobal();
      return;
    }
    case 4: {
      // the bits CPUID offers, and VMXE (MOV to CR4 that sets it exits in VMX non-root operation)
      if (cr4Fault(controlState(cpu), lo, hi, CR4_OFFERED | CR4_VMXE) !== undefined) gp0();
      cpu.cr4 = lo;
      updateMode(cpu);
      cpu.flushTlb();
      // CR4.DE decides whether R/W = 10b breakpoints watch I/O
      syncDebug(cpu);
      return;
    }
    default:
      if (hi !== 0 || (lo & ~15) !== 0) gp0();
      cpu.cr8 = lo;
  }
}

/** what the CR0/CR4 rules of control-checks.ts look at */
function controlState(cpu: Interpreter): ControlState {
  const trType = cpu.segAr[7] & 0xf;
  return {
    cr0: cpu.cr0,
    cr3Low: cpu.cr3 % 4096,
    cr4: cpu.cr4,
    efer: cpu.efer,
    csL: (cpu.segAr[1] & 0x2000) !== 0,
    tr16: trType === 1 || trType === 3,
  };
}

function movDr(cpu: Interpreter, toDr: boolean): void {
  cpu.modrmReg();
  const dr = cpu.reg;
  needCpl0(cpu);
  if (dr > 7) ud();
  if ((dr === 4 || dr === 5) && (cpu.cr4 & 8) !== 0) ud();
  if (cpu.requireHooks().drAccess(dr, toDr, cpu.rm, cpu.ctx())) throw EXIT_SIGNAL;
  // general detect: the access faults with DR6.BD (after the MOV-DR exit, which comes first)
  if ((cpu.dr[7] & DR7_GD) !== 0) throw new DebugException(DR6_BD, true);
  const r = dr === 4 ? 6 : dr === 5 ? 7 : dr;
  // DR6/DR7 bits 63:32 are reserved: writing a 1 there is #GP(0) in 64-bit mode
  if (toDr && r >= 6 && cpu.mode64 && cpu.hi[cpu.rm] !== 0) gp0();
  if (toDr) {
    // MOV to DR serializes (SDM 9.3)
    if (cpu.smp !== null) serializeCode(cpu);
    // DR0-DR3 hold 64-bit linear addresses in 64-bit mode (signed, as the interpreter forms them)
    cpu.dr[r] = r < 4 && cpu.mode64 ? cpu.hi[cpu.rm] * TWO32 + (cpu.lo[cpu.rm] >>> 0) : cpu.lo[cpu.rm] >>> 0;
    if (r !== 6) syncDebug(cpu, r < 4);
  } else if (r < 4) {
    const v = cpu.dr[r];
    cpu.setReg(cpu.mode64 ? 64 : 32, cpu.rm, v >>> 0, Math.floor(v / TWO32) | 0);
  } else
    cpu.setReg(
      cpu.mode64 ? 64 : 32,
      cpu.rm,
      r === 6 ? (cpu.dr[6] | 0xffff0ff0) >>> 0 : (cpu.dr[7] | 0x400) >>> 0,
      0,
    );
}

function group9(cpu: Interpreter): void {
  cpu.modrm(0);
  const op = cpu.reg & 7;
  if (cpu.mod === 3) {
    if (op === 7 && cpu.rep === 0xf3) {
      rdpid(cpu);
      return;
    }
    if (op === 6 || op === 7) {
      // RDRAND / RDSEED
      if (cpu.requireHooks().other(op === 6 ? "rdrand" : "rdseed", cpu.ctx())) throw EXIT_SIGNAL;
      const size = cpu.osz;
      const v = (Math.random() * TWO32) >>> 0;
      cpu.setReg(size, cpu.rm, size === 16 ? v & 0xffff : v, (Math.random() * TWO32) | 0);
      cpu.patchFlags(0x8d5, FL_CF);
      return;
    }
    cpu.unimplemented(0x1c7);
  }
  if (op === 1) {
    // CMPXCHG16B requires a 16-byte aligned operand (checked before any page fault)
    if (cpu.osz === 64 && (cpu.ea & 15) !== 0) throw new CpuFault(Vec.GP, 0);
    cpu.eaAccess(cpu.osz === 64 ? 16 : 8, true);
    cpu.probeWrite(cpu.ea, cpu.osz === 64 ? 16 : 8);
    if (cpu.lockRmw) {
      lockedCmpxchg8b16b(cpu, cpu.osz === 64);
      return;
    }
    plainCmpxchg8b16b(cpu, cpu.osz === 64);
    return;
  }
  if (op === 6) {
    vmx(cpu, cpu.opsizePrefix ? "vmclear" : cpu.rep === 0xf3 ? "vmxon" : "vmptrld");
    return;
  }
  if (op === 7) {
    vmx(cpu, "vmptrst");
    return;
  }
  cpu.unimplemented(0x1c7);
}

/** RDPID exists when CPUID offers it (CPUID.7.0:ECX[22]) */
const RDPID_OFFERED = (cpuidModel(7, 0, 0)[2] & (1 << 22)) !== 0;

/**
 * RDPID r32/r64 (F3 0F C7 /7): IA32_TSC_AUX, zero-extended, into a 64-bit register in 64-bit mode
 * (REX.W or not) and a 32-bit one elsewhere; no CR4.TSD check and no VM exit. In VMX non-root
 * operation it is #UD while "enable RDTSCP" is 0, as RDTSCP is (SDM Vol. 3C 26.3).
 */
function rdpid(cpu: Interpreter): void {
  if (!RDPID_OFFERED || cpu.requireHooks().rdtscpEnabled?.() === false) ud();
  cpu.setReg(cpu.mode64 ? 64 : 32, cpu.rm, cpu.tscAux >>> 0, 0);
}

function group15(cpu: Interpreter): void {
  cpu.modrm(0);
  const op = cpu.reg & 7;
  if (cpu.mod === 3) {
    // LFENCE (5), MFENCE (6), SFENCE (7): ordering is trivially satisfied by one interpreter;
    // with memory shared by other threads MFENCE is a sequentially consistent atomic (a full
    // barrier), and loads and stores are not reordered by the interpreter anyway
    if (op >= 5) {
      if (op === 6 && cpu.smp !== null) mfence(cpu);
      return;
    }
    if (cpu.rep === 0xf3 && cpu.mode64 && op < 4) {
      // RDFSBASE/RDGSBASE/WRFSBASE/WRGSBASE
      if ((cpu.cr4 & CR4_FSGSBASE) === 0) ud();
      const seg = (op & 1) === 0 ? 4 : 5;
      const size = cpu.osz === 64 ? 64 : 32;
      if (op < 2) {
        const b = cpu.segBase[seg];
        cpu.setReg(size, cpu.rm, b >>> 0, Math.floor(b / TWO32) | 0);
      } else {
        const b = size === 64 ? toNum(big(cpu.lo[cpu.rm], cpu.hi[cpu.rm])) : cpu.lo[cpu.rm] >>> 0;
        if (b >= 0x800000000000 || b < -0x800000000000) gp0();
        cpu.segBase[seg] = b;
        updateMode(cpu);
      }
      return;
    }
    cpu.unimplemented(0x1ae);
  }
  switch (op) {
    case 0:
      fxsave(cpu);
      return;
    case 1:
      fxrstor(cpu);
      return;
    case 2: {
      cpu.eaAccess(4, false);
      const v = cpu.rd32(cpu.ea);
      if ((v & ~0xffff) !== 0) gp0();
      cpu.mxcsr = v;
      return;
    }
    case 3:
      cpu.eaAccess(4, true);
      cpu.wr32(cpu.ea, cpu.mxcsr);
      return;
    case 7:
      // CLFLUSH: the checks of a byte load, except that an execute-only segment is allowed
      if (cpu.eaChk !== 0) {
        if (cpu.mode64) cpu.checkEa(1, false);
        else cpu.segLimitCheck(cpu.eaSeg, cpu.eaOff, 1);
      }
      cpu.probe(cpu.ea, Access.Read);
      return;
    default:
      cpu.unimplemented(0x1ae);
  }
}

export { toBig };

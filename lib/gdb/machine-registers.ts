// A Machine's vCPU as gdb's register file. Outside 64-bit mode `rip` is the linear address of the
// next instruction (CS.base + IP), so breakpoints, `x/i $pc` and backtraces in real and 16/32-bit
// code use the addresses the guest's memory really has; writing it back subtracts CS.base.
// x87/SSE state is not exposed by the backends yet: those registers read as unavailable.

import { cpuMode } from "../inspect/segments.js";
import type { Regs, SpecialRegs } from "../types/regs.js";
import type { Vcpu } from "../vmm/vcpu.js";
import type { RegisterValues } from "./registers.js";
import { GdbTargetError } from "./target.js";

const GPRS = [
  "rax",
  "rbx",
  "rcx",
  "rdx",
  "rsi",
  "rdi",
  "rbp",
  "rsp",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
] as const;
const SEGS = ["cs", "ss", "ds", "es", "fs", "gs"] as const;
const CRS = ["cr0", "cr2", "cr3", "cr4", "cr8", "efer"] as const;
const MSR_KERNEL_GS_BASE = 0xc0000102;

function ipMask(regs: Regs, sregs: SpecialRegs): { linear: boolean; mask: bigint } {
  const mode = cpuMode(sregs, regs.rflags);
  if (mode === "long") return { linear: false, mask: (1n << 64n) - 1n };
  const wide = mode === "protected-32" || mode === "compatibility";
  return { linear: true, mask: wide ? 0xffffffffn : 0xffffn };
}

export function readVcpuRegisters(vcpu: Vcpu): RegisterValues {
  const regs = vcpu.getRegs();
  const sregs = vcpu.getSregs();
  const out: RegisterValues = new Map();
  for (const r of GPRS) out.set(r, regs[r]);
  out.set("rip", ipMask(regs, sregs).linear ? vcpu.linearRip() : regs.rip);
  out.set("eflags", regs.rflags & 0xffffffffn);
  for (const s of SEGS) out.set(s, BigInt(sregs[s].selector));
  out.set("fs_base", sregs.fs.base);
  out.set("gs_base", sregs.gs.base);
  const kgs = vcpu.getMsr(MSR_KERNEL_GS_BASE);
  if (kgs !== undefined) out.set("k_gs_base", kgs);
  for (const c of CRS) out.set(c, sregs[c]);
  return out;
}

/**
 * Writes the registers whose values differ from the vCPU's (a `G` packet resends them all).
 * Segment selectors can be changed in real and virtual-8086 mode (base = selector * 16); in
 * protected mode a selector alone would leave the descriptor cache stale, so that is refused.
 */
export function writeVcpuRegisters(vcpu: Vcpu, values: RegisterValues): void {
  const current = readVcpuRegisters(vcpu);
  const changed = [...values].filter(([k, v]) => current.has(k) && current.get(k) !== v);
  if (changed.length === 0) return;
  const regs = vcpu.getRegs();
  const sregs = vcpu.getSregs();
  const { linear, mask } = ipMask(regs, sregs);
  const realSegments =
    cpuMode(sregs, regs.rflags) === "real" || cpuMode(sregs, regs.rflags) === "virtual-8086";
  let sregsDirty = false;
  for (const [name, v] of changed) {
    if ((GPRS as readonly string[]).includes(name)) regs[name as (typeof GPRS)[number]] = v;
    else if (name === "rip") regs.rip = linear ? (v - sregs.cs.base) & mask : v;
    else if (name === "eflags") regs.rflags = (regs.rflags & ~0xffffffffn) | (v & 0xffffffffn) | 2n;
    else if ((SEGS as readonly string[]).includes(name)) {
      if (!realSegments) throw new GdbTargetError(`${name}: selectors can only be written in real mode`, 1);
      const seg = sregs[name as (typeof SEGS)[number]];
      seg.selector = Number(v & 0xffffn);
      seg.base = (v & 0xffffn) << 4n;
      sregsDirty = true;
    } else if (name === "fs_base" || name === "gs_base") {
      sregs[name === "fs_base" ? "fs" : "gs"].base = v;
      sregsDirty = true;
    } else if (name === "k_gs_base") vcpu.setMsr(MSR_KERNEL_GS_BASE, v);
    else if ((CRS as readonly string[]).includes(name)) {
      sregs[name as (typeof CRS)[number]] = v;
      sregsDirty = true;
    }
  }
  if (sregsDirty) vcpu.setSregs(sregs);
  vcpu.setRegs(regs);
}

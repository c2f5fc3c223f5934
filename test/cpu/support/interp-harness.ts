// Runs a differential case on the interpreter: 64-bit long mode with identity-mapped 2-MiB pages,
// code at CODE_ADDR and the scratch page at SCRATCH_ADDR (the same addresses the oracle uses), our
// own NonRootHooks that turn any exception into a stop (so the state at the faulting instruction is
// compared, as the oracle's signal handler reports it). It steps one instruction at a time so that
// the undefined-result masks are computed from the real state before each instruction.

import { Seg } from "../../../lib/cpu/guest-cpu.js";
import {
  type Access,
  EXIT,
  MMIO,
  type NonRootHooks,
  type PageMapping,
  StopReason,
} from "../../../lib/cpu/hooks.js";
import type { Interpreter } from "../../../lib/cpu/interpreter.js";
import { fxImage, loadFxImage } from "../../../lib/cpu/x87.js";
import { CODE_ADDR, type CpuState, initialFx, SCRATCH_ADDR, SCRATCH_SIZE } from "./oracle.js";
import { ARITH, DF, type Insn, type Pre } from "./x86-encode.js";

export const RAM_SIZE = 4 << 20;
const PML4 = 0x1000;

/** The interpreter as the harness needs it: the GuestCpu contract plus its XMM and x87 state. */
export type DiffCpu = Interpreter;

export interface InterpResult {
  vector: number;
  state: CpuState;
  /** registers / flags / memory whose final value the SDM leaves undefined for this run */
  taintRegs: number;
  taintFlags: number;
  taintMem: boolean;
  /** an XMM register was written from undefined inputs (XMM registers are then not compared) */
  taintXmm: boolean;
  /** an MMX register was written from undefined inputs (ST0-7 are then not compared) */
  taintMm: boolean;
  /** an instruction that may fault ran on undefined inputs: the outcome cannot be compared */
  indeterminate: boolean;
}

/** Hooks for a bare machine: RAM identity-mapped, every exception stops the run. */
export class StopOnEventHooks implements NonRootHooks {
  vector = -1;
  constructor(private readonly ram: Uint8Array) {}
  mapPage(gpa: number, _access: Access): PageMapping | typeof MMIO | typeof EXIT {
    if (gpa < 0 || gpa >= this.ram.length) return MMIO;
    return { bytes: this.ram, offset: gpa - (gpa % 4096), readable: true, writable: true, executable: true };
  }
  mmio(): number | typeof EXIT {
    return EXIT;
  }
  io(): boolean {
    return true;
  }
  hlt(): boolean {
    return true;
  }
  cpuid(): boolean {
    return false;
  }
  rdmsr(): boolean {
    return false;
  }
  wrmsr(): boolean {
    return false;
  }
  rdtsc(): boolean {
    return false;
  }
  rdpmc(): boolean {
    return false;
  }
  invlpg(): boolean {
    return false;
  }
  crAccess(): boolean {
    return false;
  }
  drAccess(): boolean {
    return false;
  }
  other(): boolean {
    return false;
  }
  descriptorTable(): boolean {
    return false;
  }
  vmxInstruction(): boolean {
    return true;
  }
  event(vector: number): boolean {
    this.vector = vector;
    return true;
  }
  tripleFault(): boolean {
    this.vector = 8;
    return true;
  }
  boundary(): boolean {
    return false;
  }
}

export class InterpHarness {
  readonly ram = new Uint8Array(RAM_SIZE);
  readonly hooks = new StopOnEventHooks(this.ram);
  private readonly view = new DataView(this.ram.buffer);

  /**
   * `bits` 64: long mode with identity-mapped 2-MiB pages; 32: flat 32-bit protected mode without
   * paging (the oracle runs such cases in compatibility mode: the same instruction semantics).
   */
  constructor(
    readonly cpu: DiffCpu,
    readonly bits: 32 | 64 = 64,
  ) {
    const v = this.view;
    // identity map the first 4 MiB with two 2-MiB pages (P, RW, US, PS)
    v.setBigUint64(PML4, 0x2000n | 7n, true);
    v.setBigUint64(0x2000, 0x3000n | 7n, true);
    v.setBigUint64(0x3000, 0x000000n | 0x87n, true);
    v.setBigUint64(0x3008, 0x200000n | 0x87n, true);
    cpu.hooks = this.hooks;
    cpu.setControl("efer", bits === 64 ? 0x500n : 0n);
    cpu.setControl("cr4", bits === 64 ? 0x620n : 0x600n); // (PAE,) OSFXSR, OSXMMEXCPT
    cpu.setControl("cr3", BigInt(PML4));
    cpu.setControl("cr0", bits === 64 ? 0x80000033n : 0x33n); // (PG,) NE, ET, MP, PE
    const code = bits === 64 ? 0xa09b : 0xc09b;
    cpu.setSegment(Seg.CS, { selector: 0x08, base: 0n, limit: 0xffffffff, ar: code });
    for (const s of [Seg.SS, Seg.DS, Seg.ES, Seg.FS, Seg.GS]) {
      cpu.setSegment(s, { selector: 0x10, base: 0n, limit: 0xffffffff, ar: 0xc093 });
    }
    cpu.setSegment(Seg.TR, { selector: 0x18, base: 0n, limit: 0x67, ar: 0x8b });
    cpu.setSegment(Seg.LDTR, { selector: 0, base: 0n, limit: 0, ar: 0x10000 });
    cpu.setGdtr({ base: 0n, limit: 0 });
    cpu.setIdtr({ base: 0n, limit: 0 });
  }

  // in 32-bit mode EDI/ESI play the memory base/index roles of R15/R14
  private pre: Pre = {
    gpr: (i) => (this.bits === 32 && i >= 14 ? this.cpu.getGpr(i - 8) & 0xffffffffn : this.cpu.getGpr(i)),
    mem: (address, size) => {
      let v = 0n;
      for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.ram[address + i] ?? 0);
      return v;
    },
  };

  run(insns: readonly Insn[], initial: CpuState): InterpResult {
    const { cpu, ram } = this;
    const code = insns.flatMap((i) => i.bytes);
    ram.fill(0xcc, CODE_ADDR, CODE_ADDR + 4096);
    ram.set(code, CODE_ADDR);
    ram[CODE_ADDR + code.length] = 0xf4; // hlt: never reached, the loop stops at the end
    ram.set(initial.scratch, SCRATCH_ADDR);
    cpu.invalidateCode(CODE_ADDR, 4096);
    for (let r = 0; r < 16; r++) cpu.setGpr(r, initial.gpr[r]!);
    cpu.setRflags(initial.rflags);
    cpu.setRip(BigInt(CODE_ADDR));
    new Uint8Array(cpu.xmm.buffer, cpu.xmm.byteOffset, 256).set(initial.xmm);
    loadFxImage(cpu, initial.fx ?? initialFx());
    this.hooks.vector = -1;

    let taintRegs = 0;
    let taintFlags = 0;
    let taintMem = false;
    let indeterminate = false;
    let taintXmm = false;
    let taintMm = false;
    // instructions by address: a taken branch skips some, the walk follows RIP
    const at = new Map<number, Insn>();
    let codeEnd = CODE_ADDR;
    for (const insn of insns) {
      at.set(codeEnd, insn);
      codeEnd += insn.bytes.length;
    }
    let steps = 0;
    for (;;) {
      const address = Number(cpu.getRip());
      const insn = at.get(address);
      if (!insn || this.hooks.vector >= 0 || ++steps > insns.length) break;
      const d = insn.dynamic?.(this.pre) ?? {};
      const tainted =
        (insn.reads & taintRegs) !== 0 || (insn.flagsRead & taintFlags) !== 0 || (insn.memRead && taintMem);
      // a fault or a branch decided by undefined inputs makes the rest of the run incomparable
      indeterminate ||= tainted && (insn.mayFault === true || insn.branches === true);
      let iterations = 0;
      while (Number(cpu.getRip()) === address && this.hooks.vector < 0) {
        const stop = cpu.run(1);
        if (stop === StopReason.Exit || stop === StopReason.Shutdown || ++iterations > 1000) break;
      }
      if (this.hooks.vector >= 0) break;
      const written = d.flagsWritten ?? insn.flagsWritten;
      if (tainted) {
        // the dynamic answer came from inputs the CPU may not share: assume every flag the form
        // can write
        taintRegs |= insn.writes;
        taintFlags |= written | insn.flagsWritten;
        taintMem ||= insn.memWrite;
        taintXmm ||= insn.xmmWrite === true;
        taintMm ||= insn.mmWrite === true;
      } else {
        // an 8/16-bit write keeps the rest of the register, so a write never clears a register's
        // taint (conservative: a full 32/64-bit overwrite would)
        taintRegs |= d.regsUndefined ?? 0;
        taintFlags = (taintFlags & ~written) | (d.flagsUndefined ?? insn.flagsUndefined);
        taintMem ||= d.memUndefined === true;
      }
    }
    const gpr: bigint[] = [];
    for (let r = 0; r < 16; r++) gpr.push(cpu.getGpr(r));
    return {
      vector: this.hooks.vector,
      taintRegs,
      taintFlags: taintFlags & (ARITH | DF),
      taintMem,
      indeterminate,
      taintXmm,
      taintMm,
      state: {
        gpr,
        rflags: cpu.getRflags(),
        rip: cpu.getRip(),
        xmm: new Uint8Array(new Uint8Array(cpu.xmm.buffer, cpu.xmm.byteOffset, 256)),
        fx: fxImage(cpu),
        scratch: ram.slice(SCRATCH_ADDR, SCRATCH_ADDR + SCRATCH_SIZE),
      },
    };
  }
}

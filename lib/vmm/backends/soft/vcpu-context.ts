// What a soft vCPU takes with it when it moves to another thread's logical processor (a pool of
// fewer worker threads than vCPUs, threads-pool.ts). The VMCS does not travel here: VMCLEAR on the
// old processor writes it back to its region in host memory every thread maps, and VMPTRLD on the
// new one loads it. What a VT-x hypervisor keeps outside the VMCS for a vCPU does travel, as plain
// structured-cloneable data: the general registers, CR2, CR8, DR0-DR3/DR6, the x87/SSE state, the
// MSRs the processor keeps outside the VMCS, the events latched on the processor, and the MMIO
// accesses already completed for an instruction left half done (so that they are not made again).
//
// A processor that ran the vCPU before may have kept its interpreter (thread-worker.ts): its
// decoded and compiled blocks, as a VPID-tagged TLB keeps a guest's entries across VMCLEAR. The
// vCPU's state never comes from it: keptForArrival resets it to power-on state, and what travelled
// and the VMCS are put on it as on a new one. Its translations go, as they may be stale; its blocks
// stay, each checked against guest memory by its bytes before it first runs again (runEpoch), and
// looked up by the decode mode in force then (block-cache.ts modeKey).

import type { ExtendedState } from "../../../cpu/guest-cpu.js";
import type { Interpreter } from "../../../cpu/interpreter.js";
import { MTRR_MSRS } from "../../../cpu/msr.js";
import type { RawExit } from "../../../types/exits.js";
import type { LogicalProcessor, MmioCompletion } from "../../../vmx/index.js";
import { F } from "../../../vmx/index.js";
import { MmioReplay } from "../../../vmx/mmio-replay.js";

/** MSRs the interpreter keeps outside the VMCS (EFER, PAT, SYSENTER and FS/GS base are VMCS guest state). */
const CARRIED_MSRS: readonly number[] = [
  0x1b, // APIC base (the interpreter's copy; EXTD is the local APIC's)
  0x1a0, // MISC_ENABLE
  0x1d9, // DEBUGCTL
  ...MTRR_MSRS,
  0xc0000081,
  0xc0000082,
  0xc0000083,
  0xc0000084,
  0xc0000102,
  0xc0000103,
];

export interface SoftVcpuContext {
  /** the vCPU's VMCS region (cleared: the next entry is a VMLAUNCH) */
  vmcs: number;
  gprs: bigint[];
  cr2: bigint;
  cr8: bigint;
  /** the interpreter's DR0-DR7 (DR7 is also VMCS guest state) */
  dr: number[];
  /** x87, SSE and PKRU as the interpreter hands them over (copied as the context crosses threads) */
  ext: ExtendedState;
  msrs: [number, bigint][];
  /** the MSRs the interpreter only stores (MTRRs, IA32_FEATURE_CONTROL, the MCG MSRs...), as they are */
  stored: [number, bigint][];
  xcr0: bigint;
  tscOffset: bigint;
  tscAdjust: bigint;
  pending: { nmi: boolean; init: boolean; sipiVector: number };
  /** the completed MMIO accesses of the instruction at the VMCS's RIP, not yet retired */
  mmio: MmioCompletion[];
  /** the hypervisor's own records of the vCPU (SoftVcpu's) */
  host: {
    lastRaw: Extract<RawExit, { backend: "soft" }> | undefined;
    hostIterations: number;
    /** the vCPU's work count as it left (instructionsRetired goes on from it on the next processor) */
    work: number;
  };
}

const interpreterOf = (lp: LogicalProcessor) => lp.cpu as unknown as Interpreter;

/**
 * Reads what travels from `lp`, whose current VMCS is `vmcs`, and leaves the processor: VMCLEAR
 * (the VMCS written back, launch state clear) and VMXOFF. Call at a point where the vCPU has no
 * exit waiting for its completion (SoftVcpu.departable).
 */
export function departContext(
  lp: LogicalProcessor,
  vmcs: number,
  host: SoftVcpuContext["host"],
): SoftVcpuContext {
  const cpu = interpreterOf(lp);
  const gprs: bigint[] = [];
  for (let i = 0; i < 16; i++) gprs.push(lp.cpu.getGpr(i));
  const msrs: [number, bigint][] = [];
  for (const index of CARRIED_MSRS) {
    const v = lp.cpu.getMsr(index);
    if (v !== undefined) msrs.push([index, v]);
  }
  const rip = lp.vmread(F.GUEST_RIP);
  const replay = lp.mmioReplay;
  const mmio = replay.current(lp.cpu.work(), rip) ? replay.done.map((c) => ({ ...c })) : [];
  const ctx: SoftVcpuContext = {
    vmcs,
    gprs,
    cr2: lp.cpu.getControl("cr2"),
    cr8: lp.cpu.getControl("cr8"),
    dr: [...cpu.dr],
    ext: structuredClone(lp.cpu.getExtendedState()),
    msrs,
    stored: [...cpu.otherMsrs],
    xcr0: cpu.xcr0,
    tscOffset: cpu.tscOffset,
    tscAdjust: cpu.tscAdjust,
    pending: { nmi: lp.nmiPending, init: lp.initPending, sipiVector: lp.sipiVector },
    mmio,
    host,
  };
  lp.vmclear(vmcs);
  lp.vmxoff();
  return ctx;
}

/**
 * Puts what travelled on `lp` (a new processor, whose interpreter is new or one this thread kept
 * of this vCPU: nothing it cached from another vCPU's guest), after VMPTRLD of the context's VMCS.
 */
export function arriveContext(lp: LogicalProcessor, ctx: SoftVcpuContext): void {
  lp.vmptrld(ctx.vmcs);
  const cpu = interpreterOf(lp);
  // stored as they are (WRMSR's checks, such as IA32_FEATURE_CONTROL's lock, were made when written)
  cpu.otherMsrs.clear();
  for (const [index, value] of ctx.stored) cpu.otherMsrs.set(index, value);
  cpu.xcr0 = ctx.xcr0;
  for (let i = 0; i < 16; i++) lp.cpu.setGpr(i, ctx.gprs[i]!);
  lp.cpu.setControl("cr2", ctx.cr2);
  lp.cpu.setControl("cr8", ctx.cr8);
  if (ctx.dr.length === cpu.dr.length) cpu.dr.set(ctx.dr);
  lp.cpu.setExtendedState(ctx.ext);
  for (const [index, value] of ctx.msrs) lp.cpu.setMsr(index, value);
  cpu.tscAdjust = ctx.tscAdjust;
  cpu.tscOffset = ctx.tscOffset;
  lp.nmiPending = ctx.pending.nmi;
  lp.initPending = ctx.pending.init;
  lp.sipiVector = ctx.pending.sipiVector;
  if (ctx.mmio.length > 0) {
    // the instruction goes on where it was: its completed accesses are replayed, not made again
    const from = new MmioReplay();
    from.done.push(...ctx.mmio);
    lp.mmioReplay.adopt(from, lp.cpu.work(), lp.vmread(F.GUEST_RIP));
  }
}

/**
 * An interpreter this thread kept of the vCPU since it last left (thread-worker.ts), made ready for
 * its arrival, before arriveContext: its architectural state back to power-on (what travelled and
 * the VMCS replace it, as on a new interpreter), its TLB and paging-structure caches dropped (the
 * guest's page tables, or its mode, may have changed since), and every cached block marked to
 * compare its bytes with guest memory before it runs again (another vCPU, a device or the vCPU
 * itself on another processor may have written them), besides the check each VM entry makes.
 */
export function keptForArrival(cpu: Interpreter): Interpreter {
  cpu.reset();
  cpu.otherMsrs.clear();
  cpu.xcr0 = 1n;
  cpu.flushTlb();
  cpu.devicesRan();
  cpu.lastBlock = null;
  return cpu;
}

/** cached blocks an interpreter holds (what a kept one costs its thread) */
export function cachedBlocks(cpu: Interpreter): number {
  let n = 0;
  for (const page of cpu.codePages.values()) n += page.blocks.size;
  return n;
}

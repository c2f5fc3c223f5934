// Hardware task switching (SDM Vol. 3A ch. 7): far CALL/JMP to a TSS descriptor or a task gate,
// interrupts and exceptions through an IDT task gate, IRET with EFLAGS.NT=1 back through the link.
//
// Everything up to the new-TSS checks happens before any state changes (and before a VMX
// non-root task switch exits, SDM 26.4.2). Past the commit point (the old task saved, TR, CR3,
// EFLAGS, EIP, general registers and selectors loaded), a fault while loading the new task's
// segment descriptors is raised in the context of the new task, as the SDM describes.

import { syncDebug } from "./debug.js";
import { CpuFault, EXIT_SIGNAL, Vec } from "./faults.js";
import { FL_NT, FL_VM } from "./flags.js";
import type { EventType, InstructionContext, NonRootHooks } from "./hooks.js";
import type { Interpreter } from "./interpreter.js";
import {
  type Descriptor,
  descAr,
  descBase,
  descLimit,
  markAccessed,
  readDescriptor,
  setSegCache,
  sysRead,
  sysWrite,
  updateMode,
} from "./system.js";

/** What started the task switch: the VMX exit qualification's source field (bits 31:30). */
export const enum TaskSource {
  Call = 0,
  Iret = 1,
  Jmp = 2,
  Gate = 3,
}

/** The event being delivered through a task gate in the IDT. */
export interface TaskEvent {
  vector: number;
  type: EventType;
  errorCode: number | undefined;
}

/**
 * The VMX layer's question: a task switch in VMX non-root operation always exits. Optional on the
 * hooks object (bare harnesses have none and the switch happens); answer true after recording it.
 */
export interface TaskSwitchHook {
  taskSwitch(
    selector: number,
    source: TaskSource,
    ctx: InstructionContext,
    event: TaskEvent | undefined,
  ): boolean;
}

const AR_UNUSABLE = 0x10000;
/** DR7 local enables L0-L3 and LE: cleared by every task switch */
const DR7_LOCAL = 0x155;

const fault = (vector: number, sel: number): CpuFault => new CpuFault(vector, sel & 0xfffc);

let commits = 0;
/** counts commit points: a caller that rolls RIP back on a fault must not do so past one */
export function taskCommitCount(): number {
  return commits;
}

export interface NewTss {
  selector: number;
  d: Descriptor;
  is32: boolean;
}

/**
 * Checks the descriptor of the incoming TSS (table 7-1, the checks before the commit point): in the
 * GDT, a TSS available (busy for IRET), present, large enough. `ext` is the EXT bit of the error
 * code for an event.
 */
export function checkNewTss(cpu: Interpreter, selector: number, source: TaskSource, ext: number): NewTss {
  const iret = source === TaskSource.Iret;
  const bad = (sel: number) => new CpuFault(iret ? Vec.TS : Vec.GP, (sel & 0xfffc) + ext);
  if ((selector & 4) !== 0) throw bad(selector);
  const d = readDescriptor(cpu, selector);
  if (d === null) throw bad(selector);
  const type = descAr(d) & 0x1f;
  const want = iret ? 2 : 0;
  // types 1/9 available, 3/0xB busy (16/32-bit)
  if ((type & ~0xa) !== 1 || (type & 2) !== want) throw bad(selector);
  if ((descAr(d) & 0x80) === 0) throw new CpuFault(Vec.NP, (selector & 0xfffc) + ext);
  const is32 = (type & 8) !== 0;
  if (descLimit(d) < (is32 ? 0x67 : 0x2b)) throw new CpuFault(Vec.TS, (selector & 0xfffc) + ext);
  return { selector, d, is32 };
}

/** asks the VMX layer whether this task switch exits (it always does in non-root operation) */
function exits(
  cpu: Interpreter,
  selector: number,
  source: TaskSource,
  ctx: InstructionContext,
  event: TaskEvent | undefined,
): void {
  const h = cpu.requireHooks() as NonRootHooks & Partial<TaskSwitchHook>;
  if (h.taskSwitch?.(selector & 0xffff, source, ctx, event) === true) throw EXIT_SIGNAL;
}

/** far CALL/JMP whose selector names a TSS descriptor or a task gate (legacy protected mode) */
export function farTaskSwitch(cpu: Interpreter, sel: number, d: Descriptor, call: boolean): void {
  const ar = descAr(d);
  const dpl = (ar >> 5) & 3;
  // privilege is checked on the gate when there is one, else on the TSS descriptor
  if (dpl < cpu.cpl || dpl < (sel & 3)) throw fault(Vec.GP, sel);
  let tssSel = sel;
  if ((ar & 0x1f) === 5) {
    if ((ar & 0x80) === 0) throw fault(Vec.NP, sel);
    tssSel = (d.lo >>> 16) & 0xffff;
  }
  const source = call ? TaskSource.Call : TaskSource.Jmp;
  const t = checkNewTss(cpu, tssSel, source, 0);
  exits(cpu, tssSel, source, cpu.ctx(), undefined);
  switchTask(cpu, t, source, cpu.ip, undefined);
}

/** IRET with EFLAGS.NT=1 outside IA-32e mode: back to the task named by the current TSS's link */
export function taskReturn(cpu: Interpreter): void {
  const link = sysRead(cpu, cpu.segBase[7], 2);
  const t = checkNewTss(cpu, link, TaskSource.Iret, 0);
  exits(cpu, link, TaskSource.Iret, cpu.ctx(), undefined);
  switchTask(cpu, t, TaskSource.Iret, cpu.ip, undefined);
}

/**
 * An interrupt or exception through a task gate in the IDT (gate DPL and P already checked).
 * `ctx` describes the instruction for software interrupts (length 0 for other events); RIP is the
 * event's return address.
 */
export function taskGateEvent(
  cpu: Interpreter,
  gateLo: number,
  event: TaskEvent,
  ext: number,
  ctx: InstructionContext,
): void {
  const tssSel = gateLo >>> 16;
  const t = checkNewTss(cpu, tssSel, TaskSource.Gate, ext);
  exits(cpu, tssSel, TaskSource.Gate, ctx, event);
  switchTask(cpu, t, TaskSource.Gate, cpu.rip, event.errorCode);
}

interface TssImage {
  cr3: number;
  eip: number;
  eflags: number;
  gpr: number[];
  /** ES CS SS DS FS GS */
  sel: number[];
  ldt: number;
}

function readTss(cpu: Interpreter, base: number, is32: boolean): TssImage {
  const r = (off: number, size: number) => sysRead(cpu, (base + off) >>> 0, size);
  if (is32) {
    return {
      cr3: r(0x1c, 4),
      eip: r(0x20, 4),
      eflags: r(0x24, 4),
      gpr: [0, 1, 2, 3, 4, 5, 6, 7].map((i) => r(0x28 + 4 * i, 4)),
      sel: [0, 1, 2, 3, 4, 5].map((i) => r(0x48 + 4 * i, 2)),
      ldt: r(0x60, 2),
    };
  }
  // a 16-bit TSS has no CR3, FS or GS; its 16-bit values load zero-extended
  return {
    cr3: 0,
    eip: r(0x0e, 2),
    eflags: r(0x10, 2),
    gpr: [0, 1, 2, 3, 4, 5, 6, 7].map((i) => r(0x12 + 2 * i, 2)),
    sel: [r(0x22, 2), r(0x24, 2), r(0x26, 2), r(0x28, 2), 0, 0],
    ldt: r(0x2a, 2),
  };
}

/** the dynamic fields of the outgoing task, written into its TSS */
function saveTss(cpu: Interpreter, base: number, is32: boolean, eip: number, eflags: number): void {
  const w = (off: number, size: number, v: number) => sysWrite(cpu, (base + off) >>> 0, size, v, 0);
  if (is32) {
    w(0x20, 4, eip);
    w(0x24, 4, eflags);
    for (let i = 0; i < 8; i++) w(0x28 + 4 * i, 4, cpu.lo[i]);
    for (let s = 0; s < 6; s++) w(0x48 + 4 * s, 2, cpu.segSel[s]);
    return;
  }
  w(0x0e, 2, eip);
  w(0x10, 2, eflags);
  for (let i = 0; i < 8; i++) w(0x12 + 2 * i, 2, cpu.lo[i]);
  for (let s = 0; s < 4; s++) w(0x22 + 2 * s, 2, cpu.segSel[s]);
}

/** sets or clears the busy bit of the TSS descriptor of `sel` in the GDT */
function setBusy(cpu: Interpreter, sel: number, busy: boolean): void {
  const d = readDescriptor(cpu, sel & ~4);
  if (d === null) return;
  const b = (d.hi >>> 8) & 0xff;
  sysWrite(cpu, d.addr + 5, 1, busy ? b | 2 : b & ~2, 0);
}

/**
 * The task switch proper (SDM 7.3 steps 5-13), from a checked incoming TSS. `returnEip` is saved as
 * the outgoing task's EIP; `errorCode` (events through a task gate) is pushed on the new stack.
 * Also the entry point for a hypervisor that emulates a task switch after a VM exit.
 */
export function switchTask(
  cpu: Interpreter,
  t: NewTss,
  source: TaskSource,
  returnEip: number,
  errorCode: number | undefined,
): void {
  const oldSel = cpu.segSel[7];
  const oldBase = cpu.segBase[7];
  const old32 = (cpu.segAr[7] & 8) !== 0;
  if (cpu.segLimit[7] < (old32 ? 0x5f : 0x29)) throw fault(Vec.TS, oldSel);
  const newBase = descBase(t.d);
  // both TSSs are read and written through the outgoing task's address space
  const img = readTss(cpu, newBase, t.is32);
  let flags = cpu.getFlags();
  if (source === TaskSource.Iret) flags &= ~FL_NT;
  saveTss(cpu, oldBase, old32, old32 ? returnEip >>> 0 : returnEip & 0xffff, flags);
  const nesting = source === TaskSource.Call || source === TaskSource.Gate;
  if (nesting) sysWrite(cpu, newBase, 2, oldSel, 0);
  if (source === TaskSource.Jmp || source === TaskSource.Iret) setBusy(cpu, oldSel, false);
  if (source !== TaskSource.Iret) setBusy(cpu, t.selector, true);

  // commit point
  commits++;
  cpu.segSel[7] = t.selector;
  cpu.segBase[7] = newBase;
  cpu.segLimit[7] = descLimit(t.d);
  cpu.segAr[7] = descAr(t.d) | 2;
  cpu.cr0 |= 8;
  cpu.dr[7] = (cpu.dr[7] & ~DR7_LOCAL) >>> 0;
  syncDebug(cpu);
  if (t.is32 && cpu.paging) {
    cpu.cr3 = img.cr3 >>> 0;
    cpu.flushNonGlobal();
  }
  for (let i = 0; i < 8; i++) {
    cpu.lo[i] = img.gpr[i];
    cpu.hi[i] = 0;
  }
  cpu.setFlags(nesting ? img.eflags | FL_NT : img.eflags);
  cpu.rip = img.eip;
  cpu.ip = img.eip;
  for (let s = 0; s < 6; s++) cpu.segSel[s] = img.sel[s];
  cpu.segSel[6] = img.ldt;
  try {
    loadTaskSegments(cpu, img);
  } finally {
    updateMode(cpu);
  }
  if (errorCode !== undefined) cpu.push(t.is32 ? 32 : 16, errorCode >>> 0, 0);
  if (img.eip > cpu.segLimit[1]) throw new CpuFault(Vec.GP, 0);
}

/** LDTR, then ES CS SS DS FS GS with the checks of table 7-1, at the new task's privilege */
function loadTaskSegments(cpu: Interpreter, img: TssImage): void {
  const ldt = img.ldt;
  if ((ldt & ~3) === 0) cpu.segAr[6] = AR_UNUSABLE;
  else {
    if ((ldt & 4) !== 0) throw fault(Vec.TS, ldt);
    const d = readDescriptor(cpu, ldt);
    if (d === null || (descAr(d) & 0x1f) !== 2 || (descAr(d) & 0x80) === 0) throw fault(Vec.TS, ldt);
    setSegCache(cpu, 6, ldt, d);
  }
  if ((cpu.eflags & FL_VM) !== 0) {
    // virtual-8086 task: segments are real-mode style
    for (let s = 0; s < 6; s++) {
      const sel = img.sel[s] & 0xffff;
      cpu.segBase[s] = sel * 16;
      cpu.segLimit[s] = 0xffff;
      cpu.segAr[s] = 0xf3;
    }
    return;
  }
  const cpl = img.sel[1] & 3;
  for (const s of [0, 1, 2, 3, 4, 5]) loadTaskSegment(cpu, s, img.sel[s], cpl);
}

function loadTaskSegment(cpu: Interpreter, seg: number, sel: number, cpl: number): void {
  if ((sel & ~3) === 0) {
    if (seg === 1 || seg === 2) throw fault(Vec.TS, sel);
    cpu.segAr[seg] = AR_UNUSABLE;
    cpu.segBase[seg] = 0;
    return;
  }
  const d = readDescriptor(cpu, sel);
  if (d === null) throw fault(Vec.TS, sel);
  const ar = descAr(d);
  const dpl = (ar >> 5) & 3;
  const rpl = sel & 3;
  const code = (ar & 0x18) === 0x18;
  const conforming = code && (ar & 4) !== 0;
  let notPresent = Vec.NP;
  if ((ar & 0x10) === 0) throw fault(Vec.TS, sel);
  if (seg === 1) {
    if (!code || (conforming ? dpl > cpl : dpl !== cpl)) throw fault(Vec.TS, sel);
  } else if (seg === 2) {
    if (code || (ar & 2) === 0 || dpl !== cpl || rpl !== cpl) throw fault(Vec.TS, sel);
    notPresent = Vec.SS;
  } else {
    if (code && (ar & 2) === 0) throw fault(Vec.TS, sel);
    if (!conforming && dpl < Math.max(cpl, rpl)) throw fault(Vec.TS, sel);
  }
  if ((ar & 0x80) === 0) throw fault(notPresent, sel);
  markAccessed(cpu, d);
  setSegCache(cpu, seg, sel, d);
}

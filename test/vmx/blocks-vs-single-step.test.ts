// Differential test of the software VT-x: random guests under random VM-execution controls run
// twice, once with the interpreter's block cache and compiled blocks (decodeCache on, the default
// compile threshold) and once one instruction at a time (decodeCache off). A host loop handles every
// exit generically (advances RIP past emulated instructions, completes MMIO, reflects exceptions,
// injects interrupts at windows) and re-enters, for a bounded number of exits. The two runs must
// give the same exit sequence (reason, qualification, instruction length and information,
// guest-linear and guest-physical addresses, interruption and IDT-vectoring information, RIP,
// RFLAGS, interruptibility, work counted) and the same final guest state and memory.
//
// NODEVMM_VMX_DIFF_CASES=500 npx vitest run test/vmx/blocks-vs-single-step.test.ts runs more cases
// (NODEVMM_VMX_DIFF_SEED=n replays a seed fast-check printed).

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import { F, Pin, PREEMPTION_TIMER_RATE, Proc, VmxDeadlockError } from "../../lib/vmx/index.js";
import { Alu, Asm, AX, BP, BX, CX, DI, DX, type Mem, SI } from "../support/asm.js";
import { rigWith } from "./setup.js";

const CASES = Number(process.env.NODEVMM_VMX_DIFF_CASES ?? 12);
const SEED = process.env.NODEVMM_VMX_DIFF_SEED;
const MAX_EXITS = 400;

// Guest-physical layout (1 MiB of RAM at 0, one page of it left out of the EPT: MMIO)
const RAM = 1 << 20;
const GDT = 0x500;
const IDT = 0x800;
const CODE = 0x1000;
const PAGE_DIR = 0x3000;
const DATA = 0x4000;
/** data accesses are [BX+disp] with BX = DATA and disp below this */
const DATA_SPAN = 0x1800;
const COUNTERS = 0x5f00;
const STACK_TOP = 0x8000;
const MMIO = 0x9000;
/** linear addresses from here are not present in the paging guest's page directory (#PF) */
const NOT_PRESENT = 0x400000;
const PORTS = [0x60, 0x61, 0x70, 0x80, 0xe9, 0x3f8, 0x1234, 0x8000] as const;
const FREE = [AX, DX, SI, DI, BP] as const;
const IRQ_VECTOR = 0x30;
const INT_VECTOR = 0x31;

/** real mode; 32-bit protected mode without and with paging; 16-bit protected mode */
type Mode = "real" | "prot" | "paging" | "prot16";

/** what the code is assembled for: its mode and the base of DS and ES (data addresses are offsets) */
interface Ctx {
  mode: Mode;
  ds: number;
}

// ---------------------------------------------------------------- guest programs as data

type Op =
  | { k: "alu"; op: Alu; dst: number; src: number }
  | { k: "aluI"; op: Alu; dst: number; imm: number }
  | { k: "shift"; kind: 0 | 1 | 4 | 5 | 7; r: number; count: number }
  | { k: "imul"; dst: number; src: number }
  | { k: "unary"; kind: 2 | 3; r: number }
  | { k: "incdec"; r: number; dec: boolean }
  | { k: "load"; r: number; disp: number; byte: boolean }
  | { k: "store"; r: number; disp: number; byte: boolean }
  | { k: "rmw"; op: Alu; r: number; disp: number }
  | { k: "branch"; cc: number; r: number; imm: number; skipped: Op[] }
  | { k: "io"; port: number; size: 1 | 2 | 4; input: boolean; viaDx: boolean }
  | { k: "cpuid"; leaf: number }
  | { k: "rdtsc" }
  | { k: "msr"; write: boolean; index: number }
  | { k: "fault"; kind: "de" | "ud" | "bp" | "int" | "pf" }
  | { k: "mmio"; write: boolean; off: number; byte: boolean }
  | { k: "smc"; variant: "imm" | "toggle" | "back" }
  | {
      k: "rep";
      op: 0xa4 | 0xaa | 0xac;
      size: 1 | 2 | 4;
      count: number;
      src: number;
      dst: number;
      mmio: boolean;
    }
  | { k: "repio"; op: 0x6c | 0x6e; port: number; count: number }
  | { k: "flags"; kind: "sti" | "cli" | "popf-if" | "popf-noif" }
  | { k: "invlpg"; disp: number }
  | { k: "cr3" };

type Snippet = Op | { k: "loop"; count: number; body: Op[] };

interface Controls {
  exceptionBitmap: number;
  pfMask: number;
  pfMatch: number;
  /** ports (from PORTS) whose bit is set in the I/O bitmaps; undefined: unconditional I/O exiting */
  exitPorts: number[] | undefined;
  hlt: boolean;
  rdtsc: boolean;
  invlpg: boolean;
  cr3Load: boolean;
  cr3Store: boolean;
  /** interrupts the host injects at interrupt windows (0: interrupt-window exiting off) */
  irqs: number;
  /** monitor-trap-flag exits before the host clears the control (0: off) */
  mtf: number;
  /** preemption timer value (0: the timer is off) */
  timer: number;
}

interface Case {
  mode: Mode;
  /** base of DS and ES (a real-mode paragraph; in protected mode a descriptor's base) */
  dsBase: number;
  ifAtEntry: boolean;
  controls: Controls;
  hot: { count: number; body: Op[] };
  program: Snippet[];
}

const reg = fc.constantFrom(...FREE);
const disp = fc.integer({ min: 0, max: DATA_SPAN - 4 });
const aluOp = fc.integer({ min: 0, max: 7 }) as fc.Arbitrary<Alu>;
const imm = fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffffffff }));

/** ops that compile to fast block ops (the body of the hot loop) */
const plainOp: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant("alu" as const), op: aluOp, dst: reg, src: reg }),
  fc.record({ k: fc.constant("aluI" as const), op: aluOp, dst: reg, imm }),
  fc.record({
    k: fc.constant("shift" as const),
    kind: fc.constantFrom(0 as const, 1 as const, 4 as const, 5 as const, 7 as const),
    r: reg,
    count: fc.integer({ min: 0, max: 31 }),
  }),
  fc.record({ k: fc.constant("imul" as const), dst: reg, src: reg }),
  fc.record({ k: fc.constant("unary" as const), kind: fc.constantFrom(2 as const, 3 as const), r: reg }),
  fc.record({ k: fc.constant("incdec" as const), r: reg, dec: fc.boolean() }),
  fc.record({ k: fc.constant("load" as const), r: reg, disp, byte: fc.boolean() }),
  fc.record({ k: fc.constant("store" as const), r: reg, disp, byte: fc.boolean() }),
  fc.record({ k: fc.constant("rmw" as const), op: aluOp, r: reg, disp }),
);

const port = fc.constantFrom(...PORTS);
const systemOp: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    k: fc.constant("branch" as const),
    cc: fc.integer({ min: 0, max: 15 }),
    r: reg,
    imm,
    skipped: fc.array(plainOp, { minLength: 1, maxLength: 3 }),
  }),
  fc.record({
    k: fc.constant("io" as const),
    // immediate-port forms reach ports below 0x100 only
    port,
    size: fc.constantFrom(1 as const, 2 as const, 4 as const),
    input: fc.boolean(),
    viaDx: fc.boolean(),
  }),
  fc.record({ k: fc.constant("cpuid" as const), leaf: fc.constantFrom(0, 1, 7, 0x80000000, 0x40000000) }),
  fc.record({ k: fc.constant("rdtsc" as const) }),
  fc.record({
    k: fc.constant("msr" as const),
    write: fc.boolean(),
    index: fc.constantFrom(0x10, 0x1b, 0xc0000080),
  }),
  fc.record({ k: fc.constant("fault" as const), kind: fc.constantFrom("de", "ud", "bp", "int", "pf") }),
  fc.record({
    k: fc.constant("mmio" as const),
    write: fc.boolean(),
    off: fc.integer({ min: 0, max: 0xffc }),
    byte: fc.boolean(),
  }),
  fc.record({ k: fc.constant("smc" as const), variant: fc.constantFrom("imm", "toggle", "back") }),
  fc
    .record({
      k: fc.constant("rep" as const),
      op: fc.constantFrom(0xa4 as const, 0xaa as const, 0xac as const),
      size: fc.constantFrom(1 as const, 2 as const, 4 as const),
      count: fc.integer({ min: 0, max: 300 }),
      src: fc.integer({ min: 0, max: 0x7ff }),
      dst: fc.integer({ min: 0, max: 0x7ff }),
      mmio: fc.boolean(),
    })
    // into MMIO, every element is an exit: a few of them
    .map((r) => (r.mmio ? { ...r, count: r.count % 5 } : r)),
  fc.record({
    k: fc.constant("repio" as const),
    op: fc.constantFrom(0x6c as const, 0x6e as const),
    port,
    count: fc.integer({ min: 0, max: 40 }),
  }),
  fc.record({
    k: fc.constant("flags" as const),
    kind: fc.constantFrom("sti", "cli", "popf-if", "popf-noif"),
  }),
  fc.record({ k: fc.constant("invlpg" as const), disp }),
  fc.record({ k: fc.constant("cr3" as const) }),
);

const anyOp = fc.oneof({ arbitrary: plainOp, weight: 2 }, { arbitrary: systemOp, weight: 3 });

const snippet: fc.Arbitrary<Snippet> = fc.oneof(
  { arbitrary: anyOp, weight: 2 },
  {
    arbitrary: fc.record({
      k: fc.constant("loop" as const),
      count: fc.integer({ min: 1, max: 120 }),
      body: fc.array(anyOp, { minLength: 1, maxLength: 6 }),
    }),
    weight: 1,
  },
);

const controls: fc.Arbitrary<Controls> = fc.record({
  exceptionBitmap: fc.subarray([0, 3, 6, 13, 14]).map((v) => v.reduce((a, n) => a | (1 << n), 0)),
  pfMask: fc.constantFrom(0, 1, 2, 4),
  pfMatch: fc.constantFrom(0, 1, 2, 4),
  exitPorts: fc.option(fc.subarray([...PORTS]), { nil: undefined, freq: 4 }),
  hlt: fc.boolean(),
  rdtsc: fc.boolean(),
  invlpg: fc.boolean(),
  cr3Load: fc.boolean(),
  cr3Store: fc.boolean(),
  irqs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 6 })),
  mtf: fc.oneof(
    { arbitrary: fc.constant(0), weight: 4 },
    { arbitrary: fc.integer({ min: 1, max: 40 }), weight: 1 },
  ),
  // budgets long enough to reach the compiled hot loop, ending anywhere in it
  timer: fc.oneof(
    { arbitrary: fc.constant(0), weight: 2 },
    {
      arbitrary: fc.integer({ min: 32, max: 12_800 }).map((n) => Math.ceil(n / 2 ** PREEMPTION_TIMER_RATE)),
      weight: 1,
    },
  ),
});

const caseArb: fc.Arbitrary<Case> = fc.record({
  mode: fc.constantFrom("real" as const, "prot" as const, "paging" as const, "prot16" as const),
  // at most CODE: code addresses stay non-negative offsets from DS
  dsBase: fc.constantFrom(0, 0, 0x10, 0x800, CODE),
  ifAtEntry: fc.boolean(),
  controls,
  // runs more than the compile threshold (16) so that its blocks compile
  hot: fc.record({
    count: fc.integer({ min: 40, max: 400 }),
    body: fc.array(plainOp, { minLength: 1, maxLength: 8 }),
  }),
  program: fc.array(snippet, { minLength: 1, maxLength: 8 }),
});

// ---------------------------------------------------------------- assembling a case

const counter = (x: Ctx, k: number): Mem => ({ abs: COUNTERS + 4 * k - x.ds });

function emitOp(a: Asm, op: Op, x: Ctx): void {
  const data = (d: number): Mem => ({ base: "bx", disp: d });
  const mmio = (off: number): Mem => ({ abs: MMIO + off - x.ds });
  switch (op.k) {
    case "alu":
      a.aluRR(op.op, op.dst, op.src);
      break;
    case "aluI":
      a.aluRI(op.op, op.dst, a.bits === 16 ? op.imm & 0xffff : op.imm);
      break;
    case "shift":
      a.shiftI(op.kind, op.r, op.count);
      break;
    case "imul":
      a.imulRR(op.dst, op.src);
      break;
    case "unary":
      a.unary(op.kind, op.r);
      break;
    case "incdec":
      if (op.dec) a.dec(op.r);
      else a.inc(op.r);
      break;
    case "load":
      // byte forms reach AL/DL only (AH.. encodings would name SP/BP/SI/DI's byte registers)
      if (op.byte) a.load8(op.r === DX ? DX : AX, data(op.disp));
      else a.load(op.r, data(op.disp));
      break;
    case "store":
      if (op.byte) a.store8(data(op.disp), op.r === DX ? DX : AX);
      else a.store(data(op.disp), op.r);
      break;
    case "rmw":
      a.aluMR(op.op, data(op.disp), op.r);
      break;
    case "branch": {
      const skip = a.fresh("skip");
      a.aluRI(Alu.Cmp, op.r, a.bits === 16 ? op.imm & 0xffff : op.imm);
      a.jNear(op.cc, skip);
      for (const s of op.skipped) emitOp(a, s, x);
      a.label(skip);
      break;
    }
    case "io":
      if (op.viaDx || op.port > 0xff) {
        a.movRI(DX, op.port);
        if (op.input) a.inDx(op.size);
        else a.outDx(op.size);
      } else if (op.input) a.inImm(op.port, op.size);
      else a.outImm(op.port, op.size);
      break;
    case "cpuid":
      a.push32(BX).push32(CX).movR32I(AX, op.leaf).movR32I(CX, 0).db(0x0f, 0xa2).pop32(CX).pop32(BX);
      break;
    case "rdtsc":
      a.db(0x0f, 0x31);
      break;
    case "msr":
      a.push32(CX)
        .movR32I(CX, op.index)
        .db(0x0f, op.write ? 0x30 : 0x32)
        .pop32(CX);
      break;
    case "fault":
      switch (op.kind) {
        case "de":
          // xor si, si ; div si (2 bytes: the handler skips it)
          a.aluRR(Alu.Xor, SI, SI).unary(6, SI);
          break;
        case "ud":
          a.db(0x0f, 0x0b);
          break;
        case "bp":
          a.db(0xcc);
          break;
        case "int":
          a.db(0xcd, INT_VECTOR);
          break;
        case "pf":
          if (x.mode !== "paging") a.db(0x0f, 0x0b);
          // mov esi, not-present ; mov eax, [esi] (8B 06: 2 bytes)
          else a.movRI(SI, NOT_PRESENT + 0x1234 - x.ds).db(0x8b, 0x06);
          break;
      }
      break;
    case "mmio":
      if (op.write) {
        if (op.byte) a.store8(mmio(op.off), AX);
        else a.store(mmio(op.off), DX);
      } else if (op.byte) a.load8(AX, mmio(op.off));
      else a.load(DX, mmio(op.off));
      break;
    case "smc": {
      const target = a.fresh("smc");
      switch (op.variant) {
        case "imm":
          // store into the immediate of the very next instruction (same block)
          a.store({ abs: target, add: 1 - x.ds }, AX);
          a.label(target).movRI(DX, 0x1111);
          break;
        case "toggle":
          // flip the next instruction between INC AX (40) and DEC AX (48)
          a.xorI8({ abs: target, add: -x.ds }, 0x08);
          a.label(target).inc(AX);
          break;
        case "back":
          // rewrite an instruction that already ran in this block: the next pass runs the new bytes
          a.label(target).movRI(SI, 0x2222).aluRR(Alu.Add, AX, SI);
          a.aluMR(Alu.Add, { abs: target, add: 1 - x.ds }, DX);
          break;
      }
      break;
    }
    case "rep": {
      a.push32(CX);
      const base = (op.mmio ? MMIO : DATA) - x.ds;
      a.movRI(SI, DATA - x.ds + op.src);
      a.movRI(DI, base + op.dst);
      a.movRI(CX, op.count);
      a.string(op.op, op.size, "rep");
      a.pop32(CX);
      break;
    }
    case "repio":
      a.push32(CX)
        .movRI(DX, op.port)
        .movRI(SI, DATA - x.ds)
        .movRI(DI, DATA - x.ds + 0x800)
        .movRI(CX, op.count);
      a.string(op.op, 1, "rep");
      a.pop32(CX);
      break;
    case "flags":
      if (op.kind === "sti") a.db(0xfb);
      else if (op.kind === "cli") a.db(0xfa);
      else {
        // pushf ; pop ax ; or/and ax, IF ; push ax ; popf
        a.db(0x9c).pop(AX);
        if (op.kind === "popf-if") a.aluRI(Alu.Or, AX, 0x200);
        else a.aluRI(Alu.And, AX, a.bits === 16 ? 0xfdff : 0xfffffdff);
        a.push(AX).db(0x9d);
      }
      break;
    case "invlpg":
      a.invlpg({ base: "bx", disp: op.disp });
      break;
    case "cr3":
      // mov eax, cr3 ; mov cr3, eax
      a.movFromCr(AX, 3).movToCr(3, AX);
      break;
  }
}

function emitLoop(a: Asm, count: number, body: Op[], x: Ctx): void {
  const top = a.fresh("loop");
  a.push32(CX).movRI(CX, count).label(top);
  for (const op of body) emitOp(a, op, x);
  a.dec(CX).jNear(5, top).pop32(CX);
}

interface Image {
  code: Uint8Array;
  handlers: Record<"skip2" | "pf" | "iret" | "halt", number>;
}

function assemble(c: Case): Image {
  const x: Ctx = { mode: c.mode, ds: c.dsBase };
  const a = new Asm(c.mode === "real" || c.mode === "prot16" ? 16 : 32, CODE);
  a.db(0xfc).movRI(BX, DATA - x.ds); // cld ; mov bx, DATA
  emitLoop(a, c.hot.count, c.hot.body, x);
  // CPUID always exits: the host sees the hot loop's compiled blocks before any later store to
  // the code page drops them
  emitOp(a, { k: "cpuid", leaf: 0 }, x);
  for (const s of c.program) {
    if (s.k === "loop") emitLoop(a, s.count, s.body, x);
    else emitOp(a, s, x);
  }
  const done = a.fresh("done");
  a.label(done).db(0xf4).jShort(-1, done);
  const handlers = {} as Image["handlers"];
  // 16-bit handlers (real mode, 16-bit gates) find the return IP through BP
  const real = a.bits === 16;
  // skip the 2-byte faulting instruction: the handler moves the return address past it
  handlers.skip2 = a.here;
  if (real) a.db(0x55, 0x89, 0xe5, 0x83, 0x46, 0x02, 0x02, 0x5d);
  else a.db(0x83, 0x04, 0x24, 0x02);
  a.incM(counter(x, 0)).db(0xcf);
  handlers.pf = a.here;
  if (!real) a.db(0x83, 0xc4, 0x04, 0x83, 0x04, 0x24, 0x02); // add esp, 4 ; add dword [esp], 2
  a.incM(counter(x, 1)).db(0xcf);
  handlers.iret = a.here;
  a.incM(counter(x, 2)).db(0xcf);
  handlers.halt = a.here;
  const stay = a.fresh("stay");
  a.label(stay).db(0xf4).jShort(-1, stay);
  return { code: a.link(), handlers };
}

function vectorHandler(img: Image, vector: number): number {
  if (vector === 0 || vector === 6) return img.handlers.skip2;
  if (vector === 14) return img.handlers.pf;
  if (vector === 3 || vector === IRQ_VECTOR || vector === INT_VECTOR) return img.handlers.iret;
  return img.handlers.halt;
}

// ---------------------------------------------------------------- the host

interface ExitRecord {
  reason: string;
  qualification: string;
  length: number;
  info: string;
  linear: string;
  physical: string;
  intr: string;
  intrError: string;
  vectoring: string;
  rip: string;
  rflags: string;
  interruptibility: number;
  activity: number;
  work: string;
  gprs: string;
}

interface Outcome {
  exits: ExitRecord[];
  end: string;
  gprs: string[];
  rip: string;
  rflags: string;
  cr3: string;
  ram: Uint8Array;
  compiled: number;
}

const hex = (v: bigint | number) => `0x${v.toString(16)}`;

function compiledBlocks(cpu: Interpreter): number {
  let n = 0;
  for (const page of cpu.codePages.values()) for (const b of page.blocks.values()) if (b.compiled) n++;
  return n;
}

function runCase(c: Case, decodeCache: boolean): Outcome {
  const cpu = new Interpreter();
  cpu.decodeCache = decodeCache;
  const ctl = c.controls;
  let proc = Proc.SECONDARY;
  if (ctl.hlt) proc |= Proc.HLT;
  if (ctl.rdtsc) proc |= Proc.RDTSC;
  if (ctl.invlpg) proc |= Proc.INVLPG;
  if (ctl.cr3Load) proc |= Proc.CR3_LOAD;
  if (ctl.cr3Store) proc |= Proc.CR3_STORE;
  if (ctl.irqs) proc |= Proc.INTERRUPT_WINDOW;
  if (ctl.mtf) proc |= Proc.MONITOR_TRAP_FLAG;
  proc |= ctl.exitPorts ? Proc.USE_IO_BITMAPS : Proc.UNCOND_IO;
  const r = rigWith(cpu, { realMode: true, proc, pin: ctl.timer ? Pin.PREEMPTION_TIMER : 0 });
  const { lp, mem, ept } = r;
  const ram = mem.allocate(RAM);
  ept.map(0, ram.hpa, MMIO);
  ept.map(MMIO + 0x1000, ram.hpa + MMIO + 0x1000, RAM - MMIO - 0x1000);
  const img = assemble(c);
  ram.bytes.set(img.code, CODE);

  const bitmapA = mem.allocatePage();
  const bitmapB = mem.allocatePage();
  for (const p of ctl.exitPorts ?? []) {
    const at = (p < 0x8000 ? bitmapA : bitmapB) + ((p & 0x7fff) >>> 3);
    mem.writeU8(at, mem.readU8(at) | (1 << (p & 7)));
  }
  lp.vmwrite(F.IO_BITMAP_A, bitmapA);
  lp.vmwrite(F.IO_BITMAP_B, bitmapB);
  lp.vmwrite(F.EXCEPTION_BITMAP, ctl.exceptionBitmap);
  lp.vmwrite(F.PAGE_FAULT_ERROR_CODE_MASK, ctl.pfMask);
  lp.vmwrite(F.PAGE_FAULT_ERROR_CODE_MATCH, ctl.pfMatch);
  lp.vmwrite(F.VMX_PREEMPTION_TIMER_VALUE, ctl.timer);

  const w16 = (at: number, v: number) => {
    ram.bytes[at] = v & 0xff;
    ram.bytes[at + 1] = (v >>> 8) & 0xff;
  };
  const segment = (
    seg: "DS" | "ES" | "SS" | "FS" | "GS",
    selector: number,
    base: number,
    limit: number,
    ar: number,
  ) => {
    lp.vmwrite(F[`GUEST_${seg}_SELECTOR`], selector);
    lp.vmwrite(F[`GUEST_${seg}_BASE`], base);
    lp.vmwrite(F[`GUEST_${seg}_LIMIT`], limit);
    lp.vmwrite(F[`GUEST_${seg}_AR_BYTES`], ar);
  };
  const b = c.dsBase;
  if (c.mode === "real") {
    for (let v = 0; v < 0x40; v++) {
      w16(v * 4, vectorHandler(img, v));
      w16(v * 4 + 2, 0);
    }
    lp.vmwrite(F.GUEST_IDTR_BASE, 0);
    lp.vmwrite(F.GUEST_IDTR_LIMIT, 0x3ff);
    segment("DS", b >>> 4, b, 0xffff, 0x93);
    segment("ES", b >>> 4, b, 0xffff, 0x93);
  } else {
    // 0x08 flat 32-bit code, 0x10 flat 32-bit data, 0x18 16-bit code, 0x20 16-bit data at the DS
    // base, 0x28 32-bit data at the DS base, 0x30 16-bit data at 0 (the 16-bit stack)
    const base = (d: bigint, at: number) => d | (BigInt(at & 0xffffff) << 16n) | (BigInt(at >>> 24) << 56n);
    const gdt = [
      0n,
      0x00cf9b000000ffffn,
      0x00cf93000000ffffn,
      0x00009b000000ffffn,
      base(0x000093000000ffffn, b),
      base(0x00cf93000000ffffn, b),
      0x000093000000ffffn,
    ];
    gdt.forEach((d, i) => {
      for (let k = 0; k < 8; k++) ram.bytes[GDT + i * 8 + k] = Number((d >> BigInt(k * 8)) & 0xffn);
    });
    const bits16 = c.mode === "prot16";
    // interrupt gates of the code's size (a 16-bit gate pushes a 16-bit frame)
    for (let v = 0; v < 0x40; v++) {
      const h = vectorHandler(img, v);
      w16(IDT + v * 8, h & 0xffff);
      w16(IDT + v * 8 + 2, bits16 ? 0x18 : 0x08);
      w16(IDT + v * 8 + 4, bits16 ? 0x8600 : 0x8e00);
      w16(IDT + v * 8 + 6, h >>> 16);
    }
    lp.vmwrite(F.GUEST_GDTR_BASE, GDT);
    lp.vmwrite(F.GUEST_GDTR_LIMIT, gdt.length * 8 - 1);
    lp.vmwrite(F.GUEST_IDTR_BASE, IDT);
    lp.vmwrite(F.GUEST_IDTR_LIMIT, 0x40 * 8 - 1);
    lp.vmwrite(F.GUEST_CS_SELECTOR, bits16 ? 0x18 : 0x08);
    lp.vmwrite(F.GUEST_CS_LIMIT, bits16 ? 0xffff : 0xffffffff);
    lp.vmwrite(F.GUEST_CS_AR_BYTES, bits16 ? 0x9b : 0xc09b);
    for (const seg of ["DS", "ES"] as const) {
      if (bits16) segment(seg, 0x20, b, 0xffff, 0x93);
      else segment(seg, 0x28, b, 0xffffffff, 0xc093);
    }
    for (const seg of ["SS", "FS", "GS"] as const) {
      if (bits16) segment(seg, 0x30, 0, 0xffff, 0x93);
      else segment(seg, 0x10, 0, 0xffffffff, 0xc093);
    }
    if (c.mode === "paging") {
      // one 4-MiB page (PSE) maps the first 4 MiB; the next 4 MiB are not present
      ram.bytes.set([0x83, 0, 0, 0], PAGE_DIR);
      lp.vmwrite(F.GUEST_CR3, PAGE_DIR);
      lp.vmwrite(F.GUEST_CR4, 0x2010n);
      lp.vmwrite(F.GUEST_CR0, 0x80000031n);
    } else lp.vmwrite(F.GUEST_CR0, 0x31n);
  }
  lp.vmwrite(F.GUEST_RIP, CODE);
  lp.vmwrite(F.GUEST_RSP, STACK_TOP);
  lp.vmwrite(F.GUEST_RFLAGS, c.ifAtEntry ? 0x202 : 0x2);

  const rd = (f: number) => lp.vmread(f);
  const advance = (length: bigint) => {
    lp.vmwrite(F.GUEST_RIP, rd(F.GUEST_RIP) + length);
    lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, rd(F.GUEST_INTERRUPTIBILITY_INFO) & ~3n);
  };
  const setLow = (index: number, size: number, value: number) => {
    const mask = size === 4 ? 0xffffffffn : (1n << BigInt(size * 8)) - 1n;
    cpu.setGpr(index, (cpu.getGpr(index) & ~mask) | (BigInt(value >>> 0) & mask));
  };
  const procBits = (clear: number) =>
    lp.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, rd(F.CPU_BASED_VM_EXEC_CONTROL) & ~BigInt(clear));

  const exits: ExitRecord[] = [];
  // most compiled blocks seen at an exit (self-modifying code drops a page's blocks again)
  let compiled = 0;
  let end = "exit limit";
  let mtfLeft = ctl.mtf;
  let irqsLeft = ctl.irqs;
  let launched = false;
  for (let n = 0; n < MAX_EXITS; n++) {
    let field: number;
    try {
      field = launched ? lp.vmresume() : lp.vmlaunch();
    } catch (e) {
      if (e instanceof VmxDeadlockError) {
        end = "deadlock";
        break;
      }
      throw e;
    }
    launched = true;
    compiled = Math.max(compiled, compiledBlocks(cpu));
    const reason = field & 0xffff;
    const q = rd(F.EXIT_QUALIFICATION);
    const len = rd(F.VM_EXIT_INSTRUCTION_LEN);
    const intr = Number(rd(F.VM_EXIT_INTR_INFO));
    const vectoring = Number(rd(F.IDT_VECTORING_INFO_FIELD));
    exits.push({
      reason: hex(field),
      qualification: hex(q),
      length: Number(len),
      info: hex(rd(F.VMX_INSTRUCTION_INFO)),
      linear: hex(rd(F.GUEST_LINEAR_ADDRESS)),
      physical: hex(rd(F.GUEST_PHYSICAL_ADDRESS)),
      intr: hex(intr),
      intrError: hex(rd(F.VM_EXIT_INTR_ERROR_CODE)),
      vectoring: `${hex(vectoring)}/${hex(rd(F.IDT_VECTORING_ERROR_CODE))}`,
      rip: hex(rd(F.GUEST_RIP)),
      rflags: hex(rd(F.GUEST_RFLAGS)),
      interruptibility: Number(rd(F.GUEST_INTERRUPTIBILITY_INFO)),
      activity: Number(rd(F.GUEST_ACTIVITY_STATE)),
      work: `${cpu.retired}+${cpu.eventsDelivered}`,
      gprs: Array.from({ length: 8 }, (_, i) => cpu.getGpr(i).toString(16)).join(" "),
    });
    if (field & 0x80000000) {
      end = "entry failure";
      break;
    }
    if (vectoring & 0x80000000) {
      if (reason === 0) {
        end = "exception while delivering an event";
        break;
      }
      // the interrupted delivery happens again on the next entry
      lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, (vectoring & 0x80000fff) >>> 0);
      lp.vmwrite(F.VM_ENTRY_EXCEPTION_ERROR_CODE, rd(F.IDT_VECTORING_ERROR_CODE));
      lp.vmwrite(F.VM_ENTRY_INSTRUCTION_LEN, len);
    }
    if (reason === 0) {
      // reflect the exception to the guest, as a hypervisor that only watches them does
      const type = (intr >>> 8) & 7;
      lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, (intr & 0x80000fff) >>> 0);
      if (intr & (1 << 11)) lp.vmwrite(F.VM_ENTRY_EXCEPTION_ERROR_CODE, rd(F.VM_EXIT_INTR_ERROR_CODE));
      if (type >= 4) lp.vmwrite(F.VM_ENTRY_INSTRUCTION_LEN, len);
      if ((intr & 0xff) === 14) cpu.setControl("cr2", q);
    } else if (reason === 2) {
      end = "triple fault";
      break;
    } else if (reason === 7) {
      lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, (0x80000000 | IRQ_VECTOR) >>> 0);
      if (--irqsLeft <= 0) procBits(Proc.INTERRUPT_WINDOW);
    } else if (reason === 10) {
      const leaf = Number(cpu.getGpr(AX) & 0xffffffffn);
      [AX, BX, CX, DX].forEach((g, i) => {
        cpu.setGpr(g, BigInt(((leaf * 0x9e3779b1) ^ (i * 0x1234567) ^ n) >>> 0));
      });
      advance(len);
    } else if (reason === 12) {
      end = "hlt";
      break;
    } else if (reason === 14 || reason === 32) {
      advance(len);
    } else if (reason === 16) {
      setLow(AX, 4, n * 1000);
      setLow(DX, 4, n);
      advance(len);
    } else if (reason === 28) {
      const cr = Number(q & 15n);
      const type = Number((q >> 4n) & 3n);
      const gpr = Number((q >> 8n) & 15n);
      if (cr !== 3 || type > 1) {
        end = `unexpected CR access ${hex(q)}`;
        break;
      }
      if (type === 0) lp.vmwrite(F.GUEST_CR3, cpu.getGpr(gpr) & 0xffffffffn);
      else cpu.setGpr(gpr, rd(F.GUEST_CR3));
      advance(len);
    } else if (reason === 30) {
      const size = Number(q & 7n) + 1;
      const input = (q & 8n) !== 0n;
      // string I/O is skipped whole; IN reads a value made of the port and the exit's number
      if (input && !(q & 16n)) setLow(AX, size, Number(q >> 16n) * 0x10001 + n);
      advance(len);
    } else if (reason === 31) {
      setLow(AX, 4, Number(cpu.getGpr(CX) & 0xffffffffn) ^ 0x5a5a5a5a);
      setLow(DX, 4, n);
      advance(len);
    } else if (reason === 37) {
      if (--mtfLeft <= 0) procBits(Proc.MONITOR_TRAP_FLAG);
    } else if (reason === 48) {
      const access = lp.mmioAccess;
      lp.mmioAccess = undefined;
      if (!access) {
        end = "EPT violation that is not a data access";
        break;
      }
      const value = access.write ? 0 : ((access.gpa * 0x01000193) ^ n) >>> 0;
      const mask = access.size >= 4 ? 0xffffffff : 2 ** (8 * access.size) - 1;
      lp.completeMmio({
        gpa: access.gpa,
        size: access.size,
        write: access.write,
        value: (value & mask) >>> 0,
      });
    } else if (reason === 52 && Number(rd(F.GUEST_ACTIVITY_STATE)) === 1) {
      // halted with HLT not exiting: only the timer comes back, for ever
      end = "halted";
      break;
    } else if (reason !== 52 && reason !== 1) {
      end = `unexpected exit ${reason}`;
      break;
    }
  }
  compiled = Math.max(compiled, compiledBlocks(cpu));
  return {
    exits,
    end,
    gprs: Array.from({ length: 8 }, (_, i) => hex(cpu.getGpr(i))),
    rip: hex(rd(F.GUEST_RIP)),
    rflags: hex(rd(F.GUEST_RFLAGS)),
    cr3: hex(rd(F.GUEST_CR3)),
    ram: ram.bytes.slice(),
    compiled,
  };
}

/** Compares two runs; returns the first difference, described, or undefined. */
function difference(blocks: Outcome, single: Outcome): string | undefined {
  const n = Math.max(blocks.exits.length, single.exits.length);
  for (let i = 0; i < n; i++) {
    const b = JSON.stringify(blocks.exits[i]);
    const s = JSON.stringify(single.exits[i]);
    if (b !== s) {
      const before = JSON.stringify(single.exits[i - 1] ?? null);
      return `exit #${i} differs\n  blocks:      ${b}\n  single-step: ${s}\n  (exit #${i - 1}: ${before})`;
    }
  }
  for (const k of ["end", "rip", "rflags", "cr3"] as const) {
    if (blocks[k] !== single[k]) return `${k}: blocks ${blocks[k]}, single-step ${single[k]}`;
  }
  if (blocks.gprs.join() !== single.gprs.join())
    return `GPRs: blocks ${blocks.gprs.join(" ")}, single-step ${single.gprs.join(" ")}`;
  for (let i = 0; i < RAM; i++) {
    if (blocks.ram[i] !== single.ram[i])
      return `memory at ${hex(i)}: blocks ${hex(blocks.ram[i]!)}, single-step ${hex(single.ram[i]!)}`;
  }
  return undefined;
}

const NO_CONTROLS: Controls = {
  exceptionBitmap: 0,
  pfMask: 0,
  pfMatch: 0,
  exitPorts: [],
  hlt: true,
  rdtsc: false,
  invlpg: false,
  cr3Load: false,
  cr3Store: false,
  irqs: 0,
  mtf: 0,
  timer: 0,
};
const HOT = {
  count: 200,
  body: [{ k: "alu", op: Alu.Add, dst: AX, src: DX } as Op, { k: "load", r: SI, disp: 8, byte: false } as Op],
};
const loop = (count: number, ...body: Op[]): Snippet => ({ k: "loop", count, body });
const fault = (kind: "de" | "ud" | "bp" | "int" | "pf"): Op => ({ k: "fault", kind });

/** Scenarios each exit kind is sure to meet inside compiled loops, with the exits they must show. */
const SCENARIOS: { name: string; c: Case | Case[]; reasons: number[] }[] = [
  {
    name: "interrupt windows opened by POPF and STI in the middle of compiled loops",
    c: {
      mode: "real",
      dsBase: 0,
      ifAtEntry: false,
      controls: { ...NO_CONTROLS, irqs: 30 },
      hot: HOT,
      program: [
        loop(
          40,
          { k: "flags", kind: "popf-if" },
          { k: "incdec", r: DI, dec: false },
          { k: "flags", kind: "cli" },
        ),
        loop(
          40,
          { k: "flags", kind: "sti" },
          { k: "incdec", r: SI, dec: false },
          { k: "flags", kind: "popf-noif" },
        ),
      ],
    },
    reasons: [7, 12],
  },
  {
    name: "the preemption timer expires at the same instruction inside compiled loops",
    // timer values whose instruction budgets end at every offset into the loop's blocks
    c: [33, 70, 101, 163, 229, 357].map((budget) => ({
      mode: "prot" as const,
      dsBase: 0,
      ifAtEntry: false,
      controls: { ...NO_CONTROLS, timer: Math.ceil(budget / 2 ** PREEMPTION_TIMER_RATE) },
      hot: { count: 400, body: [{ k: "alu", op: Alu.Add, dst: AX, src: DX } as Op] },
      program: [loop(100, { k: "store", r: AX, disp: 4, byte: false }, { k: "incdec", r: SI, dec: true })],
    })),
    reasons: [52, 10, 12],
  },
  {
    name: "the monitor trap flag for a while, then compiled blocks",
    c: {
      mode: "real",
      dsBase: 0,
      ifAtEntry: false,
      controls: { ...NO_CONTROLS, mtf: 25 },
      hot: HOT,
      program: [],
    },
    reasons: [37, 10, 12],
  },
  {
    name: "MMIO loads and stores, REP STOS/MOVS into MMIO and port I/O inside compiled loops",
    c: {
      mode: "prot",
      dsBase: 0,
      ifAtEntry: false,
      controls: { ...NO_CONTROLS, exitPorts: [0x80, 0x3f8] },
      hot: HOT,
      program: [
        loop(
          20,
          { k: "alu", op: Alu.Add, dst: DI, src: AX },
          { k: "mmio", write: false, off: 0x10, byte: false },
          { k: "mmio", write: true, off: 0x20, byte: true },
          { k: "io", port: 0x80, size: 1, input: false, viaDx: false },
          { k: "io", port: 0x3f8, size: 1, input: true, viaDx: true },
          { k: "io", port: 0x61, size: 2, input: true, viaDx: false },
        ),
        loop(3, { k: "rep", op: 0xaa, size: 4, count: 3, src: 0, dst: 0x40, mmio: true }),
        loop(3, { k: "rep", op: 0xa4, size: 2, count: 2, src: 0x10, dst: 0x80, mmio: true }),
        loop(
          2,
          { k: "repio", op: 0x6e, port: 0x80, count: 5 },
          { k: "repio", op: 0x6c, port: 0x61, count: 5 },
        ),
      ],
    },
    reasons: [48, 30, 10, 12],
  },
  {
    name: "self-modifying stores into the running block and into earlier blocks of compiled loops",
    c: {
      mode: "real",
      dsBase: 0,
      ifAtEntry: false,
      controls: NO_CONTROLS,
      hot: HOT,
      program: [
        loop(50, { k: "smc", variant: "imm" }, { k: "alu", op: Alu.Add, dst: AX, src: DX }),
        loop(50, { k: "smc", variant: "toggle" }, { k: "alu", op: Alu.Xor, dst: DI, src: AX }),
        loop(50, { k: "smc", variant: "back" }, { k: "incdec", r: DX, dec: false }),
      ],
    },
    reasons: [10, 12],
  },
  {
    name: "faults and software interrupts in compiled loops, reflected by the host or taken by the guest",
    c: {
      mode: "prot",
      dsBase: 0,
      ifAtEntry: false,
      controls: { ...NO_CONTROLS, exceptionBitmap: (1 << 0) | (1 << 3) },
      hot: HOT,
      program: [
        loop(30, fault("de"), { k: "incdec", r: DI, dec: false }, fault("ud"), fault("bp"), fault("int")),
      ],
    },
    reasons: [0, 10, 12],
  },
  {
    name: "paging: #PF (exiting by error-code match), INVLPG and CR3 exits in compiled loops",
    c: {
      mode: "paging",
      dsBase: 0,
      ifAtEntry: false,
      controls: {
        ...NO_CONTROLS,
        exceptionBitmap: 1 << 14,
        pfMask: 2,
        pfMatch: 0,
        invlpg: true,
        cr3Load: true,
        cr3Store: true,
      },
      hot: HOT,
      program: [
        loop(25, fault("pf"), { k: "incdec", r: DI, dec: false }, { k: "invlpg", disp: 0x100 }, { k: "cr3" }),
        loop(
          25,
          { k: "store", r: AX, disp: 0x200, byte: false },
          { k: "rdtsc" },
          { k: "msr", write: false, index: 0x10 },
        ),
      ],
    },
    reasons: [0, 14, 28, 31, 10, 12],
  },
];

function expectSame(c: Case): Outcome {
  const blocks = runCase(c, true);
  const single = runCase(c, false);
  const diff = difference(blocks, single);
  if (diff !== undefined) throw new Error(diff);
  expect(single.compiled).toBe(0);
  // the blocks-on run did run compiled code: every case has a hot loop past the compile threshold
  expect(blocks.compiled).toBeGreaterThan(0);
  return single;
}

describe("software VT-x: compiled blocks and single steps give the same exits and state", () => {
  for (const { name, c, reasons } of SCENARIOS) {
    it(name, () => {
      for (const one of Array.isArray(c) ? c : [c]) {
        const out = expectSame(one);
        const seen = new Set(out.exits.map((e) => Number(e.reason)));
        for (const r of reasons) expect(seen.has(r), `exit reason ${r} in ${[...seen].join(",")}`).toBe(true);
        expect(out.end).toBe("hlt");
      }
    });
  }

  it(`random guests under random execution controls (${CASES} cases)`, {
    timeout: 60_000 + CASES * 1000,
  }, () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        expectSame(c);
      }),
      { numRuns: CASES, ...(SEED !== undefined ? { seed: Number(SEED) } : {}) },
    );
  });
});

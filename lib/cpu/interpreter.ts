// The x86 interpreter: architectural state, memory access through a flat TLB, operand decoding,
// and the run loop. Instruction semantics live in exec*.ts, system mechanics (segments, gates,
// exceptions) in system.ts, the page walk in mmu.ts.
//
// Representation choices (for speed, and so a later block compiler can reuse them):
// - general registers are 32-bit halves in two Int32Arrays (no BigInt on the hot path);
// - addresses are JS numbers: 32-bit unsigned outside long mode, signed canonical (-2^47..2^47)
//   in 64-bit mode, so every linear address is exact in a double;
// - a value wider than 32 bits travels as lo (the return value) plus `vh` (the high half);
// - flags are lazy (flags.ts).

import { type Block, blockMatches, buildBlock, CODE_TAG, CodePage, modeKey } from "./block-cache.js";
import { runChain } from "./block-chain.js";
import { COMPILE_THRESHOLD, compileBlock } from "./block-compile.js";
import { OpKind } from "./block-ops.js";
import {
  catchUpCodeMap,
  markSharedCode,
  parkCodeMap,
  SHARED_TAG,
  serializeCode,
  smpFill,
} from "./code-coherence.js";
import { DebugException, debugAfter, debugBefore, pageWatched, syncDebug, watchAccess } from "./debug.js";
import { execute } from "./exec.js";
import { CpuConfigError, CpuFault, EXIT_SIGNAL, ExitSignal, Vec } from "./faults.js";
import {
  condition,
  FL_AC,
  FL_IF,
  FL_RF,
  FL_TF,
  type LazyFlags,
  LZ_ADD,
  LZ_DEC,
  LZ_INC,
  LZ_LOGIC,
  LZ_NONE,
  LZ_RES,
  LZ_SUB,
  lazyCf,
  materialize,
} from "./flags.js";
import type {
  ControlRegister,
  ExtendedState,
  GuestCpu,
  SegmentState,
  SysenterRegister,
  TableState,
} from "./guest-cpu.js";
import {
  Access,
  EventType,
  EXIT,
  type InstructionContext,
  MMIO,
  type NonRootHooks,
  type PageMapping,
  StopReason,
  Window,
} from "./hooks.js";
import { smapAcCleared, translate } from "./mmu.js";
import { MSR, readMsr, writeMsr } from "./msr.js";
import { pkruLoaded } from "./pku.js";
import { installAtomicAccess, lockedRead, lockedWrite } from "./smp-atomic.js";
import { type SharedMemoryState, SmpLink } from "./smp-memory.js";
import { deliver, deliverFault, updateMode } from "./system.js";
import { TLB_MASK, TLB_SIZE, TlbBank } from "./tlb-bank.js";

/** blocks or single steps between two calls of hostPoll (bounds the wall time between them) */
const POLL_EVERY = 64;
/**
 * Self-modifying code (block-cache.ts): a page turns hot after `hits` writes that dropped blocks,
 * each at most `gap` instructions (+ events) after the one before; it is then single-stepped for
 * `base` * 2^n instructions, n counting the hot periods that began less than `forget` after the
 * previous one ended (at most `maxDoublings`).
 */
export interface HotPagePolicy {
  hits: number;
  gap: number;
  base: number;
  maxDoublings: number;
  forget: number;
}
export const DEFAULT_HOT_POLICY: Readonly<HotPagePolicy> = {
  hits: 8,
  gap: 1 << 16,
  base: 1 << 14,
  maxDoublings: 6,
  forget: 1 << 22,
};
/** blocks a page may hold: past it the page starts over (code that keeps finding new entry points) */
const MAX_PAGE_BLOCKS = 512;
/**
 * Decoded ops the cache may hold before it starts over (QEMU flushes its translation buffer when
 * full likewise): code that is entered at ever new places (a guest running through memory) would
 * otherwise grow the host's heap without bound. About 200 bytes an op. Blocks dropped (code
 * written, pages remapped) no longer count: a guest that loads modules and runs processes would
 * otherwise start over every so often and lose its compiled blocks.
 */
const MAX_CACHED_OPS = 1 << 18;
/** single steps between two block lookups while the code runs on a hot page */
const HOT_SKIP = 32;
/** entries of lookupBlock's cache of blocks by linear address */
const JMP_SIZE = 4096;
const JMP_MASK = JMP_SIZE - 1;
const EMPTY = new Uint8Array(0);
/** one DataView per guest-memory array (TLB fills look it up) */
const views = new WeakMap<Uint8Array, DataView>();
function viewOf(bytes: Uint8Array): DataView {
  let v = views.get(bytes);
  if (v === undefined) {
    v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    views.set(bytes, v);
  }
  return v;
}
const TWO32 = 4294967296;
/** highest 64-bit linear address from which no access (at most 512 bytes) reaches past 2^47 */
const CANON_NEAR_TOP = 0x800000000000 - 512;
const CANON_EDGE = 0x800000000000 - TWO32;

export const enum Cr0 {
  PE = 1,
  MP = 2,
  EM = 4,
  TS = 8,
  ET = 0x10,
  NE = 0x20,
  WP = 0x10000,
  AM = 0x40000,
  NW = 0x20000000,
  CD = 0x40000000,
  PG = 0x80000000,
}

export const enum Cr4 {
  VME = 1,
  PVI = 2,
  TSD = 4,
  DE = 8,
  PSE = 0x10,
  PAE = 0x20,
  MCE = 0x40,
  PGE = 0x80,
  PCE = 0x100,
  OSFXSR = 0x200,
  OSXMMEXCPT = 0x400,
  UMIP = 0x800,
  FSGSBASE = 0x10000,
  PCIDE = 0x20000,
  OSXSAVE = 0x40000,
  SMEP = 0x100000,
  SMAP = 0x200000,
}

export const EFER_SCE = 1;
export const EFER_LME = 0x100;
export const EFER_LMA = 0x400;
export const EFER_NXE = 0x800;

/** bigint <-> our number address convention (signed for the upper canonical half) */
export function toNum(v: bigint): number {
  return Number(BigInt.asIntN(64, v));
}
export function toBig(v: number): bigint {
  return BigInt.asUintN(64, BigInt(v));
}

/** VMX-style "unusable" bit of a segment's access rights (null selector in protected mode) */
const AR_UNUSABLE = 0x10000;

export class Interpreter implements GuestCpu, LazyFlags {
  // general registers
  lo = new Int32Array(16);
  hi = new Int32Array(16);
  rip = 0xfff0;
  /** high half of the last 64-bit value returned by a helper */
  vh = 0;

  // flags
  eflags = 2;
  fOp = LZ_NONE;
  fSize = 32;
  fA = 0;
  fB = 0;
  fRes = 0;
  fAHi = 0;
  fBHi = 0;
  fResHi = 0;
  fCf = 0;
  fOf = 0;
  fAf = 0;

  // segments: index Seg (ES CS SS DS FS GS LDTR TR)
  segSel = new Int32Array(8);
  segBase = new Float64Array(8);
  segLimit = new Float64Array(8);
  segAr = new Int32Array(8);
  /** bit per segment (ES..GS) whose accesses need limit/type checks with 16-bit / 32-bit offsets
   * (system.ts updateMode; 0 in 64-bit mode and for flat segments, so the fast path does nothing) */
  segChk16 = 0;
  segChk32 = 0;
  /** stack accesses need SS limit checks */
  ssChk = false;
  /**
   * Per segment (ES..GS), the highest offset of an access's last byte that a block's memory op
   * (default address size, no override) may reach without segCheck: +Infinity when the segment
   * needs no checks, its limit when only the limit can fault, -1 when segCheck must decide every
   * access (system.ts updateSegChecks). Reads and writes apart (a read-only segment).
   */
  segFastR = new Float64Array(6).fill(Number.POSITIVE_INFINITY);
  segFastW = new Float64Array(6).fill(Number.POSITIVE_INFINITY);
  /** the decoded memory operand's segment needs checks (1) */
  eaChk = 0;
  /** base used for address computation: 0 for ES/CS/SS/DS in 64-bit mode */
  effBase = new Float64Array(6);
  gdtBase = 0;
  gdtLimit = 0xffff;
  idtBase = 0;
  idtLimit = 0x3ff;

  // control
  cr0 = 0x60000010;
  cr2 = 0;
  cr3 = 0;
  cr4 = 0;
  cr8 = 0;
  efer = 0;
  dr = new Float64Array(8);
  // debug.ts: what DR7 enables (masks of breakpoints 0-3 by kind) and the #DB being gathered
  /** DR7 enables a breakpoint: the run loop single-steps through the debug checks */
  dbgOn = false;
  /** DR7 and CR4.DE as syncDebug last saw them */
  dbgKey = -1;
  dbgExec = 0;
  dbgData = 0;
  dbgIo = 0;
  /** B0-B3 of the breakpoints the current instruction's accesses matched */
  dbgHits = 0;
  /** #DB bits held over a MOV SS / POP SS shadow */
  dbgPending = 0;
  /** the current instruction delivered an event or masked TF: no single-step trap after it */
  dbgNoStep = false;
  /** RF as the current instruction started (restored when it ends in a VM exit) */
  dbgRf = 0;
  pat = 0x0007040600070406n;
  debugctl = 0n;
  sysenterCs = 0;
  sysenterEsp = 0;
  sysenterEip = 0;
  star = 0n;
  lstar = 0;
  cstar = 0;
  sfmask = 0;
  kernelGsBase = 0;
  apicBase = 0xfee00900n;
  miscEnable = 1n;
  tscAux = 0;
  tscOffset = 0n;
  /**
   * What VMX non-root operation adds to the TSC the guest reads (RDTSC, RDTSCP, RDMSR IA32_TSC):
   * the VMCS TSC offset under "use TSC offsetting" (SDM Vol. 3C 26.3), set at each VM entry;
   * writes of IA32_TSC are not offset.
   */
  tscGuestOffset = 0n;
  /** IA32_TSC_ADJUST (unsigned 64-bit) */
  tscAdjust = 0n;
  /**
   * The TSC's source in ticks (the host's clock scaled to the TSC frequency, so that guest time
   * follows wall time as on hardware); null counts retired instructions, which is reproducible.
   */
  tscClock: (() => number) | null = null;
  /** MSRs written by the guest that the interpreter only stores (MTRRs and the like) */
  otherMsrs = new Map<number, bigint>();
  xcr0 = 1n;
  #pkru = 0;
  /**
   * PKRU (protection-key rights for user pages, pku.ts); kept with the x87/SSE state. The data
   * translations of both TLB banks were made under the old rights: a change drops them.
   */
  get pkru(): number {
    return this.#pkru;
  }
  set pkru(v: number) {
    if (v === this.#pkru) return;
    this.#pkru = v;
    this.dropDataTranslations();
  }

  // derived mode (system.ts updateMode)
  mode64 = false;
  /** CS.D (default operand/address size 32) outside 64-bit mode */
  csD = false;
  /** SS.B: 32-bit stack pointer */
  ssB = false;
  pm = false;
  cpl = 0;
  paging = false;

  // x87/SSE state
  fpu = new Float64Array(8);
  fpuTop = 0;
  fpuTag = 0;
  fpuCw = 0x37f;
  fpuSw = 0;
  /** XMM registers as 4 x 32-bit lanes each */
  xmm = new Int32Array(64);
  mxcsr = 0x1f80;

  // GuestCpu fields
  interruptibility = 0;
  activity = 0;
  windowRequests = 0;
  hooks: NonRootHooks | null = null;
  hostPoll: (() => boolean) | null = null;
  /**
   * An instruction's hook recorded a VM exit and the instruction returned without effect (see
   * execute): the frequent instruction exits (I/O, HLT, PAUSE, CPUID, RDMSR/WRMSR, RDTSC) end this
   * way rather than by throwing EXIT_SIGNAL out of op1/exec0f, through which V8 unwinds slowly
   */
  exitDeferred = false;
  retired = 0;
  eventsDelivered = 0;
  stringIterations = 0;
  /** the work count at which the current run() ends (REP chunks stop there) */
  workLimit = Number.POSITIVE_INFINITY;
  /** blocks or single steps left before run() asks hostPoll again */
  pollCountdown = POLL_EVERY;
  /** how many times each unimplemented opcode raised #UD: index op (1 byte), 0x100|op (0F op),
   * 0x200|op (0F 38 op), 0x300|op (0F 3A op) */
  udCounts = new Uint32Array(0x400);
  udTotal = 0;

  // decoder state for the current instruction
  /** linear address of the first byte of the current instruction */
  get insnLin(): number {
    return this.effBase[1] + this.rip;
  }
  /** offset (RIP form) of the next byte to fetch */
  ip = 0;
  osz = 32;
  asz = 32;
  /** operand/address size without prefixes in the current mode (system.ts updateMode) */
  defOsz = 16;
  defAsz = 16;
  /** segment override or -1 */
  segOv = -1;
  /** 0, 0xf2 or 0xf3 */
  rep = 0;
  lock = false;
  /** REX byte (0x40..0x4f) or 0 */
  rex = 0;
  opsizePrefix = false;
  mod = 0;
  reg = 0;
  rm = 0;
  /** linear address of the memory operand */
  ea = 0;
  /** effective address (offset) of the memory operand: lo / hi halves */
  eaOff = 0;
  eaOffHi = 0;
  eaSeg = 3;
  /** retired count at which a STI/MOV SS shadow was set */
  shadowAt = -1;

  // TLB (read, write, execute): one bank of entries per privilege (tlb-bank.ts), supervisor and
  // user; the fields below are the current bank's arrays (privilegeChanged switches them)
  readonly tlbBanks: readonly [TlbBank, TlbBank] = [new TlbBank(), new TlbBank()];
  /** the current bank: 1 the user one (CPL 3), 0 the supervisor one */
  tlbUser = 0;
  tlbRTag = this.tlbBanks[0].rTag;
  tlbWTag = this.tlbBanks[0].wTag;
  tlbXTag = this.tlbBanks[0].xTag;
  tlbRMem = this.tlbBanks[0].rMem;
  tlbWMem = this.tlbBanks[0].wMem;
  tlbXMem = this.tlbBanks[0].xMem;
  /** DataViews over tlbRMem/tlbWMem (same indexes): compiled blocks read and write words with one
   * access instead of byte by byte */
  tlbRView = this.tlbBanks[0].rView;
  tlbWView = this.tlbBanks[0].wView;
  tlbROff = this.tlbBanks[0].rOff;
  tlbWOff = this.tlbBanks[0].wOff;
  tlbXOff = this.tlbBanks[0].xOff;
  tlbRGlobal = this.tlbBanks[0].rGlobal;
  tlbWGlobal = this.tlbBanks[0].wGlobal;
  tlbXGlobal = this.tlbBanks[0].xGlobal;
  /** guest-physical page of each write and execute entry (decode-cache invalidation and lookup) */
  tlbWGpa = this.tlbBanks[0].wGpa;
  tlbXGpa = this.tlbBanks[0].xGpa;
  /** the code page of each checked write entry (tag + CODE_TAG) */
  tlbWCode = this.tlbBanks[0].wCode;

  // decode cache (block-cache.ts)
  /** guest-physical page -> its cached blocks; while such a page is live, its write entries in the
   * TLB are checked ones (CODE_TAG) */
  codePages = new Map<number, CodePage>();
  /** when a page whose blocks keep being overwritten is single-stepped instead (tests lower it) */
  hotPolicy: HotPagePolicy = { ...DEFAULT_HOT_POLICY };
  /** blocks decoded (lookupBlock misses) */
  blocksBuilt = 0;
  /** ops (plus one per block) of the blocks the code pages hold (MAX_CACHED_OPS) */
  private readonly cachedOps = { ops: 0 };
  /** times the whole cache started over */
  codeFlushes = 0;
  /** blocks dropped because the guest wrote into the bytes they were decoded from */
  blocksInvalidated = 0;
  /** times a page turned hot (its code single-stepped for a while: it kept being rewritten) */
  hotPageEvents = 0;
  /** lookupBlock's memo of the last hot page it declined: linear page, codeEpoch, until */
  private hotLin = Number.NaN;
  private hotEpoch = -1;
  private hotUntil = 0;
  /** single steps the run loop takes before it looks for a block again (after a hot page) */
  private hotSkip = 0;
  /** bumped whenever a cached block or a successor link may have become stale */
  codeEpoch = 0;
  /**
   * lookupBlock's direct-mapped cache of blocks by linear address, each entry valid for the
   * linkKey() it was made at (returns and indirect branches, whose successor links keep missing)
   */
  private readonly jmpLin = new Float64Array(JMP_SIZE).fill(Number.NaN);
  private readonly jmpEpoch = new Float64Array(JMP_SIZE).fill(-1);
  private readonly jmpBlk: (Block | null)[] = new Array(JMP_SIZE).fill(null);
  /** per TLB index, the codeEpoch in which lookupBlock last handed out a block there (flushPage) */
  codeLinEpoch = new Float64Array(TLB_SIZE).fill(-1);
  /** the codeEpoch in which lookupBlock last handed out a block on a non-global page (flushNonGlobal) */
  nonGlobalCodeEpoch = -1;
  /** bumped on every run(): blocks re-check their bytes once per run */
  runEpoch = 0;
  /**
   * What new interpreters start with (the soft backend creates its own): tests run whole suites
   * single-stepped by clearing it, to prove blocks and single steps give the same exits and state.
   */
  static defaultDecodeCache = true;
  /** false: every instruction goes through the single-step decoder (tests, debugging) */
  decodeCache = Interpreter.defaultDecodeCache;
  /** REP MOVS/STOS a page at a time where they can (exec-string.ts; false: an iteration at a time) */
  repBulk = true;
  /**
   * What new interpreters start with as jitThreshold: the "blocks" test project lowers it so that
   * short test guests run compiled blocks too (test/support/early-compile.ts).
   */
  static defaultJitThreshold = COMPILE_THRESHOLD;
  /** runs of a block before it is compiled to a JavaScript function (0: never) */
  jitThreshold = Interpreter.defaultJitThreshold;
  /** the block that ran last (its successor link is the fast lookup) */
  lastBlock: Block | null = null;
  /** the cached page mapping the TLB was filled from was user-accessible at CPL 3 */
  tlbCpl3 = false;
  /** guest-physical page -> mapping, for page-walk reads and non-paged fills */
  physCache = new Map<number, PageMapping | typeof MMIO>();
  // translate() outputs
  xGpa = 0;
  xGlobal = false;

  // instruction fetch window: one code page
  fpBase = Number.NaN;
  fpMem: Uint8Array = EMPTY;
  fpOff = 0;
  /** index in fpMem of the next instruction byte, and the end of the window (0: no window) */
  fp = 0;
  fpEnd = 0;
  /** the current code page's window in fpMem [fpLo, fpHi) (fpHi 0: none), and fp - ip within it */
  fpLo = 0;
  fpHi = 0;
  fpDelta = 0;

  /**
   * Other threads run vCPUs over the same guest memory (attachSharedMemory): locked operations
   * are atomic, aligned accesses single-copy atomic, and code written by one vCPU reaches the
   * others' decode caches at serializing points (smp-atomic.ts, code-coherence.ts). Null: one
   * interpreter owns the memory, and none of that costs anything.
   */
  smp: SmpLink | null = null;
  /** the current instruction is a locked read-modify-write (smp-atomic.ts lockedRead/Write) */
  lockRmw = false;
  /** with shared memory, the copy of a code page that a block is decoded from */
  private codeSnap: Uint8Array = EMPTY;

  constructor() {
    this.reset();
  }

  /**
   * Joins the vCPUs that share guest memory (state from createSharedMemoryState, the same object
   * posted to every worker; `vcpu` this interpreter's slot in it). Call once, before the first
   * run(): the interpreter takes atomic versions of its memory paths as own properties (so
   * interpreters without shared memory keep theirs untouched) and starts with an empty TLB and
   * decode cache.
   */
  attachSharedMemory(state: SharedMemoryState, vcpu: number): void {
    if (this.smp !== null) throw new CpuConfigError("Interpreter.attachSharedMemory: already attached");
    this.smp = new SmpLink(state, vcpu);
    this.codeSnap = new Uint8Array(4096);
    installAtomicAccess(this);
    this.flushCode();
    this.flushTlb();
    catchUpCodeMap(this);
  }

  /** x86 power-on state: real mode, CS:IP = F000:FFF0 with CS.base 0xFFFF0000. */
  reset(): void {
    this.lo.fill(0);
    this.hi.fill(0);
    this.lo[2] = 0x600; // EDX: family 6
    this.rip = 0xfff0;
    this.eflags = 2;
    this.fOp = LZ_NONE;
    for (let s = 0; s < 6; s++) {
      this.segSel[s] = 0;
      this.segBase[s] = 0;
      this.segLimit[s] = 0xffff;
      this.segAr[s] = s === 1 ? 0x9b : 0x93;
    }
    this.segSel[1] = 0xf000;
    this.segBase[1] = 0xffff0000;
    this.segLimit[6] = 0xffff;
    this.segAr[6] = 0x82;
    this.segLimit[7] = 0xffff;
    this.segAr[7] = 0x8b;
    this.cr0 = 0x60000010;
    this.cr2 = 0;
    this.cr3 = 0;
    this.cr4 = 0;
    this.efer = 0;
    this.activity = 0;
    this.interruptibility = 0;
    this.dr.fill(0);
    this.dr[6] = 0xffff0ff0;
    this.dr[7] = 0x400;
    this.dbgPending = 0;
    updateMode(this);
    syncDebug(this);
  }

  // ---------------------------------------------------------------- flags

  getFlags(): number {
    return materialize(this);
  }
  setFlags(v: number): void {
    const old = this.eflags;
    // one test on the common path: neither TF nor AC changes
    if (((v ^ old) & (FL_TF | FL_AC)) !== 0) {
      // TF set by a generic op in a block (POPF): the block stops after it, and the run loop
      // single-steps from there (codeEpoch)
      if ((v & ~old & FL_TF) !== 0) this.codeEpoch++;
      // AC cleared (POPF, IRET, real-mode event delivery, RFLAGS from the VMCS): translations SMAP
      // allowed on AC = 1 must not outlive it
      if ((old & ~v & FL_AC) !== 0) smapAcCleared(this);
    }
    this.eflags = (v & 0x3f7fd5) | 2;
    this.fOp = LZ_NONE;
  }
  cf(): number {
    return lazyCf(this);
  }
  cond(cc: number): boolean {
    return condition(this, cc);
  }
  /** flags after an op that sets ZF/SF/PF from a result and CF/OF explicitly */
  setRes(size: number, res: number, resHi: number, cf: number, of: number): void {
    this.fOp = LZ_RES;
    this.fSize = size;
    this.fRes = res;
    this.fResHi = resHi;
    this.fA = 0;
    this.fB = 0;
    this.fCf = cf;
    this.fOf = of;
    this.fAf = 0;
  }
  /** materializes the flags and replaces the bits in `mask` with `bits` */
  patchFlags(mask: number, bits: number): void {
    this.eflags = (materialize(this) & ~mask) | bits;
    this.fOp = LZ_NONE;
  }

  // ---------------------------------------------------------------- ALU

  /** ADD/OR/ADC/SBB/AND/SUB/XOR/CMP by the ModRM /r number. Returns lo; hi in vh. */
  alu(op: number, size: number, a: number, ah: number, b: number, bh: number): number {
    const c = op === 2 || op === 3 ? lazyCf(this) : 0;
    switch (op) {
      case 2:
      case 0: {
        this.fOp = LZ_ADD;
        this.fSize = size;
        this.fA = a;
        this.fB = b;
        const r = a + b + c;
        this.fRes = r;
        if (size === 64) {
          const rh = (ah >>> 0) + (bh >>> 0) + (r > 0xffffffff ? 1 : 0);
          this.fAHi = ah;
          this.fBHi = bh;
          this.fResHi = rh;
          this.vh = rh | 0;
          return r >>> 0;
        }
        return size === 32 ? r >>> 0 : r & ((1 << size) - 1);
      }
      case 3:
      case 5:
      case 7: {
        this.fOp = LZ_SUB;
        this.fSize = size;
        this.fA = a;
        this.fB = b;
        const r = a - b - c;
        this.fRes = r;
        if (size === 64) {
          const rh = (ah >>> 0) - (bh >>> 0) - (r < 0 ? 1 : 0);
          this.fAHi = ah;
          this.fBHi = bh;
          this.fResHi = rh;
          this.vh = rh | 0;
          return r >>> 0;
        }
        return size === 32 ? r >>> 0 : r & ((1 << size) - 1);
      }
      case 1:
        return this.logic(size, a | b, ah | bh);
      case 4:
        return this.logic(size, a & b, ah & bh);
      default:
        return this.logic(size, a ^ b, ah ^ bh);
    }
  }
  logic(size: number, r: number, rh: number): number {
    this.fOp = LZ_LOGIC;
    this.fSize = size;
    r = r >>> 0;
    this.fRes = r;
    this.fResHi = rh;
    this.vh = rh;
    return r;
  }
  inc(size: number, a: number, ah: number): number {
    this.fCf = lazyCf(this);
    this.fOp = LZ_INC;
    this.fSize = size;
    this.fA = a;
    this.fB = 1;
    const r = a + 1;
    if (size === 64) {
      const rh = r > 0xffffffff ? (ah + 1) | 0 : ah;
      this.fAHi = ah;
      this.fBHi = 0;
      this.fResHi = rh;
      this.fRes = r >>> 0;
      this.vh = rh;
      return r >>> 0;
    }
    const m = size === 32 ? r >>> 0 : r & ((1 << size) - 1);
    this.fRes = m;
    return m;
  }
  dec(size: number, a: number, ah: number): number {
    this.fCf = lazyCf(this);
    this.fOp = LZ_DEC;
    this.fSize = size;
    this.fA = a;
    this.fB = 1;
    const r = a - 1;
    if (size === 64) {
      const rh = r < 0 ? (ah - 1) | 0 : ah;
      this.fAHi = ah;
      this.fBHi = 0;
      this.fResHi = rh;
      this.fRes = r >>> 0;
      this.vh = rh;
      return r >>> 0;
    }
    const m = size === 32 ? r >>> 0 : r & ((1 << size) - 1);
    this.fRes = m;
    return m;
  }

  // ---------------------------------------------------------------- registers

  /** register by number and size (8-bit without REX: 4..7 are AH CH DH BH); unsigned ≤32 bits */
  getReg(size: number, r: number): number {
    switch (size) {
      case 8:
        if (r < 4 || r > 7 || this.rex !== 0) return this.lo[r] & 0xff;
        return (this.lo[r - 4] >> 8) & 0xff;
      case 16:
        return this.lo[r] & 0xffff;
      case 32:
        return this.lo[r] >>> 0;
      default:
        this.vh = this.hi[r];
        return this.lo[r] >>> 0;
    }
  }
  setReg(size: number, r: number, v: number, vh: number): void {
    switch (size) {
      case 8:
        if (r < 4 || r > 7 || this.rex !== 0) this.lo[r] = (this.lo[r] & ~0xff) | (v & 0xff);
        else this.lo[r - 4] = (this.lo[r - 4] & ~0xff00) | ((v & 0xff) << 8);
        return;
      case 16:
        this.lo[r] = (this.lo[r] & ~0xffff) | (v & 0xffff);
        return;
      case 32:
        this.lo[r] = v;
        this.hi[r] = 0;
        return;
      default:
        this.lo[r] = v;
        this.hi[r] = vh;
    }
  }

  // ---------------------------------------------------------------- memory: TLB

  get user(): boolean {
    return this.cpl === 3;
  }

  flushTlb(): void {
    this.tlbBanks[0].flush();
    this.tlbBanks[1].flush();
    this.physCache.clear();
    this.fpBase = Number.NaN;
    this.fpEnd = 0;
    this.fpHi = 0;
    this.codeEpoch++;
  }
  /** CR3 write: drops non-global entries */
  flushNonGlobal(): void {
    if ((this.cr4 & Cr4.PGE) === 0) {
      this.flushTlb();
      return;
    }
    this.tlbBanks[0].flushNonGlobal();
    this.tlbBanks[1].flushNonGlobal();
    this.physCache.clear();
    this.fpBase = Number.NaN;
    this.fpEnd = 0;
    this.fpHi = 0;
    // global translations may outlive a CR3 write, so links and memos into global code pages stay
    // (as such entries may stay in a processor's TLB); only code on a non-global page looked up
    // in this epoch needs new ones
    if (this.nonGlobalCodeEpoch === this.codeEpoch) this.codeEpoch++;
  }
  flushPage(lin: number): void {
    const i = (lin >>> 12) & TLB_MASK;
    this.tlbBanks[0].flushIndex(i);
    this.tlbBanks[1].flushIndex(i);
    this.fpBase = Number.NaN;
    this.fpEnd = 0;
    this.fpHi = 0;
    // links and memos of this epoch may lead to code at a page with this index (lookupBlock
    // stamps it); older ones are dead already
    if (this.codeLinEpoch[i] === this.codeEpoch) this.codeEpoch++;
  }
  /**
   * CPL moved between 3 and 0-2 (system.ts updateMode): the bank of translations made under the
   * new privilege becomes the current one; those of the old one wait for the next change back.
   */
  privilegeChanged(): void {
    const user = this.cpl === 3 ? 1 : 0;
    if (user === this.tlbUser) return;
    this.tlbUser = user;
    const b = this.tlbBanks[user];
    this.tlbRTag = b.rTag;
    this.tlbWTag = b.wTag;
    this.tlbXTag = b.xTag;
    this.tlbRMem = b.rMem;
    this.tlbWMem = b.wMem;
    this.tlbXMem = b.xMem;
    this.tlbRView = b.rView;
    this.tlbWView = b.wView;
    this.tlbROff = b.rOff;
    this.tlbWOff = b.wOff;
    this.tlbXOff = b.xOff;
    this.tlbRGlobal = b.rGlobal;
    this.tlbWGlobal = b.wGlobal;
    this.tlbXGlobal = b.xGlobal;
    this.tlbWGpa = b.wGpa;
    this.tlbXGpa = b.xGpa;
    this.tlbWCode = b.wCode;
    this.fpBase = Number.NaN;
    this.fpEnd = 0;
    this.fpHi = 0;
  }
  /** the data translations of the page at `lin` go, in both banks */
  dropDataTranslation(lin: number): void {
    const i = (lin >>> 12) & TLB_MASK;
    for (const b of this.tlbBanks) {
      b.rTag[i] = Number.NaN;
      b.wTag[i] = Number.NaN;
    }
  }
  /** the data translations of both banks go (the rights they were made under changed) */
  dropDataTranslations(): void {
    this.tlbBanks[0].flushData();
    this.tlbBanks[1].flushData();
  }
  /**
   * What successor links, the jump cache and chained blocks are valid for: the codeEpoch and the
   * privilege they were made at (a link skips the fetch translation, which depends on both).
   */
  linkKey(): number {
    return this.codeEpoch * 2 + this.tlbUser;
  }
  /** the host or a device wrote guest-physical [gpa, gpa+length): forget code decoded from it */
  invalidateCode(gpa: number, length: number): void {
    this.fpBase = Number.NaN;
    this.fpEnd = 0;
    this.fpHi = 0;
    if (this.codePages.size === 0 || length <= 0) return;
    const end = gpa + length;
    let dropped = 0;
    for (const cp of this.codePages.values()) {
      if (cp.gpa + 4096 <= gpa || cp.gpa >= end || cp.blocks.size === 0) continue;
      const from = Math.max(gpa, cp.gpa);
      const to = Math.min(end, cp.gpa + 4096);
      dropped += cp.drop(from - cp.gpa, to - from);
      if (cp.blocks.size === 0) cp.live = false;
    }
    if (dropped !== 0) this.codeEpoch++;
  }
  /**
   * The guest writes guest-physical [gpa, gpa+bytes) (within one page) outside the TLB (system
   * writes: exception frames, TSS): drops the blocks decoded from those bytes.
   */
  noteWrite(gpa: number, bytes: number): void {
    const cp = this.codePages.get(gpa - (gpa % 4096));
    if (cp?.live && cp.covers(gpa % 4096, bytes)) this.codeWritten(cp, gpa % 4096, bytes);
  }
  /**
   * A guest write hit the bytes of cached blocks on page `cp`: drop them (a block that is running
   * stops after the current instruction: codeEpoch), and count the hit toward making the page hot.
   */
  codeWritten(cp: CodePage, off: number, bytes: number): void {
    const n = cp.drop(off, bytes);
    if (n === 0) return;
    this.blocksInvalidated += n;
    this.codeEpoch++;
    // a page left without blocks takes plain write entries until a block is built there again
    if (cp.blocks.size === 0) cp.live = false;
    const now = this.retired + this.eventsDelivered;
    // the iterations of a REP string instruction (and the bytes of one store) count once
    if (now === cp.lastHit) return;
    const policy = this.hotPolicy;
    if (now - cp.lastHit > policy.gap) cp.hits = 0;
    cp.lastHit = now;
    if (++cp.hits < policy.hits) return;
    // rebuilt and rewritten again and again: single-step the page's code for a while
    this.blocksInvalidated += this.makeHot(cp, now);
  }
  /** page `cp` turns hot at clock `now`: its blocks go, its code is single-stepped for a while */
  private makeHot(cp: CodePage, now: number): number {
    const policy = this.hotPolicy;
    if (now - cp.hotUntil > policy.forget) cp.hotRuns = 0;
    cp.hotUntil = now + policy.base * 2 ** cp.hotRuns;
    if (cp.hotRuns < policy.maxDoublings) cp.hotRuns++;
    cp.hits = 0;
    cp.live = false;
    this.hotPageEvents++;
    this.codeEpoch++;
    return cp.clear();
  }
  /**
   * A device model ran inside a hook (port I/O or MMIO handled without an exit) and may have
   * written guest RAM behind the TLB (DMA): cached blocks re-check their bytes before running.
   */
  devicesRan(): void {
    this.runEpoch++;
    this.codeEpoch++;
  }
  /** drops every cached block (the cache is full): code is decoded anew as it runs */
  flushCode(): void {
    for (const cp of this.codePages.values()) {
      cp.clear();
      cp.live = false;
    }
    this.codePages.clear();
    this.cachedOps.ops = 0;
    this.lastBlock = null;
    this.hotLin = Number.NaN;
    this.codeFlushes++;
    this.codeEpoch++;
  }
  /** the page becomes a code page: no write may bypass the checked write path from now on */
  private markCode(gpaPage: number): CodePage {
    const cp = new CodePage(gpaPage, this.cachedOps);
    this.codePages.set(gpaPage, cp);
    this.guardWrites(gpaPage);
    if (this.smp !== null) markSharedCode(this, gpaPage);
    return cp;
  }
  /** drops the plain write entries of a guest-physical page (the next write refills a checked one) */
  private guardWrites(gpaPage: number): void {
    this.tlbBanks[0].flushWrites(gpaPage);
    this.tlbBanks[1].flushWrites(gpaPage);
  }

  requireHooks(): NonRootHooks {
    const h = this.hooks;
    if (h === null) throw new CpuConfigError("Interpreter.hooks is not set: nothing backs guest memory");
    return h;
  }

  /** host mapping of a guest-physical page, cached */
  mapPhys(gpa: number, access: Access, lin: number, paging: boolean): PageMapping | typeof MMIO {
    const page = gpa - (gpa % 4096);
    const cached = this.physCache.get(page);
    if (cached !== undefined) {
      // a page's mapping holds for the accesses its permissions allow; MMIO, as a read found it,
      // for data (an execute-only page, EPT without read, is still fetched from memory)
      if (cached === MMIO) {
        if (access !== Access.Execute) return cached;
      } else if (
        access === Access.Read
          ? cached.readable
          : access === Access.Write
            ? cached.writable
            : cached.executable
      ) {
        return cached;
      }
    }
    const m = this.requireHooks().mapPage(page, access, lin, paging);
    if (m === EXIT) throw EXIT_SIGNAL;
    // a write that is MMIO may be one to read-only memory (firmware ROM: EPT without write), whose
    // reads and fetches still go to memory: only a read's or a fetch's answer holds for the page
    if (m !== MMIO || access !== Access.Write) this.physCache.set(page, m);
    return m;
  }

  /** Fills the TLB entry of `lin` for `access`; false if the page is MMIO (xGpa set). */
  fill(lin: number, access: Access): boolean {
    if (this.mode64 && (lin >= 0x800000000000 || lin < -0x800000000000)) throw new CpuFault(Vec.GP, 0);
    const gpa = this.paging ? translate(this, lin, access, this.cpl === 3) : lin;
    this.xGpa = gpa;
    const m = this.mapPhys(gpa, access, lin, false);
    if (m === MMIO) return false;
    const page = lin - (lin & 0xfff);
    const i = (lin >>> 12) & TLB_MASK;
    const off = m.offset + ((gpa % 4096) - (lin & 0xfff));
    const global = this.xGlobal ? 1 : 0;
    if (access === Access.Read) {
      this.tlbRGlobal[i] = global;
      this.tlbRTag[i] = page;
      this.tlbRMem[i] = m.bytes;
      this.tlbRView[i] = viewOf(m.bytes);
      this.tlbROff[i] = off;
      if (this.smp !== null) smpFill(this, i, page, -1, m.bytes);
    } else if (access === Access.Write) {
      const gpaPage = gpa - (gpa % 4096);
      const cp = this.codePages.size !== 0 ? this.codePages.get(gpaPage) : undefined;
      this.tlbWGpa[i] = gpaPage;
      this.tlbRGlobal[i] = global;
      this.tlbWGlobal[i] = global;
      // a page with live blocks: every write looks at the block bitmap first (wrSlow)
      this.tlbWCode[i] = cp ?? null;
      if (cp?.live) this.tlbWTag[i] = page + CODE_TAG;
      else this.tlbWTag[i] = page;
      this.tlbWMem[i] = m.bytes;
      const view = viewOf(m.bytes);
      this.tlbWView[i] = view;
      this.tlbWOff[i] = off;
      // a writable page is readable with the same permissions
      this.tlbRTag[i] = page;
      this.tlbRMem[i] = m.bytes;
      this.tlbRView[i] = view;
      this.tlbROff[i] = off;
      if (this.smp !== null) smpFill(this, i, page, gpaPage, m.bytes);
    } else {
      this.tlbXGpa[i] = gpa - (gpa % 4096);
      this.tlbXGlobal[i] = !this.paging || this.xGlobal ? 1 : 0;
      this.tlbXTag[i] = page;
      this.tlbXMem[i] = m.bytes;
      this.tlbXOff[i] = off;
    }
    // a page a data breakpoint covers is left untagged: each access comes back here, through the
    // slow paths that check the breakpoints (the entry stays filled for the caller's access)
    if (this.dbgData !== 0 && access !== Access.Execute && pageWatched(this, page)) {
      this.tlbRTag[i] = Number.NaN;
      this.tlbWTag[i] = Number.NaN;
    }
    return true;
  }

  /**
   * An access of `size` bytes (1 to 8, within one page) to the MMIO address in xGpa. A read
   * returns bits 31:0 and leaves the rest in vh.
   */
  mmioRead(lin: number, size: number): number {
    const hooks = this.requireHooks();
    const r = hooks.mmio(this.xGpa, size, false, 0, 0, lin);
    if (r === EXIT) throw EXIT_SIGNAL;
    if (hooks.mmioRunsDevices !== false) this.devicesRan();
    if (size > 4) {
      const high = hooks.mmioHigh;
      this.vh = (high === undefined ? Math.floor(r / TWO32) : high) | 0;
    }
    return r >>> 0;
  }
  mmioWrite(lin: number, size: number, v: number, vh: number): void {
    const hooks = this.requireHooks();
    const r = hooks.mmio(this.xGpa, size, true, v, vh, lin);
    if (r === EXIT) throw EXIT_SIGNAL;
    if (hooks.mmioRunsDevices !== false) this.devicesRan();
  }

  rd8(lin: number): number {
    const i = (lin >>> 12) & TLB_MASK;
    if (this.tlbRTag[i] === lin - (lin & 0xfff)) return this.tlbRMem[i][this.tlbROff[i] + (lin & 0xfff)];
    if (this.dbgData !== 0) watchAccess(this, lin, 1, false);
    if (!this.fill(lin, Access.Read)) return this.mmioRead(lin, 1) & 0xff;
    return this.tlbRMem[i][this.tlbROff[i] + (lin & 0xfff)];
  }
  rd16(lin: number): number {
    const o = lin & 0xfff;
    const i = (lin >>> 12) & TLB_MASK;
    if (this.tlbRTag[i] === lin - o && o < 0xfff) {
      const m = this.tlbRMem[i];
      const p = this.tlbROff[i] + o;
      return m[p] | (m[p + 1] << 8);
    }
    return this.rdSlow(lin, 2);
  }
  rd32(lin: number): number {
    const o = lin & 0xfff;
    const i = (lin >>> 12) & TLB_MASK;
    if (this.tlbRTag[i] === lin - o && o < 0xffd) {
      const m = this.tlbRMem[i];
      const p = this.tlbROff[i] + o;
      return (m[p] | (m[p + 1] << 8) | (m[p + 2] << 16) | (m[p + 3] << 24)) >>> 0;
    }
    return this.rdSlow(lin, 4);
  }
  /** returns lo, high half in vh */
  rd64(lin: number): number {
    const o = lin & 0xfff;
    const i = (lin >>> 12) & TLB_MASK;
    if (this.tlbRTag[i] === lin - o && o < 0xff9) {
      const m = this.tlbRMem[i];
      const p = this.tlbROff[i] + o;
      this.vh = m[p + 4] | (m[p + 5] << 8) | (m[p + 6] << 16) | (m[p + 7] << 24);
      return (m[p] | (m[p + 1] << 8) | (m[p + 2] << 16) | (m[p + 3] << 24)) >>> 0;
    }
    if (this.dbgData !== 0) watchAccess(this, lin, 8, false);
    if (o < 0xff9) {
      // one access, also to MMIO (one 8-byte exit, as KVM makes it)
      if (!this.fill(lin, Access.Read)) return this.mmioRead(lin, 8);
      const m = this.tlbRMem[i];
      const p = this.tlbROff[i] + o;
      this.vh = m[p + 4] | (m[p + 5] << 8) | (m[p + 6] << 16) | (m[p + 7] << 24);
      return (m[p] | (m[p + 1] << 8) | (m[p + 2] << 16) | (m[p + 3] << 24)) >>> 0;
    }
    const b = this.rdBytes(lin, 8);
    this.vh = b[4] | (b[5] << 8) | (b[6] << 16) | (b[7] << 24);
    return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
  }
  /** 16 bytes (SSE) into out[at..at+3] as four 32-bit lanes */
  rd128(lin: number, out: Int32Array, at: number): void {
    const o = lin & 0xfff;
    const i = (lin >>> 12) & TLB_MASK;
    if (this.tlbRTag[i] === lin - o && o < 0xff1) {
      const m = this.tlbRMem[i];
      const p = this.tlbROff[i] + o;
      for (let k = 0; k < 4; k++) {
        const q = p + 4 * k;
        out[at + k] = m[q] | (m[q + 1] << 8) | (m[q + 2] << 16) | (m[q + 3] << 24);
      }
      return;
    }
    const b = this.rdBytes(lin, 16);
    for (let k = 0; k < 4; k++) {
      const q = 4 * k;
      out[at + k] = b[q] | (b[q + 1] << 8) | (b[q + 2] << 16) | (b[q + 3] << 24);
    }
  }
  rdSlow(lin: number, size: number): number {
    if (this.dbgData !== 0) watchAccess(this, lin, size, false);
    const o = lin & 0xfff;
    if (o + size <= 0x1000) {
      const i = (lin >>> 12) & TLB_MASK;
      if (!this.fill(lin, Access.Read)) return this.mmioRead(lin, size);
      const m = this.tlbRMem[i];
      const p = this.tlbROff[i] + o;
      let v = 0;
      for (let k = size - 1; k >= 0; k--) v = v * 256 + m[p + k];
      return v;
    }
    const b = this.rdBytes(lin, size);
    let v = 0;
    for (let k = size - 1; k >= 0; k--) v = v * 256 + b[k];
    return v;
  }

  /** bytes of an access the fast paths leave to rdBytes/wrBytes (16 at most) */
  readonly accBytes = new Uint8Array(16);

  /**
   * Reads `size` bytes (up to 16) that may cross a page or lie in MMIO, into accBytes: both pages
   * are translated before either is read (precise faults), then each page's part is read in
   * address order, from RAM directly and from MMIO as accesses of at most 8 bytes each. So every
   * MMIO byte is read once, in the pieces KVM's emulator makes of the same access.
   */
  rdBytes(lin: number, size: number): Uint8Array {
    if (this.dbgData !== 0) watchAccess(this, lin, size, false);
    const b = this.accBytes;
    b.fill(0);
    const first = Math.min(size, 0x1000 - (lin & 0xfff));
    if (first < size) {
      this.probe(lin, Access.Read);
      this.probe(this.addLin(lin, first), Access.Read);
    }
    for (let off = 0; off < size; ) {
      const end = off < first ? first : size;
      const n = Math.min(8, end - off);
      this.rdPiece(this.addLin(lin, off), n, b, off);
      off += n;
    }
    return b;
  }
  /** n (at most 8) bytes within one page into b[at..] */
  private rdPiece(lin: number, n: number, b: Uint8Array, at: number): void {
    const i = (lin >>> 12) & TLB_MASK;
    if (this.tlbRTag[i] === lin - (lin & 0xfff) || this.fill(lin, Access.Read)) {
      const m = this.tlbRMem[i];
      const p = this.tlbROff[i] + (lin & 0xfff);
      for (let k = 0; k < n; k++) b[at + k] = m[p + k];
      return;
    }
    const lo = this.mmioRead(lin, n);
    const hi = n > 4 ? this.vh : 0;
    for (let k = 0; k < n; k++) b[at + k] = k < 4 ? lo >>> (8 * k) : hi >>> (8 * (k - 4));
  }
  /**
   * Writes `size` bytes (up to 16) from accBytes where they may cross a page or lie in MMIO: both
   * pages (or the one page of a 16-byte store) are checked for writing first, then each page's
   * part is written in address order, MMIO in pieces of at most 8 bytes (as rdBytes).
   */
  wrBytes(lin: number, size: number): void {
    if (this.dbgData !== 0) watchAccess(this, lin, size, true);
    const b = this.accBytes;
    const first = Math.min(size, 0x1000 - (lin & 0xfff));
    if (first < size) {
      this.probe(lin, Access.Write);
      this.probe(this.addLin(lin, first), Access.Write);
    } else if (size > 8) this.probe(lin, Access.Write);
    for (let off = 0; off < size; ) {
      const end = off < first ? first : size;
      const n = Math.min(8, end - off);
      const lo = b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24);
      const hi = b[off + 4] | (b[off + 5] << 8) | (b[off + 6] << 16) | (b[off + 7] << 24);
      // within one page: wrSlow's in-page path (RAM, code pages, or one MMIO access)
      this.wrSlow(this.addLin(lin, off), n, lo, hi);
      off += n;
    }
  }
  probe(lin: number, access: Access): void {
    const i = (lin >>> 12) & TLB_MASK;
    const page = lin - (lin & 0xfff);
    if (access === Access.Write) {
      const t = this.tlbWTag[i];
      if (t !== page && t !== page + CODE_TAG && t !== page + SHARED_TAG) this.fill(lin, access);
    } else if (this.tlbRTag[i] !== page) this.fill(lin, access);
  }
  /** checks that [lin, lin+size) is writable before a read-modify-write reads it */
  probeWrite(lin: number, size: number): void {
    this.probe(lin, Access.Write);
    if ((lin & 0xfff) + size > 0x1000) this.probe(this.addLin(lin, size - 1), Access.Write);
  }
  /** lin + n with the address wrap of the current mode */
  addLin(lin: number, n: number): number {
    return this.mode64 ? lin + n : (lin + n) >>> 0;
  }

  wr8(lin: number, v: number): void {
    const i = (lin >>> 12) & TLB_MASK;
    if (this.tlbWTag[i] === lin - (lin & 0xfff)) {
      this.tlbWMem[i][this.tlbWOff[i] + (lin & 0xfff)] = v;
      return;
    }
    this.wrSlow(lin, 1, v, 0);
  }
  wr16(lin: number, v: number): void {
    const o = lin & 0xfff;
    const i = (lin >>> 12) & TLB_MASK;
    if (this.tlbWTag[i] === lin - o && o < 0xfff) {
      const m = this.tlbWMem[i];
      const p = this.tlbWOff[i] + o;
      m[p] = v;
      m[p + 1] = v >> 8;
      return;
    }
    this.wrSlow(lin, 2, v, 0);
  }
  wr32(lin: number, v: number): void {
    const o = lin & 0xfff;
    const i = (lin >>> 12) & TLB_MASK;
    if (this.tlbWTag[i] === lin - o && o < 0xffd) {
      const m = this.tlbWMem[i];
      const p = this.tlbWOff[i] + o;
      m[p] = v;
      m[p + 1] = v >> 8;
      m[p + 2] = v >> 16;
      m[p + 3] = v >> 24;
      return;
    }
    this.wrSlow(lin, 4, v, 0);
  }
  wr64(lin: number, v: number, vh: number): void {
    const o = lin & 0xfff;
    const i = (lin >>> 12) & TLB_MASK;
    if (this.tlbWTag[i] === lin - o && o < 0xff9) {
      const m = this.tlbWMem[i];
      const p = this.tlbWOff[i] + o;
      m[p] = v;
      m[p + 1] = v >> 8;
      m[p + 2] = v >> 16;
      m[p + 3] = v >> 24;
      m[p + 4] = vh;
      m[p + 5] = vh >> 8;
      m[p + 6] = vh >> 16;
      m[p + 7] = vh >> 24;
      return;
    }
    this.wrSlow(lin, 8, v, vh);
  }
  wrSlow(lin: number, size: number, v: number, vh: number): void {
    if (this.dbgData !== 0) watchAccess(this, lin, size, true);
    const o = lin & 0xfff;
    if (o + size <= 0x1000) {
      const i = (lin >>> 12) & TLB_MASK;
      const page = lin - o;
      let tag = this.tlbWTag[i];
      if (tag !== page && tag !== page + CODE_TAG) {
        if (!this.fill(lin, Access.Write)) {
          this.mmioWrite(lin, size, v, vh);
          return;
        }
        tag = this.tlbWTag[i];
      }
      if (tag !== page) {
        // a page with cached blocks: drop the blocks this write hits (none: nothing happens); or
        // a page a data breakpoint keeps untagged, which may have blocks too
        const cp = this.tlbWCode[i];
        if (cp !== null) {
          if (!cp.live) {
            if (tag === page + CODE_TAG) this.tlbWTag[i] = page;
          } else if (cp.covers(o, size)) this.codeWritten(cp, o, size);
        }
      }
      const m = this.tlbWMem[i];
      const p = this.tlbWOff[i] + o;
      for (let k = 0; k < size; k++) m[p + k] = k < 4 ? v >> (8 * k) : vh >> (8 * (k - 4));
      return;
    }
    // crosses a page
    const b = this.accBytes;
    b.fill(0);
    for (let k = 0; k < size; k++) b[k] = k < 4 ? v >> (8 * k) : vh >> (8 * (k - 4));
    this.wrBytes(lin, size);
  }
  /** 16 bytes (SSE) from four 32-bit lanes lanes[at..at+3] */
  wr128(lin: number, lanes: Int32Array, at: number): void {
    const o = lin & 0xfff;
    const i = (lin >>> 12) & TLB_MASK;
    if (this.tlbWTag[i] === lin - o && o < 0xff1) {
      const m = this.tlbWMem[i];
      const p = this.tlbWOff[i] + o;
      for (let k = 0; k < 4; k++) {
        const v = lanes[at + k];
        const q = p + 4 * k;
        m[q] = v;
        m[q + 1] = v >> 8;
        m[q + 2] = v >> 16;
        m[q + 3] = v >> 24;
      }
      return;
    }
    const b = this.accBytes;
    for (let k = 0; k < 16; k++) b[k] = lanes[at + (k >> 2)] >> (8 * (k & 3));
    this.wrBytes(lin, 16);
  }

  /** read of `size` (8/16/32/64) bits; 64 puts the high half in vh */
  rd(size: number, lin: number): number {
    switch (size) {
      case 8:
        return this.rd8(lin);
      case 16:
        return this.rd16(lin);
      case 32:
        return this.rd32(lin);
      default:
        return this.rd64(lin);
    }
  }
  wr(size: number, lin: number, v: number, vh: number): void {
    switch (size) {
      case 8:
        this.wr8(lin, v);
        return;
      case 16:
        this.wr16(lin, v);
        return;
      case 32:
        this.wr32(lin, v);
        return;
      default:
        this.wr64(lin, v, vh);
    }
  }

  // ---------------------------------------------------------------- instruction fetch

  /** positions the fetch window at RIP (start of an instruction) */
  beginFetch(): void {
    // the window maps instruction offsets (RIP values) directly: no linear-address arithmetic
    const p = this.rip + this.fpDelta;
    if (p >= this.fpLo && p < this.fpHi) {
      this.fp = p;
      this.fpEnd = this.fpHi;
    } else this.fpEnd = 0;
  }
  fetch8(): number {
    const p = this.fp;
    this.ip++;
    if (p < this.fpEnd) {
      this.fp = p + 1;
      return this.fpMem[p];
    }
    return this.fetchSlow(this.effBase[1] + this.ip - 1);
  }
  fetchSlow(lin: number): number {
    if (!this.mode64) lin = lin >>> 0;
    if (this.ip - 1 - this.rip >= 15) throw new CpuFault(Vec.GP, 0);
    if (!this.mode64 && this.ip - 1 > this.segLimit[1] && this.pm) throw new CpuFault(Vec.GP, 0);
    const i = (lin >>> 12) & TLB_MASK;
    const page = lin - (lin & 0xfff);
    if (this.tlbXTag[i] !== page && !this.fill(lin, Access.Execute)) {
      // executing from MMIO is not supported
      throw new CpuFault(Vec.GP, 0);
    }
    this.fpBase = page;
    this.fpMem = this.tlbXMem[i];
    this.fpOff = this.tlbXOff[i];
    this.fp = this.fpOff + (lin & 0xfff) + 1;
    this.fpLo = this.fpOff;
    this.fpHi = this.fpOff + 4096;
    this.fpEnd = this.fpHi;
    this.fpDelta = this.fp - this.ip;
    return this.fpMem[this.fp - 1];
  }
  fetch16(): number {
    const a = this.fetch8();
    return a | (this.fetch8() << 8);
  }
  fetch32(): number {
    const a = this.fetch16();
    return (a | (this.fetch16() << 16)) >>> 0;
  }
  /** immediate of operand size (imm32 sign-extended for 64), unsigned within size; hi in vh */
  fetchImm(size: number): number {
    if (size === 8) return this.fetch8();
    if (size === 16) return this.fetch16();
    const v = this.fetch32();
    if (size === 64) this.vh = v >> 31;
    return v;
  }

  // ---------------------------------------------------------------- ModRM

  /** decodes ModRM (+SIB, displacement); `immLen` = immediate bytes that follow (RIP-relative) */
  modrm(immLen: number): void {
    const b = this.fetch8();
    const mod = b >> 6;
    // group 3 (F6/F7): only TEST (/0, /1) has an immediate; the caller passes its size negated
    if (immLen < 0) immLen = (b & 0x30) === 0 ? -immLen : 0;
    const rex = this.rex;
    this.mod = mod;
    this.reg = ((b >> 3) & 7) | ((rex & 4) << 1);
    if (mod === 3) {
      this.rm = (b & 7) | ((rex & 1) << 3);
      return;
    }
    const rm = b & 7;
    if (this.asz === 16) {
      this.ea16(mod, rm);
      return;
    }
    // lo accumulates the low halves and the signed displacement exactly (a double); the carry or
    // borrow out of it is folded into hi at the end
    let seg = 3;
    let lo = 0;
    let hi = 0;
    let base: number;
    if (rm === 4) {
      const sib = this.fetch8();
      base = (sib & 7) | ((rex & 1) << 3);
      const idx = ((sib >> 3) & 7) | ((rex & 2) << 2);
      const scale = sib >> 6;
      if (idx !== 4) {
        lo = (this.lo[idx] >>> 0) * (1 << scale);
        hi = this.hi[idx] * (1 << scale);
      }
      if ((base & 7) === 5 && mod === 0) {
        base = -1;
        const d = this.fetch32() | 0;
        lo += d;
      } else if (base === 4 || base === 5) seg = 2;
    } else if (rm === 5 && mod === 0) {
      const d = this.fetch32() | 0;
      if (this.mode64) {
        // RIP-relative: relative to the end of the instruction
        const next = this.ip + immLen;
        lo = (next >>> 0) + d;
        hi = Math.floor(next / TWO32);
      } else {
        lo = d;
        hi = 0;
      }
      base = -1;
    } else {
      base = rm | ((rex & 1) << 3);
      if (rm === 5) seg = 2;
    }
    if (base >= 0) {
      lo += this.lo[base] >>> 0;
      hi += this.hi[base];
    }
    if (mod === 1) {
      const d = (this.fetch8() << 24) >> 24;
      lo += d;
    } else if (mod === 2) {
      const d = this.fetch32() | 0;
      lo += d;
    }
    // a CS override is checked even when CS is flat: code segments are never writable
    let ovChk = 0;
    if (this.segOv >= 0) {
      seg = this.segOv;
      if (seg === 1) ovChk = this.csOverrideChk();
    }
    this.eaSeg = seg;
    const carry = Math.floor(lo / TWO32);
    lo = lo >>> 0;
    if (this.asz === 32) {
      this.eaOff = lo;
      this.eaOffHi = 0;
      this.eaChk = ((this.segChk32 >> seg) & 1) | ovChk;
      this.ea = this.mode64 ? this.effBase[seg] + lo : (this.effBase[seg] + lo) >>> 0;
      return;
    }
    hi = (hi + carry) | 0;
    this.eaOff = lo;
    this.eaOffHi = hi;
    const ea = this.effBase[seg] + hi * TWO32 + lo;
    this.ea = ea;
    // 64-bit mode has only the canonical check: flagged here for addresses outside the canonical
    // range or so close to its top that an access of up to 512 bytes may cross it (checkEa decides,
    // with #SS for SS-based operands; the TLB fill would say #GP)
    this.eaChk = ea > CANON_NEAR_TOP || ea < -0x800000000000 ? 1 : 0;
  }
  /** 1 if a CS-override memory operand needs checks: protected mode outside 64-bit mode */
  csOverrideChk(): number {
    return this.pm && !this.mode64 ? 1 : 0;
  }
  /** ModRM whose r/m always names a register (MOV CR/DR) */
  modrmReg(): void {
    const b = this.fetch8();
    this.mod = 3;
    this.reg = ((b >> 3) & 7) | ((this.rex & 4) << 1);
    this.rm = (b & 7) | ((this.rex & 1) << 3);
  }
  ea16(mod: number, rm: number): void {
    let off: number;
    let seg = 3;
    const r = this.lo;
    switch (rm) {
      case 0:
        off = r[3] + r[6];
        break;
      case 1:
        off = r[3] + r[7];
        break;
      case 2:
        off = r[5] + r[6];
        seg = 2;
        break;
      case 3:
        off = r[5] + r[7];
        seg = 2;
        break;
      case 4:
        off = r[6];
        break;
      case 5:
        off = r[7];
        break;
      case 6:
        if (mod === 0) off = this.fetch16();
        else {
          off = r[5];
          seg = 2;
        }
        break;
      default:
        off = r[3];
    }
    if (mod === 1) off += (this.fetch8() << 24) >> 24;
    else if (mod === 2) off += this.fetch16();
    let ovChk = 0;
    if (this.segOv >= 0) {
      seg = this.segOv;
      if (seg === 1) ovChk = this.csOverrideChk();
    }
    off &= 0xffff;
    this.eaSeg = seg;
    this.eaOff = off;
    this.eaOffHi = 0;
    this.eaChk = ((this.segChk16 >> seg) & 1) | ovChk;
    this.ea = (this.effBase[seg] + off) >>> 0;
  }
  /** canonical check of a 64-bit linear address (#SS for stack references, else #GP) */
  canon(lin: number, seg: number): number {
    if (lin >= 0x800000000000 || lin < -0x800000000000) {
      // wrap modulo 2^64 first: offsets like 0xffff... added to small bases
      const w = lin >= 0 ? lin - 2 ** 64 : lin + 2 ** 64;
      if (w >= 0x800000000000 || w < -0x800000000000) throw new CpuFault(seg === 2 ? Vec.SS : Vec.GP, 0);
      return w;
    }
    return lin;
  }
  /** linear address of seg:offset for string ops, stack and moffs (offset already masked) */
  linear(seg: number, off: number): number {
    if (this.mode64) return this.canon(this.effBase[seg] + off, seg);
    return (this.effBase[seg] + off) >>> 0;
  }
  /**
   * Linear address of a `bytes`-wide data access at seg:off outside the ModRM paths (moffs, XLAT),
   * after the checks a memory operand gets (offset already masked to the address size).
   */
  dataLinear(seg: number, off: number, bytes: number, write: boolean): number {
    if (this.mode64) return this.canonRange(this.effBase[seg] + off, bytes, seg);
    const chk = ((this.asz === 16 ? this.segChk16 : this.segChk32) >> seg) & 1;
    if (chk !== 0 || (write && seg === 1 && this.pm)) this.segCheck(seg, off, bytes, write);
    return (this.effBase[seg] + off) >>> 0;
  }
  /** SS limit/type check of a stack access at offset `off` (nothing for a flat stack) */
  stackCheck(off: number, bytes: number, write: boolean): void {
    if (this.ssChk) this.segCheck(2, off, bytes, write);
  }

  /**
   * Checks of the decoded memory operand for an access of `bytes` from its start; callers test
   * `eaChk !== 0` first, so flat segments pay nothing. Outside 64-bit mode: segment limit and
   * type; in 64-bit mode: the canonical check of the whole access (#SS(0) when SS-based).
   */
  checkEa(bytes: number, write: boolean): void {
    if (this.mode64) this.ea = this.canonRange(this.ea, bytes, this.eaSeg);
    else this.segCheck(this.eaSeg, this.eaOff, bytes, write);
  }
  /** [lin, lin+bytes) must be canonical (after the wrap modulo 2^64); returns lin wrapped */
  canonRange(lin: number, bytes: number, seg: number): number {
    const w = this.canon(lin, seg);
    if (w >= 0 && w + bytes > 0x800000000000) throw new CpuFault(seg === 2 ? Vec.SS : Vec.GP, 0);
    return w;
  }
  /** moves the decoded memory operand by `disp` bytes within the address size (BT* with a
   * register bit offset) */
  eaDisplace(disp: number): void {
    if (this.asz === 64) {
      const ea = this.ea + disp;
      this.ea = ea;
      this.eaChk = ea > CANON_NEAR_TOP || ea < -0x800000000000 ? 1 : 0;
      return;
    }
    const off = this.asz === 32 ? (this.eaOff + disp) >>> 0 : (this.eaOff + disp) & 0xffff;
    this.eaOff = off;
    const lin = this.effBase[this.eaSeg] + off;
    this.ea = this.mode64 ? lin : lin >>> 0;
  }
  /** the memory operand's checks when its segment needs them (SSE, x87, system operands) */
  eaAccess(bytes: number, write: boolean): void {
    if (this.eaChk !== 0) this.checkEa(bytes, write);
  }

  /**
   * Segment limit and type check of [off, off+bytes) in `seg` (only called for non-flat segments):
   * #GP(0), or #SS(0) for SS, before anything changes.
   */
  segCheck(seg: number, off: number, bytes: number, write: boolean): void {
    const ar = this.segAr[seg];
    if (this.pm) {
      const vec = seg === 2 ? Vec.SS : Vec.GP;
      if ((ar & AR_UNUSABLE) !== 0) throw new CpuFault(vec, 0); // null selector
      if ((ar & 8) !== 0) {
        // code segment: never writable, readable only if the R bit is set
        if (write || (ar & 2) === 0) throw new CpuFault(Vec.GP, 0);
      } else if (write && (ar & 2) === 0) throw new CpuFault(vec, 0);
    }
    this.segLimitCheck(seg, off, bytes);
  }
  /** the limit half of segCheck (CLFLUSH may name an execute-only segment) */
  segLimitCheck(seg: number, off: number, bytes: number): void {
    const ar = this.segAr[seg];
    const vec = seg === 2 ? Vec.SS : Vec.GP;
    if (this.pm && (ar & AR_UNUSABLE) !== 0) throw new CpuFault(vec, 0);
    const limit = this.segLimit[seg];
    const end = off + bytes - 1;
    if ((ar & 0x1c) === 0x14) {
      // expand-down: valid offsets are (limit, top]
      const top = (ar & 0x4000) !== 0 ? 0xffffffff : 0xffff;
      if (off <= limit || end > top) throw new CpuFault(vec, 0);
    } else if (end > limit) throw new CpuFault(vec, 0);
  }

  /** reads the r/m operand (register or memory) */
  readRM(size: number): number {
    if (this.mod === 3) return this.getReg(size, this.rm);
    if (this.eaChk !== 0) this.checkEa(size >> 3, false);
    return this.rd(size, this.ea);
  }
  writeRM(size: number, v: number, vh: number): void {
    if (this.mod === 3) this.setReg(size, this.rm, v, vh);
    else {
      if (this.eaChk !== 0) this.checkEa(size >> 3, true);
      if (this.lockRmw) lockedWrite(this, size, v, vh);
      else this.wr(size, this.ea, v, vh);
    }
  }
  /** reads r/m for a read-modify-write: a memory operand is checked for write first */
  readRMW(size: number): number {
    if (this.mod === 3) return this.getReg(size, this.rm);
    if (this.eaChk !== 0) this.checkEa(size >> 3, true);
    this.probeWrite(this.ea, size >> 3);
    if (this.lockRmw) return lockedRead(this, size);
    return this.rd(size, this.ea);
  }

  // ---------------------------------------------------------------- stack

  get stackSize(): number {
    return this.mode64 ? 64 : this.ssB ? 32 : 16;
  }
  /** RSP as an offset in SS (masked to the stack size) */
  sp(): number {
    if (this.mode64) return this.hi[4] * TWO32 + (this.lo[4] >>> 0);
    return this.ssB ? this.lo[4] >>> 0 : this.lo[4] & 0xffff;
  }
  setSp(v: number): void {
    if (this.mode64) {
      this.lo[4] = v;
      this.hi[4] = Math.floor(v / TWO32);
    } else if (this.ssB) this.lo[4] = v;
    else this.lo[4] = (this.lo[4] & ~0xffff) | (v & 0xffff);
  }
  /** linear address of a `bytes`-byte stack access at `off` (64-bit: the whole access canonical, else #SS) */
  stackLin(off: number, bytes = 1): number {
    if (this.mode64) return this.canonRange(off, bytes, 2);
    return (this.effBase[2] + off) >>> 0;
  }
  /** offset after moving the stack pointer by delta (wrapping in the stack size) */
  spAdd(sp: number, delta: number): number {
    if (this.mode64) return sp + delta;
    return this.ssB ? (sp + delta) >>> 0 : (sp + delta) & 0xffff;
  }
  push(size: number, v: number, vh: number): void {
    const sp = this.spAdd(this.sp(), -(size >> 3));
    if (this.ssChk) this.segCheck(2, sp, size >> 3, true);
    this.wr(size, this.stackLin(sp, size >> 3), v, vh);
    this.setSp(sp);
  }
  /** pops `size` bits; returns lo, hi in vh */
  pop(size: number): number {
    const sp = this.sp();
    if (this.ssChk) this.segCheck(2, sp, size >> 3, false);
    const v = this.rd(size, this.stackLin(sp, size >> 3));
    this.setSp(this.spAdd(sp, size >> 3));
    return v;
  }
  /** reads the stack at sp+offset without moving it */
  peek(size: number, offset: number): number {
    if (this.ssChk) this.segCheck(2, this.spAdd(this.sp(), offset), size >> 3, false);
    return this.rd(size, this.stackLin(this.spAdd(this.sp(), offset), size >> 3));
  }

  // ---------------------------------------------------------------- run loop

  ctx(): InstructionContext {
    return { length: this.ip - this.rip, linearRip: this.insnLin };
  }

  /**
   * `memoryMoved` false: since the last run() returned, nothing but this interpreter can have
   * written guest memory (the VMX layer's next slice of the same VM entry), so cached blocks need
   * not compare their bytes again.
   */
  run(budget: number, memoryMoved = true): StopReason {
    if (this.smp === null) return this.runLoop(budget, memoryMoved);
    try {
      return this.runLoop(budget, true);
    } finally {
      // outside run() this vCPU writes nothing through its TLB: the others need not wait for it
      // (code-coherence.ts)
      parkCodeMap(this);
    }
  }
  private runLoop(budget: number, memoryMoved: boolean): StopReason {
    const hooks = this.requireHooks();
    if (this.activity === 1) return StopReason.Halted;
    if (this.activity === 2) return StopReason.Shutdown;
    // a pending STI/MOV-SS shadow (from the last instruction, or loaded at VM entry) covers exactly
    // the next instruction
    this.shadowAt = -1;
    // memory may have changed since the last run (device DMA, the host): cached blocks re-check
    // (links and memos lead only to blocks checked in this run: block-chain.ts, lookupBlock)
    if (memoryMoved) this.runEpoch++;
    // a VM entry serializes: code other vCPUs wrote is seen from here on
    if (this.smp !== null) serializeCode(this);
    // instructions retired plus exceptions delivered count against the budget
    const start = this.work();
    this.workLimit = start + budget;
    for (;;) {
      if (this.work() - start >= budget) return StopReason.Budget;
      if (this.windowRequests !== 0) {
        const ok = (this.eflags & FL_IF) !== 0 && (this.interruptibility & 3) === 0;
        if (hooks.boundary(ok)) return StopReason.Exit;
      }
      try {
        for (;;) {
          if (--this.pollCountdown <= 0 && this.pollHost()) return StopReason.HostInterrupt;
          const left = budget - (this.work() - start);
          // REP iterations can use up more than the instructions that ran
          if (left <= 0) break;
          // blocks run where no per-instruction bookkeeping is pending: no interrupt shadow to
          // expire, no monitor trap flag (interrupt/NMI windows open only after generic ops, which
          // end the block), no debug condition (breakpoints enabled, TF, RF, a held #DB)
          const dbg = this.dbgOn || (this.eflags & (FL_TF | FL_RF)) !== 0 || this.dbgPending !== 0;
          if (
            (this.interruptibility & 3) === 0 &&
            (this.windowRequests & Window.MonitorTrap) === 0 &&
            !dbg &&
            this.decodeCache &&
            // code on a hot page is single-stepped without asking for blocks at every step
            (this.hotSkip === 0 || this.hotSkip-- === 0)
          ) {
            const blk = this.lookupBlock();
            if (blk !== null && blk.ops.length !== 0) {
              const window = this.windowState();
              this.runBlock(blk, left);
              if (this.activity !== 0) return this.activity === 1 ? StopReason.Halted : StopReason.Shutdown;
              if (this.work() - start >= budget) break;
              // a window can have opened only where IF, NMI blocking or the shadow changed
              if (
                this.windowRequests !== 0 &&
                (this.windowState() !== window || (this.interruptibility & 3) !== 0)
              )
                break;
              continue;
            }
          }
          this.ip = this.rip;
          if (dbg) {
            this.debugStep();
            if (this.activity !== 0) return this.activity === 1 ? StopReason.Halted : StopReason.Shutdown;
            break;
          }
          execute(this);
          this.retired++;
          if (this.interruptibility !== 0 && this.shadowAt !== this.retired) this.interruptibility &= ~3;
          if (this.activity !== 0) return this.activity === 1 ? StopReason.Halted : StopReason.Shutdown;
          if (left <= 1 || this.windowRequests !== 0) break;
        }
      } catch (e) {
        if (e === EXIT_SIGNAL) return this.exitRf();
        if (e instanceof CpuFault) {
          this.dbgRf = 0;
          const r = deliverFault(this, e);
          if (r !== undefined) return r;
          this.eventsDelivered++;
          // a guest whose every instruction faults still reaches the host's checks
          if (--this.pollCountdown <= 0 && this.pollHost()) return StopReason.HostInterrupt;
          continue;
        }
        if (e instanceof ExitSignal) return this.exitRf();
        throw e;
      }
    }
  }

  /**
   * One instruction with the debug checks around it (debug.ts): an instruction breakpoint before
   * it, the data, I/O and single-step traps after it. The run loop then looks at the state again.
   */
  private debugStep(): void {
    const start = this.rip;
    const tf = debugBefore(this);
    execute(this);
    this.retired++;
    if (this.interruptibility !== 0 && this.shadowAt !== this.retired) this.interruptibility &= ~3;
    debugAfter(this, tf, start);
  }

  /** an instruction that ended in a VM exit did not complete: RF keeps the value it started with */
  private exitRf(): StopReason {
    if (this.dbgRf !== 0) {
      this.eflags |= FL_RF;
      this.dbgRf = 0;
    }
    return StopReason.Exit;
  }

  /**
   * What decides whether a requested interrupt or NMI window is open, besides the interrupt
   * shadow: RFLAGS.IF and NMI blocking. Only generic ops change them, and a block stops after one
   * that did, so the run loop can ask hooks.boundary() exactly where a window may have opened.
   */
  windowState(): number {
    return (this.eflags & FL_IF) | (this.interruptibility & 8);
  }

  /** what budgets count: instructions retired, events delivered, REP string iterations */
  work(): number {
    return this.retired + this.eventsDelivered + this.stringIterations;
  }

  /** asks the host whether it has an interrupt pending (every POLL_EVERY blocks or steps) */
  pollHost(): boolean {
    this.pollCountdown = POLL_EVERY;
    // pages other vCPUs turned into code pages lose their plain write entries here too
    if (this.smp !== null) catchUpCodeMap(this);
    return this.hostPoll?.() === true;
  }

  /**
   * The cached block at CS:RIP, decoding it on a miss; null when the code page is not in the TLB
   * (the single-step path fills it, with the fetch checks and faults that go with that).
   */
  lookupBlock(): Block | null {
    const lin = this.mode64 ? this.effBase[1] + this.rip : (this.effBase[1] + this.rip) >>> 0;
    const last = this.lastBlock;
    const link = this.linkKey();
    if (last !== null && last.succLin === lin && last.succEpoch === link && last.succ !== null) {
      const succ = last.succ;
      if (succ.checked === this.runEpoch || this.recheck(succ, lin)) return succ;
    }
    const ci = ((lin >>> 2) ^ (lin >>> 12)) & JMP_MASK;
    const hit = this.jmpBlk[ci];
    if (
      hit !== null &&
      this.jmpLin[ci] === lin &&
      this.jmpEpoch[ci] === link &&
      (hit.checked === this.runEpoch || this.recheck(hit, lin))
    ) {
      if (last !== null) {
        last.succ = hit;
        last.succLin = lin;
        last.succEpoch = link;
      }
      return hit;
    }
    // code within 4 GiB of an edge of the canonical range is single-stepped: a relative branch or
    // its last instruction may leave the range, which the single-step path faults on (exec.ts)
    if (this.mode64 && (lin > CANON_EDGE || lin < -CANON_EDGE)) return null;
    const i = (lin >>> 12) & TLB_MASK;
    const off = lin & 0xfff;
    if (this.tlbXTag[i] !== lin - off) return null;
    const clock = this.retired + this.eventsDelivered;
    if (lin - off === this.hotLin && this.hotEpoch === this.codeEpoch && clock < this.hotUntil) {
      this.hotSkip = HOT_SKIP;
      return null;
    }
    const gpaPage = this.tlbXGpa[i];
    let page = this.codePages.get(gpaPage);
    if (page === undefined) page = this.markCode(gpaPage);
    else if (!page.live) {
      // a hot page: single-stepped until its period ends, then blocks are tried again
      if (clock < page.hotUntil) {
        this.hotLin = lin - off;
        this.hotEpoch = this.codeEpoch;
        this.hotUntil = page.hotUntil;
        this.hotSkip = HOT_SKIP;
        return null;
      }
      page.live = true;
      this.guardWrites(gpaPage);
    }
    const key = off * 4 + modeKey(this.mode64, this.csD);
    const mem = this.tlbXMem[i];
    const at = this.tlbXOff[i];
    // the block this linear address led to at this link key is the page's block at this key (a
    // drop or a change of mode or mapping would have bumped the epoch): only its bytes need a look
    let blk =
      hit !== null && this.jmpLin[ci] === lin && this.jmpEpoch[ci] === link && this.smp === null
        ? hit
        : page.blocks.get(key);
    if (blk === undefined || (blk.checked !== this.runEpoch && !blockMatches(blk, mem, at + off))) {
      if (page.blocks.size >= MAX_PAGE_BLOCKS) {
        // code that keeps finding new entry points (rewritten around, or entered anywhere)
        this.makeHot(page, clock);
        this.hotLin = lin - off;
        this.hotEpoch = this.codeEpoch;
        this.hotUntil = page.hotUntil;
        this.hotSkip = HOT_SKIP;
        return null;
      }
      if (this.cachedOps.ops >= MAX_CACHED_OPS) {
        this.flushCode();
        return null;
      }
      if (this.smp === null) blk = buildBlock(mem, at, off, this.mode64, this.csD, this.runEpoch);
      else {
        // other vCPUs may be writing the page: the ops and the bytes the block keeps to re-check
        // itself must come from one copy, or a write between the two could pass for old code
        this.codeSnap.set(mem.subarray(at, at + 4096));
        blk = buildBlock(this.codeSnap, 0, off, this.mode64, this.csD, this.runEpoch);
      }
      blk.gpa = gpaPage;
      page.add(key, blk);
      this.blocksBuilt++;
    }
    blk.checked = this.runEpoch;
    this.codeLinEpoch[i] = this.codeEpoch;
    this.jmpLin[ci] = lin;
    this.jmpEpoch[ci] = link;
    this.jmpBlk[ci] = blk;
    if (this.tlbXGlobal[i] === 0) this.nonGlobalCodeEpoch = this.codeEpoch;
    if (last !== null) {
      last.succ = blk;
      last.succLin = lin;
      last.succEpoch = link;
    }
    return blk;
  }

  /**
   * The first run in this run() of a block that linear address `lin` led to in this codeEpoch
   * (a successor link or memo): as the epoch has not moved, the mapping, the mode and the page's
   * blocks are as they were, and only writes the interpreter did not see (between two run()
   * calls) can have made it stale. Compares its bytes where the TLB maps `lin` now; false sends
   * the caller to the full lookup (no TLB entry, another frame, changed bytes, or SMP, whose
   * blocks come from page copies).
   */
  recheck(blk: Block, lin: number): boolean {
    if (this.smp !== null) return false;
    const i = (lin >>> 12) & TLB_MASK;
    const off = lin & 0xfff;
    if (this.tlbXTag[i] !== lin - off || this.tlbXGpa[i] !== blk.gpa) return false;
    if (!blockMatches(blk, this.tlbXMem[i], this.tlbXOff[i] + off)) return false;
    blk.checked = this.runEpoch;
    return true;
  }

  /**
   * Runs a block's ops in order. Stops early when a generic op did not fall through to the next
   * op (a branch, a fault handled inside it, a mode change) or needs the run loop's attention, and
   * when anything bumped codeEpoch (the block itself may have been overwritten).
   */
  runBlock(blk: Block, budget: number): void {
    this.lastBlock = blk;
    const ops = blk.ops;
    // a block longer than the budget runs its first `budget` ops interpreted (a compiled block
    // runs whole), rather than leaving the budget's tail to single steps that would each decode
    // a block of their own
    const n = Math.min(ops.length, budget);
    if (n === ops.length) {
      if (blk.compiled !== null) {
        runChain(this, blk, budget);
        return;
      }
      // a block of generic ops only gains nothing from compiling: it stays interpreted
      if (++blk.runs === this.jitThreshold && blk.fast) {
        blk.compiled = compileBlock(blk, this.smp !== null);
        runChain(this, blk, budget);
        return;
      }
    }
    const epoch = this.codeEpoch;
    for (let k = 0; k < n; k++) {
      const op = ops[k];
      if (op.kind === OpKind.Jcc) {
        // taken before the block's end, a conditional branch leaves it (a side exit)
        const next = this.rip + op.len;
        op.fn(this, op);
        this.retired++;
        if (this.codeEpoch !== epoch || this.rip !== next) return;
        continue;
      }
      if (op.kind !== OpKind.Generic) {
        op.fn(this, op);
        this.retired++;
        if (this.codeEpoch !== epoch) return;
        continue;
      }
      const next = this.rip + op.len;
      const window = this.windowState();
      this.ip = this.rip;
      execute(this);
      this.retired++;
      if (this.interruptibility !== 0 && this.shadowAt !== this.retired) this.interruptibility &= ~3;
      if (
        this.rip !== next ||
        this.codeEpoch !== epoch ||
        this.activity !== 0 ||
        (this.interruptibility & 3) !== 0 ||
        (this.windowRequests !== 0 && this.windowState() !== window)
      )
        return;
    }
  }

  /** raises #UD for an opcode we do not implement, and counts it */
  unimplemented(index: number): never {
    this.udCounts[index & 0x3ff]++;
    this.udTotal++;
    throw new CpuFault(Vec.UD, undefined);
  }

  // ---------------------------------------------------------------- GuestCpu

  getExtendedState(): ExtendedState {
    const { fpuTop, fpuTag, fpuCw, fpuSw, mxcsr, pkru } = this;
    return { fpu: this.fpu.slice(), fpuTop, fpuTag, fpuCw, fpuSw, xmm: this.xmm.slice(), mxcsr, pkru };
  }
  setExtendedState(s: ExtendedState): void {
    this.fpu.set(s.fpu);
    this.xmm.set(s.xmm);
    this.fpuTop = s.fpuTop;
    this.fpuTag = s.fpuTag;
    this.fpuCw = s.fpuCw;
    this.fpuSw = s.fpuSw;
    this.mxcsr = s.mxcsr;
    pkruLoaded(this, s.pkru ?? 0);
  }

  getGpr(index: number): bigint {
    return (BigInt(this.hi[index] >>> 0) << 32n) | BigInt(this.lo[index] >>> 0);
  }
  setGpr(index: number, value: bigint): void {
    this.lo[index] = Number(value & 0xffffffffn);
    this.hi[index] = Number((value >> 32n) & 0xffffffffn);
  }
  getRip(): bigint {
    return toBig(this.rip);
  }
  setRip(value: bigint): void {
    this.rip = toNum(value);
  }
  getRflags(): bigint {
    return BigInt(this.getFlags() >>> 0);
  }
  getRipNumber(): number {
    return this.rip;
  }
  setRipNumber(value: number): void {
    this.rip = value;
  }
  getRflagsNumber(): number {
    return this.getFlags() >>> 0;
  }
  getSegmentAr(seg: number): number {
    return this.segAr[seg];
  }
  setRflags(value: bigint): void {
    this.setFlags(Number(value & 0xffffffffn));
  }
  getSegment(seg: number): SegmentState {
    return {
      selector: this.segSel[seg],
      base: toBig(this.segBase[seg]),
      limit: this.segLimit[seg],
      ar: this.segAr[seg],
    };
  }
  setSegment(seg: number, s: SegmentState): void {
    this.segSel[seg] = s.selector & 0xffff;
    this.segBase[seg] = seg >= 4 ? toNum(s.base) : Number(s.base & 0xffffffffn);
    this.segLimit[seg] = s.limit >>> 0;
    this.segAr[seg] = s.ar;
    updateMode(this);
  }
  getGdtr(): TableState {
    return { base: toBig(this.gdtBase), limit: this.gdtLimit };
  }
  setGdtr(t: TableState): void {
    this.gdtBase = toNum(t.base);
    this.gdtLimit = t.limit & 0xffff;
  }
  getIdtr(): TableState {
    return { base: toBig(this.idtBase), limit: this.idtLimit };
  }
  setIdtr(t: TableState): void {
    this.idtBase = toNum(t.base);
    this.idtLimit = t.limit & 0xffff;
  }
  getControl(reg: ControlRegister | SysenterRegister): bigint {
    switch (reg) {
      case "cr0":
        return BigInt(this.cr0 >>> 0);
      case "cr2":
        return toBig(this.cr2);
      case "cr3":
        return BigInt(this.cr3);
      case "cr4":
        return BigInt(this.cr4 >>> 0);
      case "cr8":
        return BigInt(this.cr8);
      case "dr6":
        return BigInt(this.dr[6]);
      case "dr7":
        return BigInt(this.dr[7]);
      case "efer":
        return BigInt(this.efer);
      case "pat":
        return this.pat;
      case "debugctl":
        return this.debugctl;
      case "sysenter_cs":
        return BigInt(this.sysenterCs);
      case "sysenter_esp":
        return toBig(this.sysenterEsp);
      case "sysenter_eip":
        return toBig(this.sysenterEip);
    }
  }
  setControl(reg: ControlRegister | SysenterRegister, value: bigint): void {
    const n = Number(value & 0xffffffffn);
    // translations depend on CR0, CR3, CR4 and EFER only; VM entries set every register, so flush
    // only on a change
    const before = `${this.cr0}/${this.cr3}/${this.cr4}/${this.efer}`;
    switch (reg) {
      case "cr0":
        this.cr0 = n | 0x10;
        break;
      case "cr2":
        this.cr2 = toNum(value);
        break;
      case "cr3":
        // bits 11:0 too: the PCID with CR4.PCIDE (which a VM entry or exit must carry through
        // GUEST_CR3 / HOST_CR3), PWT and PCD otherwise, and bits 11:5 of the PAE PDPT's address
        this.cr3 = Number(value & 0xfffffffffffffn);
        break;
      case "cr4":
        this.cr4 = n;
        syncDebug(this);
        break;
      case "cr8":
        this.cr8 = n & 15;
        break;
      case "dr6":
        this.dr[6] = n;
        break;
      case "dr7":
        this.dr[7] = n;
        syncDebug(this);
        break;
      case "efer":
        this.efer = n;
        break;
      case "pat":
        this.pat = value;
        break;
      case "debugctl":
        this.debugctl = value;
        break;
      case "sysenter_cs":
        this.sysenterCs = n & 0xffff;
        break;
      case "sysenter_esp":
        this.sysenterEsp = toNum(value);
        break;
      case "sysenter_eip":
        this.sysenterEip = toNum(value);
        break;
    }
    updateMode(this);
    if (`${this.cr0}/${this.cr3}/${this.cr4}/${this.efer}` !== before) this.flushTlb();
  }
  getMsr(index: number): bigint | undefined {
    return readMsr(this, index);
  }
  setMsr(index: number, value: bigint): boolean {
    return writeMsr(this, index, value);
  }

  raiseDebug(bits: number): StopReason | undefined {
    if ((this.interruptibility & 2) !== 0) {
      this.dbgPending |= bits;
      return undefined;
    }
    if (this.activity === 1) this.activity = 0;
    this.eventsDelivered++;
    return deliverFault(this, new DebugException(bits, false));
  }

  takePendingDebug(): number {
    const bits = this.dbgPending;
    this.dbgPending = 0;
    return bits;
  }

  deliverEvent(
    vector: number,
    type: EventType,
    errorCode: number | undefined,
    instructionLength: number,
  ): StopReason | undefined {
    this.requireHooks();
    if (
      type === EventType.SoftwareInterrupt ||
      type === EventType.SoftwareException ||
      type === EventType.PrivilegedSoftwareException
    ) {
      this.rip = this.rip + instructionLength;
    }
    if (this.activity === 1) this.activity = 0;
    this.eventsDelivered++;
    try {
      deliver(this, vector, type, errorCode, false);
    } catch (e) {
      if (e === EXIT_SIGNAL || e instanceof ExitSignal) return StopReason.Exit;
      if (e instanceof CpuFault) return deliverFault(this, e, vector);
      throw e;
    }
    return undefined;
  }

  /** MSR indices the interpreter knows (for tests and the VMX layer's MSR bitmaps) */
  static readonly MSR = MSR;
}

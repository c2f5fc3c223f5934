// The decode cache: straight-line blocks of pre-decoded instructions (block-ops.ts), keyed by the
// guest-physical address of their first byte and the code segment's mode, grouped per 4-KiB page.
//
// Invalidation, by byte ranges: each code page keeps a bitmap of the bytes its blocks were decoded
// from. A guest-physical page with live blocks has only checked write entries in the TLB (their
// tag never equals a linear page, Interpreter.fill), so every guest write to it goes through the
// write slow path, which looks at the bitmap: a write that misses every block changes nothing; a
// write that hits drops only the blocks it overlaps (Interpreter.codeWritten) and bumps codeEpoch.
// Compiled blocks make that check inline, so data beside code costs one bitmap test a store.
// Ordinary writes to data pages pay nothing. A page whose blocks keep being hit by writes (code
// that patches itself or the code it is about to run), or that keeps gaining blocks at new entry
// points (code rewritten around them), is "hot": its blocks are dropped, it takes plain write
// entries again, and its code is single-stepped for a while (the period doubles each time the
// page turns hot again soon after; Interpreter.hotPolicy), then blocks are tried again.
// Writes the interpreter does not see (a device's DMA between two run() calls, the host loading an
// image) are caught by re-checking a block's bytes the first time it runs in each run() call, or
// earlier through Interpreter.invalidateCode.
// Anything that changes how linear addresses or the mode map to blocks (TLB flushes, updateMode,
// invalidation) bumps Interpreter.codeEpoch, which drops the one-entry successor links and stops a
// block that is running.

import type { CompiledBlock } from "./block-compile.js";
import { decodeFast, endsBlock } from "./block-decode.js";
import { Op, OpKind } from "./block-ops.js";
import { instructionLength } from "./length.js";

/**
 * Added to a linear page in Interpreter.tlbWTag: a checked write entry (the page has cached
 * blocks). No access's page equals it, so writes leave the fast path and look at the page's
 * block bitmap first (CodePage.covers).
 */
export const CODE_TAG = 0.5;

const EMPTY_WORDS = new Int32Array(0);
/** Int32Array elements read memory bytes in little-endian order (the word compare relies on it) */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * longest block; bounds the work lost when a block is dropped. Long enough for the loop bodies of
 * kernel arithmetic (the multiply-accumulate loop of the RSA check of a module's signature is 38
 * instructions), which then loop inside their compiled function instead of chaining two blocks.
 */
const MAX_OPS = 64;

export class Block {
  /** the successor most recently looked up after this block: the block at linear `succLin` */
  succ: Block | null = null;
  succLin = Number.NaN;
  succEpoch = -1;
  /**
   * Chained successors by the compiled block's exit (block-chain.ts): exit 0 (fall-through) and
   * exit 1 (branch taken) led to the block at linear address link*Lin at Interpreter.linkKey()
   * link*Epoch (succEpoch likewise).
   */
  link0: Block | null = null;
  link0Lin = Number.NaN;
  link0Epoch = -1;
  link1: Block | null = null;
  link1Lin = Number.NaN;
  link1Epoch = -1;
  /** times run by the block loop; compiled (block-compile.ts) at COMPILE_THRESHOLD */
  runs = 0;
  compiled: CompiledBlock | null = null;
  /** Interpreter.runEpoch in which `code` was last compared with guest memory */
  checked: number;
  /** page offset of the first byte (`code` covers [off, off + code.length)) */
  off = 0;
  /** guest-physical address of the page the block was decoded from (Interpreter.recheck) */
  gpa = -1;
  /** some op has a fast form (a block of generic ops only is never compiled) */
  readonly fast: boolean;
  /**
   * `code` as the aligned 32-bit words that hold it (bytes placed as a little-endian host reads
   * them from memory): blockMatches compares a word at a time. Empty when `code` is. Only the
   * first and the last word can hold bytes that are not the block's: headMask and tailMask are
   * the block's bits in them (kept in the block itself, as blockMatches runs on cold caches).
   */
  words: Int32Array = EMPTY_WORDS;
  headMask = 0;
  tailMask = 0;
  constructor(
    readonly ops: Op[],
    /** the bytes the ops were decoded from */
    readonly code: Uint8Array,
    runEpoch: number,
  ) {
    this.checked = runEpoch;
    this.fast = ops.some((op) => op.kind !== OpKind.Generic);
  }
}

export class CodePage {
  /** key: page offset * 4 + mode (2: 64-bit, 1: 32-bit default size, 0: 16-bit) */
  readonly blocks = new Map<number, Block>();
  /** a bit per byte of the page: some block in `blocks` was decoded from it */
  readonly cover = new Int32Array(128);
  /**
   * The TLB keeps only checked write entries for the page. False while it has no blocks: plain
   * write entries; the next block built there makes it live again, unless the page is hot (until
   * `hotUntil`: its code is single-stepped).
   */
  live = true;
  /** writes that dropped blocks, counted while they come at most hotPolicy.gap apart */
  hits = 0;
  /** Interpreter clock (instructions retired + events delivered) at the last counted hit */
  lastHit = Number.NEGATIVE_INFINITY;
  /** clock until which the page stays hot, and how many hot periods came close together */
  hotUntil = 0;
  hotRuns = 0;

  /**
   * `tally.ops` counts the ops (plus one per block) of the blocks held, summed with the other
   * pages that share the tally: what the interpreter bounds (blocks dropped no longer count)
   */
  constructor(
    readonly gpa: number,
    readonly tally: { ops: number } = { ops: 0 },
  ) {}

  /** the page's code is single-stepped at Interpreter clock `clock` */
  hotAt(clock: number): boolean {
    return !this.live && clock < this.hotUntil;
  }

  add(key: number, blk: Block): void {
    const old = this.blocks.get(key);
    if (old !== undefined) this.tally.ops -= old.ops.length + 1;
    this.tally.ops += blk.ops.length + 1;
    this.blocks.set(key, blk);
    // an empty block (an instruction the length decoder does not know, or one crossing the page
    // end) still depends on its first byte
    this.mark(blk.off, blk.code.length === 0 ? 1 : blk.code.length);
  }

  private mark(off: number, n: number): void {
    const cover = this.cover;
    for (let b = off; b < off + n && b < 4096; b++) cover[b >> 5] |= 1 << (b & 31);
  }

  /** some block was decoded from a byte in [off, off + n) (the range within the page) */
  covers(off: number, n: number): boolean {
    const cover = this.cover;
    const end = off + n - 1;
    const w0 = off >> 5;
    const w1 = end >> 5;
    if (w0 === w1) return (cover[w0] & (((2 << (end & 31)) - 1) & (-1 << (off & 31)))) !== 0;
    if ((cover[w0] & (-1 << (off & 31))) !== 0) return true;
    for (let w = w0 + 1; w < w1; w++) if (cover[w] !== 0) return true;
    return (cover[w1] & ((2 << (end & 31)) - 1)) !== 0;
  }

  /** drops the blocks decoded from any byte in [off, off + n); returns how many */
  drop(off: number, n: number): number {
    let dropped = 0;
    for (const [key, blk] of this.blocks) {
      const len = blk.code.length === 0 ? 1 : blk.code.length;
      if (blk.off < off + n && off < blk.off + len) {
        this.blocks.delete(key);
        this.tally.ops -= blk.ops.length + 1;
        dropped++;
      }
    }
    if (dropped !== 0) {
      this.cover.fill(0);
      for (const blk of this.blocks.values()) this.mark(blk.off, blk.code.length === 0 ? 1 : blk.code.length);
    }
    return dropped;
  }

  /** drops every block */
  clear(): number {
    const n = this.blocks.size;
    for (const blk of this.blocks.values()) this.tally.ops -= blk.ops.length + 1;
    this.blocks.clear();
    this.cover.fill(0);
    return n;
  }
}

export function modeKey(mode64: boolean, csD: boolean): number {
  return mode64 ? 2 : csD ? 1 : 0;
}

/** generic ops carry only their length and whether they end the block: one shared Op per pair */
const GENERIC: Op[][] = [[], []];
function genericOf(len: number, ends: boolean): Op {
  const row = GENERIC[ends ? 1 : 0];
  let op = row[len];
  if (op === undefined) {
    op = new Op();
    op.len = len;
    op.ends = ends;
    row[len] = op;
  }
  return op;
}

/**
 * Decodes the block at page offset `off` of the page at mem[pageStart..pageStart+4096). An
 * instruction that crosses the page end, or that the length decoder does not know, ends the
 * block before it (an empty block: the run loop single-steps).
 */
export function buildBlock(
  mem: Uint8Array,
  pageStart: number,
  off: number,
  mode64: boolean,
  csD: boolean,
  runEpoch: number,
): Block {
  const view = mem.subarray(pageStart, pageStart + 4096);
  const bits = mode64 ? 64 : csD ? 32 : 16;
  const ops: Op[] = [];
  let p = off;
  // the end of the bytes the block was decoded from (a forward JMP skips some: they are kept too)
  let hi = off;
  while (p < 4096 && ops.length < MAX_OPS) {
    const len = instructionLength(view, p, bits);
    if (len < 0) break;
    const op = decodeFast(view, p, len, mode64, csD) ?? genericOf(len, endsBlock(view, p, mode64));
    ops.push(op);
    p += len;
    if (p > hi) hi = p;
    // in 64-bit mode (no segment limit, no wrap of RIP in a page that blocks run from) a JMP
    // forward within the page goes on at its target
    if (op.kind === OpKind.Jmp && mode64 && op.imm >= 0 && p + op.imm < 4096) {
      p += op.imm;
      continue;
    }
    // a conditional branch ends the block only when taken: the block goes on along the path not
    // taken (a side exit), so a test, its branch and the code after them run as one block. One
    // back to the block's start still ends it: the compiler loops such a block inside its function.
    if (op.ends && (op.kind !== OpKind.Jcc || p + op.imm === off)) break;
  }
  const blk = new Block(ops, view.slice(off, Math.max(hi, p)), runEpoch);
  blk.off = off;
  setWords(blk);
  return blk;
}

function setWords(blk: Block): void {
  const code = blk.code;
  if (code.length === 0) return;
  const lead = blk.off & 3;
  const n = (lead + code.length + 3) >> 2;
  const words = new Int32Array(n);
  let head = 0;
  let tail = 0;
  for (let k = 0; k < code.length; k++) {
    const pos = lead + k;
    const shift = (pos & 3) * 8;
    words[pos >> 2] |= code[k] << shift;
    if (pos >> 2 === 0) head |= 0xff << shift;
    if (pos >> 2 === n - 1) tail |= 0xff << shift;
  }
  blk.words = words;
  blk.headMask = head;
  blk.tailMask = tail;
}

/**
 * Word views of guest-memory arrays (null where a word compare cannot be used: a shared buffer,
 * whose bytes the byte loop reads as before, or an array not 4-aligned in its buffer); the last
 * one asked for is kept apart, as code runs from one array for long stretches.
 */
const wordViews = new WeakMap<Uint8Array, Int32Array | null>();
let lastMem: Uint8Array | null = null;
let lastWords: Int32Array | null = null;

function wordsOf(mem: Uint8Array): Int32Array | null {
  if (mem === lastMem) return lastWords;
  let w = wordViews.get(mem);
  if (w === undefined) {
    const shared = typeof SharedArrayBuffer !== "undefined" && mem.buffer instanceof SharedArrayBuffer;
    w =
      LITTLE_ENDIAN && !shared && (mem.byteOffset & 3) === 0
        ? new Int32Array(mem.buffer, mem.byteOffset, mem.length >>> 2)
        : null;
    wordViews.set(mem, w);
  }
  lastMem = mem;
  lastWords = w;
  return w;
}

/** true when guest memory still holds the bytes the block was decoded from (at: its first byte) */
export function blockMatches(blk: Block, mem: Uint8Array, at: number): boolean {
  const m32 = wordsOf(mem);
  const words = blk.words;
  const n = words.length;
  // the words hold the bytes at their page offsets: memory must align the same way
  if (m32 !== null && (at & 3) === (blk.off & 3) && (at >>> 2) + n <= m32.length) {
    if (n === 0) return true;
    const w0 = at >>> 2;
    const last = n - 1;
    // a one-word block's bytes are in both masks
    if (((m32[w0] ^ words[0]) & blk.headMask & (n === 1 ? blk.tailMask : -1)) !== 0) return false;
    for (let j = 1; j < last; j++) if (m32[w0 + j] !== words[j]) return false;
    return n === 1 || ((m32[w0 + last] ^ words[last]) & blk.tailMask) === 0;
  }
  const code = blk.code;
  for (let k = 0; k < code.length; k++) if (mem[at + k] !== code[k]) return false;
  return true;
}

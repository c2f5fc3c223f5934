// The decode cache: straight-line blocks of pre-decoded instructions (block-ops.ts), keyed by the
// guest-physical address of their first byte and the code segment's mode, grouped per 4-KiB page.
//
// Invalidation: a guest-physical page that holds cached code has no write entry in the TLB, so the
// first write to it takes the TLB-fill path, which drops the page's blocks (Interpreter.noteWrite);
// ordinary writes to data pages pay nothing. Writes the interpreter does not see (a device's DMA
// between two run() calls, the host loading an image) are caught by re-checking a block's bytes
// the first time it runs in each run() call, or earlier through Interpreter.invalidateCode.
// Anything that changes how linear addresses or the mode map to blocks (TLB flushes, updateMode,
// invalidation) bumps Interpreter.codeEpoch, which drops the one-entry successor links and stops a
// block that is running.

import type { CompiledBlock } from "./block-compile.js";
import { decodeFast, endsBlock } from "./block-decode.js";
import { Op } from "./block-ops.js";
import { instructionLength } from "./length.js";

/** longest block; bounds the work lost when a block is dropped */
const MAX_OPS = 32;

export class Block {
  /** the successor most recently looked up after this block: the block at linear `succLin` */
  succ: Block | null = null;
  succLin = Number.NaN;
  succEpoch = -1;
  /**
   * Chained successors by the compiled block's exit (block-chain.ts): exit 0 (fall-through) and
   * exit 1 (branch taken) led to the block at linear address link*Lin in codeEpoch link*Epoch.
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
  constructor(
    readonly ops: Op[],
    /** the bytes the ops were decoded from */
    readonly code: Uint8Array,
    runEpoch: number,
  ) {
    this.checked = runEpoch;
  }
}

export class CodePage {
  /** key: page offset * 4 + mode (2: 64-bit, 1: 32-bit default size, 0: 16-bit) */
  readonly blocks = new Map<number, Block>();
}

export function modeKey(mode64: boolean, csD: boolean): number {
  return mode64 ? 2 : csD ? 1 : 0;
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
  while (p < 4096 && ops.length < MAX_OPS) {
    const len = instructionLength(view, p, bits);
    if (len < 0) break;
    let op = decodeFast(view, p, len, mode64, csD);
    if (op === null) {
      op = new Op();
      op.len = len;
      op.ends = endsBlock(view, p, mode64);
    }
    ops.push(op);
    p += len;
    if (op.ends) break;
  }
  return new Block(ops, view.slice(off, p), runEpoch);
}

/** true when guest memory still holds the bytes the block was decoded from */
export function blockMatches(blk: Block, mem: Uint8Array, at: number): boolean {
  const code = blk.code;
  for (let k = 0; k < code.length; k++) if (mem[at + k] !== code[k]) return false;
  return true;
}

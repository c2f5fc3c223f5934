// The interpreter's TLB entries for one privilege. A translation is filled under the privilege
// current at the time (user/supervisor permission, SMEP, SMAP), so it holds only for that
// privilege; rather than dropping every entry at each change between user and supervisor mode (a
// system call, an interrupt or a page fault from user mode, and the return), the interpreter keeps
// one bank per privilege and switches banks (Interpreter.privilegeChanged). What invalidates
// translations (MOV to CR3, INVLPG, INVPCID, a change of paging mode) acts on both banks.
//
// The Interpreter's tlb* fields are the current bank's arrays: the hot paths (here, in the block
// ops and in compiled blocks) index them directly.

import type { CodePage } from "./block-cache.js";

export const TLB_BITS = 12;
export const TLB_SIZE = 1 << TLB_BITS;
export const TLB_MASK = TLB_SIZE - 1;
const EMPTY = new Uint8Array(0);
const EMPTY_VIEW = new DataView(new ArrayBuffer(0));

export class TlbBank {
  // read, write and execute entries: tag (linear page, NaN empty; a write tag may carry a
  // fraction, block-cache.ts CODE_TAG), memory array and the page's offset in it
  readonly rTag = new Float64Array(TLB_SIZE).fill(Number.NaN);
  readonly wTag = new Float64Array(TLB_SIZE).fill(Number.NaN);
  readonly xTag = new Float64Array(TLB_SIZE).fill(Number.NaN);
  readonly rMem: Uint8Array[] = new Array(TLB_SIZE).fill(EMPTY);
  readonly wMem: Uint8Array[] = new Array(TLB_SIZE).fill(EMPTY);
  readonly xMem: Uint8Array[] = new Array(TLB_SIZE).fill(EMPTY);
  /** DataViews over rMem/wMem (same indexes): compiled blocks read and write words with one access */
  readonly rView: DataView[] = new Array(TLB_SIZE).fill(EMPTY_VIEW);
  readonly wView: DataView[] = new Array(TLB_SIZE).fill(EMPTY_VIEW);
  readonly rOff = new Int32Array(TLB_SIZE);
  readonly wOff = new Int32Array(TLB_SIZE);
  readonly xOff = new Int32Array(TLB_SIZE);
  /**
   * The global bit of each kind of entry apart: a read, a write and a fetch entry at one index
   * may translate different pages (a write fill sets the read entry too), and a CR3 write must
   * drop each non-global one whatever the others are.
   */
  readonly rGlobal = new Uint8Array(TLB_SIZE);
  readonly wGlobal = new Uint8Array(TLB_SIZE);
  readonly xGlobal = new Uint8Array(TLB_SIZE);
  /** guest-physical page of each write and execute entry (decode-cache invalidation and lookup) */
  readonly wGpa = new Float64Array(TLB_SIZE);
  readonly xGpa = new Float64Array(TLB_SIZE);
  /** the code page of each checked write entry (tag + CODE_TAG) */
  readonly wCode: (CodePage | null)[] = new Array(TLB_SIZE).fill(null);

  /** drops every entry */
  flush(): void {
    this.rTag.fill(Number.NaN);
    this.wTag.fill(Number.NaN);
    this.xTag.fill(Number.NaN);
  }

  /** drops the entries that are not global (MOV to CR3 with CR4.PGE) */
  flushNonGlobal(): void {
    const { rTag, wTag, xTag, rGlobal, wGlobal, xGlobal } = this;
    for (let i = 0; i < TLB_SIZE; i++) {
      if (rGlobal[i] === 0) rTag[i] = Number.NaN;
      if (wGlobal[i] === 0) wTag[i] = Number.NaN;
      if (xGlobal[i] === 0) xTag[i] = Number.NaN;
    }
  }

  /** drops the entries at one index (INVLPG: whatever page they hold, fewer entries is allowed) */
  flushIndex(i: number): void {
    this.rTag[i] = Number.NaN;
    this.wTag[i] = Number.NaN;
    this.xTag[i] = Number.NaN;
  }

  /** drops the data entries (read and write): their permissions changed (PKRU, SMAP's AC) */
  flushData(): void {
    this.rTag.fill(Number.NaN);
    this.wTag.fill(Number.NaN);
  }

  /** drops the write entries of a guest-physical page */
  flushWrites(gpaPage: number): void {
    const { wTag, wGpa } = this;
    for (let i = 0; i < TLB_SIZE; i++) if (wGpa[i] === gpaPage) wTag[i] = Number.NaN;
  }
}

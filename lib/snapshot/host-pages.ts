// What the host kernel does with the pages of guest RAM, where a save or a restore can use it.
// First touches of pages are what both would spend their time on otherwise: one page fault per
// 4 KiB, 12 us each on this project's machines (VMs whose page faults are slow): reading the
// untouched 236 MiB of a 256 MiB guest took a save 0.8 s, writing 20 MiB into a fresh machine a
// restore 60 ms.
//
// - backedPages(): a page of private anonymous memory that no one has touched has no page-table
//   entry and reads as zero, so a save needs not read it. /proc/self/pagemap says which pages have
//   an entry, one u64 per page: bit 63 present, bit 62 swapped (CRIU finds the memory to dump the
//   same way).
// - adviseHugePages(): before a restore writes whole 2 MiB blocks of RAM, madvise(MADV_HUGEPAGE)
//   and MADV_POPULATE_WRITE back them with huge pages at once (QEMU advises all guest RAM so);
//   20 MiB then costs 9 ms instead of 60. Only blocks the restore fills entirely, so no memory is
//   backed that the snapshot does not hold.
//
// The region's address, and madvise(), come through koffi (a dependency already: the KVM binding
// without the addon). Whatever does not fit (another OS, no koffi or libc.so.6, pagemap
// unreadable, memory that is not private and anonymous, where a missing entry does not mean zero)
// makes backedPages() answer undefined (the save reads all of RAM) and adviseHugePages() do
// nothing (pages fault one by one as before). Both only look or advise: neither changes a byte.

import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { createRequire } from "node:module";

const PAGE = 4096;
const HUGE = 2 * 1024 * 1024;
/** bits 63 (present) and 62 (swapped) of a pagemap entry, in its upper 32 bits */
const BACKED = 0xc0000000;
/** pagemap entries read at a time */
const BATCH = 8192;
const MADV_HUGEPAGE = 14;
/** Linux 5.14 and later; EINVAL before (the huge-page advice still works then, at fault time) */
const MADV_POPULATE_WRITE = 23;

interface Koffi {
  address?: (value: unknown) => bigint;
  load(name: string): { func(signature: string): (...args: unknown[]) => unknown };
}

let koffi: Koffi | null | undefined;
let madvise: ((addr: number, length: number, advice: number) => unknown) | null | undefined;

function loadKoffi(): Koffi | null {
  if (koffi === undefined) {
    try {
      koffi = createRequire(import.meta.url)("koffi") as Koffi;
    } catch {
      koffi = null;
    }
  }
  return koffi;
}

function addressOf(bytes: Uint8Array): number | undefined {
  const k = loadKoffi();
  if (typeof k?.address !== "function") return undefined;
  try {
    const at = Number(k.address(bytes));
    return Number.isSafeInteger(at) && at > 0 ? at : undefined;
  } catch {
    return undefined;
  }
}

function madviseFn(): typeof madvise {
  if (madvise === undefined) {
    try {
      madvise =
        loadKoffi()?.load("libc.so.6").func("int madvise(uint64_t addr, size_t length, int advice)") ?? null;
    } catch {
      madvise = null;
    }
  }
  return madvise;
}

/** whether [start, end) lies in mappings of private anonymous memory only (no file, no shared memory) */
function privateAnonymous(start: number, end: number): boolean {
  let maps: string;
  try {
    maps = readFileSync("/proc/self/maps", "latin1");
  } catch {
    return false;
  }
  let covered = start;
  for (const line of maps.split("\n")) {
    // "7f..000-7f..000 rw-p 00000000 00:00 0      [heap]"
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const lo = Number.parseInt(m[1]!, 16);
    const hi = Number.parseInt(m[2]!, 16);
    if (hi <= covered || lo > covered) continue;
    const anonymous = m[4] === "0" && (m[5] === "" || m[5] === "[heap]" || m[5]!.startsWith("[anon"));
    if (m[3]![3] !== "p" || !anonymous) return false;
    covered = hi;
    if (covered >= end) return true;
  }
  return false;
}

/** the address of `bytes` when it is private anonymous memory on Linux */
function privateAddress(bytes: Uint8Array): number | undefined {
  if (process.platform !== "linux" || bytes.length === 0) return undefined;
  const start = addressOf(bytes);
  return start !== undefined && privateAnonymous(start, start + bytes.length) ? start : undefined;
}

/**
 * One flag per 4 KiB page of `bytes` (whose length is a multiple of 4 KiB): 0 where the page has
 * never been backed, so it is all zero; 1 where it may hold data. undefined: cannot tell.
 */
export function backedPages(bytes: Uint8Array): Uint8Array | undefined {
  if (bytes.length % PAGE !== 0) return undefined;
  const start = privateAddress(bytes);
  if (start === undefined) return undefined;
  // the array need not start on a page boundary: its page p spans host pages first + p and the next
  const firstHost = Math.floor(start / PAGE);
  const hostPages = Math.floor((start + bytes.length - 1) / PAGE) - firstHost + 1;
  const hostBacked = new Uint8Array(hostPages);
  let fd: number;
  try {
    fd = openSync("/proc/self/pagemap", "r");
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.allocUnsafe(Math.min(BATCH, hostPages) * 8);
    for (let done = 0; done < hostPages; ) {
      const want = Math.min(BATCH, hostPages - done) * 8;
      let got = 0;
      while (got < want) {
        const n = readSync(fd, buf, got, want - got, (firstHost + done) * 8 + got);
        if (n === 0) return undefined;
        got += n;
      }
      for (let i = 0; i < want / 8; i++) {
        if ((buf.readUInt32LE(i * 8 + 4) & BACKED) !== 0) hostBacked[done + i] = 1;
      }
      done += want / 8;
    }
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
  const pages = bytes.length / PAGE;
  const out = new Uint8Array(pages);
  const skew = start % PAGE;
  for (let p = 0; p < pages; p++) {
    out[p] = hostBacked[p]! | (skew !== 0 ? hostBacked[p + 1]! : 0);
  }
  return out;
}

/**
 * Advises huge pages for, and populates, the 2 MiB-aligned blocks that lie wholly inside the
 * spans [start, end) of `bytes` (offsets) that are about to be written; how many blocks it advised.
 */
export function adviseHugePages(bytes: Uint8Array, spans: readonly (readonly [number, number])[]): number {
  const big = spans.filter(([s, e]) => e - s >= HUGE);
  if (big.length === 0) return 0;
  const base = privateAddress(bytes);
  const advise = base === undefined ? null : madviseFn();
  if (base === undefined || !advise) return 0;
  let blocks = 0;
  for (const [s, e] of big) {
    const lo = Math.ceil((base + s) / HUGE) * HUGE;
    const hi = Math.floor((base + e) / HUGE) * HUGE;
    if (hi <= lo) continue;
    try {
      if (advise(lo, hi - lo, MADV_HUGEPAGE) !== 0) continue;
      advise(lo, hi - lo, MADV_POPULATE_WRITE);
    } catch {
      return blocks;
    }
    blocks += (hi - lo) / HUGE;
  }
  return blocks;
}

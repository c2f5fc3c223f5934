// Which pages of RAM an incremental snapshot stores: those written since its base. Page sets are
// one flag per 4 KiB page for each RAM region (in GuestMemory.regions order). Two ways to find them:
//
// - KVM, once tracking runs (lineage.ts): KVM's dirty log (the guest's writes) or-ed with the pages
//   the host handed out through GuestMemory.view() (loaders, devices' DMA, vm.memory.write).
// - Otherwise (the soft backend, which has no hardware log; a KVM machine whose log could not be
//   started): RAM compared byte for byte with the base's image, read back from the base's files
//   (newest first: a page's content is that of the newest file holding it, zero if none does).
//   Exact, needs nothing of the interpreter, and costs a read of the chain's RAM per save.

import type { GuestMemory } from "../vmm/memory.js";
import { SnapshotError } from "./errors.js";
import { forNonZeroPages, type MemoryImage, PAGE, type PageRun } from "./memory.js";

export type PageFlags = Uint8Array[];

export const noPages = (memory: GuestMemory): PageFlags =>
  memory.regions.map((r) => new Uint8Array(Math.ceil(r.size / PAGE)));

/** `into` |= `from`, page by page (regions alike) */
export function orPages(into: PageFlags, from: PageFlags | undefined): PageFlags {
  if (!from) return into;
  into.forEach((f, i) => {
    const g = from[i];
    if (!g) return;
    for (let p = 0; p < f.length; p++) f[p] = f[p]! | g[p]!;
  });
  return into;
}

/** KVM_GET_DIRTY_LOG bitmaps (one bit per page, 64 to a word) as page flags, or-ed into `into` */
export function orBitmaps(into: PageFlags, bitmaps: readonly BigUint64Array[]): PageFlags {
  bitmaps.forEach((bitmap, i) => {
    const f = into[i];
    if (!f) return;
    const words = new Uint32Array(bitmap.buffer, bitmap.byteOffset, bitmap.length * 2);
    words.forEach((w, k) => {
      for (let b = 0; w !== 0; b++, w >>>= 1) {
        const p = k * 32 + b;
        if (w & 1 && p < f.length) f[p] = 1;
      }
    });
  });
  return into;
}

/** The flagged pages as runs, in region and page order. */
export function runsOf(pages: PageFlags): PageRun[] {
  const runs: PageRun[] = [];
  pages.forEach((f, region) => {
    let last: PageRun | undefined;
    for (let p = 0; p < f.length; p++) {
      if (f[p] !== 1) continue;
      if (last && last.page + last.pages === p) last.pages++;
      else {
        last = { region, page: p, pages: 1 };
        runs.push(last);
      }
    }
  });
  return runs;
}

/**
 * Calls `page` with each page an image holds and its 4 KiB of bytes, in the image's order. Bytes
 * still in a file are read (and their checksum compared at the end: a SnapshotError if not theirs).
 */
export function forEachImagePage(
  image: MemoryImage,
  page: (region: number, index: number, bytes: Uint8Array) => void,
): void {
  if (image.bytes) {
    image.runs.forEach((r, i) => {
      const b = image.bytes![i]!;
      for (let k = 0; k < r.pages; k++) page(r.region, r.page + k, b.subarray(k * PAGE, (k + 1) * PAGE));
    });
    return;
  }
  let run = 0;
  let inRun = 0;
  // chunks are whole pages: the section is, and a file is read in chunks of a multiple of 4 KiB
  image.file?.readInto((chunk) => {
    for (let at = 0; at < chunk.length; at += PAGE) {
      const r = image.runs[run];
      if (!r) throw new SnapshotError("memory", "the section holds more bytes than its map's runs");
      page(r.region, r.page + inRun, chunk.subarray(at, at + PAGE));
      if (++inRun === r.pages) {
        run++;
        inRun = 0;
      }
    }
  });
}

const same = (a: Uint8Array, b: Uint8Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/**
 * The pages whose bytes in `memory` differ from the image the chain `images` makes (oldest first,
 * each laid over the ones before, pages no image holds being zero).
 */
export function changedSince(memory: GuestMemory, images: readonly MemoryImage[]): PageFlags {
  const changed = noPages(memory);
  const decided = noPages(memory);
  for (let i = images.length - 1; i >= 0; i--) {
    forEachImagePage(images[i]!, (region, p, bytes) => {
      const d = decided[region];
      if (!d || d[p] === 1) return;
      d[p] = 1;
      const ram = memory.regions[region]!.bytes.subarray(p * PAGE, (p + 1) * PAGE);
      if (!same(ram, bytes)) changed[region]![p] = 1;
    });
  }
  memory.regions.forEach((r, region) => {
    const d = decided[region]!;
    forNonZeroPages(r.bytes, (p) => {
      if (d[p] === 0) changed[region]![p] = 1;
    });
  });
  return changed;
}

// Guest RAM in a snapshot (format version 2): only the 4 KiB pages that are not all zero, as runs of
// consecutive pages. Section "memory-map" lists the runs (u32 LE region, first page, page count);
// section "memory" holds their bytes back to back, uncompressed: a save writes them straight from
// guest RAM and a restore reads them in place, so both cost per stored page (version 1 deflated
// page records; memory-v1.ts still reads those). A save looks only at the pages the host kernel
// has backed, the others are zero; a restore has whole 2 MiB blocks it fills backed by huge pages
// first (host-pages.ts). Restore zeroes what the snapshot does not hold only in a machine that
// something may have written.

import type { GuestMemory } from "../vmm/memory.js";
import { SnapshotError } from "./errors.js";
import { adviseHugePages, backedPages } from "./host-pages.js";

export const PAGE = 4096;
const RUN_BYTES = 12;

export interface RegionInfo {
  gpa: number;
  size: number;
}

export function describeRegions(memory: GuestMemory): RegionInfo[] {
  return memory.regions.map((r) => ({ gpa: r.guestPhysAddr, size: r.size }));
}

/** Consecutive pages of one region that the snapshot holds. */
export interface PageRun {
  region: number;
  page: number;
  pages: number;
}

/** The RAM a snapshot holds: its runs, and their bytes (in memory, or still in the file). */
export interface MemoryImage {
  runs: PageRun[];
  /** pages held, the sum of the runs' lengths */
  pages: number;
  /** each run's bytes (PAGE * run.pages), when they are in memory */
  bytes?: Uint8Array[];
  /** otherwise: where the bytes are, read and checked as they are placed (file.ts) */
  file?: MemoryInFile;
}

export interface MemoryInFile {
  /** SnapshotError("file") when the file is closed (the restore it was opened for is over) */
  checkOpen(): void;
  /** hands the section's bytes over in order, in chunks; SnapshotError when they are not the saved ones */
  readInto(place: (chunk: Uint8Array) => void): void;
}

const CHUNK = 64 * 1024;
const ZERO = new Uint8Array(CHUNK);

/** whether [off, off + length) of `bytes` is all zero, compared natively (a JS loop is 30x slower) */
function isZero(bytes: Uint8Array, off: number, length: number): boolean {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset + off, length);
  return view.equals(length === CHUNK ? ZERO : ZERO.subarray(0, length));
}

/**
 * Calls `page` for each 4 KiB page of `bytes` (a region) that is not all zero, in order. Pages
 * the host never backed (host-pages.ts) are zero without a look.
 */
export function forNonZeroPages(bytes: Uint8Array, page: (p: number) => void): void {
  const backed = backedPages(bytes);
  const perChunk = CHUNK / PAGE;
  for (let off = 0; off < bytes.length; off += CHUNK) {
    const len = Math.min(CHUNK, bytes.length - off);
    const first = off / PAGE;
    if (backed && backed.subarray(first, first + perChunk).indexOf(1) < 0) continue;
    // most of RAM is untouched: whole chunks at a time, pages only inside a chunk with data
    if (isZero(bytes, off, len)) continue;
    for (let at = off; at < off + len; at += PAGE) {
      if ((!backed || backed[at / PAGE] === 1) && !isZero(bytes, at, PAGE)) page(at / PAGE);
    }
  }
}

/** The runs of non-zero pages of every region, in region and page order. */
export function nonZeroRuns(memory: GuestMemory): PageRun[] {
  const runs: PageRun[] = [];
  memory.regions.forEach((r, region) => {
    let last: PageRun | undefined;
    forNonZeroPages(r.bytes, (page) => {
      if (last && last.page + last.pages === page) {
        last.pages++;
      } else {
        last = { region, page, pages: 1 };
        runs.push(last);
      }
    });
  });
  return runs;
}

export function encodeMemoryMap(runs: readonly PageRun[]): Uint8Array {
  const out = Buffer.allocUnsafe(runs.length * RUN_BYTES);
  runs.forEach((r, i) => {
    out.writeUInt32LE(r.region, i * RUN_BYTES);
    out.writeUInt32LE(r.page, i * RUN_BYTES + 4);
    out.writeUInt32LE(r.pages, i * RUN_BYTES + 8);
  });
  return out;
}

/** Views of guest RAM holding the runs' bytes, in order (no copy). */
export function runViews(memory: GuestMemory, runs: readonly PageRun[]): Uint8Array[] {
  return runs.map((r) => memory.regions[r.region]!.bytes.subarray(r.page * PAGE, (r.page + r.pages) * PAGE));
}

/**
 * Checks the runs against the regions the snapshot declares: inside a region, in order, not
 * overlapping, and together as long as the memory section (`dataLength` bytes).
 */
export function decodeMemoryMap(
  map: Uint8Array,
  regions: readonly RegionInfo[],
  dataLength: number,
): PageRun[] {
  if (map.length % RUN_BYTES !== 0) {
    throw new SnapshotError(
      "memory-map",
      `${map.length} bytes is not a whole number of ${RUN_BYTES}-byte runs`,
    );
  }
  const buf = Buffer.from(map.buffer, map.byteOffset, map.byteLength);
  const runs: PageRun[] = [];
  let pages = 0;
  let prev: PageRun | undefined;
  for (let at = 0; at < buf.length; at += RUN_BYTES) {
    const run = {
      region: buf.readUInt32LE(at),
      page: buf.readUInt32LE(at + 4),
      pages: buf.readUInt32LE(at + 8),
    };
    const region = regions[run.region];
    const i = at / RUN_BYTES;
    if (!region || run.pages === 0 || (run.page + run.pages) * PAGE > region.size) {
      throw new SnapshotError(
        "memory-map",
        `run ${i} names region ${run.region} pages ${run.page}+${run.pages}, outside guest RAM`,
      );
    }
    if (
      prev &&
      (run.region < prev.region || (run.region === prev.region && run.page < prev.page + prev.pages))
    ) {
      throw new SnapshotError("memory-map", `run ${i} overlaps or precedes run ${i - 1}`);
    }
    runs.push(run);
    pages += run.pages;
    prev = run;
  }
  if (pages * PAGE !== dataLength) {
    throw new SnapshotError(
      "memory",
      `${dataLength} bytes, the memory map's ${runs.length} runs hold ${pages} pages (${pages * PAGE} bytes)`,
    );
  }
  return runs;
}

/** A memory image whose bytes are in memory already (the section, back to back). */
export function imageFromBytes(runs: PageRun[], data: Uint8Array): MemoryImage {
  let at = 0;
  const bytes = runs.map((r) => {
    const b = data.subarray(at, at + r.pages * PAGE);
    at += b.length;
    return b;
  });
  return { runs, pages: at / PAGE, bytes };
}

/** The machine's regions must be those the snapshot was taken of (same addresses and sizes). */
export function checkRegions(memory: GuestMemory, regions: readonly RegionInfo[]): void {
  const have = describeRegions(memory);
  const fmt = (list: readonly RegionInfo[]) =>
    list.map((r) => `0x${r.gpa.toString(16)}+0x${r.size.toString(16)}`).join(", ");
  if (
    have.length !== regions.length ||
    have.some((r, i) => r.gpa !== regions[i]!.gpa || r.size !== regions[i]!.size)
  ) {
    throw new SnapshotError(
      "memory",
      `the machine's RAM is [${fmt(have)}], the snapshot's [${fmt(regions)}]`,
    );
  }
}

/**
 * Puts an image's pages in place. `whole` (a full snapshot): the pages it does not hold become
 * zero; otherwise (an incremental snapshot laid over its base) they stay as they are.
 */
export function applyMemory(memory: GuestMemory, image: MemoryImage, whole = true): void {
  // the writes below go to the regions' bytes, not through GuestMemory's methods: soft vCPUs
  // re-check their cached code at their next entry (no vCPU runs before this returns)
  for (const r of memory.regions) memory.hostWrote(r.guestPhysAddr, r.size);
  // pages the snapshot does not hold must end up zero: nothing to do in a machine nothing has
  // touched yet (one made for the restore); otherwise only the non-zero ones are cleared
  if (whole && !memory.untouched) {
    const held = memory.regions.map((r) => new Uint8Array(Math.ceil(r.size / PAGE)));
    for (const r of image.runs) held[r.region]!.fill(1, r.page, r.page + r.pages);
    memory.regions.forEach((r, ri) => {
      const h = held[ri]!;
      forNonZeroPages(r.bytes, (p) => {
        if (h[p] === 0) r.bytes.fill(0, p * PAGE, (p + 1) * PAGE);
      });
    });
  }
  memory.regions.forEach((r, ri) => {
    const spans = image.runs
      .filter((run) => run.region === ri)
      .map((run) => [run.page * PAGE, (run.page + run.pages) * PAGE] as const);
    adviseHugePages(r.bytes, spans);
  });
  const dest = runViews(memory, image.runs);
  if (image.bytes) {
    image.bytes.forEach((b, i) => {
      dest[i]!.set(b);
    });
    return;
  }
  // the file's bytes arrive in chunks that need not end where a run does
  let run = 0;
  let at = 0;
  image.file?.readInto((chunk) => {
    for (let k = 0; k < chunk.length; ) {
      const d = dest[run];
      if (!d) throw new SnapshotError("memory", "the section holds more bytes than its map's runs");
      const take = Math.min(chunk.length - k, d.length - at);
      d.set(chunk.subarray(k, k + take), at);
      k += take;
      at += take;
      if (at === d.length) {
        run++;
        at = 0;
      }
    }
  });
}

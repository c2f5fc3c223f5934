// Guest RAM in a snapshot: only the 4 KiB pages that are not all zero, each with its region and page
// number, deflated (node:zlib). Untouched RAM costs nothing; restore zeroes the regions first, so a
// machine that already had an image loaded ends up with exactly the saved contents.

import { deflateSync, inflateSync } from "node:zlib";
import type { GuestMemory } from "../vmm/memory.js";
import { SnapshotError } from "./errors.js";

export const PAGE = 4096;
const RECORD = 8 + PAGE;

export interface RegionInfo {
  gpa: number;
  size: number;
}

export function describeRegions(memory: GuestMemory): RegionInfo[] {
  return memory.regions.map((r) => ({ gpa: r.guestPhysAddr, size: r.size }));
}

const CHUNK = 64 * 1024;
const ZERO = new Uint8Array(CHUNK);

/** whether [off, off + length) of `bytes` is all zero, compared natively (a JS loop is 30x slower) */
function isZero(bytes: Uint8Array, off: number, length: number): boolean {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset + off, length);
  return view.equals(length === CHUNK ? ZERO : ZERO.subarray(0, length));
}

/** calls `page` for each 4 KiB page of `bytes` (a region) that is not all zero */
function forNonZeroPages(bytes: Uint8Array, page: (p: number) => void): void {
  for (let off = 0; off < bytes.length; off += CHUNK) {
    const len = Math.min(CHUNK, bytes.length - off);
    // most of RAM is untouched: whole chunks at a time, pages only inside a chunk with data
    if (isZero(bytes, off, len)) continue;
    for (let at = off; at < off + len; at += PAGE) if (!isZero(bytes, at, PAGE)) page(at / PAGE);
  }
}

/** The non-zero pages of every region, deflated; also returns how many pages were kept. */
export function encodeMemory(memory: GuestMemory): { bytes: Uint8Array; pages: number } {
  const chunks: Buffer[] = [];
  let pages = 0;
  memory.regions.forEach((r, ri) => {
    forNonZeroPages(r.bytes, (p) => {
      const rec = Buffer.allocUnsafe(RECORD);
      rec.writeUInt32LE(ri, 0);
      rec.writeUInt32LE(p, 4);
      rec.set(r.bytes.subarray(p * PAGE, (p + 1) * PAGE), 8);
      chunks.push(rec);
      pages++;
    });
  });
  return { bytes: deflateSync(Buffer.concat(chunks), { level: 1 }), pages };
}

export interface MemoryImage {
  /** [region index, page index, page bytes] */
  pages: [number, number, Uint8Array][];
}

/** Inflates and checks the page records against the regions the snapshot declares. */
export function decodeMemory(bytes: Uint8Array, regions: readonly RegionInfo[]): MemoryImage {
  let raw: Buffer;
  try {
    raw = inflateSync(bytes);
  } catch (e) {
    throw new SnapshotError("memory", `cannot inflate (${e instanceof Error ? e.message : String(e)})`);
  }
  if (raw.length % RECORD !== 0) {
    throw new SnapshotError("memory", `${raw.length} bytes is not a whole number of page records`);
  }
  const pages: MemoryImage["pages"] = [];
  for (let at = 0; at < raw.length; at += RECORD) {
    const ri = raw.readUInt32LE(at);
    const p = raw.readUInt32LE(at + 4);
    const region = regions[ri];
    if (!region || (p + 1) * PAGE > region.size) {
      throw new SnapshotError(
        "memory",
        `page record ${at / RECORD} names region ${ri} page ${p}, outside guest RAM`,
      );
    }
    pages.push([ri, p, raw.subarray(at + 8, at + RECORD)]);
  }
  return { pages };
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

export function applyMemory(memory: GuestMemory, image: MemoryImage): void {
  // pages the snapshot does not hold must end up zero: nothing to do in a machine nothing has
  // touched yet (one made for the restore); otherwise only the non-zero ones are cleared
  if (!memory.untouched) {
    const held = memory.regions.map((r) => new Uint8Array(Math.ceil(r.size / PAGE)));
    for (const [ri, p] of image.pages) held[ri]![p] = 1;
    memory.regions.forEach((r, ri) => {
      const h = held[ri]!;
      forNonZeroPages(r.bytes, (p) => {
        if (h[p] === 0) r.bytes.fill(0, p * PAGE, (p + 1) * PAGE);
      });
    });
  }
  for (const [ri, p, page] of image.pages) memory.regions[ri]!.bytes.set(page, p * PAGE);
}

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

function pageIsZero(bytes: Uint8Array, off: number): boolean {
  if ((bytes.byteOffset + off) % 8 === 0) {
    const words = new BigUint64Array(bytes.buffer, bytes.byteOffset + off, PAGE / 8);
    for (let i = 0; i < words.length; i++) if (words[i] !== 0n) return false;
    return true;
  }
  for (let i = off; i < off + PAGE; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** The non-zero pages of every region, deflated; also returns how many pages were kept. */
export function encodeMemory(memory: GuestMemory): { bytes: Uint8Array; pages: number } {
  const chunks: Buffer[] = [];
  let pages = 0;
  memory.regions.forEach((r, ri) => {
    for (let p = 0; p * PAGE < r.size; p++) {
      if (pageIsZero(r.bytes, p * PAGE)) continue;
      const rec = Buffer.allocUnsafe(RECORD);
      rec.writeUInt32LE(ri, 0);
      rec.writeUInt32LE(p, 4);
      rec.set(r.bytes.subarray(p * PAGE, (p + 1) * PAGE), 8);
      chunks.push(rec);
      pages++;
    }
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
  for (const r of memory.regions) r.bytes.fill(0);
  for (const [ri, p, page] of image.pages) memory.regions[ri]!.bytes.set(page, p * PAGE);
}

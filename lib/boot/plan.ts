// A loader first turns the image into placements (bytes at guest-physical addresses, plus a zeroed
// tail for bss), checks all of them, and only then writes: a bad image never leaves half a load.

import { GuestImageError, hex } from "./errors.js";
import type { ReservedRange } from "./layout.js";
import type { LoadTarget } from "./target.js";

export interface Placement {
  /** Start guest-physical address. */
  gpa: number;
  /** bytes copied from the file */
  data: Uint8Array;
  /** total size in memory (>= data.length); the rest is zeroed */
  memSize: number;
  /** header field that places this chunk, and its file offset: named in errors */
  field: string;
  offset: number;
}

/** A range of guest memory a loader filled from the image. */
export interface LoadedRange {
  /** Start guest-physical address. */
  gpa: number;
  /** Bytes in guest memory (ELF: including the zeroed bss). */
  size: number;
  /** Bytes that came from the file (the rest, up to `size`, is zero). */
  fileSize: number;
}

export function checkPlacements(
  target: LoadTarget,
  placements: readonly Placement[],
  reserved: readonly ReservedRange[],
): void {
  for (const p of placements) {
    if (p.memSize === 0) continue;
    const end = p.gpa + p.memSize;
    if (!Number.isSafeInteger(end)) {
      throw new GuestImageError(
        p.field,
        p.offset,
        `address ${hex(p.gpa)} + size ${hex(p.memSize)} overflows`,
      );
    }
    if (p.memSize > target.size) {
      throw new GuestImageError(
        p.field,
        p.offset,
        `size ${hex(p.memSize)} is larger than guest RAM (${hex(target.size)} bytes)`,
      );
    }
    if (!target.find(p.gpa, p.memSize)) {
      throw new GuestImageError(p.field, p.offset, `[${hex(p.gpa)}, ${hex(end)}) is outside guest RAM`);
    }
    for (const r of reserved) {
      if (p.gpa < r.gpa + r.size && r.gpa < end) {
        throw new GuestImageError(
          p.field,
          p.offset,
          `[${hex(p.gpa)}, ${hex(end)}) overlaps the loader's ${r.what} at [${hex(r.gpa)}, ${hex(r.gpa + r.size)})`,
        );
      }
    }
  }
  const sorted = placements.filter((p) => p.memSize > 0).sort((a, b) => a.gpa - b.gpa);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.gpa < prev.gpa + prev.memSize) {
      throw new GuestImageError(
        cur.field,
        cur.offset,
        `[${hex(cur.gpa)}, ${hex(cur.gpa + cur.memSize)}) overlaps ${prev.field} at [${hex(prev.gpa)}, ${hex(prev.gpa + prev.memSize)})`,
      );
    }
  }
}

export function applyPlacements(target: LoadTarget, placements: readonly Placement[]): LoadedRange[] {
  const loaded: LoadedRange[] = [];
  for (const p of placements) {
    if (p.memSize === 0) continue;
    const dst = target.view(p.gpa, p.memSize);
    dst.set(p.data);
    dst.fill(0, p.data.length);
    loaded.push({ gpa: p.gpa, size: p.memSize, fileSize: p.data.length });
  }
  return loaded;
}

// Descriptor-table listings: every entry of a GDT/LDT read from guest memory, decoded, one line
// each in the style of the segment lines of the register dump.

import type { DescriptorTable } from "../types/regs.js";
import { decodeDescriptor, describeSegment, segmentAttributes } from "./segments.js";

/** What the listing reads guest memory through (GuestMemory satisfies it). */
export interface DescriptorMemory {
  /** Reads a little-endian 32-bit value at guest-physical `gpa`. */
  readU32(gpa: number): number;
}

/** One descriptor of a GDT/LDT listing. */
export interface DescriptorEntry {
  /** The selector that names it (`index << 3`). */
  selector: number;
  /** The descriptor's low 32 bits. */
  low: number;
  /** The descriptor's high 32 bits. */
  high: number;
  /** a 16-byte system descriptor in long mode: the upper base half */
  baseHigh?: number;
  /** The decoded line, as the listing prints it. */
  text: string;
}

/**
 * Lists the descriptors of a table at guest-linear `table.base` (assumed identity-mapped, as
 * loaders set it up). System descriptors in long mode take two slots. Stops at `maxEntries` or at
 * memory that is not RAM.
 */
export function listDescriptors(
  mem: DescriptorMemory,
  table: DescriptorTable,
  longMode: boolean,
  maxEntries = 64,
): DescriptorEntry[] {
  const out: DescriptorEntry[] = [];
  const count = Math.min(maxEntries, Math.floor((table.limit + 1) / 8));
  for (let i = 0; i < count; i++) {
    const at = Number(table.base) + i * 8;
    let low: number;
    let high: number;
    try {
      low = mem.readU32(at);
      high = mem.readU32(at + 4);
    } catch {
      break;
    }
    const selector = i * 8;
    const seg = decodeDescriptor(low, high, selector);
    const entry: DescriptorEntry = { selector, low, high, text: "" };
    if (longMode && !seg.s && seg.present && i + 1 < count) {
      try {
        entry.baseHigh = mem.readU32(at + 8);
        seg.base |= BigInt(entry.baseHigh) << 32n;
      } catch {
        // keep the low half
      }
    }
    const raw = `${high.toString(16).padStart(8, "0")}${low.toString(16).padStart(8, "0")}`;
    const desc = low === 0 && high === 0 ? "null" : describeSegment(seg, true, longMode) || "not present";
    entry.text = `${selector.toString(16).padStart(4, "0")}: ${raw} base=${seg.base.toString(16).padStart(8, "0")} limit=${seg.limit.toString(16).padStart(8, "0")} ${(segmentAttributes(seg) & 0x00ffff00).toString(16).padStart(8, "0")} ${desc}`;
    out.push(entry);
    if (entry.baseHigh !== undefined) i++;
  }
  return out;
}

/** The listing's lines, one per entry. */
export function formatDescriptors(list: readonly DescriptorEntry[]): string {
  return list.map((e) => e.text).join("\n");
}

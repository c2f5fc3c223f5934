// Guest RAM as format version 1 stored it: the non-zero 4 KiB pages as records (u32 LE region,
// u32 LE page, the page's bytes), the whole section deflated. Read so that older snapshots still
// restore; nothing writes it any more (memory.ts has the current layout).

import { inflateSync } from "node:zlib";
import { SnapshotError } from "./errors.js";
import { type MemoryImage, PAGE, type PageRun, type RegionInfo } from "./memory.js";

const RECORD = 8 + PAGE;

/** Inflates and checks the page records against the regions the snapshot declares. */
export function decodeMemoryV1(bytes: Uint8Array, regions: readonly RegionInfo[]): MemoryImage {
  let raw: Buffer;
  try {
    raw = inflateSync(bytes);
  } catch (e) {
    throw new SnapshotError("memory", `cannot inflate (${e instanceof Error ? e.message : String(e)})`);
  }
  if (raw.length % RECORD !== 0) {
    throw new SnapshotError("memory", `${raw.length} bytes is not a whole number of page records`);
  }
  const runs: PageRun[] = [];
  const pages: Uint8Array[] = [];
  for (let at = 0; at < raw.length; at += RECORD) {
    const region = raw.readUInt32LE(at);
    const page = raw.readUInt32LE(at + 4);
    const r = regions[region];
    if (!r || (page + 1) * PAGE > r.size) {
      throw new SnapshotError(
        "memory",
        `page record ${at / RECORD} names region ${region} page ${page}, outside guest RAM`,
      );
    }
    runs.push({ region, page, pages: 1 });
    pages.push(raw.subarray(at + 8, at + RECORD));
  }
  return { runs, pages: runs.length, bytes: pages };
}

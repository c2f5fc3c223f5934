// A save reads only the pages of guest RAM that the host has backed (/proc/self/pagemap); the others
// are zero. The runs it finds must be exactly those a look at every page finds. A restore has the
// 2 MiB blocks it fills backed by huge pages first: that changes no byte and backs nothing else.

import { describe, expect, it } from "vitest";
import { adviseHugePages, backedPages } from "../../lib/snapshot/host-pages.js";
import { nonZeroRuns, type PageRun } from "../../lib/snapshot/memory.js";
import { GuestMemory } from "../../lib/vmm/memory.js";

const PAGE = 4096;

/** the runs of non-zero pages, found by looking at every byte */
function slowRuns(memory: GuestMemory): PageRun[] {
  const runs: PageRun[] = [];
  memory.regions.forEach((r, region) => {
    for (let page = 0; page < r.size / PAGE; page++) {
      if (!r.bytes.subarray(page * PAGE, (page + 1) * PAGE).some((b) => b !== 0)) continue;
      const last = runs.at(-1);
      if (last && last.region === region && last.page + last.pages === page) last.pages++;
      else runs.push({ region, page, pages: 1 });
    }
  });
  return runs;
}

const probe = backedPages(new Uint8Array(16 * PAGE));
const why =
  process.platform !== "linux"
    ? `not Linux (${process.platform}): no /proc/self/pagemap`
    : "koffi or /proc/self/pagemap is not usable here";

describe("backed pages", () => {
  it.skipIf(probe === undefined)("untouched pages of a fresh array are not backed, written ones are", () => {
    // large enough to be a mapping of its own, with pages no one has touched
    const bytes = new Uint8Array(64 << 20);
    for (const p of [3, 100, 101, 16383]) bytes[p * PAGE + 7] = 1;
    const backed = backedPages(bytes)!;
    expect(backed.length).toBe(16384);
    for (const p of [3, 100, 101, 16383]) expect(backed[p]).toBe(1);
    // most of it was never touched (how much exactly is up to the allocator)
    expect(backed.reduce((n, b) => n + b, 0)).toBeLessThan(1000);
    // an array that does not start on a host page: each of its pages spans two
    const skewed = new Uint8Array(bytes.buffer, 100, 1024 * PAGE);
    const s = backedPages(skewed)!;
    expect(s[2]).toBe(1); // holds bytes[3 * PAGE + 7] at 3 * PAGE - 93
    expect(s[3]).toBe(1); // shares host page 3 with s[2]
  });
  if (probe === undefined) console.log(`backed pages: skipped, ${why}; saves read all of RAM`);

  it.skipIf(probe === undefined)(
    "huge-page advice backs only whole blocks inside the spans, and changes no byte",
    () => {
      const bytes = new Uint8Array(64 << 20);
      bytes[(40 << 20) + 5] = 7;
      // [3 MiB + 1 page, 11 MiB): at least three whole 2 MiB blocks, whatever the array's alignment
      const blocks = adviseHugePages(bytes, [
        [(3 << 20) + PAGE, 11 << 20],
        [20 << 20, (20 << 20) + 8 * PAGE], // too short for a block: left alone
      ]);
      if (blocks === 0) {
        console.log("huge-page advice: madvise() is not usable here; restores fault pages one by one");
        return;
      }
      expect(blocks).toBeGreaterThanOrEqual(3);
      const backed = backedPages(bytes)!;
      const pages = (from: number, to: number) => backed.subarray(from / PAGE, to / PAGE);
      // MADV_POPULATE_WRITE (Linux 5.14+) backs the blocks at once; older kernels back them at the first write
      const populated = pages(5 << 20, 9 << 20).every((b) => b === 1);
      if (!populated) console.log("huge-page advice: MADV_POPULATE_WRITE is not supported by this kernel");
      // (page 0 may share its host page with the allocator's header)
      expect(pages(PAGE, 3 << 20).every((b) => b === 0)).toBe(true);
      expect(pages(12 << 20, 39 << 20).every((b) => b === 0)).toBe(true);
      expect(bytes.every((b, i) => b === (i === (40 << 20) + 5 ? 7 : 0))).toBe(true);
    },
  );

  it("the save's runs are those a look at every page finds", () => {
    const memory = new GuestMemory();
    memory.addRegion(0, new Uint8Array(40 << 20));
    memory.addRegion(0x10000000, new Uint8Array(new SharedArrayBuffer(8 << 20)));
    const rnd = (() => {
      let x = 12345;
      return () => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        return x;
      };
    })();
    for (let i = 0; i < 300; i++) {
      const r = memory.regions[rnd() % 2]!;
      const at = rnd() % r.size;
      r.bytes[at] = (rnd() % 255) + 1;
    }
    // a page written and then cleared again is backed but zero: not stored
    memory.regions[0]!.bytes[5 * PAGE] = 1;
    memory.regions[0]!.bytes[5 * PAGE] = 0;
    // a page only read: mapped (to the zero page), still zero
    expect(memory.regions[0]!.bytes[9 * PAGE + 1]).toBe(0);
    expect(nonZeroRuns(memory)).toEqual(slowRuns(memory));
  });
});

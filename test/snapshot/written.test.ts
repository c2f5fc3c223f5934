// The page sets an incremental save is made of, checked without /dev/kvm: KVM_GET_DIRTY_LOG's
// bitmaps (one bit per page, 64 to a little-endian word) as pages, the pages the host handed out
// through GuestMemory.view(), and runs made of them. The KVM path itself runs in the nested lane.

import { describe, expect, it } from "vitest";
import { noPages, orBitmaps, runsOf } from "../../lib/snapshot/written.js";
import { GuestMemory } from "../../lib/vmm/memory.js";

function memoryOf(...sizes: number[]): GuestMemory {
  const m = new GuestMemory();
  let at = 0;
  for (const size of sizes) {
    m.addRegion(at, new Uint8Array(size));
    at += size + 0x100000;
  }
  return m;
}

const flagged = (f: Uint8Array): number[] => [...f.keys()].filter((p) => f[p] === 1);

describe("pages written since a snapshot", () => {
  it("reads KVM's dirty bitmaps bit by bit, per region", () => {
    const m = memoryOf(200 * 4096, 8 * 4096);
    const b0 = new BigUint64Array(4);
    b0[0] = 1n | (1n << 31n) | (1n << 32n) | (1n << 63n);
    b0[3] = 1n << 7n; // page 199
    const b1 = new BigUint64Array(1);
    b1[0] = 0b1010n;
    const pages = orBitmaps(noPages(m), [b0, b1]);
    expect(flagged(pages[0]!)).toEqual([0, 31, 32, 63, 199]);
    expect(flagged(pages[1]!)).toEqual([1, 3]);
    expect(runsOf(pages)).toEqual([
      { region: 0, page: 0, pages: 1 },
      { region: 0, page: 31, pages: 2 },
      { region: 0, page: 63, pages: 1 },
      { region: 0, page: 199, pages: 1 },
      { region: 1, page: 1, pages: 1 },
      { region: 1, page: 3, pages: 1 },
    ]);
  });

  it("remembers the pages the host handed out, only once asked, and starts afresh when taken", () => {
    const m = memoryOf(64 * 4096);
    m.write(0x1000, new Uint8Array(10));
    expect(m.takeHostWrites()).toBeUndefined();
    m.trackHostWrites();
    m.write(0x2ffe, new Uint8Array(4)); // straddles pages 2 and 3
    m.writeU32(0x8000, 1);
    m.fill(0x10000, 0x2000, 7);
    m.view(0x20000, 1);
    // copies and reads of values cannot write: not counted
    m.read(0x30000, 0x3000);
    m.readU32(0x34000);
    const first = m.takeHostWrites()!;
    expect(flagged(first[0]!)).toEqual([2, 3, 8, 16, 17, 32]);
    expect(flagged(m.takeHostWrites()![0]!)).toEqual([]);
  });
});

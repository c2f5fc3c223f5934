// blockMatches (block-cache.ts) compares a block's bytes with guest memory a 32-bit word at a time:
// bytes of the same words outside the block must not count, every byte inside it must, and memory
// that cannot be read by words (not 4-aligned in its buffer, shared) takes the byte loop.

import { describe, expect, it } from "vitest";
import { blockMatches, buildBlock } from "../../lib/cpu/block-cache.js";

/** a page of NOPs with `code` at `off` */
function page(code: number[], off: number): Uint8Array {
  const p = new Uint8Array(4096).fill(0x90);
  p.set(code, off);
  return p;
}

// mov eax, 1; add eax, ebx; ret: three instructions, 8 bytes, ending the block
const CODE = [0xb8, 0x01, 0x00, 0x00, 0x00, 0x01, 0xd8, 0xc3];

describe("blockMatches", () => {
  for (const off of [0, 1, 2, 3, 6, 4085]) {
    it(`checks every byte of a block at page offset ${off} and no byte beside it`, () => {
      // memory: one page before, the code page, one page after (a block runs up to its page's end)
      const mem = new Uint8Array(3 * 4096);
      mem.set(page(CODE, off), 4096);
      const blk = buildBlock(mem, 4096, off, true, false, 0);
      const at = 4096 + off;
      expect(blk.code.length).toBeGreaterThan(0);
      expect(blockMatches(blk, mem, at)).toBe(true);
      // the bytes just outside the block, in the words it shares with them
      mem[at - 1] ^= 0xff;
      mem[at + blk.code.length] ^= 0xff;
      expect(blockMatches(blk, mem, at)).toBe(true);
      for (let k = 0; k < blk.code.length; k++) {
        mem[at + k] ^= 0x10;
        expect(blockMatches(blk, mem, at)).toBe(false);
        mem[at + k] ^= 0x10;
      }
      expect(blockMatches(blk, mem, at)).toBe(true);
    });
  }

  // ret (1 byte), add eax, ebx; ret (3 bytes): blocks within one word, or split over two
  for (const [code, off] of [
    [[0xc3], 0],
    [[0xc3], 3],
    [[0x01, 0xd8, 0xc3], 1],
    [[0x01, 0xd8, 0xc3], 2],
  ] as [number[], number][]) {
    it(`checks a ${code.length}-byte block at page offset ${off}, and no byte beside it`, () => {
      const mem = new Uint8Array(2 * 4096);
      mem.set(page(code, off), 0);
      const blk = buildBlock(mem, 0, off, true, false, 0);
      expect(blk.code.length).toBe(code.length);
      for (let b = Math.max(0, off - 4); b < off + code.length + 4; b++) {
        const inside = b >= off && b < off + code.length;
        mem[b] ^= 0x40;
        expect(blockMatches(blk, mem, off)).toBe(!inside);
        mem[b] ^= 0x40;
      }
      expect(blockMatches(blk, mem, off)).toBe(true);
    });
  }

  it("compares bytes where the memory array is not 4-aligned in its buffer", () => {
    const buf = new ArrayBuffer(2 * 4096 + 4);
    const mem = new Uint8Array(buf, 1, 2 * 4096);
    mem.set(page(CODE, 5), 0);
    const blk = buildBlock(mem, 0, 5, true, false, 0);
    expect(blockMatches(blk, mem, 5)).toBe(true);
    for (let k = 0; k < blk.code.length; k++) {
      mem[5 + k] ^= 1;
      expect(blockMatches(blk, mem, 5)).toBe(false);
      mem[5 + k] ^= 1;
    }
    mem[4] ^= 1;
    expect(blockMatches(blk, mem, 5)).toBe(true);
  });

  it("compares bytes of a shared buffer, and where the page sits off word alignment", () => {
    const shared = new Uint8Array(new SharedArrayBuffer(2 * 4096));
    shared.set(page(CODE, 2), 0);
    const blk = buildBlock(shared, 0, 2, true, false, 0);
    expect(blockMatches(blk, shared, 2)).toBe(true);
    shared[3] ^= 1;
    expect(blockMatches(blk, shared, 2)).toBe(false);
    // the same bytes at a place whose alignment differs from the block's page offset
    const plain = new Uint8Array(3 * 4096);
    plain.set(blk.code, 4096 + 3);
    expect(blockMatches(blk, plain, 4096 + 3)).toBe(true);
    plain[4096 + 3 + 1] ^= 1;
    expect(blockMatches(blk, plain, 4096 + 3)).toBe(false);
  });
});

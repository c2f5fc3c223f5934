// Limits of the block cache that keep the host safe from what a guest runs: the cache starts over
// when full (a guest executing its way through memory must not grow the host's heap without bound),
// and a requested interrupt window that stays shut does not break blocks at every generic op.
import { describe, expect, it } from "vitest";
import { StopReason, Window } from "../../lib/cpu/index.js";
import { CODE, hex, makeGuest } from "./guest.js";

describe("block cache limits", () => {
  it("a guest running through megabytes of code gets a cache that starts over, not one that grows", () => {
    // 6 MiB of `add [eax], al` (00 00) executed once each, then HLT: every address is new code
    const sled = new Uint8Array(6 << 20);
    sled[sled.length - 1] = 0xf4;
    const g = makeGuest("prot32", sled);
    g.cpu.setGpr(0, 0x9100n); // [eax]: a data word outside the code
    expect(g.run(1e9)).toBe(StopReason.Halted);
    expect(g.cpu.getRip()).toBe(BigInt(CODE + sled.length));
    expect(g.cpu.codeFlushes).toBeGreaterThan(0);
    let blocks = 0;
    for (const page of g.cpu.codePages.values()) blocks += page.blocks.size;
    // never more than the cache holds (2^18 ops, at least one per block)
    expect(blocks).toBeLessThan(1 << 18);
  });

  it("blocks dropped and decoded again do not count toward the cache's size", () => {
    // 31 x `add eax, imm8`, then HLT: one block of 32 ops. The host rewrites an immediate before
    // each run, so each run decodes the block anew (and drops the old one): 9,000 runs decode
    // more ops than the cache holds, but it never holds more than one block
    const code = [...Array.from({ length: 31 }, () => [0x83, 0xc0, 0x01]).flat(), 0xf4];
    const g = makeGuest("prot32", code);
    let sum = 0;
    // (the shared-memory project's setup starts the cache over once, at the first run)
    let flushes = 0;
    for (let k = 0; k < 9000; k++) {
      g.ram[CODE + 2] = k & 0x7f;
      g.cpu.setRip(BigInt(CODE));
      g.cpu.setGpr(0, 0n);
      g.cpu.activity = 0;
      expect(g.run()).toBe(StopReason.Halted);
      sum += Number(g.cpu.getGpr(0));
      expect(Number(g.cpu.getGpr(0))).toBe((k & 0x7f) + 30);
      if (k === 0) flushes = g.cpu.codeFlushes;
    }
    expect(sum).toBeGreaterThan(0);
    expect(g.cpu.blocksBuilt).toBeGreaterThan((1 << 18) / 32);
    expect(g.cpu.codeFlushes).toBe(flushes);
  });

  it("with an interrupt window requested and IF=0, generic ops stay inside blocks", () => {
    // cli; ecx=2000; loop: in al,0x80 (generic); inc ebx; dec ecx; jnz loop; sti; nop; hlt
    const g = makeGuest("prot32", hex("fa b9 d0 07 00 00 e4 80 43 49 75 fa fb 90 f4"));
    const seen: bigint[] = [];
    g.hooks.boundary = (ok) => {
      seen.push(g.cpu.getRip());
      return ok;
    };
    g.cpu.windowRequests = Window.Interrupt;
    expect(g.run()).toBe(StopReason.Exit);
    expect(g.cpu.getGpr(3) & 0xffffffffn).toBe(2000n);
    // exits where STI's shadow ends, before HLT
    expect(g.cpu.getRip()).toBe(BigInt(CODE + 14));
    // the loop's block compiles and keeps running: a few boundaries, not two per iteration
    expect(seen.length).toBeLessThan(200);
  });
});

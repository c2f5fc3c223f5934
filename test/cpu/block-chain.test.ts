// Blocks that follow each other through successor links (block-chain.ts, lookupBlock) against
// single-stepping: interpreted blocks (never compiled), blocks compiled on their first run, and
// blocks compiled after a few runs must stop where single steps stop: at the budget's exact
// instruction, at a store into the code of the block they lead to, at code the host or a device
// (port I/O) rewrote behind the TLB, and where a requested interrupt window opens (after STI's
// shadow, right after POPF).

import { describe, expect, it } from "vitest";
import { StopReason, Window } from "../../lib/cpu/index.js";
import { CODE, type Guest, hex, le32, makeGuest } from "./guest.js";
import { genericOpBytes } from "./support/block-agree.js";

type Config = "single-step" | "interpreted" | "compiled" | "compiled-in-chain";
const CONFIGS: Config[] = ["single-step", "interpreted", "compiled", "compiled-in-chain"];

function guest(code: number[], config: Config): Guest {
  const g = makeGuest("prot32", code);
  g.cpu.decodeCache = config !== "single-step";
  // 0: never compiled; 5: compiled after a few runs, mostly by the chain itself
  g.cpu.jitThreshold = config === "interpreted" ? 0 : config === "compiled" ? 1 : 5;
  return g;
}

/** registers eax, ecx, edx, ebx, esi, and RIP and the instruction count */
function state(g: Guest): number[] {
  const regs = [0, 1, 2, 3, 6].map((r) => Number(g.cpu.getGpr(r) & 0xffffffffn));
  return [...regs, Number(g.cpu.getRip()), g.cpu.retired];
}

/** runs to HLT in slices of `slice` instructions, with `between` called before each slice */
function trace(code: number[], config: Config, slice: number, between?: (g: Guest, n: number) => void) {
  const g = guest(code, config);
  const out: number[][] = [];
  for (let n = 0; n < 10_000; n++) {
    between?.(g, n);
    const stop = g.run(slice);
    out.push(state(g));
    if (stop !== StopReason.Budget) {
      expect(stop).toBe(StopReason.Halted);
      return { out, g };
    }
  }
  throw new Error("no HLT");
}

describe("chained blocks stop where single steps stop", () => {
  // mov ecx, 40 ; xor eax, eax ; xor ebx, ebx ; xor edx, edx ;
  // L: add eax, 3 ; jmp M ; M: add ebx, eax ; test cl, 1 ; jz C ; xor edx, eax ;
  // C: lea esi, [edx+ebx] ; dec ecx ; jnz L ; hlt — blocks of fast ops only, 1 to 4 long
  const loop = hex(
    "b9 28 00 00 00 31 c0 31 db 31 d2 83 c0 03 eb 00 01 c3 f6 c1 01 74 02 31 c2 8d 34 1a 49 75 ec f4",
  );

  it("the loop has blocks of fast ops only", () => {
    const { g } = trace(loop, "interpreted", 1_000_000);
    // (the HLT is in more than one block: blocks go on past a conditional branch)
    expect(new Set(genericOpBytes(g))).toEqual(new Set([0xf4]));
  });

  for (const slice of [1, 2, 3, 4, 5, 7, 9, 13, 1_000_000]) {
    it(`budget stops, in slices of ${slice}`, () => {
      const ref = trace(loop, "single-step", slice).out;
      for (const config of CONFIGS.slice(1)) expect(trace(loop, config, slice).out, config).toEqual(ref);
      // the loop's 40 passes and the slices' stop points (all but the last at the budget)
      expect(ref.at(-1)?.slice(5)).toEqual([CODE + 0x20, 4 + 40 * 8 + 20 + 1]);
      for (let k = 0; k < ref.length - 1; k++) expect(ref[k][6]).toBe((k + 1) * slice);
    });
  }

  it("a store into the block it chains to is seen by that block", () => {
    // mov ecx, 100 ; xor ebx, ebx ; L: mov [T+1], ecx ; jmp T ; T: mov eax, imm32 ;
    // add ebx, eax ; dec ecx ; jnz L ; hlt
    const code = [
      ...hex("b9 64 00 00 00 31 db 89 0d"),
      ...le32(CODE + 0x10),
      ...hex("eb 00 b8 00 00 00 00 01 c3 49 75 ee f4"),
    ];
    for (const slice of [1_000_000, 7]) {
      const ref = trace(code, "single-step", slice).out;
      expect(ref.at(-1)?.[3]).toBe(5050);
      for (const config of CONFIGS.slice(1)) expect(trace(code, config, slice).out, config).toEqual(ref);
    }
  });

  it("code the host rewrites between two runs is seen by the block a link leads to", () => {
    // mov ecx, 1000 ; xor ebx, ebx ; L: jmp T ; T: mov eax, imm32 ; add ebx, eax ; dec ecx ;
    // jnz L ; hlt — before each slice the host writes the slice's number into the immediate
    const code = hex("b9 e8 03 00 00 31 db eb 00 b8 01 00 00 00 01 c3 49 75 f4 f4");
    const patch = (g: Guest, n: number) => g.ram.set(le32(n * 3), CODE + 0x0a);
    for (const slice of [40, 9]) {
      const ref = trace(code, "single-step", slice, patch).out;
      for (const config of CONFIGS.slice(1))
        expect(trace(code, config, slice, patch).out, config).toEqual(ref);
    }
  });

  it("code a device writes during port I/O is seen by the block a link leads to", () => {
    // mov ecx, 200 ; xor ebx, ebx ; L: out 0x80, al ; jmp T ; T: mov eax, imm32 ; add ebx, eax ;
    // dec ecx ; jnz L ; hlt — the OUT's device writes the immediate (DMA, behind the TLB)
    const code = hex("b9 c8 00 00 00 31 db e6 80 eb 00 b8 01 00 00 00 01 c3 49 75 f2 f4");
    const device = (config: Config) => {
      const g = makeGuest("prot32", code, {
        portOut: () => g.ram.set(le32(Number(g.cpu.getGpr(1) & 0xffffn) % 7), CODE + 0x0c),
      });
      g.cpu.decodeCache = config !== "single-step";
      g.cpu.jitThreshold = config === "interpreted" ? 0 : config === "compiled" ? 1 : 5;
      expect(g.run(1_000_000)).toBe(StopReason.Halted);
      return state(g);
    };
    const ref = device("single-step");
    // the sum of ecx mod 7 over ecx = 200..1
    let sum = 0;
    for (let c = 200; c > 0; c--) sum += c % 7;
    expect(ref[3]).toBe(sum);
    for (const config of CONFIGS.slice(1)) expect(device(config), config).toEqual(ref);
  });
});

describe("chained blocks stop where a requested interrupt window opens", () => {
  /** runs with an interrupt window requested: the exit where it opens, and every boundary asked */
  function windowExit(code: number[], config: Config, slice: number) {
    const g = guest(code, config);
    g.hooks.boundary = (ok) => ok;
    g.cpu.windowRequests = Window.Interrupt;
    for (let n = 0; n < 10_000; n++) {
      const stop = g.run(slice);
      if (stop !== StopReason.Budget) return { stop, state: state(g) };
    }
    throw new Error("no exit");
  }

  // cli ; mov ecx, 20 ; xor ebx, ebx ; L: inc ebx ; jmp M ; M: add edx, ebx ; dec ecx ; jnz L ;
  // (opens IF) ; inc esi ; inc esi ; hlt
  const program = (open: string) => hex(`fa b9 14 00 00 00 31 db 43 eb 00 01 da 49 75 f8 ${open} 46 46 f4`);
  const cases = [
    // STI: the window opens after the instruction its shadow covers
    { name: "STI", open: "fb", rip: CODE + 0x12 },
    // pushfd ; or dword [esp], 0x200 ; popfd: open right after POPF
    { name: "POPF", open: "9c 81 0c 24 00 02 00 00 9d", rip: CODE + 0x19 },
  ];
  for (const c of cases)
    for (const slice of [1_000_000, 5])
      it(`after ${c.name}, in slices of ${slice}`, () => {
        const code = program(c.open);
        const ref = windowExit(code, "single-step", slice);
        expect(ref.stop).toBe(StopReason.Exit);
        expect(ref.state[5]).toBe(c.rip);
        for (const config of CONFIGS.slice(1)) expect(windowExit(code, config, slice), config).toEqual(ref);
      });
});

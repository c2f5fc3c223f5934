// Self-modifying code and the decode cache: a store that patches the next instruction of its own
// block, a loop body patched between two runs of it, writes beside the code that must not drop
// its blocks, REP MOVS/STOS onto code, the hot-page fallback (a page whose blocks keep being
// overwritten is single-stepped for a while, then gets blocks again), and random guests that
// patch their own loop while it runs, all against single-stepping.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Seg, StopReason } from "../../lib/cpu/index.js";
import { DEFAULT_HOT_POLICY, type HotPagePolicy } from "../../lib/cpu/interpreter.js";
import { CODE, type Guest, le16, le32, type Mode, makeGuest, r32 } from "./guest.js";

type Config = "single-step" | "blocks" | "compiled" | "default";
const CONFIGS: Config[] = ["single-step", "blocks", "compiled", "default"];

function configure(g: Guest, config: Config): void {
  g.cpu.decodeCache = config !== "single-step";
  if (config === "blocks") g.cpu.jitThreshold = 0;
  else if (config === "compiled") g.cpu.jitThreshold = 1;
}

/** the cached block whose first byte is at guest-physical `gpa` (32-bit code unless told) */
function blockAt(g: Guest, gpa: number, csD = true) {
  return g.cpu.codePages.get(gpa - (gpa % 4096))?.blocks.get((gpa % 4096) * 4 + (csD ? 1 : 0));
}

function page(g: Guest) {
  const p = g.cpu.codePages.get(CODE);
  if (p === undefined) throw new Error("no code page");
  return p;
}

/** the code page is hot: its code single-stepped */
const hot = (g: Guest) => page(g).hotAt(g.cpu.retired + g.cpu.eventsDelivered);

function run(code: number[], config: Config, setup?: (g: Guest) => void): Guest {
  const g = makeGuest("prot32", code);
  configure(g, config);
  setup?.(g);
  expect(g.run(10_000_000)).toBe(StopReason.Halted);
  return g;
}

describe("stores into code", () => {
  // mov ecx, N ; xor ebx, ebx ; xor eax, eax ; L: mov [T+1], cl ; T: mov al, imm8 ; add ebx, eax ;
  // dec ecx ; jnz L ; hlt — a byte store (a generic op) patches the next instruction
  const byteStore = (n: number) => [
    0xb9,
    ...le32(n),
    0x31,
    0xdb,
    0x31,
    0xc0,
    0x88,
    0x0d,
    ...le32(CODE + 16),
    0xb0,
    0x00,
    0x01,
    0xc3,
    0x49,
    0x75,
    0xf3,
    0xf4,
  ];
  // mov ecx, N ; xor ebx, ebx ; L: mov [T+1], ecx ; T: mov eax, imm32 ; add ebx, eax ; dec ecx ;
  // jnz L ; hlt — a 32-bit store (a fast op, inline when compiled) patches the next instruction
  const dwordStore = (n: number) => [
    0xb9,
    ...le32(n),
    0x31,
    0xdb,
    0x89,
    0x0d,
    ...le32(CODE + 14),
    0xb8,
    ...le32(0),
    0x01,
    0xc3,
    0x49,
    0x75,
    0xf0,
    0xf4,
  ];
  const sum = (n: number, f: (k: number) => number) => {
    let s = 0;
    for (let k = 1; k <= n; k++) s = (s + f(k)) >>> 0;
    return s;
  };

  for (const n of [5, 300]) {
    it(`a store patching the next instruction of its own block takes effect at once (${n} passes)`, () => {
      for (const config of CONFIGS) {
        const a = run(byteStore(n), config);
        expect(Number(a.cpu.getGpr(3)), config).toBe(sum(n, (k) => k & 0xff));
        const b = run(dwordStore(n), config);
        expect(Number(b.cpu.getGpr(3)), config).toBe(sum(n, (k) => k));
        if (config === "compiled") {
          // every pass dropped the block it ran in (until the page turned hot)
          expect(b.cpu.blocksInvalidated).toBeGreaterThanOrEqual(Math.min(n - 1, DEFAULT_HOT_POLICY.hits));
        }
      }
    });
  }

  // mov edx, 2 ; xor ebx, ebx ; O: mov ecx, 100 ; L: add ebx, 1 ; dec ecx ; jnz L ;
  // mov byte [L+2], 5 ; dec edx ; jnz O ; hlt
  const patchLoop = [
    0xba,
    ...le32(2),
    0x31,
    0xdb,
    0xb9,
    ...le32(100),
    0x83,
    0xc3,
    0x01,
    0x49,
    0x75,
    0xfa,
    0xc6,
    0x05,
    ...le32(CODE + 14),
    0x05,
    0x4a,
    0x75,
    0xeb,
    0xf4,
  ];

  it("a compiled loop body patched between two runs runs the new code", () => {
    for (const config of CONFIGS) {
      const g = makeGuest("prot32", patchLoop);
      configure(g, config);
      // the first pass of the loop, not the patch
      expect(g.cpu.run(3 + 300)).toBe(StopReason.Budget);
      const before = blockAt(g, CODE + 12);
      // the patch, the outer loop's DEC/JNZ and MOV ECX, then the second pass of the loop
      expect(g.cpu.run(1 + 2 + 1 + 300)).toBe(StopReason.Budget);
      const after = blockAt(g, CODE + 12);
      const dropped = g.cpu.blocksInvalidated;
      expect(g.run()).toBe(StopReason.Halted);
      expect(Number(g.cpu.getGpr(3)), config).toBe(100 + 500);
      if (config === "single-step") continue;
      expect(before).toBeDefined();
      expect(after).toBeDefined();
      expect(after).not.toBe(before);
      // the loop's block, and the one that ran into it from the start
      expect(dropped).toBe(2);
      if (config !== "blocks") {
        expect(before?.compiled).not.toBeNull();
        expect(after?.compiled).not.toBeNull();
      }
    }
  });

  it("a write into the code page outside every block keeps the blocks", () => {
    // mov ecx, 1000 ; L: add [CODE+0x800], ecx ; dec ecx ; jnz L ; mov byte [CODE+0x900], 1 ; hlt
    const code = [0xb9, ...le32(1000), 0x01, 0x0d, ...le32(CODE + 0x800), 0x49, 0x75, 0xf7];
    code.push(0xc6, 0x05, ...le32(CODE + 0x900), 0x01, 0xf4);
    for (const config of ["blocks", "compiled", "default"] as Config[]) {
      const g = makeGuest("prot32", code);
      configure(g, config);
      expect(g.cpu.run(1 + 3 * 50)).toBe(StopReason.Budget);
      const loop = blockAt(g, CODE + 5);
      expect(loop).toBeDefined();
      expect(g.run()).toBe(StopReason.Halted);
      expect(r32(g.ram, CODE + 0x800)).toBe(500500);
      expect(g.ram[CODE + 0x900]).toBe(1);
      // the same block object, never dropped; the page never turned hot
      expect(blockAt(g, CODE + 5)).toBe(loop);
      expect(g.cpu.blocksInvalidated).toBe(0);
      expect(g.cpu.hotPageEvents).toBe(0);
      expect(page(g).live).toBe(true);
      if (config !== "blocks") expect(loop?.compiled).not.toBeNull();
    }
  });
});

describe("REP MOVS / STOS onto code pages", () => {
  it("REP STOSB beside the code keeps the blocks", () => {
    // mov ecx, 50 ; L: push ecx ; mov edi, CODE+0x800 ; mov ecx, 256 ; mov al, 0x5a ; rep stosb ;
    // pop ecx ; inc ebx ; dec ecx ; jnz L ; hlt
    const code = [
      0xb9,
      ...le32(50),
      0x51,
      0xbf,
      ...le32(CODE + 0x800),
      0xb9,
      ...le32(256),
      0xb0,
      0x5a,
      0xf3,
      0xaa,
      0x59,
      0x43,
      0x49,
      0x75,
      0xec,
      0xf4,
    ];
    for (const config of ["blocks", "compiled", "default"] as Config[]) {
      const g = makeGuest("prot32", code);
      configure(g, config);
      expect(g.cpu.run(1 + 9 * 20)).toBe(StopReason.Budget);
      const loop = blockAt(g, CODE + 5);
      expect(loop).toBeDefined();
      expect(g.run()).toBe(StopReason.Halted);
      expect(Number(g.cpu.getGpr(3))).toBe(50);
      expect(g.ram.subarray(CODE + 0x800, CODE + 0x900).every((b) => b === 0x5a)).toBe(true);
      expect(g.ram[CODE + 0x900]).toBe(0);
      expect(blockAt(g, CODE + 5)).toBe(loop);
      expect(g.cpu.blocksInvalidated).toBe(0);
    }
  });

  it("REP MOVSB copying new code over a compiled loop body", () => {
    // mov edx, 2 ; xor ebx, ebx ; O: mov ecx, 100 ; L: add ebx, 1 ; dec ecx ; jnz L ;
    // mov esi, CODE+0x900 ; mov edi, L ; mov ecx, 3 ; rep movsb ; dec edx ; jnz O ; hlt
    const code = [0xba, ...le32(2), 0x31, 0xdb, 0xb9, ...le32(100), 0x83, 0xc3, 0x01, 0x49, 0x75, 0xfa];
    code.push(0xbe, ...le32(CODE + 0x900), 0xbf, ...le32(CODE + 12), 0xb9, ...le32(3), 0xf3, 0xa4);
    code.push(0x4a, 0x75, 0xe1, 0xf4);
    for (const config of CONFIGS) {
      const g = run(code, config, (g) => g.ram.set([0x83, 0xc3, 0x05], CODE + 0x900));
      expect(Number(g.cpu.getGpr(3)), config).toBe(600);
      if (config !== "single-step") expect(g.cpu.blocksInvalidated).toBeGreaterThanOrEqual(1);
    }
  });

  it("REP STOSB overwriting the instruction after it in the same compiled block", () => {
    // xor ebx, ebx ; mov edx, 20 ; L: mov edi, T ; xor ecx, ecx ; cmp edx, 1 ; jne S ;
    // mov ecx, 3 ; S: mov al, 0x90 ; rep stosb ; T: add ebx, 7 ; dec edx ; jnz L ; hlt —
    // the last pass turns the ADD into three NOPs just before running it
    const code = [0x31, 0xdb, 0xba, ...le32(20), 0xbf, ...le32(CODE + 28), 0x31, 0xc9, 0x83, 0xfa, 0x01];
    code.push(0x75, 0x05, 0xb9, ...le32(3), 0xb0, 0x90, 0xf3, 0xaa, 0x83, 0xc3, 0x07, 0x4a, 0x75, 0xe5, 0xf4);
    const outcomes = CONFIGS.map((config) => {
      const g = run(code, config);
      return {
        ebx: Number(g.cpu.getGpr(3)),
        retired: g.cpu.retired,
        code: [...g.ram.subarray(CODE, CODE + 35)],
      };
    });
    expect(outcomes[0].ebx).toBe(7 * 19);
    for (const o of outcomes.slice(1)) expect(o).toEqual(outcomes[0]);
  });
});

describe("the hot-page fallback", () => {
  // mov ecx, 100 ; xor ebx, ebx ; L: mov [T+1], ecx ; T: mov eax, imm32 ; add ebx, eax ; dec ecx ;
  // jnz L ; mov ecx, 10000 ; L2: add edx, 3 ; dec ecx ; jnz L2 ; hlt — every pass of the first
  // loop overwrites its own block; the second loop, on the same page, writes nothing
  const code = [0xb9, ...le32(100), 0x31, 0xdb, 0x89, 0x0d, ...le32(CODE + 14), 0xb8, ...le32(0)];
  code.push(0x01, 0xc3, 0x49, 0x75, 0xf0, 0xb9, ...le32(10000), 0x83, 0xc2, 0x03, 0x49, 0x75, 0xfa, 0xf4);
  const L2 = CODE + 28;
  const policy: HotPagePolicy = { hits: 4, gap: 1 << 16, base: 3000, maxDoublings: 0, forget: 1 << 22 };

  it("engages for a page whose blocks keep being overwritten, and lets it have blocks again later", () => {
    const g = makeGuest("prot32", code);
    g.cpu.hotPolicy = { ...policy };
    let engagedAt = -1;
    let builtWhenEngaged = -1;
    let liveAgainAt = -1;
    let stop: StopReason = StopReason.Budget;
    while (stop === StopReason.Budget) {
      stop = g.cpu.run(5);
      const p = page(g);
      if (hot(g) && engagedAt < 0) {
        engagedAt = g.cpu.retired;
        builtWhenEngaged = g.cpu.blocksBuilt;
      }
      // nothing cached or built on the page while it is hot
      if (hot(g)) {
        expect(p.blocks.size).toBe(0);
        expect(g.cpu.blocksBuilt).toBe(builtWhenEngaged);
      }
      if (p.live && engagedAt >= 0 && liveAgainAt < 0) liveAgainAt = g.cpu.retired;
    }
    expect(stop).toBe(StopReason.Halted);
    expect(Number(g.cpu.getGpr(3))).toBe(5050);
    // EDX starts at 0x600 (the reset value)
    expect(Number(g.cpu.getGpr(2))).toBe(0x600 + 30000);
    // hot after `hits` overwrites, within the first loop; single-stepped for `base` instructions
    expect(g.cpu.hotPageEvents).toBe(1);
    expect(engagedAt).toBeGreaterThan(0);
    expect(engagedAt).toBeLessThan(2 + 5 * 10);
    expect(liveAgainAt - engagedAt).toBeGreaterThanOrEqual(policy.base - 5);
    // then blocks again: the second loop is compiled
    expect(page(g).live).toBe(true);
    expect(blockAt(g, L2)?.compiled).not.toBeNull();
  });

  it("a page turning hot again soon stays hot twice as long", () => {
    // the first loop runs 3 times as long: it outlives the first hot period and overwrites its
    // block again once blocks come back
    const long = [...code];
    long.splice(1, 4, ...le32(1500));
    const g = makeGuest("prot32", long);
    g.cpu.hotPolicy = { ...policy, maxDoublings: 3 };
    const periods: number[] = [];
    let since = -1;
    let stop: StopReason = StopReason.Budget;
    while (stop === StopReason.Budget) {
      stop = g.cpu.run(25);
      const live = page(g).live;
      if (hot(g) && since < 0) since = g.cpu.retired;
      if (live && since >= 0) {
        periods.push(g.cpu.retired - since);
        since = -1;
      }
    }
    expect(stop).toBe(StopReason.Halted);
    expect(g.cpu.hotPageEvents).toBeGreaterThanOrEqual(2);
    expect(periods.length).toBeGreaterThanOrEqual(2);
    expect(periods[1]).toBeGreaterThanOrEqual(2 * policy.base - 50);
    const ref = makeGuest("prot32", long);
    ref.cpu.decodeCache = false;
    expect(ref.run(10_000_000)).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(3)).toBe(ref.cpu.getGpr(3));
  });
});

// ---------------------------------------------------------------- random self-modifying guests

/**
 * A loop whose body is `patches` then `slots`: each slot one instruction of the form
 * op ModRM imm32 (ADD/ADC/SBB/SUB r, imm32; MOV r, imm32; IMUL r, r, imm32 on EAX EDX EBX EBP);
 * each patch writes into a slot (an immediate byte, the whole immediate, the ModRM byte, or a
 * whole slot copied from a template with REP MOVSB) or beside the code.
 */
interface SmcCase {
  mode: "real" | "prot32";
  slots: number[][];
  patches: Patch[];
  templates: number[][];
  iterations: number;
  slice: number;
  policy: HotPagePolicy;
}

type Patch =
  | { kind: "immByte"; slot: number; byte: number; value: number }
  | { kind: "imm32"; slot: number; value: number }
  | { kind: "modrm"; slot: number; value: number }
  | { kind: "immWord"; slot: number; half: number }
  | { kind: "copy"; slot: number; template: number }
  | { kind: "beside"; at: number; value: number }
  | { kind: "data"; at: number };

const REGS = [0, 2, 3, 5];
/** a slot: opcode, ModRM (mod 3), imm32 */
const arbSlot = fc
  .tuple(
    fc.constantFrom(0x81, 0xc7, 0x69),
    fc.constantFrom(0, 2, 3, 5),
    fc.constantFrom(...REGS),
    fc.integer({ min: -0x80000000, max: 0x7fffffff }),
  )
  .map(([op, x, r, imm]) => [op, 0xc0 | ((op === 0xc7 ? 0 : x) << 3) | r, ...le32(imm)]);

const arbPatch = (slots: number, templates: number): fc.Arbitrary<Patch> =>
  fc.oneof(
    fc.record({
      kind: fc.constant("immByte" as const),
      slot: fc.nat(slots - 1),
      byte: fc.nat(3),
      value: fc.nat(255),
    }),
    fc.record({ kind: fc.constant("imm32" as const), slot: fc.nat(slots - 1), value: fc.nat(0xffffffff) }),
    fc.record({
      kind: fc.constant("modrm" as const),
      slot: fc.nat(slots - 1),
      value: fc
        .tuple(fc.constantFrom(0, 2, 3, 5), fc.constantFrom(...REGS))
        .map(([x, r]) => 0xc0 | (x << 3) | r),
    }),
    fc.record({ kind: fc.constant("immWord" as const), slot: fc.nat(slots - 1), half: fc.nat(1) }),
    fc.record({
      kind: fc.constant("copy" as const),
      slot: fc.nat(slots - 1),
      template: fc.nat(templates - 1),
    }),
    fc.record({ kind: fc.constant("beside" as const), at: fc.nat(255), value: fc.nat(255) }),
    fc.record({ kind: fc.constant("data" as const), at: fc.nat(63) }),
  );

const arbPolicy: fc.Arbitrary<HotPagePolicy> = fc.oneof(
  fc.constant({ ...DEFAULT_HOT_POLICY }),
  fc.record({
    hits: fc.integer({ min: 1, max: 4 }),
    gap: fc.constantFrom(50, 1 << 16),
    base: fc.integer({ min: 1, max: 400 }),
    maxDoublings: fc.integer({ min: 0, max: 3 }),
    forget: fc.constantFrom(100, 1 << 22),
  }),
);

const arbSmcCase: fc.Arbitrary<SmcCase> = fc
  .tuple(
    fc.constantFrom<"real" | "prot32">("real", "prot32"),
    fc.array(arbSlot, { minLength: 1, maxLength: 6 }),
    fc.array(arbSlot, { minLength: 1, maxLength: 3 }),
  )
  .chain(([mode, slots, templates]) =>
    fc.record({
      mode: fc.constant(mode),
      slots: fc.constant(slots),
      templates: fc.constant(templates),
      patches: fc.array(arbPatch(slots.length, templates.length), { maxLength: 5 }),
      iterations: fc.integer({ min: 1, max: 400 }),
      slice: fc.constantFrom(10_000_000, 10_000_000, 1, 13, 100, 997),
      policy: arbPolicy,
    }),
  );

/** offsets in the code (CS-relative: real mode runs with CS = DS = ES at CODE) */
const TEMPLATES = 0x600;
const BESIDE = 0x700;
const DATA = 0xa00;

function smcCode(c: SmcCase): { code: number[]; templates: number[] } {
  const real = c.mode === "real";
  // 16-bit code needs 66 before every 32-bit operation; addresses are offsets (DS = CS)
  const o32 = real ? [0x66] : [];
  const addr = (a: number) => (real ? le16(a) : le32(CODE + a));
  const abs = real ? 0x06 : 0x05;
  const slotLen = real ? 7 : 6;
  const head: number[] = real ? [0x8c, 0xc8, 0x8e, 0xd8, 0x8e, 0xc0] : [];
  head.push(...o32, 0xb9, ...le32(c.iterations));
  // the patches' lengths are fixed, so the slots' offsets are known before encoding them
  const len = (p: Patch): number => {
    switch (p.kind) {
      case "immByte":
      case "modrm":
      case "beside":
        return real ? 5 : 7;
      case "imm32":
        return real ? 9 : 10;
      case "immWord":
        return real ? 4 : 7;
      case "copy":
        return real ? 15 : 19;
      default:
        return real ? 5 : 6;
    }
  };
  const slotsAt = head.length + c.patches.reduce((n, p) => n + len(p), 0);
  const slotOff = (j: number) => slotsAt + j * slotLen;
  const body: number[] = [];
  for (const p of c.patches) {
    switch (p.kind) {
      case "immByte":
        body.push(0xc6, abs, ...addr(slotOff(p.slot) + slotLen - 4 + p.byte), p.value);
        break;
      case "modrm":
        body.push(0xc6, abs, ...addr(slotOff(p.slot) + slotLen - 5), p.value);
        break;
      case "beside":
        body.push(0xc6, abs, ...addr(BESIDE + p.at), p.value);
        break;
      case "imm32":
        body.push(...o32, 0xc7, abs, ...addr(slotOff(p.slot) + slotLen - 4), ...le32(p.value));
        break;
      case "immWord":
        // mov [imm + 2 * half], ax
        body.push(...(real ? [] : [0x66]), 0x89, abs, ...addr(slotOff(p.slot) + slotLen - 4 + 2 * p.half));
        break;
      case "copy":
        // push ecx ; mov (e)si, template ; mov (e)di, slot ; mov (e)cx, len ; rep movsb ; pop ecx
        body.push(...o32, 0x51);
        body.push(0xbe, ...addr(TEMPLATES + p.template * slotLen), 0xbf, ...addr(slotOff(p.slot)));
        body.push(0xb9, ...(real ? le16(slotLen) : le32(slotLen)), 0xf3, 0xa4, ...o32, 0x59);
        break;
      default:
        body.push(...o32, 0x89, abs, ...addr(DATA + 4 * p.at));
    }
  }
  const code = [...head, ...body];
  expect(code.length).toBe(slotsAt);
  for (const s of c.slots) code.push(...o32, ...s);
  // dec ecx ; jnz L (rel16 / rel32) ; hlt
  code.push(...o32, 0x49, 0x0f, 0x85);
  const rel = head.length - (code.length + (real ? 2 : 4));
  code.push(...(real ? le16(rel & 0xffff) : le32(rel)), 0xf4);
  const templates = c.templates.flatMap((t) => [...o32, ...t]);
  return { code, templates };
}

interface SmcOutcome {
  stop: StopReason;
  event: string;
  regs: bigint[];
  flags: number;
  rip: bigint;
  retired: number;
  code: number[];
}

function runSmc(c: SmcCase, config: Config): SmcOutcome {
  const { code, templates } = smcCode(c);
  const mode: Mode = c.mode;
  const g = makeGuest(mode, code, { event: () => true });
  configure(g, config);
  g.cpu.hotPolicy = { ...c.policy };
  g.ram.set(templates, CODE + TEMPLATES);
  if (mode === "real") expect(g.cpu.getSegment(Seg.CS).base).toBe(BigInt(CODE));
  let stop: StopReason = StopReason.Budget;
  for (let n = 0; n < 1_000_000 && stop === StopReason.Budget && g.cpu.retired < 100_000; n++)
    stop = g.cpu.run(c.slice);
  const exit = g.hooks.lastExit;
  return {
    stop,
    event: exit?.kind === "event" ? `${exit.vector}/${exit.errorCode}` : exit ? exit.kind : "",
    regs: Array.from({ length: 8 }, (_, r) => g.cpu.getGpr(r)),
    flags: g.cpu.getFlags(),
    rip: g.cpu.getRip(),
    retired: g.cpu.retired,
    code: [...g.ram.subarray(CODE, CODE + 0x1000)],
  };
}

describe("random guests that patch their own loop", () => {
  it("end in single-stepping's state with blocks, compiled blocks and hot pages", () => {
    fc.assert(
      fc.property(arbSmcCase, (c) => {
        const ref = runSmc(c, "single-step");
        for (const config of ["blocks", "compiled", "default"] as Config[])
          expect(runSmc(c, config), config).toEqual(ref);
      }),
      { numRuns: 150 },
    );
  });
});

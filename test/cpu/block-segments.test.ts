// Blocks with segment bases other than 0 and with non-flat data segments: real mode with DS =
// 0x1000, 16-bit protected mode with a 64-KiB data segment based at 0x10000 (loaded from the GDT
// by the guest), and random memory loops over segments of every limit and type, whose pointers
// walk past the limit. The blocks run (and compile) there, and every result and fault (#GP(0),
// #SS(0) at the instruction, with the state before it) is the one single-stepping gives.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Seg, StopReason } from "../../lib/cpu/index.js";
import { CODE, GDT, type Guest, hex, le16, le32, type Mode, makeGuest } from "./guest.js";

type Config = "single-step" | "blocks" | "compiled" | "default";
const CONFIGS: Config[] = ["single-step", "blocks", "compiled", "default"];

function configure(g: Guest, config: Config): void {
  g.cpu.decodeCache = config !== "single-step";
  if (config === "blocks") g.cpu.jitThreshold = 0;
  else if (config === "compiled") g.cpu.jitThreshold = 1;
}

interface Outcome {
  stop: StopReason;
  event: string;
  regs: bigint[];
  flags: number;
  rip: bigint;
  segs: number[];
  retired: number;
  memory: number[];
}

/** the guest's memory in [from, to), as a list of (address, value) for non-zero bytes */
function dump(ram: Uint8Array, from: number, to: number): number[] {
  const out: number[] = [];
  for (let a = from; a < to; a++) if (ram[a] !== 0) out.push(a, ram[a]);
  return out;
}

/**
 * Runs `g` in slices of `slice` instructions (every fault exits, with the state at the faulting
 * instruction) and returns what can be compared between configurations.
 */
function finish(g: Guest, mem: [number, number], slice = 1_000_000): Outcome {
  let stop: StopReason = StopReason.Budget;
  for (let n = 0; n < 100_000 && stop === StopReason.Budget && g.cpu.retired < 2_000_000; n++)
    stop = g.cpu.run(slice);
  const exit = g.hooks.lastExit;
  return {
    stop,
    event: exit?.kind === "event" ? `${exit.vector}/${exit.errorCode}` : exit ? exit.kind : "",
    regs: Array.from({ length: 8 }, (_, r) => g.cpu.getGpr(r)),
    flags: g.cpu.getFlags(),
    rip: g.cpu.getRip(),
    segs: Array.from({ length: 6 }, (_, s) => g.cpu.getSegment(s).selector),
    retired: g.cpu.retired,
    memory: dump(g.ram, mem[0], mem[1]),
  };
}

/** every exception exits (run() returns Exit) instead of going through the guest's IDT */
const exitOnEvents = { event: () => true };

/** the compiled block whose first byte is at guest-physical `gpa` (16-bit or 32-bit code) */
function compiledAt(g: Guest, gpa: number, csD: boolean) {
  const page = g.cpu.codePages.get(gpa - (gpa % 4096));
  const blk = page?.blocks.get((gpa % 4096) * 4 + (csD ? 1 : 0));
  return blk?.compiled != null ? blk : undefined;
}

/** writes a GDT descriptor */
function descriptor(
  ram: Uint8Array,
  sel: number,
  base: number,
  limit: number,
  access: number,
  flags: number,
) {
  const a = GDT + (sel & ~7);
  ram.set(le32((limit & 0xffff) | ((base & 0xffff) << 16)), a);
  ram.set(
    le32(((base >>> 16) & 0xff) | (access << 8) | (limit & 0xf0000) | (flags << 20) | (base & 0xff000000)),
    a + 4,
  );
}

describe("real mode with DS = SS = 0x1000", () => {
  // mov ax, 0x1000 ; mov ds, ax ; mov ss, ax ; mov sp, 0xf000 ; mov ecx, N ; xor si, si ;
  // mov bp, 0x100 ; L: mov ax, [si+0x5000] ; add ax, cx ; mov [si+0x5000], ax ; add [bp+0x6000], ax ;
  // inc si ; and si, 0x7ff ; dec ecx ; jnz L ; hlt
  const head = hex("b8 00 10 8e d8 8e d0 bc 00 f0 66 b9 10 27 00 00 31 f6 bd 00 01");
  const body = hex("8b 84 00 50 01 c8 89 84 00 50 01 86 00 60 46 81 e6 ff 07 66 49");
  const code = [...head, ...body, 0x75, -(body.length + 2) & 0xff, 0xf4];
  const data: [number, number] = [0x15000, 0x16200];

  it("the loop runs compiled, and its memory and registers are single-stepping's", () => {
    const outcomes = CONFIGS.map((config) => {
      const g = makeGuest("real", code, exitOnEvents);
      configure(g, config);
      const o = finish(g, data);
      if (config === "default") {
        expect(g.cpu.getSegment(Seg.DS).base).toBe(0x10000n);
        // the loop is one compiled block (all its ops inline) that ran from the block cache
        const blk = compiledAt(g, CODE + head.length, false);
        expect(blk).toBeDefined();
        expect(blk?.ops.every((op) => op.kind !== 0)).toBe(true);
        expect(g.cpu.blocksBuilt).toBeLessThan(10);
      }
      return o;
    });
    expect(outcomes[0].stop).toBe(StopReason.Halted);
    // the array at DS:0x5000 is the linear 0x15000, the BP-based word at SS:0x6100 is 0x16100
    expect(outcomes[0].memory.length).toBeGreaterThan(1000);
    for (const o of outcomes.slice(1)) expect(o).toEqual(outcomes[0]);
  });

  it("a hidden DS limit below 64 KiB: #GP(0) at the access that crosses it, as single-stepping", () => {
    // the head's segment loads and SP, then ECX = 0x4000, SI = 0x2000 ; L: mov ax, [si+0x5000] ;
    // add ax, cx ; mov [si+0x5000], ax ; add [bp+0x6000], ax ; inc si ; dec ecx ; jnz L ; hlt —
    // with a hidden DS limit of 0x7fff (left by protected mode), the word at SI = 0x2fff crosses it
    const pre = [...head.slice(0, 10), ...hex("66 b9 00 40 00 00 be 00 20 bd 00 01")];
    const loopBody = [...body.slice(0, 14), 0x46, 0x66, 0x49];
    const c = [...pre, ...loopBody, 0x75, -(loopBody.length + 2) & 0xff, 0xf4];
    const outcomes = CONFIGS.map((config) => {
      const g = makeGuest("real", c, exitOnEvents);
      configure(g, config);
      // run the segment loads, then shrink DS's hidden limit
      expect(g.cpu.run(4)).toBe(StopReason.Budget);
      const ds = g.cpu.getSegment(Seg.DS);
      expect(ds.base).toBe(0x10000n);
      g.cpu.setSegment(Seg.DS, { ...ds, limit: 0x7fff });
      return finish(g, data);
    });
    expect(outcomes[0].event).toBe("13/0");
    expect(outcomes[0].regs[6] & 0xffffn).toBe(0x2fffn);
    for (const o of outcomes.slice(1)) expect(o).toEqual(outcomes[0]);
  });
});

describe("16-bit protected mode with a 64-KiB data segment based at 0x10000", () => {
  const CODE16 = 0x50;
  const DATA16 = 0x58;
  const STACK16 = 0x60;
  const RODATA = 0x68;

  /** a prot32 guest switched to a 16-bit code segment at CODE; the guest loads DS and SS itself */
  function guest16(code: number[], dsLimit = 0xffff, dsAccess = 0x93): Guest {
    const g = makeGuest("prot32", code, exitOnEvents);
    descriptor(g.ram, CODE16, CODE, 0xffff, 0x9b, 0);
    descriptor(g.ram, DATA16, 0x10000, dsLimit, dsAccess, 0);
    descriptor(g.ram, STACK16, 0x30000, 0x7fff, 0x93, 0);
    descriptor(g.ram, RODATA, 0x10000, 0xffff, 0x91, 0);
    g.cpu.setGdtr({ base: BigInt(GDT), limit: 0x6f });
    g.cpu.setSegment(Seg.CS, { selector: CODE16, base: BigInt(CODE), limit: 0xffff, ar: 0x9b });
    g.cpu.setRip(0n);
    return g;
  }

  // mov ax, DATA16 ; mov ds, ax ; mov ax, STACK16 ; mov ss, ax ; mov sp, 0x7000 ; mov ecx, N ;
  // mov si, 0x4000 ; mov bp, 0x100
  const head = (ds: number, n: number, si: number) => [
    ...hex("b8"),
    ...le16(ds),
    ...hex("8e d8 b8"),
    ...le16(STACK16),
    ...hex("8e d0 bc 00 70 66 b9"),
    ...le32(n),
    0xbe,
    ...le16(si),
    ...hex("bd 00 01"),
  ];
  // L: mov ax, [si] ; add ax, cx ; mov [si], ax ; add [bp+0x10], ax ; movzx bx, byte [si+1] ;
  // add dx, bx ; inc si ; inc si ; dec ecx ; jnz L ; hlt
  const body = hex("8b 04 01 c8 89 04 01 46 10 0f b6 5c 01 01 da 46 46 66 49");
  const loopCode = (ds: number, n: number, si: number) => {
    const h = head(ds, n, si);
    return { code: [...h, ...body, 0x75, -(body.length + 2) & 0xff, 0xf4], at: h.length };
  };

  it("the loop runs compiled, and its memory and registers are single-stepping's", () => {
    const { code, at } = loopCode(DATA16, 10_000, 0x4000);
    const outcomes = CONFIGS.map((config) => {
      const g = guest16(code);
      configure(g, config);
      const o = finish(g, [0x14000, 0x1a000]);
      if (config === "default") {
        expect(g.cpu.getSegment(Seg.DS)).toMatchObject({ selector: DATA16, base: 0x10000n, limit: 0xffff });
        const blk = compiledAt(g, CODE + at, false);
        expect(blk).toBeDefined();
        expect(blk?.ops.every((op) => op.kind !== 0)).toBe(true);
      }
      return o;
    });
    expect(outcomes[0].stop).toBe(StopReason.Halted);
    for (const o of outcomes.slice(1)) expect(o).toEqual(outcomes[0]);
  });

  it("a limit below 64 KiB: #GP(0) at the access that crosses it, with the state before it", () => {
    // DS limit 0x5fff: SI walks from 0x4000 in steps of 2 and crosses it thousands of
    // instructions in, inside the compiled loop
    const { code } = loopCode(DATA16, 10_000, 0x4000);
    const outcomes = CONFIGS.map((config) => {
      const g = guest16(code, 0x5fff);
      configure(g, config);
      return finish(g, [0x14000, 0x1a000]);
    });
    expect(outcomes[0].event).toBe("13/0");
    expect(outcomes[0].regs[6] & 0xffffn).toBe(0x6000n);
    for (const o of outcomes.slice(1)) expect(o).toEqual(outcomes[0]);
  });

  it("a read-only data segment: the first store is #GP(0); an SS access past its limit is #SS(0)", () => {
    const ro = loopCode(RODATA, 100, 0x4000).code;
    // SS limit 0x7fff: BP starts at 0x7ff0, so [bp+0x10] is past it
    const ss = loopCode(DATA16, 100, 0x4000).code;
    const bp = ss.indexOf(0xbd, 20);
    ss.splice(bp + 1, 2, ...le16(0x7ff0));
    for (const [code, event] of [
      [ro, "13/0"],
      [ss, "12/0"],
    ] as const) {
      const outcomes = CONFIGS.map((config) => {
        const g = guest16([...code]);
        configure(g, config);
        return finish(g, [0x14000, 0x1a000]);
      });
      expect(outcomes[0].event).toBe(event);
      for (const o of outcomes.slice(1)) expect(o).toEqual(outcomes[0]);
    }
  });
});

// ---------------------------------------------------------------- random segments and loops

type SegMode = "real" | "pm16" | "pm32";

interface SegCase {
  mode: SegMode;
  /** DS and SS: base, limit, access rights (VMX layout) */
  ds: [number, number, number];
  ss: [number, number, number];
  si: number;
  bp: number;
  siStep: number;
  bpStep: number;
  ops: number[][];
  iterations: number;
  slice: number;
}

/**
 * One memory op on [SI/ESI + d8] (DS) or [BP/EBP + d8] (SS), in the forms blocks have fast ops
 * for. The address size is the mode's, so the ModRM byte is left as a marker (0x100 | reg << 3 |
 * BP-based) and MOV m, imm's immediate as 0x200 followed by its byte (encodeOp resolves both).
 */
function arbMemOp(): fc.Arbitrary<number[]> {
  return fc
    .tuple(
      fc.constantFrom("load", "store", "aluRM", "aluMR", "aluMI", "movzx", "movsx", "testMR", "movMI", "lea"),
      fc.constantFrom(0, 2, 3),
      fc.boolean(),
      fc.integer({ min: -16, max: 15 }).map((d) => d & 0xff),
      fc.boolean().map((b) => (b ? [0x66] : [])),
      fc.integer({ min: 0, max: 7 }),
      fc.integer({ min: 0, max: 255 }),
    )
    .map(([kind, r, bp, d, p, alu, imm]) => {
      const m = (reg: number) => [0x100 | (reg << 3) | (bp ? 1 : 0), d];
      switch (kind) {
        case "load":
          return [...p, 0x8b, ...m(r)];
        case "store":
          return [...p, 0x89, ...m(r)];
        case "aluRM":
          return [...p, (alu << 3) | 3, ...m(r)];
        case "aluMR":
          return [...p, (alu << 3) | 1, ...m(r)];
        case "aluMI":
          return [...p, 0x83, ...m(alu), imm];
        case "movzx":
          return [...p, 0x0f, imm & 1 ? 0xb7 : 0xb6, ...m(r)];
        case "movsx":
          return [...p, 0x0f, imm & 1 ? 0xbf : 0xbe, ...m(r)];
        case "testMR":
          return [...p, 0x85, ...m(r)];
        case "movMI":
          return [...p, 0xc7, ...m(0), 0x200, imm];
        default:
          return [...p, 0x8d, ...m(r)];
      }
    });
}

/** resolves arbMemOp's markers for the mode's address size and default operand size */
function encodeOp(op: number[], a16: boolean, o16default: boolean): number[] {
  const out: number[] = [];
  const o16 = (op[0] === 0x66) !== o16default;
  for (let k = 0; k < op.length; k++) {
    const b = op[k];
    if (b === 0x200) {
      // MOV m, imm: the byte replicated to the operand size
      const imm = op[++k];
      out.push(...(o16 ? [imm, imm] : [imm, imm, imm, imm]));
    } else if (b >= 0x100) {
      const bp = (b & 1) !== 0;
      out.push(0x40 | (b & 0x38) | (bp ? (a16 ? 6 : 5) : a16 ? 4 : 6));
    } else out.push(b);
  }
  return out;
}

const arbSegCase: fc.Arbitrary<SegCase> = fc
  .tuple(
    fc.constantFrom<SegMode>("real", "pm16", "pm32"),
    fc.integer({ min: 0x2000, max: 0x6000 }).map((b) => b * 16),
    fc.integer({ min: 0x2000, max: 0x6000 }).map((b) => b * 16),
    fc.oneof(
      fc.constant(0xffff),
      fc.integer({ min: 0x100, max: 0xfffe }),
      fc.integer({ min: 0x10000, max: 0x3ffff }),
    ),
    fc.oneof(fc.constant(0xffff), fc.integer({ min: 0x100, max: 0xfffe })),
    // DS: read/write, read-only, expand-down read/write, readable code; SS: read/write or expand-down
    fc.constantFrom(0x93, 0x91, 0x97, 0x9b),
    fc.constantFrom(0x93, 0x97),
    fc.integer({ min: 0, max: 0xffff }),
    fc.integer({ min: 0, max: 0xffff }),
    fc.integer({ min: -9, max: 9 }),
    fc.integer({ min: -9, max: 9 }),
  )
  .chain(([mode, dsBase, ssBase, dsLimit, ssLimit, dsAr, ssAr, si, bp, siStep, bpStep]) =>
    fc
      .record({
        ops: fc.array(arbMemOp(), { minLength: 1, maxLength: 8 }),
        iterations: fc.integer({ min: 20, max: 3000 }),
        slice: fc.constantFrom(1_000_000, 1_000_000, 7, 100, 1000),
      })
      .map(({ ops, iterations, slice }) => {
        // near the limit half of the time, so that loops cross it
        const nearDs = Math.max(0, Math.min(0xffff, dsLimit - 64 + (si & 127)));
        const nearSs = Math.max(0, Math.min(0xffff, ssLimit - 64 + (bp & 127)));
        const big = mode === "pm32" ? 0x4000 : 0;
        return {
          mode,
          ds: [dsBase, mode === "pm32" ? dsLimit : Math.min(dsLimit, 0xffff), dsAr | big] as [
            number,
            number,
            number,
          ],
          ss: [ssBase, ssLimit, ssAr | big] as [number, number, number],
          si: (si & 1) === 0 ? nearDs : si,
          bp: (bp & 1) === 0 ? nearSs : bp,
          siStep,
          bpStep,
          ops,
          iterations,
          slice,
        };
      }),
  );

function segCaseCode(c: SegCase): number[] {
  const a16 = c.mode !== "pm32";
  const o16 = a16;
  const body: number[] = [];
  for (const op of c.ops) body.push(...encodeOp(op, a16, o16));
  // add si, step ; add bp, step ; dec ecx ; jnz L ; hlt (83 /0 ib; 66 49 / 49 is DEC (E)CX)
  body.push(0x83, 0xc6, c.siStep & 0xff, 0x83, 0xc5, c.bpStep & 0xff);
  body.push(...(a16 ? [0x66, 0x49] : [0x49]));
  const jnz = body.length + 6 <= 127 ? [0x75, -(body.length + 2) & 0xff] : [];
  if (jnz.length === 0) body.push(0x0f, 0x85, ...le32(-(body.length + 6)));
  else body.push(...jnz);
  body.push(0xf4);
  return body;
}

function runSegCase(c: SegCase, config: Config): Outcome {
  const code = segCaseCode(c);
  const mode: Mode = c.mode === "real" ? "real" : "prot32";
  const g = makeGuest(mode, code, exitOnEvents);
  configure(g, config);
  const cpu = g.cpu;
  if (c.mode === "pm16") {
    cpu.setSegment(Seg.CS, { selector: 0x20, base: BigInt(CODE), limit: 0xffff, ar: 0x9b });
    cpu.setRip(0n);
  }
  const [dsBase, dsLimit, dsAr] = c.ds;
  const [ssBase, ssLimit, ssAr] = c.ss;
  cpu.setSegment(Seg.DS, { selector: dsBase >> 4, base: BigInt(dsBase), limit: dsLimit, ar: dsAr });
  cpu.setSegment(Seg.SS, { selector: ssBase >> 4, base: BigInt(ssBase), limit: ssLimit, ar: ssAr });
  cpu.setGpr(6, BigInt(c.si));
  cpu.setGpr(5, BigInt(c.bp));
  cpu.setGpr(1, BigInt(c.iterations));
  cpu.setGpr(0, 0x1234_5678n);
  cpu.setGpr(3, 0x9abc_def0n);
  return finish(g, [0x20000, 0x80000], c.slice);
}

describe("random memory loops over segments of every limit and type", () => {
  it("every configuration reaches single-stepping's results, faults and state", () => {
    fc.assert(
      fc.property(arbSegCase, (c) => {
        const ref = runSegCase(c, "single-step");
        for (const config of ["blocks", "compiled", "default"] as Config[])
          expect(runSegCase(c, config), config).toEqual(ref);
      }),
      { numRuns: 100 },
    );
  });
});

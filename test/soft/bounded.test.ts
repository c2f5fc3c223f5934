// Bounded, always (issue 9): on the soft backend every run limit (timeoutMs, maxExits,
// maxInstructions, vm.stop(); the CLI's in bounded-cli.test.ts) ends the run whatever the guest
// does, on runSync() and on await run(), and an async run leaves the event loop free.
// First the two hostage guests, verbatim; then fast-check-generated guests built to stress
// the same: fault loops, triple faults, self-modifying loops, long REP string instructions and
// interrupt storms. Behaviour is asserted, never rates: a run ends for the limit it was given (or an
// earlier legitimate reason), and a timeout never overshoots by an order of magnitude.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { RunLimits, RunResult } from "../../lib/vmm/loop.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { PREEMPTION_TIMER_RATE } from "../../lib/vmx/index.js";
import { Alu, Asm, AX, BX, CX, DI, DX, SI, SP } from "../support/asm.js";
import { HOSTAGE_GUESTS } from "../support/hostage-guests.js";

/** instructions per tick of the VMX preemption timer (the soft vCPU's budgets count in these) */
const TICK = 2 ** PREEMPTION_TIMER_RATE;
const TIMEOUT_MS = 200;
/** a delivered fault counts as one: the #UD loop needs some 5 us per delivery */
const MAX_INSTRUCTIONS = 20_000;
/** the timeout every other run gets too: a limit that does not work ends as "timeout", quickly */
const SAFETY_MS = 5000;
/** generous: a timeout never overshoots by a whole order of magnitude */
const TIMEOUT_BOUND_MS = 10 * TIMEOUT_MS;

type Limit = "timeoutMs" | "maxExits" | "maxInstructions" | "stop";
const REASON: Record<Limit, RunResult["reason"]> = {
  timeoutMs: "timeout",
  maxExits: "max-exits",
  maxInstructions: "max-instructions",
  stop: "stopped",
};

async function machine(image: Uint8Array, load?: (vm: Machine) => void): Promise<Machine> {
  const vm = await createMachine({ backend: "soft", memoryMiB: 16 });
  addPcDevices(vm);
  if (load) load(vm);
  else vm.load(image);
  return vm;
}

/**
 * Runs `vm` with one limit, sync or async. vm.stop() comes from a timer on async runs, and from
 * an exit hook on sync ones (no timer can fire while runSync holds the thread). Returns the result
 * and how many times a 1-ms interval ticked during the run.
 */
async function runWith(
  vm: Machine,
  limit: Limit,
  sync: boolean,
  value?: number,
  safetyMs = SAFETY_MS,
): Promise<{ result: RunResult; ticks: number; wallMs: number }> {
  const limits: RunLimits = {};
  if (limit === "timeoutMs") limits.timeoutMs = value ?? TIMEOUT_MS;
  if (limit === "maxExits") limits.maxExits = value ?? 5;
  if (limit === "maxInstructions") limits.maxInstructions = value ?? MAX_INSTRUCTIONS;
  // every run is bounded anyway: a limit that failed shows as a timeout, not as a hung test
  if (limit !== "timeoutMs") limits.timeoutMs = safetyMs;
  let ticks = 0;
  const interval = setInterval(() => ticks++, 1);
  let timer: NodeJS.Timeout | undefined;
  const t0 = performance.now();
  try {
    if (limit === "stop") {
      if (sync) {
        let exits = 0;
        vm.on("exit", () => {
          if (++exits === (value ?? 3)) vm.stop();
        });
      } else timer = setTimeout(() => vm.stop(), value ?? TIMEOUT_MS);
    }
    const result = sync ? vm.runSync(limits) : await vm.run(limits);
    return { result, ticks, wallMs: performance.now() - t0 };
  } finally {
    clearInterval(interval);
    if (timer) clearTimeout(timer);
  }
}

describe("bounded runs of the issue's hostage guests (soft backend)", () => {
  for (const { name, image } of HOSTAGE_GUESTS) {
    for (const sync of [true, false]) {
      for (const limit of ["timeoutMs", "maxExits", "maxInstructions", "stop"] as const) {
        it(`${name}: ${sync ? "runSync" : "await run"} ends at ${limit}`, async () => {
          const vm = await machine(image);
          try {
            const { result, ticks, wallMs } = await runWith(vm, limit, sync);
            expect(result.reason, result.message).toBe(REASON[limit]);
            if (limit === "timeoutMs") expect(wallMs).toBeLessThan(TIMEOUT_BOUND_MS);
            // exact up to one tick of the preemption timer the soft vCPU counts budgets with
            if (limit === "maxInstructions") {
              expect(result.instructions! - MAX_INSTRUCTIONS).toBeGreaterThanOrEqual(0);
              expect(result.instructions! - MAX_INSTRUCTIONS).toBeLessThan(TICK);
            }
            if (limit === "maxExits") expect(result.exits).toBe(5);
            // the guest really ran (a fault loop counts delivered exceptions as work)
            expect(vm.vcpu(0).backend.instructionsRetired?.()).toBeGreaterThan(0);
            // an async run leaves the event loop free: the interval ticks while the guest spins
            if (!sync && limit !== "maxInstructions" && limit !== "maxExits")
              expect(ticks).toBeGreaterThanOrEqual(3);
          } finally {
            vm.close();
          }
        });
      }
    }
  }
});

// ---------------------------------------------------------------- generated stress guests

const STRESS_CASES = Number(process.env.NODEVMM_BOUNDED_CASES ?? 10);

type Fault = "ud" | "de" | "gp" | "msr" | "int3";
const fault = fc.constantFrom<Fault>("ud", "de", "gp", "msr", "int3");

type Stress =
  | { k: "fault-loop"; stations: { pad: number[]; fault: Fault }[]; vectors: number[] }
  | { k: "triple-fault"; fault: Fault }
  | { k: "smc"; stores: { target: number; value: number }[]; alu: number }
  | {
      k: "rep";
      op: 0xa4 | 0xaa | 0xac | 0x6c | 0x6e;
      size: 1 | 2 | 4;
      count: number;
      edi: number;
      esi: number;
    }
  | { k: "storm"; divisor: number; nested: boolean; work: number };

const stress: fc.Arbitrary<Stress> = fc.oneof(
  fc.record({
    k: fc.constant("fault-loop" as const),
    stations: fc.array(
      fc.record({
        pad: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 4 }),
        fault,
      }),
      { minLength: 1, maxLength: 4 },
    ),
    vectors: fc.array(fc.nat(), { minLength: 16, maxLength: 16 }),
  }),
  fc.record({
    k: fc.constant("triple-fault" as const),
    fault: fc.constantFrom("ud" as const, "de" as const, "gp" as const),
  }),
  fc.record({
    k: fc.constant("smc" as const),
    stores: fc.array(fc.record({ target: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), {
      minLength: 1,
      maxLength: 4,
    }),
    alu: fc.integer({ min: 0, max: 7 }),
  }),
  fc
    .record({
      k: fc.constant("rep" as const),
      op: fc.constantFrom(0xa4 as const, 0xaa as const, 0xac as const, 0x6c as const, 0x6e as const),
      size: fc.constantFrom(1 as const, 2 as const, 4 as const),
      count: fc.oneof(fc.constant(0xffffffff), fc.integer({ min: 0x10000000, max: 0xffffffff })),
      // above the code (0x10000) and below the APICs: no limit lets a pass wrap around 4 GiB
      edi: fc.integer({ min: 0x100000, max: 0xfe000000 }),
      esi: fc.integer({ min: 0x100000, max: 0xfe000000 }),
    })
    // INS/OUTS operands start in RAM (16 MiB): the soft backend's string I/O needs them there
    .map((r) =>
      r.op === 0x6c || r.op === 0x6e
        ? { ...r, edi: (r.edi % 0xe00000) + 0x100000, esi: (r.esi % 0xe00000) + 0x100000 }
        : r,
    ),
  fc.record({
    k: fc.constant("storm" as const),
    divisor: fc.integer({ min: 1, max: 4 }),
    nested: fc.boolean(),
    work: fc.integer({ min: 0, max: 3 }),
  }),
);

const BOOT = 0x7c00;

/** A faulting instruction of `kind`, 16-bit code (the handler never returns to it). */
function emitFault(a: Asm, kind: Fault): void {
  if (kind === "ud") a.db(0x0f, 0x0b);
  else if (kind === "de") a.aluRR(Alu.Xor, SI, SI).unary(6, SI);
  // CR4 with reserved bits set: #GP
  else if (kind === "gp") a.movR32I(AX, 0xffffffff).movToCr(4, AX);
  // RDMSR of an MSR that does not exist: an exit, and the host injects #GP
  else if (kind === "msr") a.movR32I(CX, 0xdeadbeef).db(0x0f, 0x32);
  else a.db(0xcc);
}

/** Real-mode boot sector (or 32-bit flat code for REP) and how to load it. */
function build(s: Stress): { image: Uint8Array; mode: "real" | "protected"; address: number } {
  if (s.k === "rep") {
    const a = new Asm(32, 0x10000);
    a.db(0xfc).movRI(DI, s.edi).movRI(SI, s.esi).movRI(DX, 0x80).movRI(CX, s.count);
    a.string(s.op, s.size, "rep");
    const again = a.fresh();
    // when the count ran out: another pass, forever
    a.label(again).movRI(CX, s.count).string(s.op, s.size, "rep").jShort(-1, again);
    return { image: a.link(), mode: "protected", address: 0x10000 };
  }
  const a = new Asm(16, BOOT);
  // cli; xor ax,ax; mov ds,ax; mov ax,0x1000; mov ss,ax; mov sp,0: the stack wraps within
  // 0x10000-0x1ffff however deep faults and interrupts nest, away from the code and the IVT
  a.db(0xfa, 0x31, 0xc0, 0x8e, 0xd8).movRI(AX, 0x1000).db(0x8e, 0xd0).movRI(SP, 0);
  const ivt = (vector: number, label: string) => {
    // mov word [vector*4], label ; mov word [vector*4+2], 0
    a.db(0xc7, 0x06)
      .imm(vector * 4)
      .addr(label);
    a.db(0xc7, 0x06)
      .imm(vector * 4 + 2)
      .imm(0);
  };
  switch (s.k) {
    case "fault-loop": {
      const names = s.stations.map(() => a.fresh("station"));
      for (let v = 0; v < 16; v++) ivt(v, names[s.vectors[v]! % names.length]!);
      a.jNear(-1, names[0]!);
      s.stations.forEach((st, i) => {
        a.label(names[i]!);
        for (const p of st.pad) a.inc([AX, BX, DX, DI, AX][p]!);
        emitFault(a, st.fault);
        // a fault that did not happen (INT3 returns past itself): fault again
        a.jNear(-1, names[i]!);
      });
      break;
    }
    case "triple-fault":
      // an IDT limit of 0: the fault cannot be delivered (#GP), nor #DF: the processor shuts down
      a.db(0x0f, 0x01, 0x1e).addr("idtr"); // lidt [idtr]
      emitFault(a, s.fault);
      a.db(0xf4);
      a.label("idtr").db(0, 0, 0, 0, 0, 0);
      break;
    case "smc": {
      // L: add ax, cx ; inc cx ; mov [target], al ... ; jmp L: stores into the loop's own bytes
      // (immediates and the bytes just past the loop, on the same page)
      const top = a.fresh("top");
      const imm = a.fresh("imm");
      const tail = a.fresh("tail");
      a.label(top)
        .aluRR(s.alu as Alu, AX, CX)
        .inc(CX);
      a.label(imm).movRI(DX, 0x1234);
      for (const st of s.stores) {
        const pick = st.target % 3;
        if (pick === 0) a.store8({ abs: imm, add: 1 }, AX);
        else if (pick === 1)
          a.db(0xc6, 0x06)
            .addr(tail, st.target % 64)
            .db(st.value);
        else a.store({ abs: imm, add: 1 }, CX);
      }
      a.jNear(-1, top);
      a.label(tail).db(...new Array(64).fill(0x90));
      break;
    }
    case "storm": {
      // the 8259 pair at vectors 8 (IRQ 0 = vector 8) with only IRQ 0 unmasked; the PIT at its
      // fastest rates in mode 2; the handler acknowledges, re-enables interrupts and loops
      const handler = a.fresh("irq");
      ivt(8, handler);
      for (const [port, v] of [
        [0x20, 0x11],
        [0x21, 0x08],
        [0x21, 0x04],
        [0x21, 0x01],
        [0xa0, 0x11],
        [0xa1, 0x70],
        [0xa1, 0x02],
        [0xa1, 0x01],
        [0x21, 0xfe],
        [0xa1, 0xff],
        [0x43, 0x34],
        [0x40, s.divisor],
        [0x40, 0],
      ] as const) {
        a.db(0xb0, v).outImm(port, 1);
      }
      a.db(0xfb);
      const spin = a.fresh("spin");
      a.label(spin);
      for (let i = 0; i < s.work; i++) a.inc(DI);
      a.jShort(-1, spin);
      a.label(handler).push(AX).db(0xb0, 0x20).outImm(0x20, 1).pop(AX);
      const inner = a.fresh("inner");
      if (s.nested) a.db(0xfb).label(inner).inc(BX).jShort(-1, inner);
      else a.inc(BX).db(0xcf);
      break;
    }
  }
  const code = a.link();
  const image = new Uint8Array(512);
  image.set(code);
  image[510] = 0x55;
  image[511] = 0xaa;
  return { image, mode: "real", address: BOOT };
}

/** reasons a stress run may end with before its limit: the guest's own, legitimate ends */
const EARLY: Record<Stress["k"], RunResult["reason"][]> = {
  "fault-loop": [],
  "triple-fault": ["shutdown"],
  smc: [],
  rep: [],
  storm: [],
};

describe("generated guests that stress the limits end at them (soft backend)", () => {
  it(`fault loops, triple faults, self-modifying loops, long REPs and interrupt storms (${STRESS_CASES} cases)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        stress,
        fc.constantFrom<Limit>("timeoutMs", "maxExits", "maxInstructions", "stop"),
        fc.boolean(),
        fc.integer({ min: 1, max: 100_000 }),
        async (s, limit, sync, n) => {
          const { image, mode, address } = build(s);
          const vm = await machine(image, (m) =>
            mode === "real" ? m.load(image) : m.loadFlat(image, { address, mode }),
          );
          if (process.env.BOUNDED_DEBUG) console.log(JSON.stringify({ s, limit, sync, n }));
          try {
            const value =
              limit === "timeoutMs"
                ? 20 + (n % 100)
                : limit === "maxExits"
                  ? 1 + (n % 20)
                  : limit === "stop"
                    ? 1 + (n % 4)
                    : 1 + (n % 5000);
            const { result, wallMs } = await runWith(vm, limit, sync, value);
            const allowed = [REASON[limit], ...EARLY[s.k]];
            // REP INS/OUTS that walked off the end of RAM: the soft backend's string I/O stops there
            const offRam =
              s.k === "rep" && /string I\/O operand is not in guest RAM/.test(result.message ?? "");
            if (!offRam)
              expect(allowed, `${result.reason}: ${result.message ?? ""}`).toContain(result.reason);
            if (limit === "timeoutMs") expect(wallMs).toBeLessThan(10 * value + 200);
            if (result.reason === "max-instructions") {
              expect(result.instructions! - value).toBeGreaterThanOrEqual(0);
              // REP iterations count, and a REP stops where the budget does
              expect(result.instructions! - value).toBeLessThan(TICK);
            }
          } finally {
            vm.close();
          }
        },
      ),
      // the cases are small already: report the first failure as generated
      { numRuns: STRESS_CASES, endOnFailure: true },
    );
  });
});

describe("an interrupt storm still lets the guest run", () => {
  // the PIT at divisor 1 is due again 0.8 us after each service: entries that ended at every
  // device deadline never ran a guest instruction (maxInstructions was never reached)
  for (const nested of [false, true]) {
    it(`PIT at divisor 1, ${nested ? "a handler that re-enables and loops" : "IRET"}: maxInstructions ends the run`, async () => {
      const { image } = build({ k: "storm", divisor: 1, nested, work: 1 });
      const vm = await machine(image);
      try {
        const { result } = await runWith(vm, "maxInstructions", true, 500);
        expect(result.reason, result.message).toBe("max-instructions");
        // the handler ran: interrupts were delivered (it counts them in BX)
        expect(vm.vcpu(0).getRegs().rbx & 0xffffn).toBeGreaterThan(0n);
      } finally {
        vm.close();
      }
    });
  }
});

// ---------------------------------------------------------------- long REP string instructions

/**
 * 32-bit flat code: `cld; mov edi,X; mov ecx,0xffffffff; rep stosd` (or `mov edx,0x80; rep insb`).
 * maxInstructions must end these like any other guest, and quickly: each REP iteration counts as
 * work (once a chunk of 4096 iterations counted as one instruction, and iterations that exit into
 * MMIO as none, so such a run went on until another limit).
 */
describe("long REP string instructions end at maxInstructions", () => {
  const rep = (edi: number, op: number[]) => {
    const a = new Asm(32, 0x10000);
    a.db(0xfc)
      .movRI(DI, edi)
      .movRI(DX, 0x80)
      .movRI(CX, 0xffffffff)
      .db(...op)
      .jShort(-1, "end")
      .label("end");
    return a.link();
  };
  for (const [name, code] of [
    ["REP STOSD over RAM", rep(0x100000, [0xf3, 0xab])],
    ["REP STOSD into MMIO", rep(0x40000000, [0xf3, 0xab])],
    ["REP INSB from port 0x80", rep(0x100000, [0xf3, 0x6c])],
  ] as const) {
    it(`${name}, 2^32-1 iterations: maxInstructions ends the run`, async () => {
      const vm = await machine(code, (m) => m.loadFlat(code, { address: 0x10000, mode: "protected" }));
      try {
        // these take a few milliseconds: a run still going after 500 ms missed them
        // each iteration into MMIO is an exit of its own: fewer of them fit in the time
        const n = name.includes("MMIO") ? 2_000 : 200_000;
        const { result } = await runWith(vm, "maxInstructions", true, n, 500);
        expect(result.reason, result.message).toBe("max-instructions");
      } finally {
        vm.close();
      }
    });
  }
});

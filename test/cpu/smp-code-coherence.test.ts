// Cross-modifying code between vCPU threads (lib/cpu/code-coherence.ts; SDM Vol. 3A 9.1.3): vCPU 0
// calls a function on its own page in a loop (its block cached and compiled), vCPU 1 rewrites the
// function's immediate and raises a flag; vCPU 0 sees the flag, executes a serializing instruction
// and calls the function again: it must return the new value. Each vCPU thread runs the whole test
// in one run() (the start of a run re-checks every block, which would hide a missed write).

import { describe, expect, it } from "vitest";
import { catchUpCodeMap, noteHostWrite, SHARED_TAG, serializeCode } from "../../lib/cpu/code-coherence.js";
import { createBareHooks, createSharedMemoryState, StopReason } from "../../lib/cpu/index.js";
import { CODE, makeGuest, RAM_SIZE } from "./guest.js";
import { runVcpus, sharedGuest } from "./smp/threads.js";

const DATA = 0x100000;
const FUNC = CODE + 0x1000;
const RDI = 7;

function le32(v: number): number[] {
  return [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff];
}

/** vCPU 0: call FUNC; inc dword [rdi+32]; cmp dword [rdi+16], 0; je loop; <serialize>; call FUNC;
 * mov [rdi+24], eax; hlt */
function caller(serialize: number[]): number[] {
  const head = [0xe8, ...le32(FUNC - (CODE + 5)), 0xff, 0x47, 0x20, 0x83, 0x7f, 0x10, 0x00, 0x74, 0xf2];
  const at = head.length + serialize.length;
  return [...head, ...serialize, 0xe8, ...le32(FUNC - (CODE + at + 5)), 0x89, 0x47, 0x18, 0xf4];
}

/** vCPU 1 (at CODE + 0x200): optionally writes FUNC's page first (a plain write entry made before
 * vCPU 0 marks the page as code), waits until vCPU 0 called FUNC 1000 times, patches FUNC's
 * immediate, raises the flag, halts */
function patcher(touchFirst: boolean): number[] {
  const touch = touchFirst ? [0xc7, 0x04, 0x25, ...le32(FUNC + 0x800), ...le32(0)] : [];
  return [
    ...touch,
    // wait: mov eax, [rdi+32]; cmp eax, 1000; jb wait
    0x8b,
    0x47,
    0x20,
    0x3d,
    ...le32(1000),
    0x72,
    0xf6,
    // mov dword [FUNC+1], 0x22222222
    0xc7,
    0x04,
    0x25,
    ...le32(FUNC + 1),
    ...le32(0x22222222),
    // mov dword [rdi+16], 1; hlt
    0xc7,
    0x47,
    0x10,
    ...le32(1),
    0xf4,
  ];
}

const SERIALIZING: [string, number[]][] = [
  ["CPUID", [0x31, 0xc0, 0x0f, 0xa2]], // xor eax, eax; cpuid
  ["MOV to CR3", [0x0f, 0x20, 0xd8, 0x0f, 0x22, 0xd8]], // mov rax, cr3; mov cr3, rax
];

describe("code written by one vCPU thread reaches another at a serializing instruction", () => {
  for (const [name, serialize] of SERIALIZING) {
    for (const touchFirst of [false, true]) {
      it(`${name}${touchFirst ? ", the writer's entry made before the page held code" : ""}`, async () => {
        const code = [...caller(serialize)];
        const p = patcher(touchFirst);
        const image = [...code, ...new Array(0x200 - code.length).fill(0x90), ...p];
        const g = sharedGuest(image, 2);
        // FUNC: mov eax, 0x11111111; ret
        g.ram.set([0xb8, ...le32(0x11111111), 0xc3], FUNC);
        const res = await runVcpus(
          g,
          [
            { rip: CODE, regs: { [RDI]: BigInt(DATA) } },
            { rip: CODE + 0x200, regs: { [RDI]: BigInt(DATA) } },
          ],
          { shared: process.env.SMP_TEST_MODE_OFF !== "1" },
        );
        for (const r of res) expect(r.stop).toBe(2); // StopReason.Halted
        const calls = g.ram[DATA + 32] | (g.ram[DATA + 33] << 8) | (g.ram[DATA + 34] << 16);
        expect(calls).toBeGreaterThanOrEqual(1000);
        const seen =
          (g.ram[DATA + 24] |
            (g.ram[DATA + 25] << 8) |
            (g.ram[DATA + 26] << 16) |
            (g.ram[DATA + 27] << 24)) >>>
          0;
        expect(seen.toString(16)).toBe("22222222");
      });
    }
  }
});

describe("the code-coherence protocol, step by step (two interpreters on one thread)", () => {
  it("a write entry made before the page held code keeps the marker re-checking until acknowledged", () => {
    // vCPU 0 at CODE: call FUNC 20 times (dec ecx; jnz), then hlt; at CODE + 0x40: call FUNC;
    // mov [rdi+24], eax; hlt. vCPU 1 at CODE + 0x200: mov dword [FUNC+0x800], 0; hlt.
    const loop = [0xb9, ...le32(20), 0xe8, ...le32(FUNC - (CODE + 10)), 0xff, 0xc9, 0x75, 0xf7, 0xf4];
    const once = [0xe8, ...le32(FUNC - (CODE + 0x45)), 0x89, 0x47, 0x18, 0xf4];
    const touch = [0xc7, 0x04, 0x25, ...le32(FUNC + 0x800), ...le32(0), 0xf4];
    const image = [...loop, ...new Array(0x40 - loop.length).fill(0x90), ...once];
    image.push(...new Array(0x200 - image.length).fill(0x90), ...touch);
    const g0 = makeGuest("long", image);
    const ram = g0.ram;
    ram.set([0xb8, ...le32(0x11111111), 0xc3], FUNC);
    const g1 = makeGuest("long", []);
    g1.cpu.hooks = createBareHooks(ram);
    g1.cpu.flushTlb();
    const state = createSharedMemoryState(RAM_SIZE, 2);
    const [c0, c1] = [g0.cpu, g1.cpu];
    c0.attachSharedMemory(state, 0);
    c1.attachSharedMemory(state, 1);
    const gen = new Int32Array(state.words);
    const run = (cpu: typeof c0, rip: number): void => {
      cpu.activity = 0;
      cpu.setRip(BigInt(rip));
      cpu.setGpr(RDI, BigInt(DATA));
      expect(cpu.run(1_000_000)).toBe(StopReason.Halted);
    };
    const wIndex = (FUNC >>> 12) & 0xfff;

    // vCPU 1 writes FUNC's page while it holds no code: a plain write entry. Then it is back in
    // a run (as if its run() went on: what the thread test races for)
    run(c1, CODE + 0x200);
    expect(c1.tlbWTag[wIndex]).toBe(FUNC);
    catchUpCodeMap(c1);
    // vCPU 0 builds blocks there: the page is marked, the mark not yet acknowledged by vCPU 1
    run(c0, CODE);
    expect(new Uint8Array(state.codeMap)[FUNC >>> 12]).not.toBe(0);
    expect(c0.smp?.markConfirmed).toBe(false);
    // vCPU 1, not having looked since, patches FUNC through its plain entry: no generation bump
    const g = gen[0];
    c1.wr32(FUNC + 1, 0x22222222);
    expect(gen[0]).toBe(g);
    // so vCPU 0 re-checks its blocks at every serializing point until vCPU 1 acknowledges
    let epoch = c0.runEpoch;
    serializeCode(c0);
    expect(c0.runEpoch).toBe(epoch + 1);
    expect(c0.smp?.markConfirmed).toBe(false);
    run(c0, CODE + 0x40);
    expect(ram[DATA + 24] | (ram[DATA + 27] << 24)).toBe(0x22000022);
    // vCPU 1 catches up: its plain entry goes, its ack reaches the mark
    catchUpCodeMap(c1);
    expect(c1.tlbWTag[wIndex]).toBeNaN();
    serializeCode(c0);
    expect(c0.smp?.markConfirmed).toBe(true);
    epoch = c0.runEpoch;
    serializeCode(c0);
    expect(c0.runEpoch).toBe(epoch);
    // from now on vCPU 1's writes to the page go through a checked entry and bump the generation
    c1.wr32(FUNC + 1, 0x33333333);
    expect(c1.tlbWTag[wIndex]).toBe(FUNC + SHARED_TAG);
    expect(gen[0]).toBe(g + 1);
    serializeCode(c0);
    expect(c0.runEpoch).toBe(epoch + 1);
    run(c0, CODE + 0x40);
    expect(ram[DATA + 24] | (ram[DATA + 27] << 24)).toBe(0x33000033);
    // a device writing guest memory: only a page that holds code bumps the generation
    expect(noteHostWrite(state, DATA, 64)).toBe(false);
    expect(gen[0]).toBe(g + 1);
    ram.set(le32(0x44444444), FUNC + 1);
    expect(noteHostWrite(state, FUNC - 2, 4)).toBe(true);
    expect(gen[0]).toBe(g + 2);
    run(c0, CODE + 0x40);
    expect(ram[DATA + 24] | (ram[DATA + 27] << 24)).toBe(0x44000044);
  });
});

describe("a vCPU outside run() holds up no one", () => {
  it("marks are confirmed at once when the other vCPU is parked, and it catches up on its next run", () => {
    const loop = [0xb9, ...le32(20), 0xe8, ...le32(FUNC - (CODE + 10)), 0xff, 0xc9, 0x75, 0xf7, 0xf4];
    const touch = [0xc7, 0x04, 0x25, ...le32(FUNC + 0x800), ...le32(0), 0xf4];
    const image = [...loop, ...new Array(0x200 - loop.length).fill(0x90), ...touch];
    const g0 = makeGuest("long", image);
    g0.ram.set([0xb8, ...le32(0x11111111), 0xc3], FUNC);
    const g1 = makeGuest("long", []);
    g1.cpu.hooks = createBareHooks(g0.ram);
    g1.cpu.flushTlb();
    const state = createSharedMemoryState(RAM_SIZE, 2);
    const [c0, c1] = [g0.cpu, g1.cpu];
    c0.attachSharedMemory(state, 0);
    c1.attachSharedMemory(state, 1);
    const wIndex = (FUNC >>> 12) & 0xfff;
    c1.setRip(BigInt(CODE + 0x200));
    expect(c1.run(1000)).toBe(StopReason.Halted);
    expect(c1.tlbWTag[wIndex]).toBe(FUNC);
    expect(new Int32Array(state.acks)[1]).toBe(0x7fffffff);
    c0.setRip(BigInt(CODE));
    c0.setGpr(RDI, BigInt(DATA));
    expect(c0.run(1000)).toBe(StopReason.Halted);
    serializeCode(c0);
    expect(c0.smp?.markConfirmed).toBe(true);
    const epoch = c0.runEpoch;
    serializeCode(c0);
    expect(c0.runEpoch).toBe(epoch);
    // vCPU 1's next run starts by dropping its plain entry of the page that now holds code
    c1.activity = 0;
    c1.setRip(BigInt(CODE + 0x200));
    expect(c1.run(1000)).toBe(StopReason.Halted);
    expect(c1.tlbWTag[wIndex]).toBe(FUNC + SHARED_TAG);
  });
});

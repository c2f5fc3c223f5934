// Deterministic machines (createMachine({ deterministic: true })): guest time counts instructions,
// so a guest that reads the TSC and takes timer interrupts sees exactly the same values and the
// interrupts at exactly the same instructions in every run, whatever the host's speed or load.

import { describe, expect, it } from "vitest";
import { createMachine } from "../../lib/index.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { Asm, AX, CX } from "../support/asm.js";
import { irq0Setup } from "../support/real-mode-timer.js";

const JNZ = 5;
const REPORT_PORT = 0x700;
const SAMPLES = 120;

/**
 * Real mode: the PIT fires IRQ 0 every 20 counts (~17 us) through the i8259 at vector 8; the
 * handler counts ticks at 0x600. The main code samples, SAMPLES times with a delay loop between,
 * RDTSC's low word and the tick count, writing both to REPORT_PORT; then CLI; HLT.
 */
function timerTscGuest(): Uint8Array {
  const a = new Asm(16, 0x7c00);
  irq0Setup(a, "handler");
  // PIT channel 0, lobyte/hibyte, mode 2 (rate generator), count 20
  a.db(0xb0, 0x34).outImm(0x43, 1);
  a.db(0xb0, 20).outImm(0x40, 1);
  a.db(0xb0, 0).outImm(0x40, 1);
  a.db(0xfb); // sti
  a.movRI(AX, SAMPLES).store({ abs: 0x602 }, AX);
  a.label("sample");
  a.db(0x0f, 0x31); // rdtsc
  a.db(0xba).imm(REPORT_PORT).outDx(2); // mov dx, REPORT_PORT; out dx, ax
  a.load(AX, { abs: 0x600 }).outDx(2);
  a.movRI(CX, 3000);
  a.label("delay").dec(CX).jShort(JNZ, "delay");
  a.incM({ abs: 0x602 }, true).jNear(JNZ, "sample");
  a.db(0xfa, 0xf4); // cli; hlt
  a.label("handler");
  a.incM({ abs: 0x600 });
  a.db(0x50, 0xb0, 0x20).outImm(0x20, 1).db(0x58, 0xcf); // push ax; EOI; pop ax; iret
  return a.link();
}

async function runOnce(deterministic: boolean): Promise<{ values: number[]; exits: string[] }> {
  const vm = await createMachine({ backend: "soft", deterministic });
  try {
    addPcDevices(vm);
    const values: number[] = [];
    vm.io.onOut(REPORT_PORT, (_port, _size, value) => void values.push(value));
    const exits: string[] = [];
    vm.on("exit", (e) => {
      if (e.kind !== "intr") exits.push(e.kind === "io" ? `${e.direction}:${e.port.toString(16)}` : e.kind);
    });
    vm.loadFlat(timerTscGuest());
    const r = await vm.run({ timeoutMs: 60_000 });
    expect(r.reason).toBe("hlt");
    return { values, exits };
  } finally {
    vm.close();
  }
}

describe("deterministic machines", () => {
  it("repeat a guest's TSC reads, timer interrupts and exits exactly", async () => {
    const a = await runOnce(true);
    const b = await runOnce(true);
    expect(a.values).toHaveLength(2 * SAMPLES);
    const ticks = a.values.filter((_, i) => i % 2 === 1);
    // the timer really interrupted the guest, many times over the run
    expect(ticks.at(-1)!).toBeGreaterThan(10);
    expect(b.values).toEqual(a.values);
    expect(b.exits).toEqual(a.exits);
  });

  it("count guest time in instructions: the TSC advances by the same amount over the same code", async () => {
    const { values } = await runOnce(true);
    const tsc = values.filter((_, i) => i % 2 === 0);
    const ticks = values.filter((_, i) => i % 2 === 1);
    // between two samples with no tick in between, exactly the same instructions ran
    const quiet = new Set<number>();
    for (let i = 1; i < tsc.length; i++) {
      if (ticks[i] === ticks[i - 1]) quiet.add((tsc[i]! - tsc[i - 1]! + 0x10000) & 0xffff);
    }
    expect(quiet.size).toBe(1);
  });

  it("are refused on KVM with a typed error", async () => {
    const fakeKvm = () => ({ kind: "kvm", close() {} }) as never;
    await expect(createMachine({ backend: fakeKvm, deterministic: true })).rejects.toThrow(/soft backend/);
  });
});

// Save a soft-backend machine mid-run and resume it in a fresh machine: the guest's output and
// final registers must equal an uninterrupted run's.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { encodeSnapshot, readSnapshot, SnapshotError } from "../../lib/snapshot/index.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { countingGuest, pendingTimerGuest } from "./guests.js";
import { setSoftFpu, softFpu } from "./soft-fpu.js";

const dir = mkdtempSync(join(tmpdir(), "nodevmm-snap-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Out {
  serial: number[];
  debug: number[];
}

async function pcMachine(out: Out, restore?: string): Promise<Machine> {
  const setup = (vm: Machine) => {
    addPcDevices(vm, {
      serial: (b) => out.serial.push(...b),
      debugcon: (b) => out.debug.push(...b),
      coalesce: false,
    });
  };
  if (restore) return createMachine({ backend: "soft", memoryMiB: 16, restore, setup });
  const vm = await createMachine({ backend: "soft", memoryMiB: 16 });
  setup(vm);
  return vm;
}

const text = (b: number[]) => Buffer.from(b).toString("latin1");

describe("snapshot and resume on the soft backend", () => {
  // 301 stops right after an IN (its data is completed by the snapshot), 302 after an OUT to COM1
  for (const stopAt of [301, 302, 303]) {
    it(`a counting guest stopped after ${stopAt} exits resumes to the same output and registers`, async () => {
      const image = countingGuest(200);
      const whole: Out = { serial: [], debug: [] };
      const ref = await pcMachine(whole);
      ref.loadFlat(image);
      const refResult = ref.runSync({ maxExits: 10_000 });
      expect(refResult.reason).toBe("hlt");
      const refRegs = ref.vcpu(0).getRegs();
      const refSregs = ref.vcpu(0).getSregs();
      ref.close();

      const first: Out = { serial: [], debug: [] };
      const a = await pcMachine(first);
      a.loadFlat(image);
      expect(a.runSync({ maxExits: stopAt }).reason).toBe("max-exits");
      const path = join(dir, `count-${stopAt}.snap`);
      const saved = await a.snapshot(path);
      expect(saved.pages).toBeGreaterThan(0);
      a.close();

      const second: Out = { serial: [], debug: [] };
      const b = await pcMachine(second, path);
      expect(b.runSync({ maxExits: 10_000 }).reason).toBe("hlt");
      expect(text([...first.serial, ...second.serial])).toBe(text(whole.serial));
      expect(text([...first.debug, ...second.debug])).toBe(text(whole.debug));
      // both parts did some of the work
      expect(first.debug.length).toBeGreaterThan(50);
      expect(second.debug.length).toBeGreaterThan(50);
      expect(b.vcpu(0).getRegs()).toEqual(refRegs);
      expect(b.vcpu(0).getSregs()).toEqual(refSregs);
      expect(b.memory.view(0x500, 2)).toEqual(Uint8Array.from([200, 0]));
      b.close();
    });
  }

  it("a PIT interrupt pending in the i8259 across the snapshot is delivered after the resume", async () => {
    const first: Out = { serial: [], debug: [] };
    const a = await pcMachine(first);
    a.loadFlat(pendingTimerGuest());
    a.io.onOut(0x501, () => a.stop());
    const r = await a.run({ timeoutMs: 20_000 });
    expect(r.reason).toBe("stopped");
    expect(text(first.debug)).toBe("P");
    // IF is off: the interrupt waits in the PIC
    expect(a.vcpu(0).getRegs().rflags & 0x200n).toBe(0n);
    const path = join(dir, "timer.snap");
    await a.snapshot(path);
    a.close();

    const second: Out = { serial: [], debug: [] };
    const b = await pcMachine(second, path);
    const done = await b.run({ timeoutMs: 20_000 });
    expect(done.reason).toBe("hlt");
    expect(text(second.debug)).toBe("TD");
    expect(b.memory.view(0x600, 2)).toEqual(Uint8Array.from([1, 0]));
    b.close();
  });

  it("keeps the soft vCPU's FPU/SSE state and MSRs", async () => {
    const out: Out = { serial: [], debug: [] };
    const a = await pcMachine(out);
    a.loadFlat(countingGuest(3));
    const x = softFpu(a);
    const fpu = Float64Array.from([1.5, -0, 3, 4, 5, 6, 7, Number.NaN]);
    const xmm = Int32Array.from({ length: x.xmm.length }, (_, i) => i * 0x01010101);
    setSoftFpu(a, { fpu, xmm, mxcsr: 0x1f80 | 0x8000, fpuCw: 0x27f });
    a.vcpu(0).setMsr(0xc0000082, 0xffff800012345678n); // LSTAR
    a.vcpu(0).setMsr(0x174, 0x10n); // SYSENTER_CS
    const path = join(dir, "fpu.snap");
    await a.snapshot(path);
    a.close();
    const b = await pcMachine({ serial: [], debug: [] }, path);
    const y = softFpu(b);
    expect([...y.fpu].map((v) => (Object.is(v, -0) ? "-0" : String(v)))).toEqual(
      [...fpu].map((v) => (Object.is(v, -0) ? "-0" : String(v))),
    );
    expect([...y.xmm]).toEqual([...xmm]);
    expect(y.mxcsr).toBe(0x1f80 | 0x8000);
    expect(y.fpuCw).toBe(0x27f);
    expect(b.vcpu(0).getMsr(0xc0000082)).toBe(0xffff800012345678n);
    expect(b.vcpu(0).getMsr(0x174)).toBe(0x10n);
    b.close();
  });

  it("refuses a snapshot of a running machine and a restore into a machine lacking a device", async () => {
    const out: Out = { serial: [], debug: [] };
    const a = await pcMachine(out);
    a.loadFlat(countingGuest(50));
    let during: unknown;
    a.on("exit", () => {
      if (during !== undefined) return;
      try {
        during = encodeSnapshot(a);
      } catch (e) {
        during = e;
      }
    });
    a.runSync({ maxExits: 20 });
    const err = during;
    expect(err).toBeInstanceOf(SnapshotError);
    expect((err as SnapshotError).section).toBe("machine");
    const path = join(dir, "devices.snap");
    await a.snapshot(path);
    a.close();
    // no setup: the machine has only its platform devices, not COM1
    const e = await createMachine({ backend: "soft", memoryMiB: 16, restore: path }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SnapshotError);
    expect((e as SnapshotError).section).toBe("devices");
    expect((e as Error).message).toMatch(/serial|uart|com1/i);
    const snap = await readSnapshot(path);
    expect(snap.header.backend).toBe("soft");
    expect(snap.config.memoryMiB).toBe(16);
  });
});

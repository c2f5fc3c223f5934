// Snapshots on real KVM and across backends: a guest saved midway on KVM resumes on KVM and on
// the soft backend, one saved on soft resumes on KVM, and the output of both parts together is
// the output of an uninterrupted run. Also: an interrupt pending in the 8259 across the snapshot
// (in-kernel irqchip <-> soft devices), and the x87/SSE state through KVM's XSAVE area.
// Incremental saves on KVM take their pages from KVM's dirty log (and the host's writes), and a
// machine with two vCPUs (the SMP guest midway) saves on KVM and resumes on KVM and on soft.

import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { GuestCpu } from "../../lib/cpu/guest-cpu.js";
import type { KvmMachineBackend, KvmVcpuBackend } from "../../lib/vmm/backends/kvm.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { countingGuest, pendingTimerGuest } from "../snapshot/guests.js";
import { expectedSmp, smpCmdline, smpImage } from "../support/smp-guest.js";
import { probe, skipReason } from "./helpers.js";

type Backend = "kvm" | "soft";
interface Out {
  serial: number[];
  debug: number[];
}

const dir = mkdtempSync(join(tmpdir(), "nodevmm-kvm-snap-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const text = (b: number[]) => Buffer.from(b).toString("latin1");
const fresh = (): Out => ({ serial: [], debug: [] });

async function pcMachine(
  backend: Backend,
  out: Out,
  restore?: string | string[],
  notes?: string[],
): Promise<Machine> {
  // exits one by one (no coalesced writes) so that both backends count the same exits
  const setup = (vm: Machine) => {
    addPcDevices(vm, {
      serial: (b) => out.serial.push(...b),
      debugcon: (b) => out.debug.push(...b),
      coalesce: false,
    });
  };
  if (restore) {
    return createMachine({ backend, memoryMiB: 16, restore, setup, onNotes: (n) => notes?.push(...n) });
  }
  const vm = await createMachine({ backend, memoryMiB: 16 });
  setup(vm);
  return vm;
}

const kvmVcpu = (vm: Machine) => (vm.vcpu(0).backend as KvmVcpuBackend).kvmVcpu;
const softCpu = (vm: Machine) => (vm.vcpu(0).backend as unknown as { lp: { cpu: GuestCpu } }).lp.cpu;

const DIRECTIONS: [Backend, Backend][] = [
  ["kvm", "kvm"],
  ["kvm", "soft"],
  ["soft", "kvm"],
];

describe.skipIf(!probe.usable)(`snapshots on KVM and across backends${skipReason}`, () => {
  for (const [from, to] of DIRECTIONS) {
    // 301: stopped right after an IN (completed before the save), 302: after an OUT to COM1
    for (const stopAt of [301, 302]) {
      it(`a counting guest saved on ${from} after ${stopAt} exits resumes on ${to} to the uninterrupted output`, async () => {
        const image = countingGuest(200);
        const whole = fresh();
        const ref = await pcMachine(to, whole);
        ref.loadFlat(image);
        expect(ref.runSync({ maxExits: 10_000 }).reason).toBe("hlt");
        const refRegs = ref.vcpu(0).getRegs();
        ref.close();

        const first = fresh();
        const a = await pcMachine(from, first);
        a.loadFlat(image);
        expect(a.runSync({ maxExits: stopAt }).reason).toBe("max-exits");
        const path = join(dir, `count-${from}-${to}-${stopAt}.snap`);
        await a.snapshot(path);
        a.close();

        const second = fresh();
        const notes: string[] = [];
        const b = await pcMachine(to, second, path, notes);
        expect(b.runSync({ maxExits: 10_000 }).reason).toBe("hlt");
        expect(text([...first.serial, ...second.serial])).toBe(text(whole.serial));
        expect(text([...first.debug, ...second.debug])).toBe(text(whole.debug));
        expect(first.debug.length).toBeGreaterThan(50);
        expect(second.debug.length).toBeGreaterThan(50);
        expect(b.memory.view(0x500, 2)).toEqual(Uint8Array.from([200, 0]));
        const regs = b.vcpu(0).getRegs();
        for (const k of ["rax", "rcx", "rdx", "rip"] as const) expect(regs[k], k).toBe(refRegs[k]);
        if (from !== to) expect(notes.join("\n")).toMatch(new RegExp(`saved on ${from}, restored on ${to}`));
        b.close();
      }, 60_000);
    }

    it(`a PIT interrupt pending in the 8259 when saved on ${from} is delivered after the resume on ${to}`, async () => {
      const first = fresh();
      const a = await pcMachine(from, first);
      a.loadFlat(pendingTimerGuest());
      a.io.onOut(0x501, () => a.stop());
      expect((await a.run({ timeoutMs: 20_000 })).reason).toBe("stopped");
      expect(text(first.debug)).toBe("P");
      expect(a.vcpu(0).getRegs().rflags & 0x200n).toBe(0n);
      const path = join(dir, `timer-${from}-${to}.snap`);
      await a.snapshot(path);
      a.close();

      const second = fresh();
      const b = await pcMachine(to, second, path);
      const done = await b.run({ timeoutMs: 20_000 });
      expect(done.reason).toBe("hlt");
      expect(text(second.debug)).toBe("TD");
      expect(b.memory.view(0x600, 2)).toEqual(Uint8Array.from([1, 0]));
      b.close();
    }, 60_000);
  }

  it("keeps x87/SSE state, MSRs and the TSC from KVM to KVM and to soft", async () => {
    const a = await pcMachine("kvm", fresh());
    a.loadFlat(countingGuest(3));
    const v = kvmVcpu(a);
    const area = v.getXsave();
    const xmm0 = Uint8Array.from({ length: 16 }, (_, i) => 0x10 + i);
    area.set(xmm0, 160);
    area[512] = (area[512] ?? 0) | 2; // XSTATE_BV: SSE in use
    new DataView(area.buffer).setUint32(24, 0x1f80 | 0x8000, true); // MXCSR with FZ
    v.setXsave(area);
    a.vcpu(0).setMsr(0xc0000082, 0xffff800012345678n); // LSTAR
    const tscBefore = a.vcpu(0).getMsr(0x10)!;
    const path = join(dir, "fpu-kvm.snap");
    await a.snapshot(path);
    a.close();

    const b = await pcMachine("kvm", fresh(), path);
    const back = kvmVcpu(b).getXsave();
    expect([...back.subarray(160, 176)]).toEqual([...xmm0]);
    expect(new DataView(back.buffer).getUint32(24, true)).toBe(0x1f80 | 0x8000);
    expect(b.vcpu(0).getMsr(0xc0000082)).toBe(0xffff800012345678n);
    // the TSC goes on from where it was, not from zero or the host's count
    const tscAfter = b.vcpu(0).getMsr(0x10)!;
    expect(tscAfter >= tscBefore).toBe(true);
    b.close();

    const c = await pcMachine("soft", fresh(), path);
    const x = softCpu(c).getExtendedState();
    expect([...new Uint8Array(x.xmm.buffer, x.xmm.byteOffset, 16)]).toEqual([...xmm0]);
    expect(x.mxcsr).toBe(0x1f80 | 0x8000);
    expect(c.vcpu(0).getMsr(0xc0000082)).toBe(0xffff800012345678n);
    c.close();
  }, 60_000);

  it("puts the soft backend's x87/SSE state into KVM's XSAVE area", async () => {
    const a = await pcMachine("soft", fresh());
    a.loadFlat(countingGuest(3));
    const cpu = softCpu(a);
    const x = cpu.getExtendedState();
    const xmm = Int32Array.from({ length: x.xmm.length }, (_, i) => i * 0x01010101);
    const fpu = x.fpu.slice();
    fpu[7] = 1.5; // ST0 after the push below (TOP = 7)
    cpu.setExtendedState({ ...x, xmm, fpu, fpuTop: 7, fpuTag: 0x80, mxcsr: 0x1f80 | 0x40 });
    const path = join(dir, "fpu-soft.snap");
    await a.snapshot(path);
    a.close();

    const b = await pcMachine("kvm", fresh(), path);
    const area = kvmVcpu(b).getXsave();
    const dv = new DataView(area.buffer);
    expect(dv.getUint32(24, true)).toBe(0x1f80 | 0x40);
    expect((dv.getUint16(2, true) >> 11) & 7).toBe(7); // FSW.TOP
    expect(area[4]).toBe(0x80); // abridged tag: R7 valid
    // ST0 = 1.5 as an 80-bit real: significand 0xC000000000000000, exponent 0x3FFF
    expect(dv.getBigUint64(32, true)).toBe(0xc000000000000000n);
    expect(dv.getUint16(40, true)).toBe(0x3fff);
    expect([...new Int32Array(area.buffer.slice(160, 160 + 64))]).toEqual([...xmm.subarray(0, 16)]);
    b.close();
  }, 60_000);

  it("saves incrementally from KVM's dirty log and the host's writes; the chain resumes on KVM and soft", async () => {
    const image = countingGuest(200);
    const whole = fresh();
    const ref = await pcMachine("kvm", whole);
    ref.loadFlat(image);
    expect(ref.runSync({ maxExits: 10_000 }).reason).toBe("hlt");
    ref.close();

    const first = fresh();
    const a = await pcMachine("kvm", first);
    a.loadFlat(image);
    a.memory.write(0x100000, randomBytes(1 << 20));
    expect(a.runSync({ maxExits: 150 }).reason).toBe("max-exits");
    const full = await a.snapshot(join(dir, "incr-0.snap"));
    expect(full.pages).toBeGreaterThanOrEqual(256);
    // from the first snapshot on, KVM logs the guest's writes
    expect((a.backend as KvmMachineBackend).dirtyLogging).toBe(true);
    a.memory.write(0x140000, randomBytes(2 * 4096)); // the host's: not in KVM's log
    expect(a.runSync({ maxExits: 150 }).reason).toBe("max-exits");
    const d1 = await a.snapshot(join(dir, "incr-1.snap"), { base: join(dir, "incr-0.snap") });
    // the guest's counter page (KVM's log) and the host's two
    expect(d1.pages).toBe(3);
    expect(a.runSync({ maxExits: 150 }).reason).toBe("max-exits");
    a.memory.read(0x100000, 1 << 20); // the host's reads are not writes
    const d2 = await a.snapshot(join(dir, "incr-2.snap"), { base: join(dir, "incr-1.snap") });
    expect(d2.pages).toBe(1);
    expect(d2.pages * 100).toBeLessThan(full.pages);
    const ram = a.memory.read(0, 16 << 20);
    a.close();

    for (const to of ["kvm", "soft"] as const) {
      const second = fresh();
      const b = await pcMachine(to, second, join(dir, "incr-2.snap"));
      expect(Buffer.from(b.memory.read(0, 16 << 20)).equals(Buffer.from(ram))).toBe(true);
      expect(b.runSync({ maxExits: 10_000 }).reason).toBe("hlt");
      expect(text([...first.debug, ...second.debug])).toBe(text(whole.debug));
      expect(text([...first.serial, ...second.serial])).toBe(text(whole.serial));
      b.close();
    }
  }, 120_000);

  /** the SMP guest on 2 vCPUs, stopped once both CPUs run; its output so far and the snapshot */
  async function smpSaved(test: "pingpong" | "xadd", n: number, path: string): Promise<string> {
    const vm = await createMachine({ backend: "kvm", vcpus: 2, memoryMiB: 16 });
    let out = "";
    addPcDevices(vm, {
      serial: (b) => {
        out += Buffer.from(b).toString("latin1");
        if (out.includes("CPUs running\n")) vm.stop();
      },
    });
    vm.load(smpImage(), { format: "multiboot", cmdline: smpCmdline(test, n) });
    const r = await vm.run({ timeoutMs: 60_000 });
    expect(r.reason, r.message).toBe("stopped");
    await vm.snapshot(path);
    vm.close();
    return out;
  }

  for (const [to, test, n] of [
    ["kvm", "pingpong", 300],
    ["kvm", "xadd", 200_000],
    ["soft", "pingpong", 50],
  ] as const) {
    it(`an SMP guest on 2 vCPUs saved midway on KVM resumes on ${to} (${test})`, async () => {
      const path = join(dir, `smp-${to}-${test}.snap`);
      const before = await smpSaved(test, n, path);
      let after = "";
      const b = await createMachine({
        backend: to,
        memoryMiB: 16,
        restore: path,
        setup: (vm) => {
          addPcDevices(vm, {
            serial: (bytes) => {
              after += Buffer.from(bytes).toString("latin1");
            },
          });
        },
      });
      expect(b.vcpuCount).toBe(2);
      const r = await b.run({ timeoutMs: 120_000 });
      b.close();
      const want = expectedSmp(test, 2, n);
      expect(before + after).toBe(want.out);
      expect(r.reason, r.message).toBe("debug-exit");
      expect(r.exitCode).toBe((want.value << 1) | 1);
    }, 180_000);
  }
});

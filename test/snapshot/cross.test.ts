// What a snapshot from the other backend carries, checked without /dev/kvm: a soft snapshot
// stripped of its soft-only record resumes from the architectural record alone (x87/SSE, events,
// debug registers), as a KVM snapshot does on soft; and the soft devices' state goes into KVM's
// in-kernel structs (8259, I/O APIC, LAPIC page, PIT) and comes back the same. The KVM directions
// themselves run in the nested-KVM lane (test/kvm/snapshot.test.ts).

import { describe, expect, it } from "vitest";
import { I8254 } from "../../lib/devices/i8254.js";
import { PcInterrupts } from "../../lib/devices/pc-interrupts.js";
import { LAYOUTS } from "../../lib/kvm/layouts.js";
import { decodeContainer, encodeContainer, jsonBytes } from "../../lib/snapshot/format.js";
import {
  createRestoredMachine,
  decodeSnapshot,
  encodeSnapshot,
  SnapshotError,
} from "../../lib/snapshot/index.js";
import {
  ioapicFromKvm,
  ioapicToKvm,
  lapicFromKvm,
  lapicToKvm,
  picFromKvm,
  picToKvm,
  pitFromKvm,
  pitToKvm,
} from "../../lib/snapshot/kvm-platform.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { countingGuest } from "./guests.js";
import { setSoftFpu, softFpu } from "./soft-fpu.js";

interface Out {
  serial: number[];
  debug: number[];
}
const text = (b: number[]) => Buffer.from(b).toString("latin1");
const setupFor = (out: Out) => (vm: Machine) => {
  addPcDevices(vm, {
    serial: (b) => out.serial.push(...b),
    debugcon: (b) => out.debug.push(...b),
    coalesce: false,
  });
};

describe("a snapshot from the other backend (architectural record only)", () => {
  it("resumes the counting guest to the uninterrupted output, FPU/SSE included", async () => {
    const image = countingGuest(120);
    const whole: Out = { serial: [], debug: [] };
    const ref = await createMachine({ backend: "soft", memoryMiB: 16 });
    setupFor(whole)(ref);
    ref.loadFlat(image);
    expect(ref.runSync({ maxExits: 10_000 }).reason).toBe("hlt");
    ref.close();

    const first: Out = { serial: [], debug: [] };
    const a = await createMachine({ backend: "soft", memoryMiB: 16 });
    setupFor(first)(a);
    a.loadFlat(image);
    expect(a.runSync({ maxExits: 181 }).reason).toBe("max-exits");
    const x = softFpu(a);
    const xmm = Int32Array.from({ length: x.xmm.length }, (_, i) => 0x1000 + i);
    const fpu = x.fpu.slice();
    fpu[6] = -2.25;
    setSoftFpu(a, { xmm, fpu, fpuTop: 6, fpuTag: 0x40, fpuCw: 0x27f, mxcsr: 0x9fc0 });
    const snap = decodeSnapshot(encodeSnapshot(a).bytes);
    a.close();
    expect(snap.vcpus[0]!.arch).toBeDefined();
    // as if KVM had made it: no soft-backend record
    for (const v of snap.vcpus) delete v.soft;
    snap.header.backend = "kvm";

    const second: Out = { serial: [], debug: [] };
    const notes: string[] = [];
    const b = await createRestoredMachine(
      {
        backend: "soft",
        memoryMiB: 16,
        restore: snap,
        setup: setupFor(second),
        onNotes: (n) => notes.push(...n),
      },
      createMachine,
    );
    const y = softFpu(b);
    expect([...y.xmm]).toEqual([...xmm]);
    expect(y.fpu[6]).toBe(-2.25);
    expect(y.fpuTop).toBe(6);
    expect(y.fpuTag & 0xff).toBe(0x40);
    expect(y.fpuCw).toBe(0x27f);
    expect(y.mxcsr).toBe(0x9fc0);
    expect(notes.join("\n")).toMatch(/saved on kvm, restored on soft/);
    expect(b.runSync({ maxExits: 10_000 }).reason).toBe("hlt");
    expect(text([...first.serial, ...second.serial])).toBe(text(whole.serial));
    expect(text([...first.debug, ...second.debug])).toBe(text(whole.debug));
    b.close();
  });
});

describe("the kvm section", () => {
  it("a malformed in-kernel irqchip record is a SnapshotError naming the kvm section", async () => {
    const vm = await createMachine({ backend: "soft", memoryMiB: 16 });
    vm.loadFlat(countingGuest(3));
    const good = decodeContainer(encodeSnapshot(vm).bytes);
    vm.close();
    const sections: [string, Uint8Array][] = [...good.sections.entries()];
    sections.push(["kvm", jsonBytes({ picMaster: "AAAA", picSlave: "", ioapic: "", hostNs: 1n })]);
    const { sections: _s, ...meta } = good.header;
    const bad = encodeContainer({ ...meta, backend: "kvm" }, sections);
    const e = (() => {
      try {
        decodeSnapshot(bad);
      } catch (x) {
        return x;
      }
    })();
    expect(e).toBeInstanceOf(SnapshotError);
    expect((e as SnapshotError).section).toBe("kvm");
  });
});

describe("soft devices <-> KVM's in-kernel structs", () => {
  it("8259 pair and I/O APIC", () => {
    const pc = new PcInterrupts({ cpus: 1 });
    // ICW1-4 on the master (vector base 0x20), a mask, and IRQ 0 raised
    pc.i8259.write(0, 1, 0x11, 0);
    pc.i8259.write(1, 1, 0x20, 0);
    pc.i8259.write(1, 1, 0x04, 0);
    pc.i8259.write(1, 1, 0x01, 0);
    pc.i8259.write(1, 1, 0xfa, 0);
    pc.setIrq(0, true);
    const s = pc.i8259.snapshot();
    const master = picToKvm(s.master, new Uint8Array(512));
    expect(master[LAYOUTS.kvm_pic_state.fields.irq_base]).toBe(0x20);
    expect(master[LAYOUTS.kvm_pic_state.fields.imr]).toBe(0xfa);
    expect(master[LAYOUTS.kvm_pic_state.fields.irr]! & 1).toBe(1);
    expect(picFromKvm(master)).toEqual({ ...s.master, singleMode: false, levelTriggeredAll: false });

    pc.ioapic.write(0, 4, 0x10 + 2 * 5, 0);
    pc.ioapic.write(0x10, 4, 0x0000a031, 0);
    pc.ioapic.write(0, 4, 0x10 + 2 * 5 + 1, 0);
    pc.ioapic.write(0x10, 4, 0x03000000, 0);
    const io = pc.ioapic.snapshot();
    const back = ioapicFromKvm(ioapicToKvm(io, new Uint8Array(512)));
    expect(back.low).toEqual(io.low);
    expect(back.high).toEqual(io.high);
    expect(back.id).toBe(io.id);
  });

  it("local APIC registers and timer, and the PIT's channels", () => {
    const pc = new PcInterrupts({ cpus: 1 });
    const apic = pc.lapic;
    apic.write(0xf0, 4, 0x1ff, 0); // SVR: enabled, spurious 0xFF
    apic.write(0x3e0, 4, 0xb, 0); // divide by 1
    apic.write(0x320, 4, 0x20030, 0); // LVT timer: periodic, vector 0x30
    apic.write(0x380, 4, 100_000, 0); // initial count
    apic.write(0x80, 4, 0x20, 0); // TPR
    const s = apic.snapshot();
    const page = lapicToKvm(s, new Uint8Array(1024));
    const dv = new DataView(page.buffer);
    expect(dv.getUint32(0x380, true)).toBe(100_000);
    expect(dv.getUint32(0x320, true)).toBe(0x20030);
    const back = lapicFromKvm(page, 5_000);
    // the registers the LAPIC page holds (x2APIC mode and the TSC deadline travel as MSRs)
    const { timer: _t, esrPending: _e, x2apic: _x, tscDeadline: _d, ...regs } = s;
    expect(back).toMatchObject(regs);
    expect(back.timer).toEqual({ initial: 100_000, startNs: 5_000, divisor: 1, periodic: true, reported: 0 });

    const pit = new I8254({ base: 0x40, irq: 0 });
    pit.write(3, 1, 0x34, 0); // channel 0, lobyte/hibyte, mode 2
    pit.write(0, 1, 0x9c, 0);
    pit.write(0, 1, 0x2e, 0);
    const ps = pit.snapshot();
    const kvm = pitToKvm(ps, new Uint8Array(LAYOUTS.kvm_pit_state2.size));
    // count_load_time 1 ms before the host time of the save: loaded 1 ms before the guest clock's
    const ch0 = LAYOUTS.kvm_pit_state2.fields.channels + LAYOUTS.kvm_pit_channel_state.fields.count_load_time;
    new DataView(kvm.buffer).setBigInt64(ch0, 9_000_000n, true);
    const pb = pitFromKvm(kvm, 10_000_000n, 50_000_000);
    expect(pb.channels[0]).toMatchObject({ count: 0x2e9c, mode: 2, rwMode: 3, loadTime: 49_000_000 });
    expect(pb.channels.map((c) => c.mode)).toEqual(ps.channels.map((c) => c.mode));
  });
});

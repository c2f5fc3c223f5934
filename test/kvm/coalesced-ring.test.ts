// The coalesced-write ring without KVM: a simulated binding (bench/kvm-exits/sim-binding.ts) plays a
// guest whose port writes KVM queued in the ring during an entry that then ended in another exit.
// KvmVcpu must hand the queued writes out first, in order, as port/MMIO write exits, then that
// exit, and not enter the guest again until all were taken.

import { describe, expect, it } from "vitest";
import { simBinding } from "../../bench/kvm-exits/sim-binding.js";
import {
  COALESCED_RING_ENTRIES,
  type IoctlArg,
  KVM_CAP,
  KVM_EXIT,
  KVM_EXIT_IO_IN,
  KVM_REGISTER_COALESCED_MMIO,
  Kvm,
  type KvmExit,
  LAYOUTS,
} from "../../lib/kvm/index.js";
import { KvmMachineBackend } from "../../lib/vmm/backends/kvm.js";
import { createMachine } from "../../lib/vmm/machine.js";

const F = LAYOUTS.kvm_run.fields;
const RING = 2 * 4096;

/** Appends one write to the ring as KVM does (slot at `last`, then last + 1). */
function push(bytes: Uint8Array, dv: DataView, addr: number, value: number, pio: boolean): void {
  const last = dv.getUint32(RING + 4, true);
  const at = RING + 8 + last * 24;
  dv.setBigUint64(at, BigInt(addr), true);
  dv.setUint32(at + 8, 1, true);
  dv.setUint32(at + 12, pio ? 1 : 0, true);
  bytes[at + 16] = value;
  dv.setUint32(RING + 4, (last + 1) % COALESCED_RING_ENTRIES, true);
}

/** Each entry: `writes` ring writes to port 0xe9, then an IN from port 0x60. */
function guest(writes: number[]) {
  let n = 0;
  let entry = 0;
  return simBinding({
    guest: (run, bytes) => {
      const count = writes[entry++ % writes.length]!;
      for (let i = 0; i < count; i++) push(bytes, run, 0xe9, n++ & 0xff, true);
      push(bytes, run, 0xfee00000, 0x55, false);
      n++;
      run.setUint32(F.exit_reason, KVM_EXIT.IO, true);
      run.setUint8(F["io.direction"], KVM_EXIT_IO_IN);
      run.setUint8(F["io.size"], 1);
      run.setUint16(F["io.port"], 0x60, true);
      run.setUint32(F["io.count"], 1, true);
      run.setUint32(F["io.data_offset"], 4096, true);
      return true;
    },
  });
}

const describeExit = (e: KvmExit) =>
  e.kind === "io"
    ? `${e.direction}:${e.port.toString(16)}:${e.data[0]}`
    : e.kind === "mmio"
      ? `mmio:${e.address.toString(16)}:${e.write}:${e.data[0]}`
      : e.kind;

describe("coalesced ring replay (simulated KVM)", () => {
  it("queued writes come first, in order, then the exit that ended the entry; one KVM_RUN for all", () => {
    const binding = guest([3]);
    const kvm = Kvm.open({ binding });
    try {
      const vcpu = kvm.createVm().createVcpu(0);
      vcpu.useCoalescedRing(2);
      const seen: string[] = [];
      for (let i = 0; i < 5; i++) seen.push(describeExit(vcpu.run()));
      expect(seen).toEqual(["out:e9:0", "out:e9:1", "out:e9:2", "mmio:fee00000:true:85", "in:60:0"]);
      expect(binding.runs).toBe(1);
      expect(vcpu.hasPendingExit).toBe(false);
      expect(vcpu.coalescedWrites).toBe(4);
      expect(describeExit(vcpu.run())).toBe("out:e9:4");
      expect(binding.runs).toBe(2);
      expect(vcpu.hasPendingExit).toBe(true);
    } finally {
      kvm.close();
    }
  });

  it("the ring wraps around its last slot and exitOf() answers from the queue", () => {
    // entries of 100 writes + 1 MMIO write: the ring's 170 slots wrap on the second entry
    const binding = guest([100]);
    const kvm = Kvm.open({ binding });
    try {
      const vcpu = kvm.createVm().createVcpu(0);
      vcpu.useCoalescedRing(2);
      const ports: number[] = [];
      let n = 0;
      for (let entry = 0; entry < 4; entry++) {
        for (let i = 0; i < 102; i++) {
          // the first exit of an entry comes from a KVM_RUN made elsewhere (a vCPU thread)
          const e = vcpu.exitOf(i === 0 ? binding.run(vcpu.fd) : false);
          if (e.kind === "io" && e.direction === "out") ports.push(e.data[0]!);
          if (e.kind === "io" && e.direction === "in") expect(i).toBe(101);
          n++;
        }
      }
      expect(binding.runs).toBe(4);
      expect(ports).toEqual(
        Array.from({ length: 4 }, (_, entry) =>
          Array.from({ length: 100 }, (_, i) => (entry * 101 + i) & 0xff),
        ).flat(),
      );
      expect(n).toBe(408);
    } finally {
      kvm.close();
    }
  });

  it("a ring page outside the vCPU mapping is a RangeError", () => {
    const kvm = Kvm.open({ binding: simBinding({ vcpuPages: 2 }) });
    try {
      const vcpu = kvm.createVm().createVcpu(0);
      expect(() => vcpu.useCoalescedRing(2)).toThrow(RangeError);
    } finally {
      kvm.close();
    }
  });
});

describe("coalesced writes through the machine (simulated KVM)", () => {
  it("vm.coalesceWrites registers the zone and the loop hands the ring's writes to the port handlers in order", async () => {
    const log: [number, IoctlArg | undefined][] = [];
    let n = 0;
    const binding = simBinding({
      extensions: { [KVM_CAP.COALESCED_MMIO]: 2, [KVM_CAP.COALESCED_PIO]: 1 },
      log,
      // each entry: two queued writes to 0xe9, then an OUT to 0x99 that exits
      guest: (run, bytes) => {
        push(bytes, run, 0xe9, n++, true);
        push(bytes, run, 0xe9, n++, true);
        run.setUint32(F.exit_reason, KVM_EXIT.IO, true);
        run.setUint8(F["io.direction"], 1);
        run.setUint8(F["io.size"], 1);
        run.setUint16(F["io.port"], 0x99, true);
        run.setUint32(F["io.count"], 1, true);
        run.setUint32(F["io.data_offset"], 4096, true);
        bytes[4096] = n++;
        return true;
      },
    });
    const vm = await createMachine({
      memoryMiB: 1,
      backend: (o) => new KvmMachineBackend({ memoryBytes: o.memoryBytes, binding }),
    });
    try {
      const seen: string[] = [];
      for (const port of [0xe9, 0x99])
        vm.io.onOut(port, (p, _s, v) => void seen.push(`${p.toString(16)}:${v}`));
      expect(vm.coalesceWrites("io", 0xe9)).toBe(true);
      const zone = log.find(([req]) => req === KVM_REGISTER_COALESCED_MMIO)?.[1] as DataView;
      expect([Number(zone.getBigUint64(0, true)), zone.getUint32(8, true), zone.getUint32(12, true)]).toEqual(
        [0xe9, 1, 1],
      );
      const r = vm.runSync({ maxExits: 30 });
      expect(r.reason).toBe("max-exits");
      expect(seen).toEqual(Array.from({ length: 30 }, (_, i) => `${i % 3 === 2 ? "99" : "e9"}:${i}`));
      // one guest entry per three writes; the stats count every write as the exit it stands for
      expect(binding.runs).toBe(10);
      expect(vm.stats.byKind.get("io")?.count).toBe(30);
    } finally {
      vm.close();
    }
  });

  it("without the capability, coalesceWrites says no and registers nothing", async () => {
    const log: [number, IoctlArg | undefined][] = [];
    const binding = simBinding({ log });
    const vm = await createMachine({
      memoryMiB: 1,
      backend: (o) => new KvmMachineBackend({ memoryBytes: o.memoryBytes, binding }),
    });
    try {
      expect(vm.coalesceWrites("io", 0xe9)).toBe(false);
      expect(log.some(([req]) => req === KVM_REGISTER_COALESCED_MMIO)).toBe(false);
    } finally {
      vm.close();
    }
  });
});

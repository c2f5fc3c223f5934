// The soft backend re-checks the code its interpreter cached against guest memory at a VM entry only
// when the host may have written guest RAM since the vCPU last ran (GuestMemory.generation): a
// guest that calls a routine in a loop, with an OUT exit after each call, sees the routine the host
// replaced between two exits, whichever way the host wrote it (memory.write, a view a virtio queue
// kept, virtio-blk's DMA, a snapshot restore); and an entry after which nothing wrote re-checks nothing.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Interpreter } from "../../lib/cpu/index.js";
import {
  featureBit,
  VirtioMmioReg as R,
  VIRTIO_BLK_T_IN,
  VIRTIO_F_VERSION_1,
  VIRTIO_STATUS_ACKNOWLEDGE,
  VIRTIO_STATUS_DRIVER,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FEATURES_OK,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VirtioBlk,
  Virtqueue,
} from "../../lib/devices/virtio/index.js";
import { createMachine, type Machine } from "../../lib/index.js";
import type { VcpuBackend } from "../../lib/vmm/backend.js";
import type { SoftVcpu } from "../../lib/vmm/backends/soft.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { addVirtioDevice, guestRam } from "../../lib/vmm/virtio.js";

const dir = mkdtempSync(join(tmpdir(), "nodevmm-host-write-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BASE = 0x100000;
/** the routine the guest calls: its own page, away from the loop's */
const ROUTINE = BASE + 0x1000;
const PORT = 0x7e; // no PC device claims it

/** `mov al, n; ret` */
const routine = (n: number): Uint8Array => Uint8Array.of(0xb0, n, 0xc3);

// protected mode, flat:
//   top: call ROUTINE; out PORT, al; cmp al, 3; jne top; hlt
function image(first: number): Uint8Array {
  const img = new Uint8Array(0x1000 + 16);
  const rel = ROUTINE - (BASE + 5);
  img.set([0xe8, rel & 0xff, (rel >> 8) & 0xff, (rel >> 16) & 0xff, (rel >>> 24) & 0xff], 0);
  img.set([0xe6, PORT, 0x3c, 0x03, 0x75, 0xf5, 0xf4], 5);
  img.set(routine(first), 0x1000);
  return img;
}

/** the interpreter behind vCPU 0 of a soft machine */
const interpreterOf = (vm: Machine): Interpreter =>
  (vm.vcpu(0).backend as unknown as SoftVcpu).lp.cpu as unknown as Interpreter;

/** exits after which the routine is warm (decoded, run many times, compiled) */
const WARM = 300;

/**
 * Runs the loop; at exit WARM `replace` puts `mov al, 2; ret` in the routine's place (some way of
 * the host's), and at exit WARM + 5 `mov al, 3` by memory.write, which ends the loop. Returns the
 * values the guest wrote (it keeps writing 1 forever if it never sees the new routine: maxExits).
 */
async function replacedAt(vm: Machine, replace: (exit: number) => void): Promise<number[]> {
  const seen: number[] = [];
  vm.io.onOut(PORT, (_p, _s, value) => {
    seen.push(value);
    replace(seen.length);
    if (seen.length === WARM + 5) vm.memory.write(ROUTINE, routine(3));
  });
  vm.loadFlat(image(1), { mode: "protected", address: BASE });
  const r = await vm.run({ maxExits: WARM + 200 });
  expect(r.reason).toBe("hlt");
  return seen;
}

function expectSeenAt(seen: number[]): void {
  expect(seen.slice(0, WARM)).toEqual(new Array(WARM).fill(1));
  // the very next call after the exit that replaced it runs the new routine
  expect(seen.slice(WARM, WARM + 6)).toEqual([2, 2, 2, 2, 2, 3]);
}

describe("host writes to guest code between exits (soft backend)", () => {
  it("memory.write", async () => {
    const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
    try {
      const seen = await replacedAt(vm, (n) => {
        if (n === WARM) vm.memory.write(ROUTINE, routine(2));
      });
      expectSeenAt(seen);
    } finally {
      await vm.close();
    }
  });

  it("writeU8 into the routine's immediate", async () => {
    const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
    try {
      const seen = await replacedAt(vm, (n) => {
        if (n === WARM) vm.memory.writeU8(ROUTINE + 1, 2);
      });
      expectSeenAt(seen);
    } finally {
      await vm.close();
    }
  });

  it("a virtqueue's buffer, handed out as a view at an earlier exit, written and used later", async () => {
    const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
    try {
      // one descriptor, device-writable, over the routine (a device filling a buffer the driver gave)
      const ring = 0x200000;
      const desc = ring;
      const avail = ring + 0x100;
      const used = ring + 0x200;
      vm.memory.writeU32(desc, ROUTINE);
      vm.memory.writeU32(desc + 8, 3);
      vm.memory.writeU16(desc + 12, VIRTQ_DESC_F_WRITE);
      vm.memory.writeU16(avail + 2, 1);
      vm.memory.writeU16(avail + 4, 0);
      const q = new Virtqueue(guestRam(vm.memory), { size: 1, desc, driver: avail, device: used });
      let buffer: Uint8Array | undefined;
      const seen = await replacedAt(vm, (n) => {
        if (n === 10) {
          const chain = q.pop()!;
          buffer = chain.writable[0]!;
        }
        if (n === WARM) {
          buffer!.set(routine(2));
          q.push(0, 3);
        }
      });
      expectSeenAt(seen);
    } finally {
      await vm.close();
    }
  });

  it("a virtqueue's used ring, whose view is kept from the queue's set-up", async () => {
    const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
    try {
      // the used ring's first element is {id, len} at used+4: the device writes len = the bytes of
      // `mov al, 2; ret` there, and the guest's routine is those bytes
      const used = ROUTINE - 8;
      const desc = 0x200000;
      const avail = desc + 0x100;
      vm.memory.writeU32(desc, 0x201000);
      vm.memory.writeU32(desc + 8, 16);
      vm.memory.writeU16(avail + 2, 1);
      const q = new Virtqueue(guestRam(vm.memory), { size: 1, desc, driver: avail, device: used });
      const bytes = routine(2);
      const len = bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16);
      const seen = await replacedAt(vm, (n) => {
        if (n === 10) expect(q.pop()?.head).toBe(0);
        if (n === WARM) q.push(0, len);
      });
      expectSeenAt(seen);
    } finally {
      await vm.close();
    }
  });

  it("virtio-blk reading a sector into the routine's page (DMA)", async () => {
    const path = join(dir, "code.img");
    const disk = new Uint8Array(8 * 512);
    disk.set(routine(2), 0);
    writeFileSync(path, disk);
    const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
    try {
      const { device } = addVirtioDevice(vm, (slot) => new VirtioBlk({ ...slot, path }));
      const w = (off: number, value: number) => device.write(off, 4, value);
      // the driver's side, as a guest driver would do it (registers through the device's window)
      const ring = 0x200000;
      const desc = ring;
      const avail = ring + 0x100;
      const used = ring + 0x200;
      const header = ring + 0x400;
      const status = ring + 0x500;
      w(R.Status, 0);
      w(R.Status, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
      w(R.DriverFeaturesSel, 1);
      w(R.DriverFeatures, Number(featureBit(VIRTIO_F_VERSION_1) >> 32n));
      w(R.Status, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
      w(R.QueueSel, 0);
      w(R.QueueNum, 4);
      w(R.QueueDescLow, desc);
      w(R.QueueDriverLow, avail);
      w(R.QueueDeviceLow, used);
      w(R.QueueReady, 1);
      w(R.Status, device.read(R.Status, 4) | VIRTIO_STATUS_DRIVER_OK);
      // a read of sector 0 into the routine's page: header, 512 bytes of data, status
      vm.memory.writeU32(header, VIRTIO_BLK_T_IN);
      vm.memory.writeU64(header + 8, 0n);
      const chain = [
        { addr: header, len: 16, flags: VIRTQ_DESC_F_NEXT },
        { addr: ROUTINE, len: 512, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT },
        { addr: status, len: 1, flags: VIRTQ_DESC_F_WRITE },
      ];
      chain.forEach((d, i) => {
        vm.memory.writeU64(desc + 16 * i, BigInt(d.addr));
        vm.memory.writeU32(desc + 16 * i + 8, d.len);
        vm.memory.writeU16(desc + 16 * i + 12, d.flags);
        vm.memory.writeU16(desc + 16 * i + 14, i + 1);
      });
      vm.memory.writeU8(status, 0xff);
      const seen = await replacedAt(vm, (n) => {
        if (n !== WARM) return;
        vm.memory.writeU16(avail + 4, 0);
        vm.memory.writeU16(avail + 2, 1);
        // the notify's exit, as if the guest had written QueueNotify: the device reads at once
        w(R.QueueNotify, 0);
        expect(vm.memory.readU8(status)).toBe(0);
      });
      expectSeenAt(seen);
    } finally {
      await vm.close();
    }
  });
});

describe("the generation that decides the re-check", () => {
  it("does not move, and nothing is re-checked, over exits after which the host wrote nothing", async () => {
    const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
    try {
      const cpu = interpreterOf(vm);
      const epochs: number[] = [];
      const generations: number[] = [];
      vm.io.onOut(PORT, () => {
        epochs.push(cpu.runEpoch);
        generations.push(vm.memory.generation);
        const n = epochs.length;
        // the host reads (that is no write) at 20, writes a data byte at 40 and 60
        if (n === 20) expect(vm.memory.readU32(ROUTINE)).toBe(0xc301b0);
        if (n === 40 || n === 60) vm.memory.writeU8(0x300000, n);
        if (n === 80) vm.memory.write(ROUTINE, routine(3));
      });
      vm.loadFlat(image(1), { mode: "protected", address: BASE });
      expect((await vm.run({ maxExits: 200 })).reason).toBe("hlt");
      expect(epochs).toHaveLength(81);
      // exits 1-40: the same epoch throughout (the first entry re-checked once, before exit 1)
      expect(new Set(epochs.slice(0, 40)).size).toBe(1);
      expect(new Set(generations.slice(0, 40)).size).toBe(1);
      // one re-check after each write, none between
      expect(epochs[40]).toBe(epochs[39]! + 1);
      expect(new Set(epochs.slice(40, 60)).size).toBe(1);
      expect(epochs[60]).toBe(epochs[59]! + 1);
      expect(new Set(epochs.slice(60, 80)).size).toBe(1);
      expect(generations[40]).toBeGreaterThan(generations[39]!);
    } finally {
      await vm.close();
    }
  });

  it("moves with every writing method and view(), not with reads", async () => {
    const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
    try {
      const m = vm.memory;
      const moves = (f: () => void): boolean => {
        const g = m.generation;
        f();
        return m.generation !== g;
      };
      expect(moves(() => m.read(0x1000, 8))).toBe(false);
      expect(moves(() => m.readU8(0x1000))).toBe(false);
      expect(moves(() => m.readU16(0x1000))).toBe(false);
      expect(moves(() => m.readU32(0x1000))).toBe(false);
      expect(moves(() => m.readU64(0x1000))).toBe(false);
      expect(moves(() => m.write(0x1000, Uint8Array.of(1)))).toBe(true);
      expect(moves(() => m.fill(0x1000, 4, 1))).toBe(true);
      expect(moves(() => m.writeU8(0x1000, 1))).toBe(true);
      expect(moves(() => m.writeU16(0x1000, 1))).toBe(true);
      expect(moves(() => m.writeU32(0x1000, 1))).toBe(true);
      expect(moves(() => m.writeU64(0x1000, 1n))).toBe(true);
      expect(moves(() => m.view(0x1000, 1))).toBe(true);
      expect(moves(() => m.hostWrote(0x1000, 1))).toBe(true);
    } finally {
      await vm.close();
    }
  });
});

describe("vCPUs interleaved on one thread", () => {
  it("a vCPU runs the code another rewrote while it was parked", async () => {
    const vm = await createMachine({ backend: "soft", vcpus: 2, memoryMiB: 4 });
    try {
      addPcDevices(vm, {});
      const base = 0x20000;
      const x = 0x20100; // mov al, 1; ret (vCPU 1 makes it mov al, 2)
      const ap = 0x21000; // vCPU 1's start (SIPI vector 0x21), real mode
      const code = new Uint8Array(0x2000);
      // vCPU 0: cli; top: call x; out PORT, al; cmp al, 2; jne top; mov al, 0; out 0xf4, al (debug exit)
      const rel = x - (base + 6);
      code.set([0xfa, 0xe8, rel & 0xff, (rel >> 8) & 0xff, 0, 0, 0xe6, PORT, 0x3c, 0x02, 0x75, 0xf5], 0);
      code.set([0xb0, 0x00, 0xe6, 0xf4, 0xf4], 12);
      code.set(routine(1), x - base);
      // vCPU 1: mov ax, 0x2000; mov ds, ax; mov byte [0x0101], 2 (x's immediate); cli; hlt
      code.set(
        [0xb8, 0x00, 0x20, 0x8e, 0xd8, 0xc6, 0x06, 0x01, 0x01, 0x02, 0xfa, 0xf4, 0xeb, 0xfd],
        ap - base,
      );
      const seen: number[] = [];
      vm.io.onOut(PORT, (_p, _s, value) => {
        seen.push(value);
        if (seen.length === WARM) {
          (vm.vcpu(1).backend as VcpuBackend & { signal(k: "sipi", v: number): void }).signal(
            "sipi",
            ap >> 12,
          );
        }
      });
      vm.loadFlat(code, { address: base, mode: "protected" });
      const r = await vm.run({ maxExits: 50_000 });
      expect(r.reason, r.message).toBe("debug-exit");
      expect(vm.memory.readU8(x + 1)).toBe(2);
      expect(seen.slice(0, WARM)).toEqual(new Array(WARM).fill(1));
      expect(seen.at(-1)).toBe(2);
    } finally {
      await vm.close();
    }
  });
});

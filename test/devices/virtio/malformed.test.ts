// Whatever a guest puts in its rings, the host never sees an exception: each malformed ring, chain
// or request marks the device broken (DEVICE_NEEDS_RESET, a config-change interrupt, a message in
// `broken`) and the device takes no more buffers until it is reset. The fast-check properties throw
// random descriptor tables and rings at every device type.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import {
  BLK_SIZE_MAX,
  featureBit,
  VirtioMmioReg as R,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_EVENT_IDX,
  VIRTIO_F_VERSION_1,
  VIRTIO_INT_CONFIG_CHANGE,
  VIRTIO_STATUS_DEVICE_NEEDS_RESET,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VirtioBlk,
  VirtioConsole,
  type VirtioMmioDevice,
  VirtioRng,
} from "../../../lib/devices/virtio/index.js";
import { type DriverQueue, FakeRam, TestDriver } from "./driver.js";

const dir = mkdtempSync(join(tmpdir(), "nodevmm-virtio-bad-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let disks = 0;

function diskPath(): string {
  const p = join(dir, `disk${disks++}.img`);
  writeFileSync(p, new Uint8Array(64 * 512));
  return p;
}

type Kind = "rng" | "blk" | "console";
const ALL_FEATURES =
  featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_F_INDIRECT_DESC) | featureBit(VIRTIO_F_RING_EVENT_IDX);

function make(kind: Kind, mem: FakeRam, broken?: string[]): VirtioMmioDevice {
  const common = {
    base: 0xd0000000,
    irq: 5,
    memory: mem.ram,
    ...(broken ? { onBroken: (m: string) => void broken.push(m) } : {}),
  };
  if (kind === "rng") return new VirtioRng(common);
  if (kind === "console") return new VirtioConsole(common);
  return new VirtioBlk({ ...common, path: diskPath() });
}

/** a started device (all queues of 8), and a check that it broke with a message matching `re` */
function setup(kind: Kind, features = featureBit(VIRTIO_F_VERSION_1)) {
  const mem = new FakeRam();
  const reports: string[] = [];
  const dev = make(kind, mem, reports);
  const drv = new TestDriver(dev, mem);
  const queues = drv.start(kind === "console" ? 2 : 1, 8, features);
  const expectBroken = (re: RegExp) => {
    expect(dev.broken).toMatch(re);
    expect(reports).toEqual([dev.broken]);
    expect(drv.r(R.Status) & VIRTIO_STATUS_DEVICE_NEEDS_RESET).toBe(VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    expect(drv.r(R.InterruptStatus) & VIRTIO_INT_CONFIG_CHANGE).toBe(VIRTIO_INT_CONFIG_CHANGE);
    expect(drv.irq.level).toBe(true);
    (dev as { close?: () => void }).close?.();
  };
  return { mem, dev, drv, q: queues[0]!, queues, expectBroken };
}

const W = VIRTQ_DESC_F_WRITE;
const N = VIRTQ_DESC_F_NEXT;

describe("malformed rings and chains mark the device broken", () => {
  it("a descriptor loop", () => {
    const { mem, drv, q, expectBroken } = setup("rng");
    const buf = mem.alloc(16);
    q.writeDesc(0, { addr: buf, len: 4, flags: W | N, next: 1 });
    q.writeDesc(1, { addr: buf, len: 4, flags: W | N, next: 0 });
    q.publish(0);
    drv.notify(0);
    expectBroken(/loops/);
  });

  it("a chain head outside the table", () => {
    const { drv, q, expectBroken } = setup("rng");
    q.publish(8);
    drv.notify(0);
    expectBroken(/head 8 is outside/);
  });

  it("next outside the table", () => {
    const { mem, drv, q, expectBroken } = setup("rng");
    q.writeDesc(0, { addr: mem.alloc(4), len: 4, flags: W | N, next: 9 });
    q.publish(0);
    drv.notify(0);
    expectBroken(/next 9 is outside/);
  });

  it("a buffer outside RAM, or running past its end", () => {
    for (const [addr, len] of [
      [0xfff00000, 16],
      [2 ** 40, 4],
      [0x100000 - 8, 16],
    ] as const) {
      const { drv, q, expectBroken } = setup("rng");
      q.writeDesc(0, { addr, len, flags: W, next: 0 });
      q.publish(0);
      drv.notify(0);
      expectBroken(/is not in RAM/);
    }
  });

  it("a device-readable descriptor after a device-writable one", () => {
    const { mem, drv, q, expectBroken } = setup("blk");
    q.add([
      { addr: mem.alloc(16), len: 16 },
      { addr: mem.alloc(1), len: 1, write: true },
      { addr: mem.alloc(16), len: 16 },
    ]);
    drv.notify(0);
    expectBroken(/readable after a device-writable/);
  });

  it("the available index more than a queue ahead", () => {
    const { drv, q, expectBroken } = setup("rng");
    q.setAvailIdx(9);
    drv.notify(0);
    expectBroken(/ahead of the device/);
  });

  it("a queue whose rings are outside RAM or misaligned, or whose size is not a power of 2", () => {
    const cases: [string, (drv: TestDriver) => void, RegExp][] = [
      ["desc outside RAM", (d) => d.w(R.QueueDescLow, 0xfffff000), /descriptor table .* not in RAM/],
      ["used misaligned", (d) => d.w(R.QueueDeviceLow, 0x2002), /not 4-byte aligned/],
      ["size 6", (d) => d.w(R.QueueNum, 6), /power of 2/],
      ["size above max", (d) => d.w(R.QueueNum, 512), /QueueNumMax/],
    ];
    for (const [, poke, re] of cases) {
      const mem = new FakeRam();
      const reports: string[] = [];
      const dev = make("rng", mem, reports);
      const drv = new TestDriver(dev, mem);
      drv.negotiate();
      drv.w(R.QueueSel, 0);
      drv.w(R.QueueNum, 8);
      drv.w(R.QueueDescLow, 0x1000);
      drv.w(R.QueueDriverLow, 0x2000);
      drv.w(R.QueueDeviceLow, 0x3000);
      poke(drv);
      drv.w(R.QueueReady, 1);
      expect(dev.broken).toMatch(re);
      expect(reports).toHaveLength(1);
    }
  });

  it("indirect descriptors: not negotiated, nested, with NEXT, or a table of bad length", () => {
    const tries: [bigint, (q: DriverQueue, mem: FakeRam) => void, RegExp][] = [
      [
        featureBit(VIRTIO_F_VERSION_1),
        (q, mem) => q.writeDesc(0, { addr: mem.alloc(32), len: 32, flags: VIRTQ_DESC_F_INDIRECT, next: 0 }),
        /INDIRECT_DESC was not negotiated/,
      ],
      [
        ALL_FEATURES,
        (q, mem) => {
          const t = mem.alloc(32);
          q.writeDesc(0, { addr: t, len: 16, flags: VIRTQ_DESC_F_INDIRECT, next: 0 }, t);
          q.writeDesc(0, { addr: t, len: 16, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
        },
        /inside an indirect table/,
      ],
      [
        ALL_FEATURES,
        (q, mem) =>
          q.writeDesc(0, { addr: mem.alloc(32), len: 32, flags: VIRTQ_DESC_F_INDIRECT | N, next: 1 }),
        /both INDIRECT and NEXT/,
      ],
      [
        ALL_FEATURES,
        (q, mem) => q.writeDesc(0, { addr: mem.alloc(32), len: 24, flags: VIRTQ_DESC_F_INDIRECT, next: 0 }),
        /multiple of 16/,
      ],
      [
        ALL_FEATURES,
        (q, mem) => {
          const t = mem.alloc(32);
          q.writeDesc(0, { addr: mem.alloc(4), len: 4, flags: W | N, next: 1 }, t);
          q.writeDesc(1, { addr: mem.alloc(4), len: 4, flags: W | N, next: 0 }, t);
          q.writeDesc(0, { addr: t, len: 32, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
        },
        /loops/,
      ],
    ];
    for (const [features, build, re] of tries) {
      const { mem, drv, q, expectBroken } = setup("rng", features);
      build(q, mem);
      q.publish(0);
      drv.notify(0);
      expectBroken(re);
    }
  });

  it("wrong directions: rng readable, console transmit writable and receive readable", () => {
    {
      const { mem, drv, q, expectBroken } = setup("rng");
      q.add([{ addr: mem.alloc(8), len: 8 }]);
      drv.notify(0);
      expectBroken(/device-readable/);
    }
    {
      const { mem, drv, queues, expectBroken } = setup("console");
      queues[1]!.add([{ addr: mem.alloc(8), len: 8, write: true }]);
      drv.notify(1);
      expectBroken(/transmitq .* device-writable/);
    }
    {
      const { mem, dev, drv, queues, expectBroken } = setup("console");
      queues[0]!.add([{ addr: mem.alloc(8), len: 8 }]);
      drv.notify(0);
      (dev as VirtioConsole).receive([1, 2, 3]);
      expectBroken(/receiveq .* device-readable/);
    }
  });

  it("blk: a short header, no status byte, data in the wrong direction, an oversized descriptor", () => {
    const cases: [(mem: FakeRam, q: DriverQueue) => void, RegExp][] = [
      [
        (mem, q) =>
          void q.add([
            { addr: mem.alloc(8), len: 8 },
            { addr: mem.alloc(1), len: 1, write: true },
          ]),
        /16-byte header/,
      ],
      [(mem, q) => void q.add([{ addr: mem.alloc(16), len: 16 }]), /no device-writable status/],
      [
        (mem, q) =>
          void q.add([
            { addr: mem.alloc(16), len: 16 }, // header: type 0 (read)
            { addr: mem.alloc(512), len: 512 },
            { addr: mem.alloc(1), len: 1, write: true },
          ]),
        /read request .* device-readable data/,
      ],
      [
        (mem, q) => {
          const h = mem.put([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // write
          q.add([
            { addr: h, len: 16 },
            { addr: mem.alloc(512), len: 512, write: true },
            { addr: mem.alloc(1), len: 1, write: true },
          ]);
        },
        /write request .* device-writable data/,
      ],
      [
        (mem, q) =>
          void q.add([
            { addr: mem.alloc(16), len: 16 },
            { addr: 0, len: BLK_SIZE_MAX + 512, write: true },
            { addr: mem.alloc(1), len: 1, write: true },
          ]),
        /more than the 1048576 allowed/,
      ],
    ];
    for (const [build, re] of cases) {
      const { mem, drv, q, expectBroken } = setup("blk");
      build(mem, q);
      drv.notify(0);
      expectBroken(re);
    }
  });

  it("a broken device takes no more buffers until reset", () => {
    const { dev, mem, drv, q } = setup("rng");
    q.publish(8);
    drv.notify(0);
    expect(dev.broken).toBeDefined();
    q.add([{ addr: mem.alloc(4), len: 4, write: true }]);
    drv.notify(0);
    expect(q.usedIdx).toBe(0);
  });
});

// ---- random rings --------------------------------------------------------------------------------

const descArb = fc.record({
  // mostly inside the 1 MiB of RAM, sometimes anywhere
  addr: fc.oneof(fc.integer({ min: 0, max: 0x10_0000 }), fc.integer({ min: 0, max: 2 ** 53 - 1 })),
  len: fc.oneof(fc.integer({ min: 0, max: 2048 }), fc.integer({ min: 0, max: 0xffffffff })),
  flags: fc.integer({ min: 0, max: 0xffff }),
  next: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 0xffff })),
});

const scenarioArb = fc.record({
  kind: fc.constantFrom<Kind>("rng", "blk", "console"),
  features: fc.constantFrom(featureBit(VIRTIO_F_VERSION_1), ALL_FEATURES),
  descs: fc.array(descArb, { minLength: 8, maxLength: 8 }),
  /** heads published, some outside the table */
  heads: fc.array(fc.integer({ min: 0, max: 10 }), { maxLength: 12 }),
  /** bytes written at random places (request headers, indirect tables, garbage) */
  pokes: fc.array(
    fc.record({ at: fc.integer({ min: 0, max: 0x10_0000 - 16 }), bytes: fc.uint8Array({ maxLength: 16 }) }),
    {
      maxLength: 16,
    },
  ),
  availJump: fc.option(fc.integer({ min: 0, max: 0xffff })),
  input: fc.uint8Array({ maxLength: 64 }),
});

describe("random rings never throw into the host", () => {
  it("any descriptors, heads and indexes: notify returns; the device either serves or is broken", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const { mem, dev, drv, queues } = setup(s.kind, s.features);
        try {
          for (const p of s.pokes) mem.bytes.set(p.bytes, p.at);
          for (const q of queues) {
            s.descs.forEach((d, i) => {
              q.writeDesc(i, d);
            });
            for (const h of s.heads) q.publish(h);
            if (s.availJump !== null) q.setAvailIdx(s.availJump);
          }
          for (let i = 0; i < queues.length; i++) drv.notify(i);
          if (dev instanceof VirtioConsole) dev.receive(s.input);
          for (const q of queues) {
            for (const u of q.takeUsed()) expect(u.id).toBeLessThan(8);
          }
          const needsReset = (drv.r(R.Status) & VIRTIO_STATUS_DEVICE_NEEDS_RESET) !== 0;
          expect(needsReset).toBe(dev.broken !== undefined);
          // a reset always brings it back
          drv.w(R.Status, 0);
          expect(dev.broken).toBeUndefined();
          expect(drv.irq.level).toBe(false);
        } finally {
          (dev as { close?: () => void }).close?.();
        }
      }),
      { numRuns: 300 },
    );
  });
});

// virtio-rng (random bytes into device-writable buffers, from an injectable source) and
// virtio-console port 0 (transmitq to a ByteOutput, host input through receive() into receiveq).

import { describe, expect, it } from "vitest";
import {
  CONSOLE_RECEIVEQ,
  CONSOLE_TRANSMITQ,
  featureBit,
  VirtioMmioReg as R,
  RNG_MAX_REQUEST,
  VIRTIO_CONSOLE_F_EMERG_WRITE,
  VIRTIO_CONSOLE_F_MULTIPORT,
  VirtioConsole,
  type VirtioConsoleOptions,
  VirtioRng,
} from "../../../lib/devices/virtio/index.js";
import { FakeRam, TestDriver } from "./driver.js";

describe("virtio-rng", () => {
  it("fills every writable buffer of a chain from the source and reports the length used", () => {
    const mem = new FakeRam();
    const calls: number[] = [];
    const dev = new VirtioRng({
      base: 0xd0001000,
      irq: 6,
      memory: mem.ram,
      source: (b) => {
        calls.push(b.length);
        b.fill(0x5a);
      },
    });
    const drv = new TestDriver(dev, mem);
    expect(drv.r(R.DeviceID)).toBe(4);
    const [q] = drv.start(1);
    const a = mem.alloc(10);
    const b = mem.alloc(6);
    const head = q!.add([
      { addr: a, len: 10, write: true },
      { addr: b, len: 6, write: true },
    ]);
    drv.notify(0);
    expect(q!.takeUsed()).toEqual([{ id: head, len: 16 }]);
    expect(calls).toEqual([10, 6]);
    expect(mem.get(a, 10).every((x) => x === 0x5a)).toBe(true);
    expect(mem.get(b, 6).every((x) => x === 0x5a)).toBe(true);
    expect(dev.bytesProvided).toBe(16);
    expect(drv.irq.level).toBe(true);
  });

  it("uses crypto by default and caps one request at 64 KiB", () => {
    const mem = new FakeRam();
    const dev = new VirtioRng({ base: 0xd0000000, irq: 5, memory: mem.ram });
    const drv = new TestDriver(dev, mem);
    const [q] = drv.start(1);
    const at = mem.alloc(RNG_MAX_REQUEST + 4096);
    q!.add([{ addr: at, len: RNG_MAX_REQUEST + 4096, write: true }]);
    drv.notify(0);
    expect(q!.takeUsed()[0]!.len).toBe(RNG_MAX_REQUEST);
    const got = mem.get(at, RNG_MAX_REQUEST);
    expect(new Set(got).size).toBeGreaterThan(200); // 64 KiB of random bytes use nearly all values
    expect(mem.get(at + RNG_MAX_REQUEST, 4096).every((x) => x === 0)).toBe(true);
  });
});

function consoleDevice(opts: Partial<VirtioConsoleOptions> = {}) {
  const mem = new FakeRam();
  const out: number[] = [];
  const dev = new VirtioConsole({
    base: 0xd0002000,
    irq: 7,
    memory: mem.ram,
    output: (b) => out.push(...b),
    ...opts,
  });
  const drv = new TestDriver(dev, mem);
  return { mem, dev, drv, out };
}

describe("virtio-console", () => {
  it("is device 3 with port 0 only (no MULTIPORT), offering EMERG_WRITE", () => {
    const { drv } = consoleDevice();
    expect(drv.r(R.DeviceID)).toBe(3);
    const f = drv.deviceFeatures;
    expect(f & featureBit(VIRTIO_CONSOLE_F_MULTIPORT)).toBe(0n);
    expect(f & featureBit(VIRTIO_CONSOLE_F_EMERG_WRITE)).not.toBe(0n);
    drv.w(R.QueueSel, 2);
    expect(drv.r(R.QueueNumMax)).toBe(0);
  });

  it("sends transmitq buffers to the output, in order, and returns them used", () => {
    const { mem, drv, out } = consoleDevice();
    const qs = drv.start(2);
    const tx = qs[CONSOLE_TRANSMITQ]!;
    tx.add([
      { addr: mem.put([...Buffer.from("hel")]), len: 3 },
      { addr: mem.put([...Buffer.from("lo ")]), len: 3 },
    ]);
    tx.add([{ addr: mem.put([...Buffer.from("world")]), len: 5 }]);
    drv.notify(CONSOLE_TRANSMITQ);
    expect(Buffer.from(out).toString()).toBe("hello world");
    expect(tx.takeUsed().map((u) => u.len)).toEqual([0, 0]);
    expect(drv.irq.level).toBe(true);
  });

  it("the output gets a copy: the guest reusing its buffer does not change what was written", () => {
    const mem = new FakeRam();
    const chunks: Uint8Array[] = [];
    const dev = new VirtioConsole({
      base: 0xd0000000,
      irq: 5,
      memory: mem.ram,
      output: (b) => chunks.push(b),
    });
    const drv = new TestDriver(dev, mem);
    const [, tx] = drv.start(2);
    const at = mem.put([65, 66]);
    tx!.add([{ addr: at, len: 2 }]);
    drv.notify(CONSOLE_TRANSMITQ);
    mem.bytes[at] = 0;
    expect([...chunks[0]!]).toEqual([65, 66]);
  });

  it("host input waits until the guest posts receive buffers, then fills them", () => {
    const { mem, dev, drv } = consoleDevice();
    const [rx] = drv.start(2);
    expect(dev.receive(Buffer.from("abcdef"))).toBe(6);
    expect(dev.inputPending).toBe(6);
    expect(drv.irq.level).toBe(false);
    const a = mem.alloc(4);
    const b = mem.alloc(4);
    const ha = rx!.add([{ addr: a, len: 4, write: true }]);
    const hb = rx!.add([{ addr: b, len: 4, write: true }]);
    drv.notify(CONSOLE_RECEIVEQ);
    expect(rx!.takeUsed()).toEqual([
      { id: ha, len: 4 },
      { id: hb, len: 2 },
    ]);
    expect(Buffer.from(mem.get(a, 4)).toString()).toBe("abcd");
    expect(Buffer.from(mem.get(b, 2)).toString()).toBe("ef");
    expect(dev.inputPending).toBe(0);
    expect(drv.irq.level).toBe(true);
    drv.ack();
    // buffers already posted take input at once; an unused buffer stays available
    const c = mem.alloc(8);
    const hc = rx!.add([{ addr: c, len: 8, write: true }]);
    rx!.add([{ addr: mem.alloc(8), len: 8, write: true }]);
    drv.notify(CONSOLE_RECEIVEQ);
    expect(rx!.takeUsed()).toEqual([]);
    dev.receive([0x78]);
    expect(rx!.takeUsed()).toEqual([{ id: hc, len: 1 }]);
    expect(mem.bytes[c]).toBe(0x78);
    expect(drv.irq.level).toBe(true);
  });

  it("input given before DRIVER_OK is delivered once the driver is up", () => {
    const { mem, dev, drv } = consoleDevice();
    dev.receive([1, 2, 3]);
    drv.negotiate();
    const rx = drv.setupQueue(0, 8);
    drv.setupQueue(1, 8);
    const at = mem.alloc(8);
    rx.add([{ addr: at, len: 8, write: true }]);
    drv.notify(0);
    expect(rx.usedIdx).toBe(0);
    drv.driverOk();
    expect(rx.takeUsed()[0]!.len).toBe(3);
    expect([...mem.get(at, 3)]).toEqual([1, 2, 3]);
  });

  it("a full input buffer refuses bytes and calls onInputSpace when the guest makes room", () => {
    let spaces = 0;
    const { mem, dev, drv } = consoleDevice({ inputBuffer: 4, onInputSpace: () => spaces++ });
    const [rx] = drv.start(2);
    expect(dev.receive([1, 2, 3, 4, 5, 6])).toBe(4);
    expect(dev.inputSpace).toBe(0);
    expect(spaces).toBe(0);
    rx!.add([{ addr: mem.alloc(2), len: 2, write: true }]);
    drv.notify(CONSOLE_RECEIVEQ);
    expect(spaces).toBe(1);
    expect(dev.inputSpace).toBe(2);
    expect(dev.receive([5, 6])).toBe(2);
  });

  it("a snapshot keeps host input the guest has not taken", () => {
    const { mem, dev, drv } = consoleDevice();
    drv.start(2);
    dev.receive(Buffer.from("later"));
    const copy = new VirtioConsole({ base: 0xd0002000, irq: 7, memory: mem.ram });
    const drv2 = new TestDriver(copy, mem);
    copy.restore(JSON.parse(JSON.stringify(dev.snapshot())));
    expect(copy.inputPending).toBe(5);
    const at = mem.alloc(8);
    drv.queues[0]!.add([{ addr: at, len: 8, write: true }]);
    drv2.notify(CONSOLE_RECEIVEQ);
    expect(Buffer.from(mem.get(at, 5)).toString()).toBe("later");
  });

  it("emergency writes to config offset 8 reach the output", () => {
    const { drv, out } = consoleDevice();
    drv.w(R.Config + 8, 0x21);
    drv.w(R.Config + 8, 0x0a, 1);
    expect(out).toEqual([0x21, 0x0a]);
  });
});

// The split virtqueue on its own: well-formed chains (direct, indirect, wrapping round the rings)
// come out exactly as the driver built them, as views of guest memory; used entries and idx land
// where the driver looks for them.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  Virtqueue,
  VirtqueueError,
} from "../../../lib/devices/virtio/index.js";
import { DriverQueue, FakeRam } from "./driver.js";

function queue(size: number, opts: { indirect?: boolean } = {}) {
  const mem = new FakeRam();
  const dq = new DriverQueue(mem, 0, size);
  const vq = new Virtqueue(mem.ram, { size, desc: dq.desc, driver: dq.avail, device: dq.used }, opts);
  return { mem, dq, vq };
}

const chainArb = fc
  .record({
    readable: fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 4 }),
    writable: fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 4 }),
  })
  .filter((c) => c.readable.length + c.writable.length > 0);

describe("Virtqueue", () => {
  it("returns well-formed chains as the driver built them, round and round the ring", () => {
    fc.assert(
      fc.property(fc.array(chainArb, { minLength: 1, maxLength: 40 }), (chains) => {
        const { mem, dq, vq } = queue(8);
        let n = 0;
        for (const c of chains) {
          // fill each buffer with its own marker so views can be checked against guest memory
          const bufs = [
            ...c.readable.map((len) => ({ addr: mem.put(new Array(len).fill(++n & 0xff)), len })),
            ...c.writable.map((len) => ({
              addr: mem.put(new Array(len).fill(++n & 0xff)),
              len,
              write: true,
            })),
          ];
          const head = dq.add(bufs);
          const got = vq.pop()!;
          expect(got.head).toBe(head);
          expect(got.readable.map((b) => b.length)).toEqual(c.readable);
          expect(got.writable.map((b) => b.length)).toEqual(c.writable);
          expect(got.readableBytes).toBe(c.readable.reduce((a, b) => a + b, 0));
          [...got.readable, ...got.writable].forEach((v, i) => {
            expect(v.buffer).toBe(mem.bytes.buffer); // a view, not a copy
            expect(v.byteOffset).toBe(bufs[i]!.addr);
          });
          expect(vq.pop()).toBeUndefined();
          vq.push(got.head, got.writableBytes);
          expect(dq.takeUsed()).toEqual([{ id: head, len: got.writableBytes }]);
        }
        expect(vq.usedIdx).toBe(chains.length & 0xffff);
      }),
      { numRuns: 200 },
    );
  });

  it("follows an indirect table, readable then writable", () => {
    const { mem, dq, vq } = queue(4, { indirect: true });
    const table = mem.alloc(48);
    const a = mem.alloc(10);
    const b = mem.alloc(20);
    const c = mem.alloc(1);
    dq.writeDesc(0, { addr: a, len: 10, flags: VIRTQ_DESC_F_NEXT, next: 2 }, table);
    dq.writeDesc(2, { addr: b, len: 20, flags: VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, next: 1 }, table);
    dq.writeDesc(1, { addr: c, len: 1, flags: VIRTQ_DESC_F_WRITE, next: 0 }, table);
    dq.writeDesc(3, { addr: table, len: 48, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    dq.publish(3);
    const got = vq.pop()!;
    expect(got.head).toBe(3);
    expect(got.readable.map((v) => v.byteOffset)).toEqual([a]);
    expect(got.writable.map((v) => v.byteOffset)).toEqual([b, c]);
  });

  it("tells RAM with wrote() which ranges a chain let the device write, once the chain is used", () => {
    const mem = new FakeRam();
    const dq = new DriverQueue(mem, 0, 4);
    const wrote: [number, number][] = [];
    const ram = {
      view: mem.ram.view.bind(mem.ram),
      wrote: (gpa: number, len: number) => wrote.push([gpa, len]),
    };
    const vq = new Virtqueue(ram, { size: 4, desc: dq.desc, driver: dq.avail, device: dq.used });
    const r = mem.alloc(8);
    const w1 = mem.alloc(16);
    const w2 = mem.alloc(4);
    dq.add([
      { addr: r, len: 8 },
      { addr: w1, len: 16, write: true },
      { addr: w2, len: 4, write: true },
    ]);
    const got = vq.pop()!;
    // nothing is reported before the device is done with the chain
    expect(wrote).toEqual([]);
    vq.push(got.head, 20);
    expect(wrote).toEqual([
      [w1, 16],
      [w2, 4],
    ]);
    // and only once
    dq.add([{ addr: r, len: 8 }]);
    const next = vq.pop()!;
    vq.push(next.head, 0);
    expect(wrote).toHaveLength(2);
  });

  it("a chain as long as the table is fine; one descriptor more is a loop", () => {
    const { mem, dq, vq } = queue(4);
    for (let i = 0; i < 4; i++)
      dq.writeDesc(i, { addr: mem.alloc(1), len: 1, flags: i < 3 ? VIRTQ_DESC_F_NEXT : 0, next: i + 1 });
    dq.publish(0);
    expect(vq.pop()!.readable).toHaveLength(4);
    dq.writeDesc(3, { addr: mem.alloc(1), len: 1, flags: VIRTQ_DESC_F_NEXT, next: 0 });
    dq.publish(0);
    expect(() => vq.pop()).toThrow(VirtqueueError);
  });

  it("limits chain and descriptor sizes when asked", () => {
    const mem = new FakeRam();
    const dq = new DriverQueue(mem, 0, 4);
    const layout = { size: 4, desc: dq.desc, driver: dq.avail, device: dq.used };
    const vq = new Virtqueue(mem.ram, layout, { maxChainBytes: 100, maxDescriptorBytes: 60 });
    dq.add([
      { addr: mem.alloc(60), len: 60 },
      { addr: mem.alloc(40), len: 40 },
    ]);
    expect(vq.pop()!.readableBytes).toBe(100);
    dq.add([{ addr: mem.alloc(61), len: 61 }]);
    expect(() => vq.pop()).toThrow(/61 bytes, more than the 60/);
    dq.add([
      { addr: mem.alloc(60), len: 60 },
      { addr: mem.alloc(41), len: 41 },
    ]);
    expect(() => vq.pop()).toThrow(/more than 100 bytes/);
  });
});

// The ioeventfd bookkeeping of virtio-ioevents.ts without KVM: a fake sink records registrations
// over a real eventfd (the addon's or koffi's eventfd(2)), and the test plays the kernel's part by
// writing to it. The real thing (KVM swallowing the guest's QueueNotify writes) is tested in the
// nested-KVM lane (test/kvm/virtio-ioeventfd.test.ts).
import { writeSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { availableBindings, loadBinding } from "../../lib/kvm/binding.js";
import type { IoeventSink } from "../../lib/vmm/backend.js";
import { type NotifiedDevice, VirtioIoevents } from "../../lib/vmm/virtio-ioevents.js";
import { eventfdCount } from "./eventfds.js";

const kinds = availableBindings();
const why = kinds.length === 0 ? " (skipped: no binding provides eventfd here)" : "";

function fakeSink(): IoeventSink & { live: Set<string>; refuse: number | undefined } {
  const b = why ? undefined : loadBinding(kinds[0]);
  const live = new Set<string>();
  const sink = {
    live,
    refuse: undefined as number | undefined,
    eventfd: () => b!.eventfd(0, 0),
    add(fd: number, address: number, value: number) {
      if (address === sink.refuse) throw new Error("EEXIST");
      const key = `${fd}:${address.toString(16)}:${value}`;
      if (live.has(key)) throw new Error(`${key} twice`);
      live.add(key);
    },
    remove(fd: number, address: number, value: number) {
      const key = `${fd}:${address.toString(16)}:${value}`;
      if (!live.delete(key)) throw new Error(`${key} not registered`);
    },
  };
  return sink;
}

function device(base: number, queues: number): NotifiedDevice & { runs: number[] } {
  const runs: number[] = [];
  return { ranges: [{ base }], queueCount: queues, runs, notify: (i) => runs.push(i) };
}

const kick = (fd: number) => {
  const one = Buffer.alloc(8);
  one.writeBigUInt64LE(1n);
  writeSync(fd, one);
};

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
}

describe.skipIf(why !== "")(`virtio ioeventfd bookkeeping${why}`, () => {
  it("registers each queue's index at QueueNotify only while armed, and runs every queue per wake-up", async () => {
    const sink = fakeSink();
    const before = eventfdCount();
    const ev = new VirtioIoevents(sink);
    const blk = device(0xd0000000, 1);
    const con = device(0xd0001000, 2);
    ev.add(blk);
    expect(sink.live.size).toBe(0);
    ev.arm(true);
    ev.add(con);
    expect([...sink.live].sort()).toEqual(
      [`${ev.fd}:d0000050:0`, `${ev.fd}:d0001050:0`, `${ev.fd}:d0001050:1`].sort(),
    );
    kick(ev.fd);
    await until(() => ev.wakes === 1);
    expect(blk.runs).toEqual([0]);
    expect(con.runs).toEqual([0, 1]);
    // a second notification after the read was re-armed: another wake-up
    kick(ev.fd);
    await until(() => ev.wakes === 2);
    ev.remove(con);
    expect([...sink.live]).toEqual([`${ev.fd}:d0000050:0`]);
    // disarming unregisters and runs the queues at once (notifications taken before the switch)
    blk.runs.length = 0;
    ev.arm(false);
    expect(sink.live.size).toBe(0);
    expect(blk.runs).toEqual([0]);
    ev.close();
    await until(() => eventfdCount() === before);
  });

  it("a refused registration undoes the others and leaves notifications to exits", () => {
    const sink = fakeSink();
    const ev = new VirtioIoevents(sink);
    ev.add(device(0xd0000000, 1));
    ev.add(device(0xd0001000, 1));
    sink.refuse = 0xd0001050;
    ev.arm(true);
    expect(ev.armed).toBe(false);
    expect(ev.failed).toMatch(/0xd0001050: EEXIST/);
    expect(sink.live.size).toBe(0);
    ev.arm(true);
    expect(sink.live.size).toBe(0);
    ev.close();
  });

  it("closes its eventfd whether or not a read is pending (no descriptor left behind)", async () => {
    const sink = fakeSink();
    const before = eventfdCount();
    const none = new VirtioIoevents(sink);
    none.arm(true);
    const idle = new VirtioIoevents(sink);
    const busy = new VirtioIoevents(sink);
    idle.add(device(0xd0000000, 1));
    busy.add(device(0xd0000000, 1));
    // no device, no eventfd
    expect(eventfdCount()).toBe(before + 2);
    none.close();
    idle.close();
    busy.arm(true);
    busy.close();
    expect(busy.armed).toBe(false);
    await until(() => eventfdCount() === before);
  });
});

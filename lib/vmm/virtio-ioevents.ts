// Virtio queue notifications without an exit (KVM ioeventfd), as Firecracker and Cloud Hypervisor
// take them: the guest's 4-byte write of a queue index to a device's QueueNotify register signals an
// eventfd in the kernel and the vCPU goes on running; the main thread, idle while the vCPU thread is
// in KVM_RUN, runs the queues when the eventfd becomes readable.
//
// Only while the vCPU thread enters the guest (arm()): when the main thread is in KVM_RUN itself
// (runSync, hot slices of an async run) nothing would read the eventfd until the guest exited for
// another reason, and a guest that notifies and then halts waiting for the answer would wait for the
// watchdog. So the machine arms the registrations for the thread's entries and disarms them around
// the others, where notifications exit as before.
//
// One eventfd for the whole machine, not one per queue or device: it is waited on with a blocking
// read(2) in libuv's threadpool (fs.read, re-armed after each read: no native code, no thread of our
// own), and each pending read holds one of the pool's threads (4 by default) for as long as the run
// lasts. A blk, an rng and a console with one eventfd per queue would take every thread and stall
// the process's other file, DNS and crypto work. The price of sharing: a wake-up does not say which
// queue was notified, so every queue of every device runs, in attach order. Running a queue the
// driver did not notify is allowed (the device may look at available buffers at any time) and costs
// a read of its avail.idx when the driver made nothing available.

import { closeSync, read, writeSync } from "node:fs";
import { VirtioMmioReg } from "../devices/virtio/mmio-transport.js";
import type { IoeventSink } from "./backend.js";

/** What a device registered here offers (VirtioMmioDevice). */
export interface NotifiedDevice {
  readonly ranges: readonly { base: number }[];
  readonly queueCount: number;
  notify(index: number): void;
}

export class VirtioIoevents {
  readonly #sink: IoeventSink;
  /** made with the first device: a machine without virtio devices holds no eventfd, no pool thread */
  #fd = -1;
  readonly #devices: NotifiedDevice[] = [];
  readonly #buf = Buffer.alloc(8);
  /** registrations in force: [address, value] */
  #registered: [number, number][] = [];
  #armed = false;
  /** a read of the eventfd is pending in the threadpool */
  #reading = false;
  #closed = false;
  /** why the registrations were given up (the kernel refused one): notifications exit as before */
  failed: string | undefined;
  /** times the eventfd woke the main thread and the queues ran */
  wakes = 0;

  constructor(sink: IoeventSink) {
    this.#sink = sink;
  }

  /** the eventfd, -1 before the first device */
  get fd(): number {
    return this.#fd;
  }

  /** guest notifications are signalled without exits now */
  get armed(): boolean {
    return this.#armed;
  }

  /** Notifications of this device's queues come through the eventfd while armed. */
  add(device: NotifiedDevice): void {
    if (this.#closed || this.#devices.includes(device)) return;
    if (this.#fd < 0) this.#fd = this.#sink.eventfd();
    this.#devices.push(device);
    if (!this.#armed) return;
    if (this.#register(device)) this.#read();
    else this.arm(false);
  }

  /** The device leaves: its queues' notifications exit again. */
  remove(device: NotifiedDevice): void {
    const i = this.#devices.indexOf(device);
    if (i < 0) return;
    this.#devices.splice(i, 1);
    const base = notifyAddress(device);
    this.#unregister(([a]) => a === base);
  }

  /**
   * On: the queues' notifications signal the eventfd, read by the threadpool. Off: they exit again,
   * and the queues run once now for notifications the eventfd took before the switch.
   */
  arm(on: boolean): void {
    if (this.#closed || on === this.#armed) return;
    if (on) {
      if (this.failed !== undefined) return;
      this.#armed = true;
      for (const d of this.#devices) {
        if (!this.#register(d)) {
          this.arm(false);
          return;
        }
      }
      this.#read();
      return;
    }
    this.#disarm();
    // notifications the eventfd took before the switch: the queues run here, not a turn later
    this.#runAll();
  }

  #disarm(): void {
    this.#armed = false;
    this.#unregister(() => true);
    // the pending read returns (and does not re-arm)
    if (this.#reading) signal(this.#fd);
  }

  /** Unregisters everything and closes the eventfd (once the threadpool's read of it has returned). */
  close(): void {
    if (this.#closed) return;
    if (this.#armed) this.#disarm();
    this.#closed = true;
    this.#devices.length = 0;
    // a read in flight keeps using the descriptor: closed when it returns, never under it
    if (!this.#reading && this.#fd >= 0) closeSync(this.#fd);
  }

  #register(d: NotifiedDevice): boolean {
    const address = notifyAddress(d);
    for (let q = 0; q < d.queueCount; q++) {
      try {
        this.#sink.add(this.#fd, address, q);
      } catch (e) {
        this.failed = `ioeventfd at 0x${address.toString(16)}: ${e instanceof Error ? e.message : String(e)}`;
        return false;
      }
      this.#registered.push([address, q]);
    }
    return true;
  }

  #unregister(which: (r: [number, number]) => boolean): void {
    const keep: [number, number][] = [];
    for (const r of this.#registered) {
      if (!which(r)) {
        keep.push(r);
        continue;
      }
      try {
        this.#sink.remove(this.#fd, r[0], r[1]);
      } catch {
        // the VM is gone already: its registrations went with it
      }
    }
    this.#registered = keep;
  }

  #read(): void {
    if (this.#reading || this.#closed || this.#registered.length === 0) return;
    this.#reading = true;
    read(this.#fd, this.#buf, 0, 8, null, (err) => {
      this.#reading = false;
      if (this.#closed) {
        closeSync(this.#fd);
        return;
      }
      if (err) {
        this.failed = `reading the ioeventfd: ${err.message}`;
        this.arm(false);
        return;
      }
      this.wakes++;
      this.#runAll();
      if (this.#armed) this.#read();
    });
  }

  #runAll(): void {
    for (const d of this.#devices) for (let q = 0; q < d.queueCount; q++) d.notify(q);
  }
}

function notifyAddress(d: NotifiedDevice): number {
  return d.ranges[0]!.base + VirtioMmioReg.QueueNotify;
}

/** adds 1 to the eventfd's counter: a read pending on it returns */
function signal(fd: number): void {
  const one = Buffer.alloc(8);
  one.writeBigUInt64LE(1n);
  writeSync(fd, one);
}

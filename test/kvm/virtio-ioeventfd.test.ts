// Virtio queue notifications through KVM ioeventfd (lib/vmm/virtio-ioevents.ts), for real: a small
// protected-mode guest writes queue index 0 to a virtio-mmio device's QueueNotify register N times
// and halts. With the vCPU thread entering the guest (`await vm.run()`) none of the writes exits to
// user space and the device still runs its queue; with `ioeventfd: false`, and on runSync() (where
// nothing would read the eventfd while this thread is in KVM_RUN), every write exits as before.
// No eventfd outlives the machine. The Linux guest's virtio-blk with and without ioeventfd is in
// linux-ioeventfd.test.ts.

import { describe, expect, it } from "vitest";
import { VirtioRng } from "../../lib/devices/virtio/index.js";
import type { VmExit } from "../../lib/types/exits.js";
import { createMachine, type Machine, machineIoevents } from "../../lib/vmm/machine.js";
import { addVirtioDevice, type VirtioSlot } from "../../lib/vmm/virtio.js";
import { isEventfd } from "../vmm/eventfds.js";
import { probe, skipReason } from "./helpers.js";

const NOTIFIES = 2000;
const BASE = 0xd0000000;
const QUEUE_NOTIFY = BASE + 0x50;
// mov ecx,N; l: mov dword [0xd0000050],0; dec ecx; jnz l; cli; hlt
const GUEST = Uint8Array.from([
  ...[0xb9, NOTIFIES & 0xff, (NOTIFIES >> 8) & 0xff, 0, 0],
  ...[0xc7, 0x05, 0x50, 0x00, 0x00, 0xd0, 0, 0, 0, 0],
  ...[0x49, 0x75, 0xf3, 0xfa, 0xf4],
]);

/** a virtio-rng that counts the notifications of its queue, however they arrive */
class CountingRng extends VirtioRng {
  notified = 0;
  override notify(index: number): void {
    this.notified++;
    super.notify(index);
  }
}

interface Outcome {
  reason: string;
  notifyExits: number;
  notified: number;
  wakes: number | undefined;
  armedAfter: boolean | undefined;
  /** the machine's ioeventfd (-1: none) */
  fd: number;
}

async function notifyLoop(opts: { ioeventfd?: boolean; sync?: boolean }): Promise<Outcome> {
  const vm: Machine = await createMachine({
    memoryMiB: 4,
    backend: "kvm",
    ...(opts.ioeventfd === undefined ? {} : { ioeventfd: opts.ioeventfd }),
  });
  try {
    expect(vm.hasVcpuThread).toBe(true);
    const { device } = addVirtioDevice(vm, (slot: VirtioSlot) => new CountingRng(slot), { base: BASE });
    let notifyExits = 0;
    vm.on("exit", (e: VmExit) => {
      if (e.kind === "mmio" && e.write && e.address === QUEUE_NOTIFY) notifyExits++;
    });
    vm.loadFlat(GUEST, { mode: "protected" });
    const r = opts.sync ? vm.runSync({ timeoutMs: 120_000 }) : await vm.run({ timeoutMs: 120_000 });
    const ev = machineIoevents(vm);
    return {
      fd: ev?.fd ?? -1,
      reason: r.reason,
      notifyExits,
      notified: device.notified,
      wakes: ev?.wakes,
      armedAfter: ev?.armed,
    };
  } finally {
    vm.close();
  }
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}

const noThread = probe.usable && probe.binding !== "addon";
describe.skipIf(!probe.usable || noThread)(
  `virtio QueueNotify through KVM ioeventfd${noThread ? ` (skipped: the vCPU thread needs the addon binding; this run uses ${probe.binding})` : skipReason}`,
  () => {
    it("await vm.run(): no notify exits to user space, the queue still runs; ioeventfd: false exits per notify", async () => {
      const on = await notifyLoop({});
      const off = await notifyLoop({ ioeventfd: false });
      console.log(
        `QueueNotify exits to user space for ${NOTIFIES} guest notifies: ioeventfd on ${on.notifyExits} (${on.wakes} eventfd wake-ups), off ${off.notifyExits}`,
      );
      expect(on.reason).toBe("hlt");
      expect(off.reason).toBe("hlt");
      expect(on.notifyExits).toBe(0);
      // the kernel counts the writes into one eventfd: at least one wake-up ran the queue
      expect(on.notified).toBeGreaterThanOrEqual(1);
      expect(on.wakes).toBeGreaterThanOrEqual(0);
      expect(on.armedAfter).toBe(false);
      expect(off.notifyExits).toBe(NOTIFIES);
      expect(off.notified).toBe(NOTIFIES);
      expect(off.wakes).toBeUndefined();
    }, 300_000);

    it("runSync(): every notify exits (the main thread is in KVM_RUN, nothing reads the eventfd)", async () => {
      const sync = await notifyLoop({ sync: true });
      expect(sync.reason).toBe("hlt");
      expect(sync.notifyExits).toBe(NOTIFIES);
      expect(sync.notified).toBe(NOTIFIES);
      expect(sync.wakes).toBe(0);
    }, 300_000);

    it("closes its eventfd with the machine, after async and sync runs", async () => {
      for (const sync of [false, true]) {
        const { fd } = await notifyLoop({ sync });
        expect(fd).toBeGreaterThanOrEqual(0);
        await until(() => !isEventfd(fd));
        expect(isEventfd(fd)).toBe(false);
      }
    }, 300_000);
  },
);

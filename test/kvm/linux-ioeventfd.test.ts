// The Linux lane's guest on KVM with virtio queue notifications through ioeventfd (the default of
// `await vm.run()`) and with `ioeventfd: false`, each with the loop's hot entries on (the machine's
// default) and off: the same disk, rng and console markers every time, the disk file written alike,
// and the QueueNotify writes that exit to user space counted at each device's register (beside the
// machine's ExitStats MMIO count). With hot entries off every entry is the vCPU thread's and no
// notify exits; with them on, the notifies that fall in hot phases (the guest exiting at 250 Hz or
// more, e.g. printing on the serial port, and the main thread entering it itself) exit as before
// (virtio-ioevents.ts), so they drop less.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { VmExit } from "../../lib/types/exits.js";
import { createMachine, machineExitLoop, machineIoevents } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { addVirtioDevices } from "../../lib/vmm/virtio.js";
import {
  LINUX_DISK_BYTES,
  LINUX_INITRD,
  LINUX_KERNEL,
  LINUX_MEMORY_MIB,
  linuxMissing,
  marker,
  markers,
  md5,
  seq,
} from "../support/linux-guest.js";
import { isEventfd } from "../vmm/eventfds.js";
import { probe, skipReason } from "./helpers.js";

const BOOT_TIMEOUT_MS = 10 * 60_000;
const noThread = probe.usable && probe.binding !== "addon";
const why = !probe.usable
  ? skipReason
  : noThread
    ? ` (skipped: the vCPU thread needs the addon binding; this run uses ${probe.binding})`
    : linuxMissing
      ? ` (skipped: ${linuxMissing})`
      : "";

interface Boot {
  reason: string;
  serial: string;
  hvc: string;
  broken: string[];
  notifyExits: number;
  mmioExits: number;
  wakes: number | undefined;
  hotPhases: number;
  /** the machine's ioeventfd (-1: none), and whether it was still open after close() */
  fd: number;
  fdLeft: boolean;
  disk: Buffer;
}

async function boot(ioeventfd: boolean, hot: boolean, dir: string): Promise<Boot> {
  const disk = join(dir, `disk-${ioeventfd ? "on" : "off"}-${hot ? "hot" : "cold"}.img`);
  const image = Buffer.alloc(LINUX_DISK_BYTES);
  image.write("nodevmm boot 0\n");
  writeFileSync(disk, image);
  const vm = await createMachine({ backend: "kvm", memoryMiB: LINUX_MEMORY_MIB, ioeventfd });
  const loop = machineExitLoop(vm);
  loop.hotEntry = hot;
  let serial = "";
  let hvc = "";
  const decoder = new TextDecoder();
  const broken: string[] = [];
  let out: Omit<Boot, "fdLeft">;
  try {
    addPcDevices(vm, {
      serial: (b: Uint8Array) => {
        serial += decoder.decode(b);
      },
    });
    const virtio = addVirtioDevices(vm, {
      drives: [{ path: disk }],
      rng: true,
      console: {
        output: (b: Uint8Array) => {
          hvc += decoder.decode(b);
        },
      },
      onBroken: (device, message) => broken.push(`${device}: ${message}`),
    });
    const notifyAt = new Set(virtio.devices.map((d) => d.ranges[0]!.base + 0x50));
    let notifyExits = 0;
    vm.on("exit", (e: VmExit) => {
      if (e.kind === "mmio" && e.write && notifyAt.has(e.address)) notifyExits++;
    });
    vm.loadLinux({
      kernel: readFileSync(LINUX_KERNEL!),
      initrd: readFileSync(LINUX_INITRD!),
      cmdline: `console=ttyS0 quiet ${virtio.cmdline.join(" ")}`,
    });
    const result = await vm.run({ timeoutMs: BOOT_TIMEOUT_MS });
    out = {
      reason: result.reason,
      serial,
      hvc,
      broken,
      notifyExits,
      mmioExits: vm.stats.byKind.get("mmio")?.count ?? 0,
      wakes: machineIoevents(vm)?.wakes,
      hotPhases: loop.hotPhases,
      fd: machineIoevents(vm)?.fd ?? -1,
      disk: readFileSync(disk),
    };
  } finally {
    vm.close();
  }
  // the eventfd closes once the threadpool's pending read of it returns
  for (let i = 0; i < 500 && isEventfd(out.fd); i++) await new Promise((r) => setTimeout(r, 10));
  return { ...out, fdLeft: isEventfd(out.fd) };
}

describe.skipIf(why !== "")(`Linux on KVM, virtio with and without ioeventfd${why}`, () => {
  it(
    "the same markers and disk either way, QueueNotify exits down to a few with ioeventfd",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "nodevmm-linux-ioeventfd-"));
      try {
        const on = await boot(true, true, dir);
        const off = await boot(false, true, dir);
        const onCold = await boot(true, false, dir);
        const offCold = await boot(false, false, dir);
        const row = (b: Boot) =>
          `${b.notifyExits} (${b.wakes ?? "no"} eventfd wake-ups, ${b.hotPhases} hot phases, ${b.mmioExits} MMIO exits in all)`;
        console.log(
          `Linux boot, QueueNotify exits to user space: hot entries on: ioeventfd on ${row(on)}, off ${row(off)}; hot entries off: ioeventfd on ${row(onCold)}, off ${row(offCold)}`,
        );
        const all = [on, off, onCold, offCold];
        for (const b of all) {
          const ms = markers(b.serial);
          expect(b.broken).toEqual([]);
          expect(marker(ms, "init"), b.serial.slice(-3000)).toBeDefined();
          expect(ms.filter(([k]) => k === "fail")).toEqual([]);
          expect(marker(ms, "disk-sectors")).toBe(String(LINUX_DISK_BYTES / 512));
          expect(marker(ms, "disk-before")).toBe("nodevmm boot 0");
          expect(marker(ms, "disk-after")).toBe("nodevmm boot 1");
          expect(marker(ms, "disk-data")).toBe(md5(seq(100_000)));
          expect(marker(ms, "rng")).toMatch(/virtio_rng/);
          expect(marker(ms, "hvc0")).toBe("yes");
          expect(b.hvc).toContain("@@linux:hello from hvc0");
          expect(b.reason).toBe("poweroff");
          const keys = (x: Boot) => markers(x.serial).map(([k]) => k);
          expect(keys(b)).toEqual(keys(on));
          expect(b.disk.equals(on.disk)).toBe(true);
        }
        expect(on.wakes).toBeGreaterThan(0);
        expect(onCold.wakes).toBeGreaterThan(0);
        expect(off.wakes).toBeUndefined();
        // every disk request batch, rng read and console write notifies (EVENT_IDX keeps it to tens)
        expect(offCold.notifyExits).toBeGreaterThan(5);
        expect(off.notifyExits).toBeGreaterThan(5);
        expect(onCold.notifyExits).toBe(0);
        expect(on.notifyExits).toBeLessThanOrEqual(off.notifyExits);
        expect(onCold.mmioExits).toBeLessThan(offCold.mmioExits);
        expect(on.fd).toBeGreaterThanOrEqual(0);
        expect(on.fdLeft).toBe(false);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    4 * BOOT_TIMEOUT_MS + 60_000,
  );
});

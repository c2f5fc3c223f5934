// Linux with its soft vCPUs in worker threads (`nodevmm run --vcpu-thread`, one vCPU and two): the
// Linux lane's /init runs, sees its CPUs, computes its checksum, uses the virtio disk, entropy and
// console, and powers off, with the exit loop and devices on the main thread and each vCPU in a
// worker of its own (two at once over shared memory: locked operations, IPIs, TLB shootdowns and
// code patching across threads, at the host's real timing).
// Run by `npm run test:linux` (scripts/test-linux.mjs), which hands the kernel and initramfs over.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  LINUX_DISK_BYTES as DISK_BYTES,
  expectFirstBoot,
  marker,
  linuxMissing as missing,
  runLinuxCli,
} from "../support/linux-guest.js";

const BOOT_TIMEOUT_MS = 20 * 60_000;

describe.skipIf(missing !== undefined)(
  `Linux on soft vCPU threads${missing ? ` (skipped: ${missing})` : ""}`,
  () => {
    for (const cpus of [1, 2]) {
      const smp = cpus > 1 ? ["--smp", String(cpus)] : [];
      it(`boots with ${[...smp, "--vcpu-thread"].join(" ")}, uses the disk and devices, and powers off`, () => {
        const dir = mkdtempSync(join(tmpdir(), "nodevmm-linux-thread-"));
        try {
          const disk = join(dir, "disk.img");
          writeFileSync(disk, Buffer.alloc(DISK_BYTES));
          const r = runLinuxCli(disk, [...smp, "--vcpu-thread", "--rng"], BOOT_TIMEOUT_MS);
          const ms = r.markers;
          expectFirstBoot(ms, r.tail, cpus);
          expect(r.stdout, r.tail).not.toMatch(/BUG|Oops|soft lockup/);
          expect(marker(ms, "rng")).toMatch(/virtio_rng/);
          expect(marker(ms, "done")).toBeDefined();
          expect(r.status, r.tail).toBe(0);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      });
    }
  },
);

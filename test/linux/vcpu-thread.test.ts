// Linux with its one soft vCPU in a worker thread (`nodevmm run --vcpu-thread`): the Linux lane's
// /init runs, computes its checksum, uses the virtio disk, entropy and console, and powers off, with
// the exit loop and devices on the main thread and the guest in the worker.
// Run by `npm run test:linux` (scripts/test-linux.mjs), which hands the kernel and initramfs over.

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  LINUX_DISK_BYTES as DISK_BYTES,
  LINUX_INITRD as INITRD,
  LINUX_KERNEL as KERNEL,
  LINUX_MEMORY_MIB as MEMORY_MIB,
  marker,
  markers,
  md5,
  linuxMissing as missing,
  seq,
} from "../support/linux-guest.js";

const BOOT_TIMEOUT_MS = 20 * 60_000;

describe.skipIf(missing !== undefined)(
  `Linux on a soft vCPU thread${missing ? ` (skipped: ${missing})` : ""}`,
  () => {
    it("boots with --vcpu-thread, uses the disk and devices, and powers off", () => {
      const dir = mkdtempSync(join(tmpdir(), "nodevmm-linux-thread-"));
      try {
        const disk = join(dir, "disk.img");
        writeFileSync(disk, Buffer.alloc(DISK_BYTES));
        const r = spawnSync(
          process.execPath,
          [
            "bin/nodevmm.js",
            "run",
            KERNEL!,
            "--initrd",
            INITRD!,
            "--append",
            "console=ttyS0 quiet",
            "--drive",
            `file=${disk}`,
            "--rng",
            "--backend",
            "soft",
            "--vcpu-thread",
            "--mem",
            `${MEMORY_MIB}M`,
            "--timeout",
            String(BOOT_TIMEOUT_MS / 1000),
          ],
          { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: BOOT_TIMEOUT_MS + 60_000 },
        );
        const ms = markers(r.stdout);
        const tail = `${r.stdout.slice(-3000)}\n${r.stderr}`;
        expect(marker(ms, "init"), tail).toBeDefined();
        expect(r.stdout, tail).not.toMatch(/BUG|Oops|soft lockup/);
        expect(marker(ms, "cpus")).toBe("1");
        expect(ms.filter(([k]) => k === "fail" || k === "missing-flag")).toEqual([]);
        expect(marker(ms, "sum")).toBe(md5(seq(50_000)));
        expect(marker(ms, "disk-after")).toBe("nodevmm boot 1");
        expect(marker(ms, "disk-data")).toBe(md5(seq(100_000)));
        expect(marker(ms, "rng")).toMatch(/virtio_rng/);
        expect(marker(ms, "done")).toBeDefined();
        expect(r.status, tail).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);

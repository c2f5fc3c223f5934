// Linux on two soft vCPUs through `nodevmm run --smp 2 --deterministic`: the Linux lane's /init
// sees both CPUs, computes its checksum, uses the virtio disk and powers off. Deterministic mode
// interleaves the vCPUs in fixed instruction quanta, so the boot is the same instructions each time
// on any host (a real-time two-vCPU boot depends on the host's load; see issue 11's notes).
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
  `Linux on two soft vCPUs${missing ? ` (skipped: ${missing})` : ""}`,
  () => {
    it("boots deterministically on --smp 2, sees 2 CPUs, uses the disk and powers off", () => {
      const dir = mkdtempSync(join(tmpdir(), "nodevmm-linux-smp-"));
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
            "--backend",
            "soft",
            "--smp",
            "2",
            "--deterministic",
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
        expect(marker(ms, "cpus")).toBe("2");
        expect(ms.filter(([k]) => k === "fail" || k === "missing-flag")).toEqual([]);
        expect(marker(ms, "sum")).toBe(md5(seq(50_000)));
        expect(marker(ms, "disk-after")).toBe("nodevmm boot 1");
        expect(marker(ms, "disk-data")).toBe(md5(seq(100_000)));
        expect(marker(ms, "done")).toBeDefined();
        expect(r.status, tail).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);

// Debian's kernel boots on the soft backend to the Linux lane's busybox /init (scripts/linux-lane),
// which reports what it saw over COM1 as "@@linux:" markers: the CPU, a checksum of generated data,
// the virtio disk (written, flushed, read back past the page cache, and found again by a second boot
// of the same disk image), virtio-rng and virtio-console; then `poweroff` ends the run as a poweroff.
// Two vCPUs: test/linux/smp.test.ts; an interactive shell on a terminal: test/linux/shell.test.ts.
// Run by `npm run test:linux` (scripts/test-linux.mjs), which fetches the kernel and builds the
// initramfs and hands their paths over; without them the suite skips and says why.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  bootLinux,
  LINUX_DISK_BYTES as DISK_BYTES,
  expectFirstBoot,
  marker,
  markers,
  md5,
  linuxMissing as missing,
  runLinuxCli,
  seq,
} from "../support/linux-guest.js";

const BOOT_TIMEOUT_MS = 20 * 60_000;

describe.skipIf(missing !== undefined)(
  `Linux on the soft backend${missing ? ` (skipped: ${missing})` : ""}`,
  () => {
    it("boots to /init, uses the virtio disk, rng and console, and powers off; a second boot finds the disk's data", async () => {
      const dir = mkdtempSync(join(tmpdir(), "nodevmm-linux-"));
      try {
        const disk = join(dir, "disk.img");
        const first = Buffer.alloc(DISK_BYTES);
        first.write("nodevmm boot 0\n");
        writeFileSync(disk, first);

        const one = await bootLinux("soft", disk, BOOT_TIMEOUT_MS);
        const ms = markers(one.serial);
        expect(one.broken).toEqual([]);
        expectFirstBoot(ms, one.serial.slice(-3000), 1);
        expect(marker(ms, "vendor")).toBe("GenuineIntel");
        expect(marker(ms, "disk-sectors")).toBe(String(DISK_BYTES / 512));
        expect(marker(ms, "disk-before")).toBe("nodevmm boot 0");
        expect(marker(ms, "rng")).toMatch(/virtio_rng/);
        expect(marker(ms, "rng-bytes")).toBe("16");
        expect(marker(ms, "hvc0")).toBe("yes");
        expect(one.hvc).toContain("@@linux:hello from hvc0");
        expect(marker(ms, "done")).toBeDefined();
        expect(one.result.reason, one.result.message).toBe("poweroff");
        // what the guest wrote and flushed is in the image file
        const image = readFileSync(disk);
        expect(image.subarray(0, 15).toString()).toBe("nodevmm boot 1\n");
        expect(md5(image.subarray(1 << 20, (1 << 20) + 588_895))).toBe(md5(seq(100_000)));

        // the same disk through `nodevmm run`, as users boot it
        const cli = runLinuxCli(disk, [], BOOT_TIMEOUT_MS);
        const ms2 = cli.markers;
        expect(marker(ms2, "disk-before"), cli.tail).toBe("nodevmm boot 1");
        expect(marker(ms2, "disk-after")).toBe("nodevmm boot 2");
        expect(marker(ms2, "cpus")).toBe("1");
        expect(ms2.filter(([k]) => k === "fail" || k === "missing-flag")).toEqual([]);
        expect(marker(ms2, "done")).toBeDefined();
        expect(cli.status, cli.stderr).toBe(0);
        expect(readFileSync(disk).subarray(0, 15).toString()).toBe("nodevmm boot 2\n");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);

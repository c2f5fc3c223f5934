// Linux on two soft vCPUs through `nodevmm run --smp 2 --deterministic`: the Linux lane's /init
// sees both CPUs, computes its checksum, uses the virtio disk and powers off. Deterministic mode
// interleaves the vCPUs in fixed instruction quanta, so the boot is the same instructions each time
// on any host (a real-time two-vCPU boot depends on the host's load; see issue 11's notes).
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
  `Linux on two soft vCPUs${missing ? ` (skipped: ${missing})` : ""}`,
  () => {
    it("boots deterministically on --smp 2, sees 2 CPUs, uses the disk and powers off", () => {
      const dir = mkdtempSync(join(tmpdir(), "nodevmm-linux-smp-"));
      try {
        const disk = join(dir, "disk.img");
        writeFileSync(disk, Buffer.alloc(DISK_BYTES));
        const r = runLinuxCli(disk, ["--smp", "2", "--deterministic"], BOOT_TIMEOUT_MS);
        const ms = r.markers;
        expectFirstBoot(ms, r.tail, 2);
        expect(r.stdout, r.tail).not.toMatch(/BUG|Oops|soft lockup/);
        expect(marker(ms, "done")).toBeDefined();
        expect(r.status, r.tail).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);

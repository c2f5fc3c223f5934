// The Linux lane's guest on KVM (in CI: the nested-KVM lane, nodevmm as the L1 VMM inside the
// nested guest): the same markers as test/linux on the soft backend, from one boot with a fresh
// disk — CPU, checksum, virtio disk written and read back past the page cache, virtio-rng,
// virtio-console — and `poweroff` ending the run as a poweroff.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  bootLinux,
  LINUX_DISK_BYTES,
  linuxMissing,
  marker,
  markers,
  md5,
  seq,
} from "../support/linux-guest.js";
import { probe, skipReason } from "./helpers.js";

const BOOT_TIMEOUT_MS = 10 * 60_000;
const why = !probe.usable ? skipReason : linuxMissing ? ` (skipped: ${linuxMissing})` : "";

describe.skipIf(why !== "")(`Linux on KVM${why}`, () => {
  it(
    "boots to /init, uses the virtio disk, rng and console, and powers off",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "nodevmm-linux-kvm-"));
      try {
        const disk = join(dir, "disk.img");
        const image = Buffer.alloc(LINUX_DISK_BYTES);
        image.write("nodevmm boot 0\n");
        writeFileSync(disk, image);
        const boot = await bootLinux("kvm", disk, BOOT_TIMEOUT_MS);
        const ms = markers(boot.serial);
        expect(boot.broken).toEqual([]);
        expect(marker(ms, "init"), boot.serial.slice(-3000)).toBeDefined();
        expect(ms.filter(([k]) => k === "fail")).toEqual([]);
        expect(marker(ms, "sum")).toBe(md5(seq(50_000)));
        expect(marker(ms, "disk-sectors")).toBe(String(LINUX_DISK_BYTES / 512));
        expect(marker(ms, "disk-before")).toBe("nodevmm boot 0");
        expect(marker(ms, "disk-after")).toBe("nodevmm boot 1");
        expect(marker(ms, "disk-data")).toBe(md5(seq(100_000)));
        expect(marker(ms, "rng")).toMatch(/virtio_rng/);
        expect(marker(ms, "hvc0")).toBe("yes");
        expect(boot.hvc).toContain("@@linux:hello from hvc0");
        expect(boot.result.reason, boot.result.message).toBe("poweroff");
        // on KVM the kernel decompresses itself (native speed) unless asked otherwise
        expect(boot.entry).toBe("bzImage");
        expect(readFileSync(disk).subarray(0, 15).toString()).toBe("nodevmm boot 1\n");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    BOOT_TIMEOUT_MS + 60_000,
  );
});

// `nodevmm run` of a Linux bzImage: detected by its header, --initrd and --append (QEMU's spelling of
// --cmdline) reach the boot protocol's zero page, and the options that only make sense for a
// kernel are refused for other images.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { bzImage } from "../support/bzimage.js";
import { backendMissing, bin, distMissing, nodevmm, root } from "./helpers.js";

const why = distMissing ?? backendMissing("soft");
const dir = mkdtempSync(join(tmpdir(), "nodevmm-cli-linux-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, bytes: Uint8Array): string => {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
};

describe.skipIf(why !== undefined)(`nodevmm run bzImage${why ? ` (skipped: ${why})` : ""}`, () => {
  it("boots a bzImage through the 64-bit boot protocol with --initrd and --append", () => {
    const kernel = file("bzImage", bzImage());
    const initrd = file("initrd", Uint8Array.of(0x49, 0x4e, 0x49, 0x54));
    const r = spawnSync(
      process.execPath,
      [
        bin,
        "run",
        kernel,
        "--backend",
        "soft",
        "--initrd",
        initrd,
        "--append",
        "console=ttyS0",
        "--timeout",
        "20",
        "-v",
      ],
      { cwd: root, timeout: 60_000, input: "" },
    );
    expect(r.stderr.toString()).toMatch(/loaded .* as linux/);
    // '6' (64-bit entry), CS 0x10, DS 0x18, e820 entries, loader type 0xff, cmdline 'c', initrd 'I', CR0.PG
    const out = [...r.stdout];
    expect(out[0]).toBe(0x36);
    expect(out.slice(1, 3)).toEqual([0x10, 0x18]);
    expect(out.slice(4, 8)).toEqual([0xff, 0x63, 0x49, 0x80]);
    expect(r.status).toBe((0x2a << 1) | 1);
  });

  it("--initrd on an image that is not a kernel, or both --cmdline and --append, are usage errors", () => {
    const flat = file("flat.bin", Uint8Array.of(0xf4));
    const initrd = file("initrd2", Uint8Array.of(1));
    const a = nodevmm(["run", flat, "--backend", "soft", "--initrd", initrd]);
    expect(a.status).toBe(2);
    expect(a.stderr).toMatch(/--initrd is for a Linux kernel/);
    const b = nodevmm([
      "run",
      file("bz2", bzImage()),
      "--backend",
      "soft",
      "--cmdline",
      "a",
      "--append",
      "b",
    ]);
    expect(b.status).toBe(2);
    expect(b.stderr).toMatch(/--cmdline or --append/);
  });
});

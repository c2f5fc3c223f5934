// `nodevmm run ROM --format bios`: a firmware image at the reset vector, run through the real
// command on the soft backend; sizes other than 64/128/256 KiB are refused, and auto never picks it.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BIOS_ROM_OUTPUT, biosRom } from "../boot/bios-rom.js";
import { backendMissing, nodevmm } from "./helpers.js";

const why = backendMissing("soft");
const dir = mkdtempSync(join(tmpdir(), "nodevmm-bios-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function romFile(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

describe.skipIf(why !== undefined)(`nodevmm run --format bios${why ? ` (skipped: ${why})` : ""}`, () => {
  for (const kib of [64, 256]) {
    it(`runs a ${kib} KiB ROM from F000:FFF0 to its halt, printing on port 0xE9`, () => {
      const rom = romFile(`rom${kib}.bin`, biosRom(kib * 1024));
      const r = nodevmm(["run", rom, "--format", "bios", "--backend", "soft", "--timeout", "30", "--quiet"]);
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe(BIOS_ROM_OUTPUT);
      expect(r.status).toBe(0);
    });
  }

  it("with --verbose says it loaded firmware at the reset vector", () => {
    const rom = romFile("rom-v.bin", biosRom());
    const r = nodevmm(["run", rom, "--format", "bios", "--backend", "soft", "--timeout", "30", "--verbose"]);
    expect(r.stderr).toContain(`loaded ${rom} as bios, entry rip=0xfff0`);
    expect(r.status).toBe(0);
  });

  it("refuses another size in one line naming it, status 2", () => {
    const rom = romFile("rom96.bin", new Uint8Array(96 * 1024));
    const r = nodevmm(["run", rom, "--format", "bios", "--backend", "soft", "--timeout", "5"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/firmware size 98304 bytes \(0x18000\) is not 64, 128 or 256 KiB/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("--format auto does not guess bios: the ROM loads as a flat image", () => {
    const rom = romFile("rom-auto.bin", biosRom());
    const r = nodevmm(["run", rom, "--backend", "soft", "--max-exits", "1", "--timeout", "5", "--verbose"]);
    expect(r.stderr).toContain(`loaded ${rom} as flat`);
  });
});

// The committed images are what examples/guests/build.sh makes from the sources. Rebuilt into a temp
// dir and compared byte for byte, when the same toolchain that built them is on the machine.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { GUESTS, IMAGES, manifest } from "./paths.js";

function toolchainProblem(): string | undefined {
  for (const tool of ["gcc", "ld", "objcopy"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  const version = (cmd: string) => spawnSync(cmd, ["--version"], { encoding: "utf8" }).stdout.split("\n")[0];
  const here = `${version("gcc")}\n${version("ld")}\n`;
  const committed = readFileSync(join(IMAGES, "TOOLCHAIN"), "utf8");
  if (here !== committed) {
    return `images were built with "${committed.trim().replace("\n", " + ")}", this machine has "${here.trim().replace("\n", " + ")}"`;
  }
  return undefined;
}

const problem = toolchainProblem();
if (problem) console.warn(`test/examples: not rebuilding example images: ${problem}`);

describe("example images", () => {
  it("are listed in the manifest, one per committed image", () => {
    const files = readdirSync(IMAGES).filter((f) => f.endsWith(".bin") || f.endsWith(".elf"));
    expect(manifest.map((m) => m.file).sort()).toEqual(files.sort());
  });

  it.skipIf(problem !== undefined)(
    `match their sources byte for byte${problem ? ` (skipped: ${problem})` : ""}`,
    () => {
      const out = mkdtempSync(join(tmpdir(), "nodevmm-guests-"));
      try {
        execFileSync("sh", [join(GUESTS, "build.sh"), out], { stdio: "pipe", timeout: 60_000 });
        for (const m of manifest) {
          const built = readFileSync(join(out, m.file));
          const committed = readFileSync(join(IMAGES, m.file));
          expect(built.equals(committed), `${m.file} differs from a fresh build`).toBe(true);
        }
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
  );
});

// Whether this machine can rebuild the committed assembly guest images byte for byte: the GNU
// assembler, linker and objcopy are installed and are the versions the images were built with (the
// TOOLCHAIN file beside them). Tests that compare rebuilt images skip with the reason otherwise.

import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** why `guestsDir`'s images cannot be rebuilt identically here, or undefined */
export function asToolchainProblem(guestsDir: string): string | undefined {
  for (const tool of ["as", "ld", "objcopy"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  const version = (cmd: string) => spawnSync(cmd, ["--version"], { encoding: "utf8" }).stdout.split("\n")[0];
  const here = `${version("as")}\n${version("ld")}\n`;
  const committed = readFileSync(join(guestsDir, "TOOLCHAIN"), "utf8");
  return here === committed
    ? undefined
    : `images were built with ${committed.trim()}, this machine has ${here.trim()}`;
}

// Builds the native addon with node-gyp. A failed build is not fatal: the koffi binding takes over.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

if (!existsSync("binding.gyp") || process.env.NODEVMM_SKIP_ADDON === "1") process.exit(0);
const r = spawnSync("node-gyp", ["rebuild"], { stdio: "inherit", shell: process.platform === "win32" });
if (r.status !== 0) {
  console.warn("nodevmm: the native addon did not build; the koffi binding will be used instead.");
}

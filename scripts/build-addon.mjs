// Builds the native addon (build/Release/nodevmm.node) with node-gyp. A failed build is not fatal:
// lib/kvm then uses the koffi binding over libc.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";

if (!existsSync("binding.gyp") || process.env.NODEVMM_SKIP_ADDON === "1") process.exit(0);
if (process.platform !== "linux") {
  console.warn("nodevmm: the KVM addon is Linux-only; skipping it.");
  process.exit(0);
}

// node-gyp is on PATH inside npm scripts; run directly, use the copy bundled with npm.
function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), "../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"),
    join(dirname(process.execPath), "node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"),
  ];
  for (const c of candidates) if (c && existsSync(c)) return [process.execPath, [c]];
  return ["node-gyp", []];
}

const args = ["rebuild"];
// Headers installed next to node (distro and official tarball layouts) spare node-gyp a download.
const prefix = join(dirname(process.execPath), "..");
if (existsSync(join(prefix, "include/node/node_api.h"))) args.push(`--nodedir=${prefix}`);

const [cmd, pre] = findNodeGyp();
const r = spawnSync(cmd, [...pre, ...args], { stdio: "inherit" });
if (r.status !== 0) {
  console.warn("nodevmm: the native addon did not build; the koffi binding will be used instead.");
}

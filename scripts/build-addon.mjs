// Builds the native addon (build/Release/nodevmm.node) with node-gyp; package.json's install script.
// A failed build is not fatal: lib/kvm then uses the koffi binding over libc. The install ends with
// one line saying which binding the user got; node-gyp's own ~45 lines are shown only when the build
// fails or NODEVMM_VERBOSE_INSTALL=1. What happened is also written to build/addon-status.json, so
// that `nodevmm info` can say why koffi is in use (lib/kvm/binding.ts reads it).
//
//   node scripts/build-addon.mjs
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const verbose = process.env.NODEVMM_VERBOSE_INSTALL === "1";
const STATUS = join(root, "build", "addon-status.json");

/** the last line of the install, and the reason koffi is used (for `nodevmm info`) */
function finish(built, line, reason) {
  try {
    mkdirSync(dirname(STATUS), { recursive: true });
    writeFileSync(STATUS, `${JSON.stringify({ built, reason, node: process.version }, null, 2)}\n`);
  } catch {
    // an unwritable package folder: `nodevmm info` then says less, the binding works the same
  }
  console.log(`nodevmm: ${line}`);
  process.exit(0);
}

if (!existsSync(join(root, "binding.gyp"))) process.exit(0);
if (process.env.NODEVMM_SKIP_ADDON === "1") {
  finish(false, "NODEVMM_SKIP_ADDON=1, using koffi", "the build was skipped (NODEVMM_SKIP_ADDON=1)");
}
if (process.platform !== "linux") {
  finish(
    false,
    "the KVM addon is Linux-only, using koffi",
    `the addon is Linux-only (this is ${process.platform})`,
  );
}

function onPath(name) {
  return (process.env.PATH ?? "").split(delimiter).some((d) => d !== "" && existsSync(join(d, name)));
}

// node-gyp needs python3, make and a C++ compiler; without them it fails after a page of output
const cxx =
  process.env.CXX ??
  (onPath("g++") ? "g++" : onPath("c++") ? "c++" : onPath("clang++") ? "clang++" : undefined);
const missing = [
  ...(cxx && (cxx.includes("/") ? existsSync(cxx) : onPath(cxx.split(" ")[0])) ? [] : ["a C++ compiler"]),
  ...(onPath("make") ? [] : ["make"]),
  ...(onPath("python3") || onPath("python") ? [] : ["python3"]),
];
if (missing.length > 0) {
  finish(
    false,
    "no compiler, using koffi",
    `no compiler to build the addon at install (missing ${missing.join(", ")})`,
  );
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
const r = spawnSync(cmd, [...pre, ...args], {
  cwd: root,
  stdio: verbose ? "inherit" : ["ignore", "pipe", "pipe"],
  encoding: "utf8",
  maxBuffer: 64 * 1024 * 1024,
});
if (r.status === 0 && existsSync(join(root, "build", "Release", "nodevmm.node"))) {
  finish(true, "native addon built", "built at install");
}
if (!verbose) {
  // what went wrong, where it can be read: node-gyp's output, then one line
  if (r.stdout) process.stderr.write(r.stdout);
  if (r.stderr) process.stderr.write(r.stderr);
}
const why = r.error
  ? r.error.message
  : r.signal
    ? `node-gyp ended with ${r.signal}`
    : `node-gyp exited with ${r.status}`;
finish(
  false,
  `the native addon did not build (${why}; output above), using koffi`,
  `the build at install failed (${why})`,
);

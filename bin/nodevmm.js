#!/usr/bin/env node
// The `nodevmm` command. CommonJS (bin/package.json), so that a start needs no ES module loader.
// It runs one of two builds of lib/cli:
// - dist/cli/nodevmm.cjs (scripts/build-cli.mjs): one bundled file, compiled with the V8 code cache
//   dist/cli/nodevmm.cache made from it, so that start-up neither reads ~130 modules one by one nor
//   compiles them again (bench/start measures the difference);
// - dist/lib/cli/main.js: tsc's ES modules, the library itself. They run when the bundle is missing
//   or older than tsc's output (a `tsc` since the last bundle), and always for commands that load
//   plugins: a plugin imports the library (dist/lib, "nodevmm"), and its classes (the errors it
//   catches, the devices it adds) must be the ones the machine uses.
// NODEVMM_CLI=bundle|lib picks one for commands without plugins. NODEVMM_CLI_TRAIN=PATH
// (scripts/build-cli.mjs) writes the bundle's code cache to PATH after the command.
"use strict";

const { readFileSync, statSync, writeFileSync } = require("node:fs");
const { dirname, join } = require("node:path");

const argv = process.argv.slice(2);
const dist = join(__dirname, "..", "dist");
const lib = join(dist, "lib", "cli", "main.js");
const bundle = join(dist, "cli", "nodevmm.cjs");
const cache = join(dist, "cli", "nodevmm.cache");

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

function chooseBundle() {
  if (argv.some((a) => a === "--plugin" || a.startsWith("--plugin="))) return false;
  const forced = process.env.NODEVMM_CLI;
  if (forced === "lib") return false;
  if (forced === "bundle") return true;
  const built = mtime(bundle);
  if (built === undefined) return false;
  const compiled = mtime(lib);
  return compiled === undefined || built >= compiled;
}

/**
 * The bundle's main(), compiled with its code cache when the cache was made from this bundle, and
 * what to do after it. The bundle's text is the function Node wraps a CommonJS module in; its first
 * line names the build and the text's encoding (scripts/build-cli.mjs).
 */
function loadBundle() {
  const bytes = readFileSync(bundle);
  const eol = bytes.indexOf(10) + 1;
  const stamp = bytes.toString("latin1", 0, eol);
  if (!stamp.includes(" nodevmm-cli ")) throw new Error("not a bundle of scripts/build-cli.mjs");
  // ASCII read as Latin-1: the string is made straight from the bytes
  const source = stamp.includes(" ascii ") ? bytes.toString("latin1") : bytes.toString("utf8");
  const train = process.env.NODEVMM_CLI_TRAIN;
  let cachedData;
  if (!train) {
    try {
      const data = readFileSync(cache);
      if (data.length > eol && data.toString("latin1", 0, eol) === stamp) cachedData = data.subarray(eol);
    } catch {
      // no cache: compiled from source
    }
  }
  const vm = require("node:vm");
  const script = new vm.Script(source, { filename: bundle, cachedData });
  const module = { exports: {} };
  script.runInThisContext()(
    module.exports,
    require("node:module").createRequire(bundle),
    module,
    bundle,
    dirname(bundle),
  );
  // the cache is written after the command, so that it holds the functions the run compiled too
  const after = train
    ? () => writeFileSync(train, Buffer.concat([Buffer.from(stamp, "latin1"), script.createCachedData()]))
    : () => {};
  return { main: module.exports.main, after };
}

function fail(what, how, e) {
  console.error(`nodevmm: cannot load ${what} (${e?.message ?? e}); run \`${how}\` first`);
  process.exitCode = 1;
}

if (chooseBundle()) {
  let loaded;
  try {
    loaded = loadBundle();
  } catch (e) {
    fail("dist/cli/nodevmm.cjs", "node scripts/build-cli.mjs", e);
  }
  if (loaded) loaded.main(argv).then(loaded.after);
} else {
  import(require("node:url").pathToFileURL(lib).href).then(
    (m) => m.main(argv),
    (e) => fail("dist/lib/cli/main.js", "npx tsc -p tsconfig.json", e),
  );
}

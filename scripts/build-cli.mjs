// Bundles the `nodevmm` command for start-up (issue 9; bench/start measures it). tsc's ES modules of
// the CLI (dist/lib/cli/main.js and all it imports, commander included: some 130 files that Node
// would resolve, read and compile one by one) become one CommonJS file, dist/cli/nodevmm.cjs, plus
// a V8 code cache of it, dist/cli/nodevmm.cache, made by running the bundle once on a one-sector
// guest: bin/nodevmm.js compiles the bundle with that cache (vm.Script cachedData), so neither the
// bundle nor the functions a run calls are compiled again at start-up. Node 20 has no compile cache
// of its own for modules (module.enableCompileCache() is Node 22).
//
// Run after tsc (package.json: prepare, build). bin/nodevmm.js falls back to dist/lib/cli/main.js
// when the bundle is missing or older than tsc's output, and compiles without the cache when V8
// rejects it (another Node version, other V8 flags): a skipped or failed step costs start-up time,
// never a working command. dist/lib/ stays the library (`import ... from "nodevmm"`, plugins).
// The bundle has no comments or line breaks to speak of (see minifyWhitespace): a stack trace from it
// points into one long line; NODEVMM_CLI=lib runs tsc's modules, with lib/*.ts's source maps.
//
//   node scripts/build-cli.mjs [--quiet]

import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const entry = join(root, "dist", "lib", "cli", "main.js");
const outdir = join(root, "dist", "cli");
const quiet = process.argv.includes("--quiet");
const say = (line) => {
  if (!quiet) console.log(`build-cli: ${line}`);
};

if (!existsSync(entry)) {
  console.error(`build-cli: ${relative(root, entry)} is missing; run tsc -p tsconfig.json first`);
  process.exit(1);
}

let esbuild;
try {
  esbuild = await import("esbuild");
} catch (e) {
  // an install without devDependencies: the command runs from dist/lib, only slower to start
  console.error(`build-cli: esbuild is not installed (${e.message}); nodevmm runs unbundled`);
  process.exit(0);
}

// Node modules that the bundle imports at its top level but a run rarely calls into: commander's
// child_process (for subcommands that are programs of their own) and worker_threads (the KVM vCPU
// thread and watchdog). Each becomes an object of getters that loads the real module at the first
// use of an export (some 3 ms each at start-up).
const LAZY_BUILTINS = ["child_process", "worker_threads"];
const lazyBuiltins = {
  name: "lazy-builtins",
  setup(build) {
    const filter = new RegExp(`^(node:)?(${LAZY_BUILTINS.join("|")})$`);
    build.onResolve({ filter }, (a) =>
      a.namespace === "lazy-builtin"
        ? { path: a.path, external: true }
        : { path: a.path.replace(/^node:/, ""), namespace: "lazy-builtin" },
    );
    build.onLoad({ filter: /.*/, namespace: "lazy-builtin" }, (a) => {
      const names = Object.keys(createRequire(import.meta.url)(`node:${a.path}`));
      const getters = names.map((n) => `  get ${n}() { return load().${n}; },`).join("\n");
      return {
        contents: `let m;\nconst load = () => (m ??= require("node:${a.path}"));\nmodule.exports = {\n${getters}\n};\n`,
        loader: "js",
      };
    });
  },
};

// import() with a computed specifier stays a runtime import() in the bundle, which cannot work there
// (a vm.Script with a code cache has no module loader behind it): a backend opened that way would be
// "unavailable". The one allowed is the plugin loader's, whose runs use dist/lib (bin/nodevmm.js).
// The soft vCPU thread's loader is another: its import() is text of a worker's source, run by Node's
// loader in the thread (the module it loads is dist/lib's).
const COMPUTED_IMPORT_ALLOWED = [
  join("dist", "lib", "cli", "plugins.js"),
  join("dist", "lib", "vmm", "backends", "soft", "threads.js"),
  join("dist", "lib", "vmm", "backends", "soft", "threads-pool.js"),
];
const noComputedImports = {
  name: "no-computed-imports",
  setup(build) {
    build.onLoad({ filter: /[\\/]dist[\\/]lib[\\/].*\.js$/ }, (a) => {
      const text = readFileSync(a.path, "utf8");
      if (!/\bimport\(\s*[^"'\s)]/.test(text)) return undefined;
      if (COMPUTED_IMPORT_ALLOWED.some((f) => a.path.endsWith(f))) return undefined;
      return {
        errors: [
          {
            text: `${relative(root, a.path)}: import() of a computed specifier; the bundled CLI cannot load it (give the specifier as a string literal)`,
          },
        ],
      };
    });
  },
};

// The bundle is a CommonJS module already inside the function Node wraps every such module in, so
// that bin/nodevmm.js compiles the file's text as it is read (no copy of half a megabyte to add the
// wrapper). Its first line names this build; the code cache starts with the same line, so that a
// cache is only ever used with the bundle it was made from (V8 itself checks only the source's
// length). The line also says whether the text is all ASCII ("ascii"; bin/nodevmm.js then reads it
// as Latin-1, one copy less than UTF-8), else "utf-8".
const WRAPPER = "(function (exports, require, module, __filename, __dirname) {";
const buildId = randomUUID();
const stampLine = (encoding) => `${WRAPPER} "use strict"; /* nodevmm-cli ${buildId} ${encoding} */`;

// Written beside the final folder and renamed into place, so that a command started during the
// build never sees half of it.
const tmp = `${outdir}.${process.pid}.tmp`;
rmSync(tmp, { recursive: true, force: true });
let result;
try {
  result = await esbuild.build({
    entryPoints: [entry],
    outfile: join(tmp, "nodevmm.cjs"),
    bundle: true,
    format: "cjs",
    platform: "node",
    target: "node20",
    // iced-x86 (WebAssembly) and koffi (a native module) stay in node_modules: createRequire()
    // esbuild: only the TypeScript sources bundle the vCPU thread with it (worker-script.ts)
    external: ["iced-x86", "koffi", "esbuild"],
    // the sources locate package.json, the addon and node_modules from their own URL
    define: {
      "import.meta.url": "__nodevmmModuleUrl",
      "import.meta.filename": "__filename",
      "import.meta.dirname": "__dirname",
    },
    banner: {
      js: `${stampLine("ascii")}\nconst __nodevmmModuleUrl = require("node:url").pathToFileURL(__filename).href;`,
    },
    footer: { js: "})" },
    // tsc's source maps are followed through: the bundle's map points into lib/*.ts
    sourcemap: "linked",
    // no comments: esbuild escapes non-ASCII characters in strings and names, so the text stays
    // ASCII (see stampLine)
    minifyWhitespace: true,
    legalComments: "none",
    plugins: [lazyBuiltins, noComputedImports],
    logLevel: "warning",
    metafile: true,
  });
  const file = join(tmp, "nodevmm.cjs");
  const text = readFileSync(file, "latin1");
  if (!text.startsWith(`${stampLine("ascii")}\n`))
    throw new Error("the bundle does not start with its banner");
  if (/[^\0-\x7f]/.test(text)) writeFileSync(file, stampLine("utf-8"), { flag: "r+" });
  rmSync(outdir, { recursive: true, force: true });
  renameSync(tmp, outdir);
} catch (e) {
  rmSync(tmp, { recursive: true, force: true });
  console.error(`build-cli: bundling failed: ${e.message}`);
  process.exit(1);
}
const bundle = join(outdir, "nodevmm.cjs");
say(
  `${Object.keys(result.metafile.inputs).length} modules -> ${relative(root, bundle)} (${Math.round(statSync(bundle).size / 1024)} KiB)`,
);

// The code cache: one run of what `npm start` boots, on the soft backend (the same on every host),
// its output read and dropped. bin/nodevmm.js writes the cache when the run has ended
// (NODEVMM_CLI_TRAIN).
const cache = join(outdir, "nodevmm.cache");
const cacheTmp = `${cache}.${process.pid}.tmp`;
const guest = join(root, "examples", "images", "real-hello.bin");
const train = spawnSync(
  process.execPath,
  [join(root, "bin", "nodevmm.js"), "run", guest, "--backend", "soft"],
  {
    cwd: root,
    env: { ...process.env, NODEVMM_CLI: "bundle", NODEVMM_CLI_TRAIN: cacheTmp },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 60_000,
  },
);
if (train.status === 0 && existsSync(cacheTmp)) {
  renameSync(cacheTmp, cache);
  say(`code cache -> ${relative(root, cache)} (${Math.round(statSync(cache).size / 1024)} KiB)`);
} else {
  rmSync(cacheTmp, { force: true });
  // the bundle works without it; only its start-up is slower
  console.error(
    `build-cli: no code cache (the training run ended with ${train.error?.message ?? `status ${train.status}`}: ${train.stderr?.trim() ?? ""})`,
  );
}

// The two builds bin/nodevmm.js runs (see its header): the bundle with its V8 code cache
// (dist/cli, scripts/build-cli.mjs) and tsc's modules (dist/lib/cli). Behaviour only; start-up time
// is bench/start's.

import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureCliBundle } from "../support/dist.js";
import { backendMissing, bin, distMissing, nodevmm, root } from "./helpers.js";

const esbuildMissing = (() => {
  try {
    createRequire(import.meta.url).resolve("esbuild");
    return undefined;
  } catch {
    return "esbuild is not installed";
  }
})();
const skipReason = distMissing ?? esbuildMissing ?? backendMissing("soft");
const GUEST = "examples/images/real-hello.bin";
const bundleRun = (args: string[]) => nodevmm(args, { env: { NODEVMM_CLI: "bundle" } });
const libRun = (args: string[]) => nodevmm(args, { env: { NODEVMM_CLI: "lib" } });

describe.skipIf(skipReason !== undefined)(
  `the bundled nodevmm command${skipReason ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    beforeAll(() => {
      // global setup built it; a tsc since then (another suite's ensureDist) makes it stale
      expect(ensureCliBundle()).toBeUndefined();
    });

    it("runs a guest, as tsc's modules do", () => {
      const bundled = bundleRun(["run", GUEST, "--backend", "soft"]);
      expect(bundled.stderr).toBe("");
      expect(bundled.status).toBe(0);
      expect(bundled.stdout).toBe("Hello from real mode\n");
      expect(libRun(["run", GUEST, "--backend", "soft"]).stdout).toBe(bundled.stdout);
    });

    it("opens the backends and reads package.json from the bundle (auto, info, --version)", () => {
      const auto = bundleRun(["run", GUEST, "--backend", "auto"]);
      expect(auto.status).toBe(0);
      expect(auto.stdout).toBe("Hello from real mode\n");
      const info = bundleRun(["info"]);
      expect(info.status).toBe(0);
      expect(info.stdout).toMatch(/^soft backend: available$/m);
      expect(info.stdout).not.toMatch(/module not found/);
      const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version as string;
      expect(bundleRun(["--version"]).stdout).toBe(`${version}\n`);
      expect(bundleRun(["run", "--help"]).stdout).toBe(libRun(["run", "--help"]).stdout);
    });

    it("has a code cache made from this very bundle", () => {
      const source = readFileSync(join(root, "dist", "cli", "nodevmm.cjs"), "latin1");
      const stamp = source.slice(0, source.indexOf("\n") + 1);
      expect(stamp).toMatch(
        /^\(function \(exports, require, module, __filename, __dirname\) \{ "use strict"; \/\* nodevmm-cli [0-9a-f-]{36} ascii \*\/\n$/,
      );
      const cache = readFileSync(join(root, "dist", "cli", "nodevmm.cache"));
      expect(cache.toString("latin1", 0, stamp.length)).toBe(stamp);
      expect(cache.length).toBeGreaterThan(stamp.length + 1024);
    });
  },
);

// bin/nodevmm.js's choice, on a copy of bin/ beside stand-ins for the two builds
const WRAP = "(function (exports, require, module, __filename, __dirname) {";
describe("bin/nodevmm.js picks a build", () => {
  let dir = "";
  const bundle = () => join(dir, "dist", "cli", "nodevmm.cjs");
  const lib = () => join(dir, "dist", "lib", "cli", "main.js");
  const run = (args: string[], env: Record<string, string> = {}) => {
    const r = spawnSync(process.execPath, [join(dir, "bin", "nodevmm.js"), ...args], {
      encoding: "utf8",
      env: { ...process.env, NODEVMM_CLI: "", ...env },
    });
    return `${r.stdout}${r.stderr}`.trim();
  };
  const age = (path: string, secondsAgo: number) => {
    const t = Date.now() / 1000 - secondsAgo;
    utimesSync(path, t, t);
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "nodevmm-bin-"));
    mkdirSync(join(dir, "bin"));
    copyFileSync(bin, join(dir, "bin", "nodevmm.js"));
    copyFileSync(join(root, "bin", "package.json"), join(dir, "bin", "package.json"));
    writeFileSync(join(dir, "package.json"), '{ "type": "module" }\n');
    mkdirSync(join(dir, "dist", "cli"), { recursive: true });
    mkdirSync(join(dir, "dist", "lib", "cli"), { recursive: true });
    writeFileSync(
      bundle(),
      `${WRAP} "use strict"; /* nodevmm-cli 00000000-0000-0000-0000-000000000000 ascii */\n` +
        'exports.main = async (argv) => { console.log(["bundle", ...argv].join(" ")); return 0; };\n})\n',
    );
    writeFileSync(
      lib(),
      'export async function main(argv) { console.log(["lib", ...argv].join(" ")); return 0; }\n',
    );
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the bundle when it is at least as new as tsc's output", () => {
    age(lib(), 60);
    age(bundle(), 30);
    expect(run(["run", "x.bin"])).toBe("bundle run x.bin");
  });

  it("tsc's modules when the bundle is older (a tsc since the last bundle) or missing", () => {
    age(lib(), 30);
    age(bundle(), 60);
    expect(run(["run", "x.bin"])).toBe("lib run x.bin");
    rmSync(bundle());
    expect(run(["--version"])).toBe("lib --version");
  });

  it("tsc's modules for plugins, whose imports of the library must meet the same classes", () => {
    // not ASCII: read as UTF-8
    writeFileSync(
      bundle(),
      `${WRAP} /* nodevmm-cli x utf-8 */\nexports.main = async () => console.log("bundle \u00e9");\n})\n`,
    );
    age(lib(), 60);
    age(bundle(), 30);
    expect(run(["run", "x.bin", "--plugin", "p.js"])).toBe("lib run x.bin --plugin p.js");
    expect(run(["run", "x.bin", "--plugin=p.js"])).toBe("lib run x.bin --plugin=p.js");
    expect(run(["run", "x.bin", "--plugin", "p.js"], { NODEVMM_CLI: "bundle" })).toBe(
      "lib run x.bin --plugin p.js",
    );
  });

  it("NODEVMM_CLI=bundle|lib decides for commands without plugins", () => {
    age(lib(), 60);
    age(bundle(), 30);
    expect(run(["a"], { NODEVMM_CLI: "lib" })).toBe("lib a");
    age(bundle(), 90);
    expect(run(["a"], { NODEVMM_CLI: "bundle" })).toBe("bundle \u00e9");
  });

  it("a code cache that V8 rejects, or that belongs to another bundle, is not used", () => {
    const stamp = readFileSync(bundle(), "latin1").split("\n")[0];
    const cache = join(dir, "dist", "cli", "nodevmm.cache");
    writeFileSync(cache, Buffer.concat([Buffer.from(`${stamp}\n`, "latin1"), Buffer.alloc(4096, 0x5a)]));
    expect(run(["a"], { NODEVMM_CLI: "bundle" })).toBe("bundle \u00e9");
    writeFileSync(cache, Buffer.concat([Buffer.from("another build\n"), Buffer.alloc(4096, 0x5a)]));
    expect(run(["a"], { NODEVMM_CLI: "bundle" })).toBe("bundle \u00e9");
  });

  it("says which build is missing when the chosen one cannot load", () => {
    expect(run(["a"], { NODEVMM_CLI: "lib" })).toBe("lib a");
    rmSync(lib());
    expect(run(["a"], { NODEVMM_CLI: "lib" })).toMatch(
      /cannot load dist\/lib\/cli\/main\.js .*tsc -p tsconfig\.json/,
    );
    rmSync(bundle());
    expect(run(["a"], { NODEVMM_CLI: "bundle" })).toMatch(
      /cannot load dist\/cli\/nodevmm\.cjs .*build-cli\.mjs/,
    );
  });
});

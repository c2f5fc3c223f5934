// The package as an npm user gets it (issue 14): `npm pack`, then the tarball installed into a new
// project twice, once as npm installs it (the install script builds the native addon) and once with
// --ignore-scripts (no addon: the koffi binding). Each install is imported from JavaScript and
// type-checked from strict TypeScript, boots a packaged example image through the API on the
// software backend, runs the `nodevmm` command on it, and `nodevmm info` names the binding it got.
// Run by .ci/run; `npm run test:pack`. Exit status 0 when everything held, 1 otherwise.
//
//   node scripts/pack-test.mjs [--keep]     --keep leaves the temporary projects for a look

import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const keep = process.argv.includes("--keep");
const work = mkdtempSync(join(tmpdir(), "nodevmm-pack-"));
const say = (line) => console.log(`pack-test: ${line}`);
const started = Date.now();
let failures = 0;

/** runs a command; its output is shown only when it fails */
function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, {
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    timeout: 300_000,
    ...opts,
    env: { ...process.env, npm_config_audit: "false", npm_config_fund: "false", ...opts.env },
  });
  return { ...r, text: `${r.stdout ?? ""}${r.stderr ?? ""}`, ok: r.status === 0 };
}

function check(what, cond, detail = "") {
  if (cond) {
    say(`ok   ${what}`);
  } else {
    failures++;
    say(`FAIL ${what}${detail ? `\n${detail.trimEnd().replace(/^/gm, "    ")}` : ""}`);
  }
  return cond;
}

// The consumer's code: ESM JavaScript that boots the packaged real-mode hello guest through the API
const SMOKE_JS = `
import { addPcDevices, createMachine, GuestImageError, VmmError } from "nodevmm";
import { exampleImage } from "nodevmm/examples";

const guest = exampleImage("real-hello");
const vm = await createMachine({ memoryMiB: 16, backend: "soft" });
let out = "";
addPcDevices(vm, { serial: { write: (b) => { out += Buffer.from(b).toString("latin1"); return true; } } });
vm.load(guest.read(), guest.loadOptions);
const result = await vm.run({ timeoutMs: 20000 });
vm.close();
if (typeof GuestImageError !== "function" || typeof VmmError !== "function") throw new Error("error classes missing");
if (out !== guest.expectedOutput()) throw new Error(\`output \${JSON.stringify(out)} is not the manifest's\`);
console.log(JSON.stringify({ reason: result.reason, out }));
`;

// The same from strict TypeScript, only type-checked: the package's .d.ts must hold under strict
const SMOKE_TS = `
import { readFileSync } from "node:fs";
import { addPcDevices, createMachine, type Machine, type RunResult } from "nodevmm";
import { type ExampleImage, exampleImages } from "nodevmm/examples";
import type { KvmVm } from "nodevmm/kvm";

export async function boot(path: string): Promise<string> {
  const vm: Machine = await createMachine({ memoryMiB: 16, backend: "soft" });
  let out = "";
  addPcDevices(vm, { serial: { write: (b: Uint8Array) => { out += Buffer.from(b).toString("latin1"); return true; } } });
  vm.loadFlat(readFileSync(path), { address: 0x7c00, mode: "real" });
  const result: RunResult = await vm.run({ timeoutMs: 20_000 });
  vm.close();
  const reason: string = result.reason;
  return \`\${reason}: \${out}\`;
}

export const names: string[] = exampleImages().map((e: ExampleImage) => e.name);
export type Raw = KvmVm;
`;

const TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    noEmit: true,
    skipLibCheck: false,
    // @types/node from the project under test: the consumer installs nothing but the tarball
    typeRoots: [join(root, "node_modules", "@types")],
    types: ["node"],
  },
  files: ["smoke.ts"],
};

function consumer(name, tarball, installArgs, expectBinding) {
  say(`--- ${name}: npm install ${[...installArgs, "<tarball>"].join(" ")}`);
  const dir = join(work, name);
  mkdirSync(dir);
  // allowScripts: the approval npm 11 asks for (and npm 12 needs) before it runs install scripts
  const pkg = {
    name: `consumer-${name}`,
    private: true,
    type: "module",
    allowScripts: { nodevmm: true, koffi: true },
  };
  writeFileSync(join(dir, "package.json"), `${JSON.stringify(pkg, null, 2)}\n`);
  // the dependencies come from npm's cache when they are there (the project's own install put them
  // there), else from the registry
  const install = run(
    "npm",
    ["install", "--prefer-offline", "--no-audit", "--no-fund", ...installArgs, tarball],
    { cwd: dir },
  );
  if (!check(`${name}: npm install of the tarball`, install.ok, install.text)) return;
  if (installArgs.includes("--foreground-scripts")) {
    // what a user sees of our install script: one line naming the binding, none of node-gyp's
    // (npm 11's own "install-scripts ... not yet covered by allowScripts" advisory is npm's, and
    // comes and goes with how npm matches the consumer's allowScripts to a tarball: not checked)
    const ours = install.text.split("\n").filter((l) => /^nodevmm: /.test(l));
    check(
      `${name}: the install says which binding it got, in one line (${ours.join(" | ")})`,
      ours.length === 1 &&
        ours[0] ===
          `nodevmm: ${expectBinding === "addon" ? "native addon built" : "no compiler, using koffi"}` &&
        !/gyp info/.test(install.text),
      install.text,
    );
  }

  writeFileSync(join(dir, "smoke.mjs"), SMOKE_JS);
  const js = run(process.execPath, ["smoke.mjs"], { cwd: dir });
  let parsed;
  try {
    parsed = JSON.parse(js.stdout.trim().split("\n").pop() ?? "");
  } catch {
    parsed = undefined;
  }
  check(
    `${name}: import from JavaScript, boot examples/images/real-hello.bin on the soft backend`,
    js.ok && parsed?.reason === "hlt" && parsed?.out === "Hello from real mode\n",
    js.text,
  );

  writeFileSync(join(dir, "smoke.ts"), SMOKE_TS);
  writeFileSync(join(dir, "tsconfig.json"), `${JSON.stringify(TSCONFIG, null, 2)}\n`);
  const tsc = run(
    process.execPath,
    [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"],
    { cwd: dir },
  );
  check(`${name}: import from strict TypeScript (tsc --noEmit, skipLibCheck off)`, tsc.ok, tsc.text);

  const bin = join(dir, "node_modules", ".bin", "nodevmm");
  const image = join(dir, "node_modules", "nodevmm", "examples", "images", "real-hello.bin");
  const cli = run(bin, ["run", image, "--backend", "soft"], { cwd: dir });
  check(
    `${name}: the nodevmm command runs the image`,
    cli.ok && cli.stdout === "Hello from real mode\n",
    cli.text,
  );

  const info = run(bin, ["info"], { cwd: dir, env: { NODEVMM_BINDING: "" } });
  const binding = info.stdout.match(/^binding: (\S+) \((.*)\)$/m);
  check(
    `${name}: nodevmm info names the binding (${binding?.[1]}: ${binding?.[2]})`,
    info.ok && binding?.[1] === expectBinding,
    info.text,
  );
}

try {
  say(`npm pack (runs prepare: tsc and the CLI bundle) into ${work}`);
  const pack = run("npm", ["pack", "--pack-destination", work], { cwd: root });
  const tarball = readdirSync(work).find((f) => f.endsWith(".tgz"));
  if (check("npm pack", pack.ok && tarball !== undefined, pack.text)) {
    const list = run("tar", ["-tzf", join(work, tarball)]);
    const files = list.stdout.split("\n");
    check(
      "the tarball has what install needs, a LICENSE, and no dist/bench",
      [
        "package/scripts/build-addon.mjs",
        "package/binding.gyp",
        "package/native/nodevmm.cc",
        "package/LICENSE",
        "package/dist/lib/index.d.ts",
        "package/examples/images/real-hello.bin",
      ].every((f) => files.includes(f)) &&
        !files.some((f) => f.startsWith("package/dist/bench/") || f.startsWith("package/build/")),
      list.text,
    );
    const compiler = run("sh", [
      "-c",
      "command -v make && (command -v g++ || command -v c++) && (command -v python3 || command -v python)",
    ]).ok;
    consumer("with-scripts", join(work, tarball), ["--foreground-scripts"], compiler ? "addon" : "koffi");
    consumer("ignore-scripts", join(work, tarball), ["--ignore-scripts"], "koffi");
  }
} finally {
  if (keep) say(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
say(`${failures === 0 ? "passed" : `${failures} failed`} in ${Math.round((Date.now() - started) / 1000)} s`);
process.exit(failures === 0 ? 0 : 1);

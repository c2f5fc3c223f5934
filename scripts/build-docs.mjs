// The API reference in docs/api/ (issue 14): markdown generated from the TSDoc of the public API by
// Microsoft's API Extractor and API Documenter, never written by hand. The entry points are the
// ones package.json exports: "nodevmm" (lib/index.ts), "nodevmm/kvm" (lib/kvm/index.ts) and
// "nodevmm/examples" (lib/examples/index.ts).
//
// Why these tools: TypeDoc reads sources through the TypeScript compiler API, which TypeScript 7 (the
// one this project builds with) does not have. tsc 7 still writes ordinary .d.ts files, and API
// Extractor reads those with the TypeScript it bundles. So: tsc writes the declarations to
// .cache/docs/dts/, API Extractor turns each entry point into an .api.json doc model, and API
// Documenter turns the models into markdown. API Extractor cannot take two entry points of one
// package (rushstack issue 1596), so each is extracted on its own; "nodevmm/kvm" goes in under the
// name nodevmm-kvm (a package name may not hold a "/") and the pages say "nodevmm/kvm" again; the
// same for "nodevmm/examples".
// API Documenter writes CRLF; the pages get LF like the rest of the repository.
//
// API Extractor's findings (a type the entry point uses but does not export, TSDoc syntax, a public
// symbol without a doc comment) are reported, counted per kind, and do not fail the build; the full
// list goes to .cache/docs/warnings.txt. Release tags (@public/@beta) are not used here, so their
// absence is not reported. A declaration that API Extractor cannot read is an error and fails.
//
//   node scripts/build-docs.mjs            regenerate docs/api/
//   node scripts/build-docs.mjs --check    exit 1 when docs/api/ differs from what lib/ gives (CI)
//   node scripts/build-docs.mjs --verbose  list the undocumented members too, not only their count

import { spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const check = process.argv.includes("--check");
const verbose = process.argv.includes("--verbose");
const say = (line) => console.log(`build-docs: ${line}`);
const fail = (line) => {
  console.error(`build-docs: ${line}`);
  process.exit(1);
};

const work = join(root, ".cache", "docs");
const dts = join(work, "dts");
const model = join(work, "model");
const generated = join(work, "api");
const target = join(root, "docs", "api");
const require = createRequire(import.meta.url);

// package.json "exports": the doc-model package name, the subpath users import, the declarations
const ENTRY_POINTS = [
  { name: "nodevmm", subpath: "nodevmm", entry: join(dts, "lib", "index.d.ts") },
  { name: "nodevmm-kvm", subpath: "nodevmm/kvm", entry: join(dts, "lib", "kvm", "index.d.ts") },
  {
    name: "nodevmm-examples",
    subpath: "nodevmm/examples",
    entry: join(dts, "lib", "examples", "index.d.ts"),
  },
];

rmSync(work, { recursive: true, force: true });
for (const dir of [model, join(work, "report")]) mkdirSync(dir, { recursive: true });

// 1. declarations, from lib/ as it is now (not dist/, which may be older than the sources)
const tsc = spawnSync(
  process.execPath,
  [
    join(dirname(require.resolve("typescript/package.json")), "bin", "tsc"),
    ...["-p", join(root, "tsconfig.json"), "--emitDeclarationOnly", "--outDir", dts],
  ],
  { cwd: root, encoding: "utf8" },
);
// A type error elsewhere (npm run lint reports it) still leaves declarations to document.
if (!ENTRY_POINTS.every(({ entry }) => existsSync(entry))) {
  fail(`tsc could not write the declarations:\n${tsc.stdout}${tsc.stderr}`);
}
if (tsc.status !== 0)
  say(`tsc reported errors; the declarations may be incomplete:\n${tsc.stdout}${tsc.stderr}`);

// 2. one doc model per entry point
const { Extractor, ExtractorConfig, ExtractorLogLevel } = await import("@microsoft/api-extractor");
const packageJson = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const tsconfig = JSON.parse(readFileSync(join(root, "tsconfig.json"), "utf8"));
const findings = [];
let errors = 0;
for (const { name, entry } of ENTRY_POINTS) {
  const config = ExtractorConfig.prepare({
    configObject: {
      projectFolder: root,
      mainEntryPointFilePath: entry,
      compiler: {
        overrideTsconfig: {
          compilerOptions: {
            ...tsconfig.compilerOptions,
            noEmit: true,
            outDir: undefined,
            rootDir: undefined,
          },
          files: [entry],
        },
      },
      // the report itself is not kept; API Extractor looks for undocumented symbols only while writing it
      apiReport: {
        enabled: true,
        reportFileName: `${name}.api.md`,
        reportFolder: join(work, "report"),
        reportTempFolder: join(work, "report-temp"),
      },
      docModel: { enabled: true, apiJsonFilePath: join(model, `${name}.api.json`) },
      dtsRollup: { enabled: false },
      tsdocMetadata: { enabled: false },
      messages: {
        compilerMessageReporting: { default: { logLevel: "error" } },
        extractorMessageReporting: {
          default: { logLevel: "warning" },
          "ae-missing-release-tag": { logLevel: "none" },
          "ae-undocumented": { logLevel: "warning" },
        },
        tsdocMessageReporting: { default: { logLevel: "warning" } },
      },
    },
    configObjectFullPath: undefined,
    packageJsonFullPath: join(root, "package.json"),
    packageJson: { ...packageJson, name },
  });
  const result = Extractor.invoke(config, {
    localBuild: true,
    messageCallback(message) {
      message.handled = true;
      // progress lines ("writing the doc model"); a console error (no folder to write to) still fails
      if (message.messageId.startsWith("console-") && message.logLevel !== ExtractorLogLevel.Error) return;
      if (message.logLevel === ExtractorLogLevel.Error) {
        errors++;
        console.error(`build-docs: ${name}: ${message.formatMessageWithLocation(`${root}/`)}`);
      } else if (message.logLevel === ExtractorLogLevel.Warning) {
        findings.push({ entry: name, id: message.messageId, text: where(message) });
      }
    },
  });
  if (!result.succeeded || errors) fail(`API Extractor failed on ${relative(root, entry)}`);
}

/** "lib/vmm/machine.ts (d.ts line 12): text"; the .d.ts line is what API Extractor saw */
function where(message) {
  const file = message.sourceFilePath
    ? relative(dts, message.sourceFilePath).replace(/\.d\.ts$/, ".ts")
    : "(no file)";
  const line = message.sourceFileLine ? ` (d.ts line ${message.sourceFileLine})` : "";
  return `${file}${line}: ${message.text}`;
}

// 3. markdown
const documenter = join(
  dirname(dirname(require.resolve("@microsoft/api-documenter"))),
  "bin",
  "api-documenter",
);
const doc = spawnSync(process.execPath, [documenter, "markdown", "-i", model, "-o", generated], {
  cwd: root,
  encoding: "utf8",
});
if (doc.status !== 0) fail(`API Documenter failed:\n${doc.stdout}${doc.stderr}`);
for (const file of readdirSync(generated)) {
  const path = join(generated, file);
  let text = readFileSync(path, "utf8").replace(/\r\n/g, "\n");
  for (const { name, subpath } of ENTRY_POINTS) {
    if (name === subpath) continue;
    // link texts and headings, not the file names the links point to
    text = text
      .replaceAll(`[${name}](`, `[${subpath}](`)
      .replaceAll(`## ${name} package`, `## ${subpath} package`);
  }
  writeFileSync(path, text);
}

// 4. findings: counted per kind and listed, except the many undocumented members (--verbose lists
// those too); all of them in warnings.txt
const byId = new Map();
for (const f of findings) byId.set(f.id, [...(byId.get(f.id) ?? []), f]);
writeFileSync(join(work, "warnings.txt"), findings.map((f) => `${f.id} ${f.entry} ${f.text}\n`).join(""));
for (const [id, list] of [...byId].sort((a, b) => b[1].length - a[1].length)) {
  say(`${String(list.length).padStart(4)} ${id}`);
  if (verbose || id !== "ae-undocumented") {
    for (const f of list) console.log(`       ${f.entry}: ${f.text}`);
  }
}
if (findings.length) {
  say(`${findings.length} findings (not errors), listed in ${relative(root, join(work, "warnings.txt"))}`);
}

// 5. docs/api/: compared (--check) or replaced
const files = (dir) => (existsSync(dir) ? readdirSync(dir).sort() : []);
if (check) {
  const have = files(target);
  const want = files(generated);
  const stale = [
    ...want.filter((f) => !have.includes(f)).map((f) => `missing ${f}`),
    ...have.filter((f) => !want.includes(f)).map((f) => `extra   ${f}`),
    ...want
      .filter((f) => have.includes(f))
      .filter((f) => readFileSync(join(target, f), "utf8") !== readFileSync(join(generated, f), "utf8"))
      .map((f) => `changed ${f}`),
  ];
  if (stale.length) {
    for (const line of stale.slice(0, 20)) console.error(`  ${line}`);
    if (stale.length > 20) console.error(`  ... and ${stale.length - 20} more`);
    fail(`docs/api/ is stale (${stale.length} files): run \`npm run docs\` and commit docs/api/`);
  }
  say(`docs/api/ is up to date (${want.length} pages)`);
} else {
  rmSync(target, { recursive: true, force: true });
  mkdirSync(dirname(target), { recursive: true });
  try {
    renameSync(generated, target);
  } catch {
    cpSync(generated, target, { recursive: true });
  }
  say(`wrote ${files(target).length} pages to docs/api/`);
}

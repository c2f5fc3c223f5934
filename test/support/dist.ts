// Suites that spawn the compiled project (bin/nodevmm.js, dist/examples/*) need dist/. It is rebuilt
// when missing or older than the sources; a build that cannot produce the wanted file yields a
// skip reason instead of a failure far from the cause.

import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

export const root = join(import.meta.dirname, "..", "..");

function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith(".ts")) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** Returns undefined when `output` (relative to the root) is built and fresh, else why it is not. */
export function ensureDist(output: string, sourceDirs: readonly string[]): string | undefined {
  const out = join(root, output);
  const stale =
    !existsSync(out) ||
    sourceDirs.some((d) => existsSync(join(root, d)) && newestSource(join(root, d)) > statSync(out).mtimeMs);
  if (stale) {
    // tsc still emits when other parts of the tree have type errors; only a missing output matters
    spawnSync(
      process.execPath,
      [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"],
      {
        cwd: root,
        stdio: "ignore",
      },
    );
  }
  return existsSync(out) ? undefined : `${output} could not be built (npx tsc -p tsconfig.json)`;
}

/**
 * The CLI bundle bin/nodevmm.js prefers (dist/cli, scripts/build-cli.mjs), rebuilt when missing or
 * older than tsc's output. Returns undefined when it is built and fresh, else why it is not.
 */
export function ensureCliBundle(): string | undefined {
  const bundle = join(root, "dist", "cli", "nodevmm.cjs");
  const lib = join(root, "dist", "lib", "cli", "main.js");
  if (!existsSync(lib)) return "dist/lib/cli/main.js is not built";
  const fresh = () => existsSync(bundle) && statSync(bundle).mtimeMs >= statSync(lib).mtimeMs;
  if (!fresh()) {
    spawnSync(process.execPath, [join(root, "scripts", "build-cli.mjs"), "--quiet"], {
      cwd: root,
      stdio: "ignore",
    });
  }
  return fresh() ? undefined : "dist/cli/nodevmm.cjs could not be built (node scripts/build-cli.mjs)";
}

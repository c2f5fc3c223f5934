// Where the soft vCPU thread's module (thread-worker) is, as a file a Worker can import:
// - tsc's output (dist/lib/vmm/backends/soft/thread-worker.js), beside this module;
// - from the bundled command (dist/cli/nodevmm.cjs, whose import.meta.url is the bundle's), that
//   same file of dist/lib;
// - from the TypeScript sources (vitest runs lib/*.ts), a bundle of thread-worker.ts that esbuild
//   (a devDependency, present wherever the sources are tested) writes once per process.

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

let bundled: Promise<string> | undefined;

/** The URL of the vCPU thread's module; rejects with the reason when there is none. */
export function softWorkerUrl(): Promise<string> {
  const here = import.meta.url;
  const sibling = new URL("./thread-worker.js", here);
  if (existsSync(fileURLToPath(sibling))) return Promise.resolve(sibling.href);
  const fromBundle = new URL("../lib/vmm/backends/soft/thread-worker.js", here);
  if (here.endsWith(".cjs") && existsSync(fileURLToPath(fromBundle))) return Promise.resolve(fromBundle.href);
  const source = fileURLToPath(new URL("./thread-worker.ts", here));
  if (!existsSync(source)) {
    return Promise.reject(new Error(`the soft vCPU thread's module is missing (looked beside ${here})`));
  }
  bundled ??= bundleSource(source);
  return bundled;
}

/**
 * A worker module's TypeScript source bundled by esbuild into a temporary .mjs (removed as the
 * process exits): its URL. For vitest, which runs the sources (tests bundle their own workers too).
 */
export async function bundleSource(source: string): Promise<string> {
  const esbuild = (await import("esbuild")) as typeof import("esbuild");
  const dir = mkdtempSync(join(tmpdir(), "nodevmm-vcpu-"));
  const out = join(dir, `${basename(source).replace(/\.ts$/, "")}.mjs`);
  await esbuild.build({
    entryPoints: [source],
    outfile: out,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    // modules a vCPU never loads (disassembly, KVM bindings, decompression)
    external: ["iced-x86", "koffi", "@napi-rs/lzma"],
    logLevel: "error",
  });
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  return pathToFileURL(out).href;
}

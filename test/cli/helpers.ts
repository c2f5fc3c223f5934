// Shared by the suites that spawn the real bin/nodevmm.js: the spawn itself, whether dist/ is built,
// and which backends this host offers the command.

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { hypercallExitsReachLoop } from "../../lib/vmm/backends/kvm.js";
import { manifest as examples, expected, type ManifestEntry } from "../examples/paths.js";
import { probe } from "../kvm/helpers.js";
import { ensureDist, root } from "../support/dist.js";

export { root };
export const bin = join(root, "bin", "nodevmm.js");

/** why the CLI cannot be spawned (dist/ not buildable), or undefined */
export const distMissing = ensureDist("dist/lib/cli/main.js", ["lib", "examples"]);

export interface Spawned {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function nodevmm(
  args: string[],
  opts: { input?: string; cwd?: string; env?: Record<string, string> } = {},
): Spawned {
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd: opts.cwd ?? root,
    env: { ...process.env, ...opts.env },
    encoding: "utf8",
    timeout: 60_000,
    input: opts.input ?? "",
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** undefined when `nodevmm run --backend kind` can work here, else why not */
export function backendMissing(kind: "soft" | "kvm"): string | undefined {
  if (distMissing) return distMissing;
  if (!existsSync(join(root, "dist", "lib", "vmm", "backends", `${kind}.js`)))
    return `no ${kind} backend in dist`;
  if (kind === "kvm" && !probe.usable) return `/dev/kvm not usable here: ${probe.reason}`;
  return undefined;
}

/** whether a guest's VMCALL reaches the loop on this host's KVM (not on kvm-pvm) */
export const kvmHypercalls = hypercallExitsReachLoop();

/** An entry of examples/images/manifest.json, with the fields of guests that need host code. */
export type ManifestImage = ManifestEntry & { device?: string; hypercall?: string; plugins?: string[] };
export const manifest: ManifestImage[] = examples;

/**
 * The command line that runs an example, as examples/guests/README.md gives it (relative paths from
 * the repository root; the format is auto-detected; 64M and the boot-sector load are defaults).
 */
export function exampleArgs(m: ManifestImage): string[] {
  const args = ["run", `examples/images/${m.file}`];
  if (m.memoryMiB !== 64) args.push("--mem", `${m.memoryMiB}M`);
  // 0x7C00 in real mode is what a flat image gets by default (the boot-sector convention)
  const bootSector = m.load?.address === 0x7c00 && m.load.mode === "real";
  if (m.load && !bootSector)
    args.push("--address", `0x${m.load.address.toString(16)}`, "--mode", m.load.mode);
  if (m.cmdline !== undefined) args.push("--cmdline", m.cmdline);
  for (const p of m.plugins ?? []) args.push("--plugin", p);
  return args;
}

/** The exit status the manifest's `stop` means. */
export function expectedStatus(m: ManifestImage): number {
  return m.stop === "hlt" ? 0 : ((m.debugExitValue ?? 0) << 1) | 1;
}

/**
 * What `nodevmm run` prints: the .expected file, except that the command puts the image path before a
 * multiboot kernel's command line (as GRUB and QEMU -kernel do), where the API's load, which the
 * file records, passes the command line alone.
 */
export const expectedOutput = (m: ManifestImage): string =>
  m.format === "multiboot" && m.cmdline !== undefined
    ? expected(m).replace(`cmdline "${m.cmdline}"`, `cmdline "examples/images/${m.file} ${m.cmdline}"`)
    : expected(m);

/**
 * The `npx nodevmm run ...` lines of a Markdown file's sh blocks, as argument lists (after
 * "nodevmm"): continuation lines joined, comments dropped, double quotes grouping words.
 */
export function documentedRuns(markdown: string): string[][] {
  const lines = markdown.replace(/\\\n\s*/g, " ").split("\n");
  const runs: string[][] = [];
  for (const line of lines) {
    const m = /^npx nodevmm (run .*?)\s*(#.*)?$/.exec(line.trim());
    if (!m) continue;
    const words = [...m[1]!.matchAll(/"([^"]*)"|(\S+)/g)].map((w) => w[1] ?? w[2]!);
    runs.push(words);
  }
  return runs;
}

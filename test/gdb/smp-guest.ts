// The two-vCPU guest the gdb SMP tests debug: test/soft/guests/x2apic-ipi.S built for long mode
// (as build.sh does, linked at 0x10000) but kept as an ELF with its symbols for gdb, and as the
// flat image the machine loads. CPU 0 starts CPU 1 with INIT/SIPI; CPU 1 reaches `ap_entry`, sets
// `ap_ready`, then takes three IPIs in `ap_ipi_isr`. Undefined + reason when binutils is missing.

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface SmpGdbGuest {
  elfPath: string;
  /** the flat image, loaded at LOAD_ADDRESS in long mode */
  flat: Uint8Array;
  symbols: Map<string, bigint>;
}

export const SMP_LOAD_ADDRESS = 0x10000;

const has = (tool: string) => spawnSync("sh", ["-c", `command -v ${tool}`]).status === 0;

export function buildSmpGuest(): SmpGdbGuest | string {
  for (const tool of ["as", "ld", "nm", "objcopy"])
    if (!has(tool)) return `${tool} is not installed (binutils)`;
  const src = join(import.meta.dirname, "..", "soft", "guests");
  const dir = mkdtempSync(join(tmpdir(), "nodevmm-gdb-smp-"));
  const run = (cmd: string, args: string[]) => spawnSync(cmd, args, { cwd: src, encoding: "utf8" });
  const obj = join(dir, "smp.o");
  const elfPath = join(dir, "smp.elf");
  const as = run("as", ["--64", "--defsym", "BITS64=1", "-o", obj, "x2apic-ipi.S"]);
  if (as.status !== 0) return `as failed: ${as.stderr}`;
  const ld = run("ld", [
    "-m",
    "elf_x86_64",
    "-nostdlib",
    "-static",
    "-N",
    `-Ttext=0x${SMP_LOAD_ADDRESS.toString(16)}`,
    "--build-id=none",
    "--no-warn-rwx-segments",
    "-e",
    "_start",
    "-o",
    elfPath,
    obj,
  ]);
  if (ld.status !== 0) return `ld failed: ${ld.stderr}`;
  const flatPath = join(dir, "smp.bin");
  const oc = run("objcopy", ["-O", "binary", elfPath, flatPath]);
  if (oc.status !== 0) return `objcopy failed: ${oc.stderr}`;
  const symbols = new Map<string, bigint>();
  for (const line of run("nm", [elfPath]).stdout.split("\n")) {
    const [addr, , name] = line.trim().split(/\s+/);
    if (addr && name) symbols.set(name, BigInt(`0x${addr}`));
  }
  return { elfPath, flat: readFileSync(flatPath), symbols };
}

// The guest the gdb suites debug: 64-bit code with symbols, assembled with GNU as and linked at
// 1 MiB (examples/guests/guest.ld). It counts to 5, sets RBX (`bump`), writes `watched`, spins
// until `flag` is set from outside, then writes the counter to the debug-exit port (exit code
// (5 << 1) | 1 = 11). Built once per suite into a temporary folder; undefined + reason when the
// tools are missing.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";

const SOURCE = `
        .code64
        .globl _start, counter_loop, bump, after_bump, spin, done, counter, watched, flag
        .text
_start:
        xorq    %rax, %rax
        movq    $5, %rcx
counter_loop:
        addq    $1, counter(%rip)
        incq    %rax
        loop    counter_loop
bump:
        movq    $0x1234, %rbx
after_bump:
        movl    $7, watched(%rip)
        nop
spin:
        cmpb    $0, flag(%rip)
        je      spin
done:
        movb    counter(%rip), %al
        outb    %al, $0xf4
        cli
        hlt
        .data
        .balign 8
counter: .quad 0
watched: .long 0
flag:    .byte 0
        .section .note.GNU-stack, "", @progbits
`;

export interface GdbGuest {
  elfPath: string;
  image: Uint8Array;
  symbols: Map<string, bigint>;
}

const has = (tool: string) => spawnSync("sh", ["-c", `command -v ${tool}`]).status === 0;

export function gdbMissing(): string | undefined {
  return has("gdb") ? undefined : "gdb is not installed (apt-get install -y gdb)";
}

/** Assembles and links `source` (default: the guest above) with its symbols. */
export function buildGuest(source = SOURCE): GdbGuest | string {
  for (const tool of ["as", "ld", "nm"]) if (!has(tool)) return `${tool} is not installed (binutils)`;
  const dir = mkdtempSync(join(tmpdir(), "nodevmm-gdb-"));
  writeFileSync(join(dir, "guest.S"), source);
  const script = join(import.meta.dirname, "..", "..", "examples", "guests", "guest.ld");
  const run = (cmd: string, args: string[]) => spawnSync(cmd, args, { cwd: dir, encoding: "utf8" });
  const as = run("as", ["--64", "-g", "-o", "guest.o", "guest.S"]);
  if (as.status !== 0) return `as failed: ${as.stderr}`;
  const ld = run("ld", ["--no-warn-rwx-segments", "-T", script, "-o", "guest.elf", "guest.o"]);
  if (ld.status !== 0) return `ld failed: ${ld.stderr}`;
  const nm = run("nm", ["guest.elf"]);
  const symbols = new Map<string, bigint>();
  for (const line of nm.stdout.split("\n")) {
    const [addr, , name] = line.trim().split(/\s+/);
    if (addr && name) symbols.set(name, BigInt(`0x${addr}`));
  }
  const elfPath = join(dir, "guest.elf");
  return { elfPath, image: readFileSync(elfPath), symbols };
}

/** Runs gdb -batch with these commands; resolves with its stdout+stderr. */
export function runGdb(elf: string, commands: string[]): Promise<{ status: number | null; out: string }> {
  const args = ["-nx", "-batch", "-q", elf, ...commands.flatMap((c) => ["-ex", c])];
  return new Promise((resolve) => {
    const p = spawn("gdb", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d) => {
      out += d;
    });
    p.stderr.on("data", (d) => {
      out += d;
    });
    p.on("close", (status) => resolve({ status, out }));
  });
}

/**
 * The session both backends' real-gdb tests run: break on `bump`, read and write registers and
 * memory (counter set to 6, which becomes the debug-exit code), stepi, a watchpoint on `watched`,
 * detach with `flag` set so the guest finishes.
 */
export function gdbSession(port: number): string[] {
  return [
    "set pagination off",
    "set confirm off",
    `target remote 127.0.0.1:${port}`,
    "echo @start \n",
    "print/x $pc",
    "break bump",
    "continue",
    "echo @at-bump \n",
    "print/x $pc",
    "print $rax",
    "print *(long *)&counter",
    "set var *(long *)&counter = 6",
    "stepi",
    "echo @stepped \n",
    "print/x $pc",
    "print/x $rbx",
    "set var $rbx = 0xabc",
    "print/x $rbx",
    "info registers fs_base cr0 efer",
    "delete",
    "watch *(int *)&watched",
    "continue",
    "echo @watched \n",
    "print *(int *)&watched",
    "delete",
    "set var *(char *)&flag = 1",
    "detach",
  ];
}

/** What gdb printed in gdbSession(), section by section (gdb's own output is the message). */
export function expectGdbSession(out: string, g: GdbGuest): void {
  const section = (name: string) => out.split(`@${name}`)[1] ?? "";
  expect(section("start"), out).toContain(`= 0x${g.symbols.get("_start")!.toString(16)}`);
  expect(section("at-bump"), out).toMatch(/\$2 = 0x100017/);
  expect(section("at-bump"), out).toContain("$3 = 5");
  expect(section("at-bump"), out).toContain("$4 = 5");
  expect(section("stepped"), out).toContain(`$5 = 0x${g.symbols.get("after_bump")!.toString(16)}`);
  expect(section("stepped"), out).toContain("$6 = 0x1234");
  expect(section("stepped"), out).toContain("$7 = 0xabc");
  expect(section("stepped"), out).toMatch(/cr0\s+0x[0-9a-f]+/);
  expect(section("stepped"), out).toMatch(/efer\s+0x[0-9a-f]*5[0-9a-f]{2}/);
  expect(out).toMatch(/[Ww]atchpoint 2: \*\(int \*\)&watched\s+Old value = 0\s+New value = 7/);
  expect(section("watched"), out).toContain("= 7");
}

/**
 * Starts `bin/nodevmm.js` with these arguments (which include --gdb): resolves once it says where
 * gdb may connect, with that port, its stderr so far and its exit status to come.
 */
export async function startCliGdb(
  args: string[],
): Promise<{ cli: ChildProcess; port: number; stderr: () => string; exited: Promise<number | null> }> {
  const cli = spawn(process.execPath, [join(import.meta.dirname, "..", "..", "bin", "nodevmm.js"), ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => cli.on("close", resolve));
  const port = await new Promise<number>((resolve, reject) => {
    cli.stderr!.on("data", (d) => {
      stderr += d;
      const m = /gdb: listening on [^\s]+:(\d+)/.exec(stderr);
      if (m) resolve(Number(m[1]));
    });
    cli.on("close", () => reject(new Error(`nodevmm ended before listening:\n${stderr}`)));
  });
  return { cli, port, stderr: () => stderr, exited };
}

// Micro-benchmark of the instructions a Linux boot ran through the single-step decoder most
// (block-ops-kernel.ts): each loop runs one form four times a pass in 64-bit mode, on the bare
// interpreter with the decode cache and the JIT on, timed in CPU time (the soft backend's configuration, without the
// VMX layer), and the table gives the time of a pass divided by 4 (so the loop's DEC/JNZ, and for
// REP STOS the two MOVs before each, are in it; "add r, r" shows that share).
//
//   node dist/bench/cpu-mips/kernel-forms.js [--passes N] [--repeat R] [--lib PATH]
//
// Each form runs in a process of its own (--form NAME runs one and prints [best, spread] as JSON).
// --lib loads another build's dist/lib/cpu/index.js (an A/B against a copy of the tree before a
// change); --repeat runs every loop R times and prints the best and the spread.

import { execFileSync } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";
// const enums: inlined, so the values hold for the --lib build too
import { Seg, StopReason } from "../../lib/cpu/index.js";

type CpuLib = typeof import("../../lib/cpu/index.js");

/** [name, loop] with the loop: four of the form ; dec r15d ; jnz ; hlt (assembled with binutils) */
const FORMS: [string, string][] = [
  ["pause", "f3 90 f3 90 f3 90 f3 90 41 ff cf 75 f3 f4"],
  ["rdtsc", "0f 31 0f 31 0f 31 0f 31 41 ff cf 75 f3 f4"],
  ["rdtscp", "0f 01 f9 0f 01 f9 0f 01 f9 0f 01 f9 41 ff cf 75 ef f4"],
  // mov rdi, rsi ; mov ecx, N ; rep stos (x4)
  [
    "rep stosd (16)",
    "48 89 f7 b9 10 00 00 00 f3 ab 48 89 f7 b9 10 00 00 00 f3 ab 48 89 f7 b9 10 00 00 00 f3 ab 48 89 f7 b9 10 00 00 00 f3 ab 41 ff cf 75 d3 f4",
  ],
  [
    "rep stosd (1024)",
    "48 89 f7 b9 00 04 00 00 f3 ab 48 89 f7 b9 00 04 00 00 f3 ab 48 89 f7 b9 00 04 00 00 f3 ab 48 89 f7 b9 00 04 00 00 f3 ab 41 ff cf 75 d3 f4",
  ],
  [
    "rep stosb (64)",
    "48 89 f7 b9 40 00 00 00 f3 aa 48 89 f7 b9 40 00 00 00 f3 aa 48 89 f7 b9 40 00 00 00 f3 aa 48 89 f7 b9 40 00 00 00 f3 aa 41 ff cf 75 d3 f4",
  ],
  ["cmpxchg m32", "0f b1 16 0f b1 16 0f b1 16 0f b1 16 41 ff cf 75 ef f4"],
  [
    "lock cmpxchg m64",
    "f0 48 0f b1 56 08 f0 48 0f b1 56 08 f0 48 0f b1 56 08 f0 48 0f b1 56 08 41 ff cf 75 e3 f4",
  ],
  ["cmpxchg r64", "48 0f b1 d3 48 0f b1 d3 48 0f b1 d3 48 0f b1 d3 41 ff cf 75 eb f4"],
  ["bsf r64", "48 0f bc c3 48 0f bc c3 48 0f bc c3 48 0f bc c3 41 ff cf 75 eb f4"],
  ["tzcnt r32", "f3 0f bc c3 f3 0f bc c3 f3 0f bc c3 f3 0f bc c3 41 ff cf 75 eb f4"],
  ["bsr m64", "48 0f bd 46 08 48 0f bd 46 08 48 0f bd 46 08 48 0f bd 46 08 41 ff cf 75 e7 f4"],
  ["shrd r64, cl", "48 0f ad d0 48 0f ad d0 48 0f ad d0 48 0f ad d0 41 ff cf 75 eb f4"],
  ["shld r32, imm", "0f a4 d0 05 0f a4 d0 05 0f a4 d0 05 0f a4 d0 05 41 ff cf 75 eb f4"],
  ["shrd m32, cl", "0f ad 56 10 0f ad 56 10 0f ad 56 10 0f ad 56 10 41 ff cf 75 eb f4"],
  ["mov r32, ds", "8c d8 8c d8 8c d8 8c d8 41 ff cf 75 f3 f4"],
  ["mov m16, ss", "8c 56 10 8c 56 10 8c 56 10 8c 56 10 41 ff cf 75 ef f4"],
  ["swapgs", "0f 01 f8 0f 01 f8 0f 01 f8 0f 01 f8 41 ff cf 75 ef f4"],
  ["add r, r (reference)", "48 01 d8 48 01 d8 48 01 d8 48 01 d8 41 ff cf 75 ef f4"],
];

const RAM = 4 << 20;
const CODE = 0x10000;
const DATA = 0x100000;
const PML4 = 0x1000;
const GDT = 0x4000;

function w32(ram: Uint8Array, a: number, v: number): void {
  new DataView(ram.buffer).setUint32(a, v >>> 0, true);
}

/** a 64-bit guest at CODE over identity-mapped RAM (2-MiB pages), ring 0 */
function guest(lib: CpuLib, code: number[]) {
  const ram = new Uint8Array(RAM);
  ram.set(code, CODE);
  w32(ram, PML4, (PML4 + 0x1000) | 7);
  w32(ram, PML4 + 0x1000, (PML4 + 0x2000) | 7);
  for (let i = 0; i < RAM >> 21; i++) w32(ram, PML4 + 0x2000 + 8 * i, (i << 21) | 0x87);
  const cpu = new lib.Interpreter();
  cpu.hooks = lib.createBareHooks(ram, { portIn: () => 0, portOut: () => {}, event: () => true });
  cpu.setGdtr({ base: BigInt(GDT), limit: 0x2f });
  cpu.setSegment(Seg.CS, { selector: 0x18, base: 0n, limit: 0xffffffff, ar: 0xa09b });
  for (const s of [Seg.ES, Seg.SS, Seg.DS, Seg.FS, Seg.GS])
    cpu.setSegment(s, { selector: 0x10, base: 0n, limit: 0xffffffff, ar: 0xc093 });
  cpu.setSegment(Seg.TR, { selector: 0x28, base: 0n, limit: 0x67, ar: 0x8b });
  cpu.setControl("cr3", BigInt(PML4));
  cpu.setControl("cr4", 0x20n);
  cpu.setControl("efer", 0x500n);
  cpu.setControl("cr0", 0x80000011n);
  cpu.setRip(BigInt(CODE));
  cpu.setGpr(6, BigInt(DATA));
  cpu.setGpr(3, 0x1234_5678_9abcn);
  cpu.setGpr(2, 0x0f0f_0f0f_0f0fn);
  cpu.setGpr(1, 13n);
  return cpu;
}

/** ns per form instruction over `passes` passes of the loop (after a warm-up that compiles it) */
function time(lib: CpuLib, code: number[], passes: number): number {
  const cpu = guest(lib, code);
  // past the JIT threshold (20,000 runs of the block) and long enough for V8 to optimize the result
  cpu.setGpr(15, 100_000n);
  cpu.run(1e9);
  cpu.setRip(BigInt(CODE));
  cpu.activity = 0;
  cpu.setGpr(15, BigInt(passes));
  // CPU time rather than wall time: the hosts these run on are shared, and a process that waits
  // for a core is not slower
  const t0 = process.cpuUsage();
  let stop: number;
  do stop = cpu.run(1e9);
  while (stop === StopReason.Budget);
  const used = process.cpuUsage(t0);
  const t = (used.user + used.system) / 1000;
  if (stop !== StopReason.Halted) throw new Error(`stopped with ${stop} at ${cpu.getRip().toString(16)}`);
  return (t * 1e6) / (passes * 4);
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}

/** ns per form instruction, best of `repeat` runs, and the spread of the runs */
async function measure(
  name: string,
  passes: number,
  repeat: number,
  path: string | undefined,
): Promise<number[]> {
  const lib: CpuLib = await import(path === undefined ? "../../lib/cpu/index.js" : pathToFileURL(path).href);
  const hexes = FORMS.find(([n]) => n === name)?.[1];
  if (hexes === undefined) throw new Error(`no form ${name}`);
  const code = hexes.split(" ").map((x) => Number.parseInt(x, 16));
  const t: number[] = [];
  for (let r = 0; r < repeat; r++) t.push(time(lib, code, name.includes("1024") ? passes / 50 : passes));
  const best = Math.min(...t);
  return [best, (Math.max(...t) - best) / best];
}

async function main(): Promise<void> {
  const passes = Number(arg("--passes") ?? 200_000);
  const repeat = Number(arg("--repeat") ?? 3);
  const path = arg("--lib");
  const form = arg("--form");
  if (form !== undefined) {
    console.log(JSON.stringify(await measure(form, passes, repeat, path)));
    return;
  }
  // each form in a process of its own: V8's type feedback from one loop does not slow the next
  const rows: string[][] = [["form", "ns/insn (best)", "spread"]];
  const self = fileURLToPath(import.meta.url);
  for (const [name] of FORMS) {
    const args = [self, "--form", name, "--passes", String(passes), "--repeat", String(repeat)];
    if (path !== undefined) args.push("--lib", path);
    const [best, spread] = JSON.parse(execFileSync(process.execPath, args, { encoding: "utf8" })) as number[];
    rows.push([name, best.toFixed(1), `${(spread * 100).toFixed(0)}%`]);
  }
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows)
    console.log(r.map((x, c) => (c === 0 ? x.padEnd(w[c]) : x.padStart(w[c]))).join("  "));
}

await main();

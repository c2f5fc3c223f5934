// Not a test: a quick MIPS probe of the interpreter (5-instruction ALU loop and 7-instruction
// memory loop, 20,000,000 iterations, in real, 32-bit protected and long mode). The benchmark proper
// is bench/cpu-mips. Compile with tsc to a scratch directory and run the emitted file with node.
import { StopReason } from "../../lib/cpu/index.js";
import { hex, type Mode, makeGuest } from "./guest.js";

const LOOPS: [string, Mode, string][] = [
  ["alu", "real", "66 b9 00 2d 31 01 01 d8 31 c3 83 c3 07 66 49 75 f5 f4"],
  ["alu", "prot32", "b9 00 2d 31 01 01 d8 31 c3 83 c3 07 49 75 f6 f4"],
  ["alu", "long", "b9 00 2d 31 01 48 01 d8 48 31 c3 48 83 c3 07 48 ff c9 75 f1 f4"],
  ["mem", "real", "66 b9 00 2d 31 01 be 00 50 8b 04 01 c8 89 04 42 81 e2 ff 00 66 49 75 f1 f4"],
  ["mem", "prot32", "b9 00 2d 31 01 be 00 00 05 00 8b 06 01 c8 89 06 42 81 e2 ff 00 00 00 49 75 f0 f4"],
  [
    "mem",
    "long",
    "b9 00 2d 31 01 be 00 00 05 00 48 8b 06 48 01 c8 48 89 06 48 ff c2 48 81 e2 ff 00 00 00 48 ff c9 75 e8 f4",
  ],
];

// the machine may be shared: report a plain-JS reference loop alongside
function reference(): number {
  const t = process.cpuUsage();
  const a = new Int32Array(16);
  let s = 0;
  for (let i = 0; i < 1e7; i++) {
    a[i & 15] += i;
    s += a[(i * 7) & 15];
  }
  if (s === 0.5) console.log(s);
  const u = process.cpuUsage(t);
  return (u.user + u.system) / 1000;
}

for (let round = 0; round < 2; round++) {
  console.log(`reference loop (1e7 iterations): ${reference().toFixed(0)} ms CPU`);
  for (const [name, mode, code] of LOOPS) {
    const g = makeGuest(mode, hex(code));
    // CPU time, not wall time: the machine may be shared
    const t0 = process.cpuUsage();
    const r = g.run(1e12);
    const u = process.cpuUsage(t0);
    const dt = (u.user + u.system) / 1000;
    if (r !== StopReason.Halted) throw new Error(`${name}/${mode}: stopped with ${r}`);
    const mips = g.cpu.retired / dt / 1000;
    console.log(
      `${name} ${mode.padEnd(7)} ${g.cpu.retired} insns ${dt.toFixed(0)} ms ${mips.toFixed(1)} MIPS`,
    );
  }
}

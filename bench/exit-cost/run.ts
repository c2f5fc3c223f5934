// Microseconds per VM exit round trip on the soft backend, as users run it: createMachine({ backend:
// "soft" }) + vm.runSync(), each exit going guest -> software VT-x exit -> the soft vCPU -> the
// machine's loop and bus -> VM entry -> guest. Three guests: a real-mode OUT loop, and the port-I/O
// and MMIO rows of bench/system-code (64-bit guests: OUT to port 0x80, a read of the local APIC's
// version register).
//
//   npx tsc -p tsconfig.json && node dist/bench/exit-cost/run.js [exits=100000] [rounds=3]

import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { ROWS, rowImage } from "../system-code/rows.js";

interface Sample {
  /** wall-clock microseconds per exit */
  wallUs: number;
  /** user + system CPU microseconds per exit (less disturbed by other work on the cores) */
  cpuUs: number;
  /** VM exits the loop handled per guest event (1.00: every event is one exit) */
  exitsPerEvent: number;
}

const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** mov bx,hi; o: mov cx,50000; i: out 0x80,al; dec cx; jnz i; dec bx; jnz o; cli; hlt (real mode) */
function realModeLoop(outer: number): Uint8Array {
  return Uint8Array.from([
    0xbb,
    outer & 0xff,
    outer >> 8,
    0xb9,
    0x50,
    0xc3,
    0xe6,
    0x80,
    0x49,
    0x75,
    0xfb,
    0x4b,
    0x75,
    0xf5,
    0xfa,
    0xf4,
  ]);
}

async function realMode(exits: number): Promise<Sample> {
  const outer = Math.max(1, Math.round(exits / 50_000));
  const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
  try {
    vm.loadFlat(realModeLoop(outer));
    const c0 = cpuMs();
    const t0 = performance.now();
    const r = vm.runSync({ timeoutMs: 600_000 });
    const wall = performance.now() - t0;
    const cpu = cpuMs() - c0;
    if (r.reason !== "hlt") throw new Error(`real-mode OUT loop ended with ${r.reason}`);
    const events = outer * 50_000;
    return {
      wallUs: (wall * 1000) / r.exits,
      cpuUs: (cpu * 1000) / r.exits,
      exitsPerEvent: r.exits / events,
    };
  } finally {
    vm.close();
  }
}

/** a bench/system-code row's guest, timed between its 'S' and 'E' on the debug console */
async function systemRow(image: string, events: number): Promise<Sample> {
  const row = ROWS.find((r) => r.image === image);
  if (!row) throw new Error(`no system-code row ${image}`);
  const vm: Machine = await createMachine({ backend: "soft" });
  try {
    const at = { wallS: 0, wallE: 0, cpuS: 0, cpuE: 0 };
    addPcDevices(vm, {
      debugcon: (bytes) => {
        for (const b of bytes) {
          if (b === 0x53) {
            at.wallS = performance.now();
            at.cpuS = cpuMs();
          } else if (b === 0x45) {
            at.wallE = performance.now();
            at.cpuE = cpuMs();
          }
        }
      },
    });
    vm.load(rowImage(row, events));
    const r = vm.runSync({ timeoutMs: 600_000 });
    if (r.reason !== "debug-exit" || r.exitCode !== 1 || at.wallE === 0)
      throw new Error(`${image} ended with ${r.reason} ${r.exitCode ?? ""}`);
    // the exits outside the measured loop (a dozen: setup, 'S', 'E', checksum) are not counted
    const exits = r.exits;
    return {
      wallUs: ((at.wallE - at.wallS) * 1000) / events,
      cpuUs: ((at.cpuE - at.cpuS) * 1000) / events,
      exitsPerEvent: exits / events,
    };
  } finally {
    vm.close();
  }
}

const CASES: { name: string; run: (exits: number) => Promise<Sample> }[] = [
  { name: "port I/O, real mode (OUT 0x80)", run: realMode },
  { name: "port I/O, 64-bit (OUT 0x80)", run: (n) => systemRow("sys-pio", n) },
  { name: "MMIO read, 64-bit (LAPIC version)", run: (n) => systemRow("sys-mmio", n) },
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const exits = Number(process.argv[2] ?? 100_000);
  const rounds = Number(process.argv[3] ?? 3);
  if (!Number.isInteger(exits) || exits < 1000 || !Number.isInteger(rounds) || rounds < 1)
    throw new Error("usage: run.js [exits >= 1000] [rounds >= 1]");
  const rows: Record<string, string>[] = [];
  for (const c of CASES) {
    // warm-up: a process takes its first thousands of exits several times slower (JIT)
    await c.run(Math.min(exits, 20_000));
    const s: Sample[] = [];
    for (let i = 0; i < rounds; i++) s.push(await c.run(exits));
    rows.push({
      exit: c.name,
      "us/exit (wall)": median(s.map((x) => x.wallUs)).toFixed(2),
      "us/exit (CPU)": median(s.map((x) => x.cpuUs)).toFixed(2),
      "exits/s (wall)": Math.round(1e6 / median(s.map((x) => x.wallUs))).toLocaleString("en-US"),
      "exits/event": median(s.map((x) => x.exitsPerEvent)).toFixed(2),
    });
  }
  console.log(
    `exit-cost: soft backend, createMachine + vm.runSync(), ${exits} exits per run, median of ${rounds} rounds` +
      " (CPU = user + system time of the process)",
  );
  console.table(rows);
}

await main();

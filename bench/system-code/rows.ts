// The system-code rows: one guest image per row (bench/guests/sys-*.S, 512-byte boot sectors that
// enter 64-bit long mode and run one measured loop between 'S' and 'E' on port 0xE9), what one
// event is, how many events a run of N iterations makes, and what checksum the guest must report.

import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
// compiled to dist/bench/system-code (the images stay in the source tree), or run from the source
export const guestDir = [resolve(here, "../../../bench/guests"), resolve(here, "../guests")].find((d) => {
  try {
    readFileSync(join(d, "sys-pf.bin"));
    return true;
  } catch {
    return false;
  }
});

/** image offsets of the row's parameter and of the iteration count (sys-common.inc) */
export const PARAM_OFFSET = 0x1f4;
export const ITER_OFFSET = 0x1f8;

export interface SystemRow {
  name: string;
  /** bench/guests/<image>.bin */
  image: string;
  /** what one event is, for the table */
  event: string;
  /** events in a run of `n` iterations that reported `checksum` */
  events(n: number, checksum: number): number;
  /** why the checksum is wrong for `n` iterations, or undefined when it is right */
  check(n: number, checksum: number): string | undefined;
}

const u32 = (v: number) => v >>> 0;
const mul = (a: number, b: number) => u32(Math.imul(a, b));
const hex = (v: number) => `0x${u32(v).toString(16).padStart(8, "0")}`;
const expect = (want: number) => (_n: number, got: number) =>
  got === u32(want) ? undefined : `checksum ${hex(got)}, expected ${hex(want)}`;

function exact(model: (n: number) => number): SystemRow["check"] {
  return (n, got) => expect(model(n))(n, got);
}

export const ROWS: SystemRow[] = [
  {
    name: "page fault",
    image: "sys-pf",
    event: "#PF taken, PTE fixed from CR2, IRETQ, access restarted",
    events: (n) => n,
    check: exact((n) => u32(n + mul(n, 0x01000000))),
  },
  {
    name: "timer IRQ (spin)",
    image: "sys-timer-spin",
    event: "LAPIC timer armed 1 us ahead (one-shot), IRQ, EOI, IRETQ; guest spins until it comes",
    events: (n) => n,
    check: exact((n) => n),
  },
  {
    name: "timer IRQ (hlt)",
    image: "sys-timer-hlt",
    event: "LAPIC timer armed 1 us ahead (one-shot), IRQ wakes STI;HLT, EOI, IRETQ",
    events: (n) => n,
    check: exact((n) => n),
  },
  {
    name: "CR3 reload",
    image: "sys-cr3",
    event: "MOV to CR3 (two address spaces, then a load through the new one)",
    events: (n) => 2 * n,
    check: exact((n) => mul(n, 0x10001)),
  },
  {
    name: "INVLPG",
    image: "sys-invlpg",
    event: "PTE rewritten, INVLPG, load through the new translation",
    events: (n) => n,
    check: exact((n) => u32(Math.ceil(n / 2) + mul(Math.floor(n / 2), 0x10000))),
  },
  {
    name: "SYSCALL/SYSRET",
    image: "sys-syscall",
    event: "ring-3 SYSCALL, SYSRETQ round trip",
    events: (n) => n,
    check: exact((n) => n),
  },
  {
    name: "INT 0x80",
    image: "sys-int80",
    event: "ring-3 INT 0x80 (DPL-3 gate, TSS stack), IRETQ round trip",
    events: (n) => n,
    check: exact((n) => n),
  },
  {
    name: "port I/O",
    image: "sys-pio",
    event: "OUT to port 0x80 (POST)",
    events: (n) => n,
    check: exact((n) => n),
  },
  {
    name: "MMIO",
    image: "sys-mmio",
    event: "read of the LAPIC version register",
    events: (n) => n,
    check: exact((n) => mul(n, 0x50014)),
  },
  {
    name: "PAUSE",
    image: "sys-pause",
    event: "PAUSE in a spin loop",
    events: (n) => n,
    check: exact((n) => n),
  },
];

/** The row's image with `iterations` (and the parameter, when given) patched in. */
export function rowImage(row: SystemRow, iterations: number, param?: number): Uint8Array {
  if (!guestDir) throw new Error("bench/guests/sys-*.bin not found (run bench/guests/build-system.sh)");
  const img = new Uint8Array(readFileSync(join(guestDir, `${row.image}.bin`)));
  const view = new DataView(img.buffer);
  view.setUint32(ITER_OFFSET, iterations, true);
  if (param !== undefined) view.setUint32(PARAM_OFFSET, param, true);
  return img;
}

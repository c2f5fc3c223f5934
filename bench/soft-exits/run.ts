// VM exits per second on the soft backend (software VT-x over the interpreter) for the three exits
// the VMM sees most: port I/O (to the loop), CPUID (answered inside the backend) and MMIO writes
// (EPT violation -> loop). Same guests through createKvmBackend beside it when /dev/kvm is usable.
//
//   npx tsc -p tsconfig.json && node dist/bench/soft-exits/run.js [seconds-per-case=0.5]

import type { VmExit } from "../../lib/types/exits.js";
import type { MachineBackend } from "../../lib/vmm/backend.js";
import { createKvmBackend, probeKvm } from "../../lib/vmm/backends/kvm.js";
import { createSoftBackend } from "../../lib/vmm/backends/soft.js";

const MEMORY = 0x10000;
/** CPUIDs the guest runs between two port writes (the loop only sees the port writes) */
const CPUID_BATCH = 1000;

interface Case {
  name: string;
  code: number[];
  /** data segment (real-mode paragraph): the MMIO case points DS above RAM */
  ds?: number;
  /** guest exits per exit the loop sees */
  perLoopExit: number;
  expect: VmExit["kind"];
}

const CASES: Case[] = [
  {
    // mov dx,0xe9; l: inc al; out dx,al; jmp l
    name: "port I/O (OUT)",
    code: [0xba, 0xe9, 0x00, 0xfe, 0xc0, 0xee, 0xeb, 0xfb],
    perLoopExit: 1,
    expect: "io",
  },
  {
    // outer: mov si,N; inner: xor eax,eax; cpuid; dec si; jnz inner; mov dx,0xe9; out dx,al; jmp outer
    name: "CPUID",
    code: [
      0xbe,
      CPUID_BATCH & 0xff,
      CPUID_BATCH >> 8,
      0x66,
      0x31,
      0xc0,
      0x0f,
      0xa2,
      0x4e,
      0x75,
      0xf8,
      0xba,
      0xe9,
      0x00,
      0xee,
      0xeb,
      0xef,
    ],
    perLoopExit: CPUID_BATCH,
    expect: "io",
  },
  {
    // l: inc al; mov [0],al; jmp l   with DS above guest RAM
    name: "MMIO write",
    code: [0xfe, 0xc0, 0xa2, 0x00, 0x00, 0xeb, 0xf9],
    ds: 0xf000,
    perLoopExit: 1,
    expect: "mmio",
  },
];

function boot(backend: MachineBackend, c: Case) {
  backend.memory.write(0x1000, Uint8Array.from(c.code));
  const vcpu = backend.createVcpu(0);
  const s = vcpu.getSregs();
  for (const k of ["cs", "ds", "es", "fs", "gs", "ss"] as const) s[k] = { ...s[k], selector: 0, base: 0n };
  if (c.ds !== undefined) s.ds = { ...s.ds, selector: c.ds, base: BigInt(c.ds * 16) };
  vcpu.setSregs(s);
  vcpu.setRegs({ ...vcpu.getRegs(), rip: 0x1000n, rsp: 0x8000n, rflags: 2n });
  return vcpu;
}

/** guest exits per second of wall time, over at least `seconds` */
function measure(make: () => MachineBackend, c: Case, seconds: number): number {
  const backend = make();
  try {
    const vcpu = boot(backend, c);
    for (let i = 0; i < 100; i++) vcpu.run(); // warm up: JIT, TLB, first-entry checks
    let loopExits = 0;
    const t0 = process.hrtime.bigint();
    const limit = t0 + BigInt(Math.round(seconds * 1e9));
    let now = t0;
    while (now < limit) {
      for (let i = 0; i < 64; i++) {
        const e = vcpu.run();
        if (e.kind === c.expect) loopExits++;
        else if (e.kind !== "intr") throw new Error(`${c.name}: unexpected ${e.kind} exit`);
      }
      now = process.hrtime.bigint();
    }
    return (loopExits * c.perLoopExit) / (Number(now - t0) / 1e9);
  } finally {
    backend.close();
  }
}

const seconds = Number(process.argv[2] ?? 0.5);
const kvm = probeKvm();
const rows: Record<string, string | number>[] = [];
for (const c of CASES) {
  const soft = measure(() => createSoftBackend({ memoryBytes: MEMORY }), c, seconds);
  const row: Record<string, string | number> = { exit: c.name, "soft exits/s": Math.round(soft) };
  if (kvm.usable) {
    const hw = measure(() => createKvmBackend({ memoryBytes: MEMORY }), c, seconds);
    row["KVM exits/s"] = Math.round(hw);
    row["KVM / soft"] = (hw / soft).toFixed(1);
  }
  rows.push(row);
}
console.log(
  `soft-exits: ${seconds} s per case, real-mode guests${kvm.usable ? "" : `; KVM skipped (${kvm.reason})`}`,
);
console.table(rows);

// Save and restore times of a snapshot (lib/snapshot), as users call them: `await vm.snapshot(path)`
// on a stopped machine and `createMachine({ restore: path })`. The guest (32-bit protected mode)
// fills 20 MiB of a 256 MiB machine with pseudo-random dwords (an LCG: the pages do not compress to
// nothing) and halts; the rest of RAM stays untouched, which a sparse snapshot stores as nothing.
// Issue 12's goal: a restore of that guest within 100 ms. Soft backend always; KVM (and the two
// cross-backend directions) where /dev/kvm is usable. A restored machine's memory is compared with
// the saved one's before a row counts. A second table: incremental saves (`vm.snapshot(path,
// { base })`) after the guest re-wrote 1 MiB of its 20 (KVM: pages from the dirty log; soft: RAM
// compared with the base file), and the restore of the full + incremental chain.
//
//   npm run build && node dist/bench/snapshot/run.js [rounds=5]

import { mkdtempSync, rmSync, statSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";

const MEMORY_MIB = 256;
const FILL_AT = 16 << 20;
const FILL_BYTES = 20 << 20;
const REWRITE_AT = FILL_AT + (4 << 20);
const REWRITE_BYTES = 1 << 20;
const GOAL_RESTORE_MS = 100;

type Backend = "soft" | "kvm";

const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];

/** the port the incremental guest writes to between its two fills: the bench stops it there */
const PAUSE_PORT = 0x501;

/** the fill guest: the loop below, then hlt */
const fillGuest = (): Uint8Array => Uint8Array.from([...fillLoop(FILL_AT, FILL_BYTES, 12345), 0xf4]);

/** fills 20 MiB, writes to PAUSE_PORT, re-writes 1 MiB of it with other values, halts */
const refillGuest = (): Uint8Array =>
  Uint8Array.from([
    ...fillLoop(FILL_AT, FILL_BYTES, 12345),
    0xba,
    ...le32(PAUSE_PORT), // mov edx, PAUSE_PORT
    0xee, // out dx, al
    ...fillLoop(REWRITE_AT, REWRITE_BYTES, 777),
    0xf4,
  ]);

/**
 * mov edi, at; mov ecx, bytes / 4; mov eax, seed
 * L: imul eax, eax, 1103515245; add eax, 12345; mov [edi], eax; add edi, 4; dec ecx; jnz L
 */
function fillLoop(at: number, bytes: number, seed: number): number[] {
  return [
    0xbf,
    ...le32(at),
    0xb9,
    ...le32(bytes / 4),
    0xb8,
    ...le32(seed),
    0x69,
    0xc0,
    ...le32(1103515245),
    0x05,
    ...le32(12345),
    0x89,
    0x07,
    0x83,
    0xc7,
    0x04,
    0x49,
    0x75,
    0xed, // jnz L: back over the 19 bytes of the loop
  ];
}

interface Round {
  saveMs: number;
  restoreMs: number;
  fileMiB: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function filledMachine(backend: Backend): Promise<Machine> {
  const vm = await createMachine({ backend, memoryMiB: MEMORY_MIB });
  vm.loadFlat(fillGuest(), { address: 0x1000, mode: "protected" });
  const r = await vm.run({ timeoutMs: 120_000 });
  if (r.reason !== "hlt") {
    vm.close();
    throw new Error(`the fill guest on ${backend} ended with ${r.reason}: ${r.message ?? ""}`);
  }
  return vm;
}

async function round(from: Backend, to: Backend, dir: string, n: number): Promise<Round> {
  const path = join(dir, `${from}-${to}-${n}.snap`);
  const vm = await filledMachine(from);
  let saved: Uint8Array;
  let saveMs: number;
  try {
    saved = vm.memory.read(FILL_AT, FILL_BYTES);
    const t0 = performance.now();
    await vm.snapshot(path);
    saveMs = performance.now() - t0;
  } finally {
    vm.close();
  }
  const t1 = performance.now();
  const restored = await createMachine({ backend: to, restore: path });
  const restoreMs = performance.now() - t1;
  try {
    const back = restored.memory.read(FILL_AT, FILL_BYTES);
    if (Buffer.compare(Buffer.from(back), Buffer.from(saved)) !== 0) {
      throw new Error(`${from} -> ${to}: the restored memory differs from the saved one`);
    }
  } finally {
    restored.close();
  }
  const fileMiB = statSync(path).size / (1 << 20);
  rmSync(path, { force: true });
  return { saveMs, restoreMs, fileMiB };
}

interface IncrementalRound {
  saveMs: number;
  restoreMs: number;
  fileMiB: number;
  pages: number;
}

/** full save, the guest re-writes 1 MiB, incremental save (timed), then the chain restored (timed) */
async function incrementalRound(backend: Backend, dir: string, n: number): Promise<IncrementalRound> {
  const base = join(dir, `incr-${backend}-${n}-0.snap`);
  const path = join(dir, `incr-${backend}-${n}-1.snap`);
  const vm = await createMachine({ backend, memoryMiB: MEMORY_MIB });
  let saved: Uint8Array;
  let saveMs: number;
  let pages: number;
  try {
    vm.loadFlat(refillGuest(), { address: 0x1000, mode: "protected" });
    vm.io.onOut(PAUSE_PORT, () => vm.stop());
    const paused = await vm.run({ timeoutMs: 120_000 });
    if (paused.reason !== "stopped") throw new Error(`the guest on ${backend} ended with ${paused.reason}`);
    await vm.snapshot(base);
    const r = await vm.run({ timeoutMs: 120_000 });
    if (r.reason !== "hlt") throw new Error(`the re-write on ${backend} ended with ${r.reason}`);
    saved = vm.memory.read(FILL_AT, FILL_BYTES);
    const t0 = performance.now();
    pages = (await vm.snapshot(path, { base })).pages;
    saveMs = performance.now() - t0;
  } finally {
    vm.close();
  }
  const t1 = performance.now();
  const restored = await createMachine({ backend, restore: path });
  const restoreMs = performance.now() - t1;
  try {
    const back = restored.memory.read(FILL_AT, FILL_BYTES);
    if (Buffer.compare(Buffer.from(back), Buffer.from(saved)) !== 0) {
      throw new Error(`${backend}: the memory restored from the chain differs from the saved one`);
    }
  } finally {
    restored.close();
  }
  const fileMiB = statSync(path).size / (1 << 20);
  rmSync(path, { force: true });
  rmSync(base, { force: true });
  return { saveMs, restoreMs, fileMiB, pages };
}

/** whether a KVM machine can be made here, and why not */
async function probeKvm(): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    (await createMachine({ backend: "kvm", memoryMiB: 1 })).close();
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

async function main(): Promise<void> {
  const rounds = Math.max(1, Number(process.argv[2] ?? 5));
  const kvm = await probeKvm();
  const pairs: [Backend, Backend][] = [["soft", "soft"]];
  if (kvm.ok) pairs.push(["kvm", "kvm"], ["kvm", "soft"], ["soft", "kvm"]);
  console.log(
    `snapshot: ${MEMORY_MIB} MiB machine, ${FILL_BYTES >> 20} MiB written by the guest; ${rounds} round(s) after one ` +
      `unmeasured, medians; ${cpus().length} CPUs, load ${loadavg()[0]!.toFixed(1)}; ` +
      `/dev/kvm: ${kvm.ok ? "usable" : `not usable (${kvm.reason})`}`,
  );
  console.log("| saved on | restored on | save | restore | file | restore goal |");
  console.log("|----------|-------------|------|---------|------|--------------|");
  const dir = mkdtempSync(join(tmpdir(), "nodevmm-bench-snapshot-"));
  try {
    for (const [from, to] of pairs) {
      await round(from, to, dir, -1);
      const rs: Round[] = [];
      for (let i = 0; i < rounds; i++) rs.push(await round(from, to, dir, i));
      const restore = median(rs.map((r) => r.restoreMs));
      console.log(
        `| ${from} | ${to} | ${median(rs.map((r) => r.saveMs)).toFixed(1)} ms | ${restore.toFixed(1)} ms | ` +
          `${median(rs.map((r) => r.fileMiB)).toFixed(1)} MiB | <= ${GOAL_RESTORE_MS} ms ${restore <= GOAL_RESTORE_MS ? "(met)" : "(not met)"} |`,
      );
    }
    if (!kvm.ok) console.log(`| kvm | kvm, soft | - | - | - | no usable /dev/kvm on this host |`);
    console.log(
      `\nincremental: the same guest, saved, then ${REWRITE_BYTES >> 20} MiB of its ${FILL_BYTES >> 20} re-written and saved on that base`,
    );
    console.log("| backend | incremental save | pages | file | restore (full + incremental) |");
    console.log("|---------|------------------|-------|------|------------------------------|");
    for (const backend of kvm.ok ? (["soft", "kvm"] as const) : (["soft"] as const)) {
      await incrementalRound(backend, dir, -1);
      const rs: IncrementalRound[] = [];
      for (let i = 0; i < rounds; i++) rs.push(await incrementalRound(backend, dir, i));
      console.log(
        `| ${backend} | ${median(rs.map((r) => r.saveMs)).toFixed(1)} ms | ${median(rs.map((r) => r.pages))} | ` +
          `${median(rs.map((r) => r.fileMiB)).toFixed(2)} MiB | ${median(rs.map((r) => r.restoreMs)).toFixed(1)} ms |`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();

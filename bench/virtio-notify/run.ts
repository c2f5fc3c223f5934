// Virtio queue notifications on KVM with and without ioeventfd (lib/vmm/virtio-ioevents.ts),
// through `await vm.run()` (the vCPU thread enters the guest; ioeventfds are armed only then):
//
// - notify loop: a protected-mode guest writes queue index 0 to a virtio-rng's QueueNotify N times
//   and halts: what a notify costs the guest (an exit to user space and back, or a signal of an
//   eventfd in the kernel), and how many reach user space as exits or as eventfd wake-ups;
// - Linux: the Linux lane's guest (Debian's kernel, busybox initramfs, virtio-blk/rng/console, as
//   bench/linux-boot) booted to poweroff: wall time and its QueueNotify exits, with --linux.
//
// Rounds interleaved, the order alternating per round; medians. In the nested-KVM lane:
//   npx tsc -p tsconfig.json && node scripts/test-kvm.mjs -- node dist/bench/virtio-notify/run.js [notifies=20000] [rounds=3] [--linux]

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { VirtioRng } from "../../lib/devices/virtio/index.js";
import { probeKvm } from "../../lib/kvm/index.js";
import type { VmExit } from "../../lib/types/exits.js";
import { createMachine, type Machine, machineIoevents } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { addVirtioDevice, addVirtioDevices } from "../../lib/vmm/virtio.js";
import { REPO } from "../cpu-mips/qemu.js";

const BASE = 0xd0000000;

/** mov ecx,N; l: mov dword [0xd0000050],0; dec ecx; jnz l; cli; hlt */
function notifyGuest(n: number): Uint8Array {
  return Uint8Array.from([
    ...[0xb9, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff],
    ...[0xc7, 0x05, 0x50, 0x00, 0x00, 0xd0, 0, 0, 0, 0],
    ...[0x49, 0x75, 0xf3, 0xfa, 0xf4],
  ]);
}

interface Row {
  ms: number;
  notifyExits: number;
  wakes: number;
  mmioExits: number;
  note?: string;
}

/** QueueNotify writes that exit to user space, at any of these registers */
function countNotifyExits(vm: Machine, registers: Set<number>): () => number {
  let n = 0;
  vm.on("exit", (e: VmExit) => {
    if (e.kind === "mmio" && e.write && registers.has(e.address)) n++;
  });
  return () => n;
}

async function notifyLoop(ioeventfd: boolean, n: number): Promise<Row> {
  const vm = await createMachine({ backend: "kvm", memoryMiB: 4, ioeventfd });
  try {
    addVirtioDevice(vm, (slot) => new VirtioRng(slot), { base: BASE });
    const exits = countNotifyExits(vm, new Set([BASE + 0x50]));
    vm.loadFlat(notifyGuest(n), { mode: "protected" });
    const t0 = performance.now();
    const r = await vm.run({ timeoutMs: 600_000 });
    const ms = performance.now() - t0;
    return {
      ms,
      notifyExits: exits(),
      wakes: machineIoevents(vm)?.wakes ?? 0,
      mmioExits: vm.stats.byKind.get("mmio")?.count ?? 0,
      ...(r.reason === "hlt" ? {} : { note: `ended ${r.reason}` }),
    };
  } finally {
    vm.close();
  }
}

interface Guest {
  kernel: string;
  initrd: string;
  release: string;
}

async function linuxBoot(ioeventfd: boolean, g: Guest): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), "nodevmm-virtio-notify-"));
  const disk = join(dir, "disk.img");
  writeFileSync(disk, Buffer.alloc(8 << 20));
  const vm = await createMachine({ backend: "kvm", memoryMiB: 256, ioeventfd });
  try {
    let serial = "";
    addPcDevices(vm, {
      serial: (b: Uint8Array) => {
        serial += Buffer.from(b).toString("latin1");
      },
    });
    const virtio = addVirtioDevices(vm, { drives: [{ path: disk }], rng: true, console: {} });
    const exits = countNotifyExits(vm, new Set(virtio.devices.map((d) => d.ranges[0]!.base + 0x50)));
    vm.loadLinux({
      kernel: readFileSync(g.kernel),
      initrd: readFileSync(g.initrd),
      cmdline: `console=ttyS0 quiet ${virtio.cmdline.join(" ")}`,
    });
    const t0 = performance.now();
    const r = await vm.run({ timeoutMs: 20 * 60_000 });
    const ms = performance.now() - t0;
    const ok = r.reason === "poweroff" && serial.includes("@@linux:done");
    return {
      ms,
      notifyExits: exits(),
      wakes: machineIoevents(vm)?.wakes ?? 0,
      mmioExits: vm.stats.byKind.get("mmio")?.count ?? 0,
      ...(ok
        ? {}
        : { note: `ended ${r.reason}${serial.includes("@@linux:done") ? "" : ", no done marker"}` }),
    };
  } finally {
    vm.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function table(title: string, rows: Map<string, Row[]>, per?: number): void {
  console.log(`\n${title}`);
  const head = [
    "",
    "wall (median)",
    per ? "notifies/s" : "",
    "notify exits",
    "eventfd wake-ups",
    "MMIO exits",
  ];
  console.log(head.filter((h, i) => i !== 2 || per).join(" | "));
  const base = rows.get("ioeventfd off");
  for (const [name, rs] of rows) {
    const ms = median(rs.map((r) => r.ms));
    const ratio =
      base && name !== "ioeventfd off" ? ` (${(median(base.map((r) => r.ms)) / ms).toFixed(2)}x)` : "";
    const cells = [
      name,
      `${ms.toFixed(0)} ms${ratio}`,
      ...(per ? [Math.round((per * 1000) / ms).toLocaleString("en-US")] : []),
      String(median(rs.map((r) => r.notifyExits))),
      String(median(rs.map((r) => r.wakes))),
      String(median(rs.map((r) => r.mmioExits))),
    ];
    const notes = rs.map((r) => r.note).filter((n) => n);
    console.log(cells.join(" | ") + (notes.length ? `  [${notes.join("; ")}]` : ""));
  }
}

async function main(): Promise<void> {
  const probe = probeKvm();
  if (!probe.usable) {
    console.log(`virtio-notify: skipped, /dev/kvm is not usable here (${probe.reason})`);
    return;
  }
  if (probe.binding !== "addon") {
    console.log(
      `virtio-notify: skipped, the vCPU thread needs the addon binding (this run uses ${probe.binding})`,
    );
    return;
  }
  const nums = process.argv.slice(2).filter((a) => /^\d+$/.test(a));
  const n = Number(nums[0] ?? 20_000);
  const rounds = Number(nums[1] ?? 3);
  const modes = [true, false];
  const name = (on: boolean) => (on ? "ioeventfd on" : "ioeventfd off");
  console.log(
    `virtio-notify: KVM (${probe.binding}), await vm.run(), ${rounds} round(s) interleaved, medians`,
  );
  const loop = new Map<string, Row[]>(modes.map((m) => [name(m), []]));
  for (let r = 0; r < rounds; r++) {
    for (const on of r % 2 ? [...modes].reverse() : modes) loop.get(name(on))!.push(await notifyLoop(on, n));
  }
  table(`notify loop: ${n.toLocaleString("en-US")} QueueNotify writes by the guest`, loop, n);
  if (!process.argv.includes("--linux")) return;
  const guestModule = pathToFileURL(join(REPO, "scripts", "linux-lane", "guest.mjs")).href;
  const { ensureLinuxGuest } = (await import(guestModule)) as {
    ensureLinuxGuest(log: (m: string) => void): Guest;
  };
  const g = ensureLinuxGuest((m) => console.error(`virtio-notify: ${m}`));
  const linux = new Map<string, Row[]>(modes.map((m) => [name(m), []]));
  for (let r = 0; r < rounds; r++) {
    for (const on of r % 2 ? [...modes].reverse() : modes) linux.get(name(on))!.push(await linuxBoot(on, g));
  }
  table(`Linux ${g.release} to poweroff (virtio-blk/rng/console)`, linux);
}

await main();

// Linux boot: wall time from start to the Linux lane's /init marker ("@@linux:init") and to the
// end of the run (its /init powers off), for Debian's kernel and the lane's busybox initramfs
// (scripts/linux-lane, fetched on first use into .cache/), with an 8 MiB virtio disk. nodevmm through
// the `nodevmm run` command users type, beside QEMU with the same kernel, initramfs, memory and
// virtio-mmio devices (QEMU's microvm machine, -cpu qemu64): TCG beside the soft backend, and KVM
// beside QEMU-KVM when /dev/kvm is usable. Rounds are interleaved; medians are printed.
//
//   npm run build && node dist/bench/linux-boot/run.js [rounds=1] [--no-qemu] [--kvm-only]

import { spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ensureQemu, QEMU, REPO } from "../cpu-mips/qemu.js";

const MEMORY_MIB = 256;
const DISK_BYTES = 8 << 20;
const TIMEOUT_MS = 20 * 60_000;
/**
 * QEMU TCG powers off in about 6 s here, but now and then (QEMU 7.2's microvm, three times in two
 * days, also with a stdin pipe) it spins at 100% CPU printing nothing: such a boot is given up after
 * this long and tried once more
 */
const QEMU_TIMEOUT_MS = 3 * 60_000;
const CMDLINE = "console=ttyS0 quiet";
/** issue 10's goals: soft within 3x QEMU TCG, KVM within 1.2x QEMU-KVM */
const GOAL = { soft: 3, kvm: 1.2 } as const;

interface Guest {
  kernel: string;
  initrd: string;
  release: string;
}

interface Timing {
  /** ms to the /init marker, to the end; undefined when not reached */
  init?: number;
  end?: number;
  note?: string;
}

/** nodevmm-soft-thread: the soft vCPU in a worker thread (`--vcpu-thread`) */
type Side = "nodevmm-soft" | "nodevmm-soft-thread" | "qemu-tcg" | "nodevmm-kvm" | "qemu-kvm";

function kvmUsable(): boolean {
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function command(side: Side, g: Guest, disk: string): [string, string[]] {
  if (side.startsWith("nodevmm")) {
    const backend = side === "nodevmm-kvm" ? "kvm" : "soft";
    return [
      process.execPath,
      [
        join(REPO, "bin", "nodevmm.js"),
        "run",
        g.kernel,
        "--initrd",
        g.initrd,
        "--append",
        CMDLINE,
        "--drive",
        `file=${disk}`,
        "--backend",
        backend,
        "--mem",
        `${MEMORY_MIB}M`,
        "--timeout",
        String(TIMEOUT_MS / 1000),
        ...(side === "nodevmm-soft-thread" ? ["--vcpu-thread"] : []),
      ],
    ];
  }
  const accel = side === "qemu-tcg" ? "tcg" : "kvm";
  return [
    QEMU,
    [
      "-M",
      "microvm",
      "-accel",
      accel,
      "-cpu",
      side === "qemu-tcg" ? "qemu64" : "host",
      "-m",
      String(MEMORY_MIB),
      "-kernel",
      g.kernel,
      "-initrd",
      g.initrd,
      "-append",
      CMDLINE,
      "-nographic",
      "-no-reboot",
      "-serial",
      "stdio",
      "-monitor",
      "none",
      "-drive",
      `id=d0,file=${disk},format=raw,if=none`,
      "-device",
      "virtio-blk-device,drive=d0",
      "-device",
      "virtio-rng-device",
      "-device",
      "virtio-serial-device",
      "-device",
      "virtconsole",
    ],
  ];
}

/** one boot: times the markers as they arrive on stdout */
function boot(side: Side, g: Guest): Promise<Timing> {
  const dir = mkdtempSync(join(tmpdir(), "nodevmm-linux-boot-"));
  const disk = join(dir, "disk.img");
  writeFileSync(disk, Buffer.alloc(DISK_BYTES));
  const [cmd, args] = command(side, g, disk);
  const t0 = performance.now();
  return new Promise((resolve) => {
    // QEMU's `-serial stdio` on a /dev/null stdin printed nothing and spun (QEMU 7.2, seen twice
    // for 10+ minutes): it gets a pipe that stays open and empty
    const child = spawn(cmd, args, { stdio: [side.startsWith("qemu") ? "pipe" : "ignore", "pipe", "pipe"] });
    const timing: Timing = {};
    let out = "";
    let err = "";
    const timer = setTimeout(
      () => {
        timing.note = "timed out";
        child.kill("SIGKILL");
      },
      side.startsWith("qemu") ? QEMU_TIMEOUT_MS : TIMEOUT_MS + 30_000,
    );
    child.stdout?.on("data", (b: Buffer) => {
      out += b.toString("latin1");
      if (timing.init === undefined && out.includes("@@linux:init")) timing.init = performance.now() - t0;
      // QEMU's microvm may not power off through ACPI: the marker before poweroff ends its row
      if (out.includes("@@linux:done") && side.startsWith("qemu")) setTimeout(() => child.kill(), 2000);
      if (out.length > 1 << 20) out = out.slice(-(1 << 16));
    });
    child.stderr?.on("data", (b: Buffer) => {
      err += b.toString("latin1");
    });
    child.on("close", (status) => {
      clearTimeout(timer);
      timing.end = performance.now() - t0;
      if (!out.includes("@@linux:done")) {
        timing.note ??= `no done marker (status ${status}): ${(err || out).trim().split("\n").slice(-2).join(" | ").slice(0, 160)}`;
        timing.end = undefined;
      }
      rmSync(dir, { recursive: true, force: true });
      resolve(timing);
    });
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const secs = (ms: number | undefined) => (ms === undefined ? "-" : `${(ms / 1000).toFixed(1)} s`);

async function main(): Promise<void> {
  const rounds = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 1);
  const guestModule = pathToFileURL(join(REPO, "scripts", "linux-lane", "guest.mjs")).href;
  const { ensureLinuxGuest } = (await import(guestModule)) as {
    ensureLinuxGuest(log: (m: string) => void): Guest;
  };
  const g = ensureLinuxGuest((m) => console.error(`linux-boot: ${m}`));
  const qemu = process.argv.includes("--no-qemu") ? { reason: "skipped (--no-qemu)" } : ensureQemu();
  const kvm = kvmUsable();
  // --kvm-only: the KVM pair alone, as run inside the nested-KVM lane (`node scripts/test-kvm.mjs --
  // node dist/bench/linux-boot/run.js --kvm-only`), where soft and TCG rows would time TCG inside TCG
  const kvmOnly = process.argv.includes("--kvm-only");
  const sides: Side[] = kvmOnly ? [] : ["nodevmm-soft", "nodevmm-soft-thread"];
  if ("version" in qemu && !kvmOnly) sides.push("qemu-tcg");
  if (kvm) sides.push("nodevmm-kvm");
  if (kvm && "version" in qemu) sides.push("qemu-kvm");
  console.log(
    `linux-boot: Debian ${g.release}, busybox initramfs, ${MEMORY_MIB} MiB, virtio-blk/rng/console; ` +
      `${rounds} round(s), medians; ${cpus().length} CPUs, load ${loadavg()[0]!.toFixed(1)}; ` +
      `QEMU: ${"version" in qemu ? qemu.version : qemu.reason}; /dev/kvm: ${kvm ? "usable" : "absent"}`,
  );
  const results = new Map<Side, Timing[]>(sides.map((s) => [s, []]));
  for (let r = 0; r < rounds; r++) {
    for (const s of sides) {
      let t = await boot(s, g);
      if (s.startsWith("qemu") && t.note === "timed out") {
        const again = await boot(s, g);
        t = { ...again, note: `${again.note ? `${again.note}; ` : ""}retried: the first boot hung` };
      }
      results.get(s)!.push(t);
    }
  }

  const row = (s: Side) => {
    const ts = results.get(s)!;
    const ok = (k: "init" | "end") => ts.map((t) => t[k]).filter((x): x is number => x !== undefined);
    const init = ok("init");
    const end = ok("end");
    return {
      init: init.length ? median(init) : undefined,
      end: end.length ? median(end) : undefined,
      note: ts.find((t) => t.note)?.note,
    };
  };
  const lines: string[][] = [["backend", "to /init", "to poweroff", "vs QEMU (poweroff)", "goal", "note"]];
  const pairs: [Side, Side | undefined, number][] = kvmOnly
    ? []
    : [
        ["nodevmm-soft", "version" in qemu ? "qemu-tcg" : undefined, GOAL.soft],
        ["nodevmm-soft-thread", "version" in qemu ? "qemu-tcg" : undefined, GOAL.soft],
        ["qemu-tcg", undefined, 0],
      ];
  if (kvm)
    pairs.push(
      ["nodevmm-kvm", "version" in qemu ? "qemu-kvm" : undefined, GOAL.kvm],
      ["qemu-kvm", undefined, 0],
    );
  for (const [s, peer, goal] of pairs) {
    if (!results.has(s)) {
      lines.push([
        s,
        "-",
        "-",
        "-",
        "-",
        s.startsWith("qemu") ? ("reason" in qemu ? qemu.reason : "") : "no /dev/kvm",
      ]);
      continue;
    }
    const a = row(s);
    const p = peer && results.has(peer) ? row(peer) : undefined;
    const ratio = a.end !== undefined && p?.end !== undefined ? `${(a.end / p.end).toFixed(2)}x` : "-";
    lines.push([s, secs(a.init), secs(a.end), ratio, goal ? `<= ${goal}x` : "", a.note ?? ""]);
  }
  if (!kvm)
    lines.push([
      "nodevmm-kvm / qemu-kvm",
      "-",
      "-",
      "-",
      `<= ${GOAL.kvm}x`,
      "no usable /dev/kvm on this host",
    ]);
  const widths = lines[0]!.map((_, i) => Math.max(...lines.map((l) => (l[i] ?? "").length)));
  for (const l of lines)
    console.log(
      l
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    );
}

await main();

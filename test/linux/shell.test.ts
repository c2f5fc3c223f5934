// An interactive busybox shell through `nodevmm run` on a real terminal (util-linux `script` gives
// the command a pty), as a person gets it: the kernel's init is busybox's sh on the serial console
// (`rdinit=/bin/busybox -- sh`), keys typed into the terminal reach it in raw mode, its answers come
// back, and `poweroff -f` ends the run as a poweroff. The keys are typed once the prompt is seen.
// Run by `npm run test:linux` (scripts/test-linux.mjs), which hands the kernel and initramfs over.

import { spawn, spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { LINUX_INITRD as INITRD, LINUX_KERNEL as KERNEL, linuxMissing } from "../support/linux-guest.js";

// a boot takes under a minute on a quiet machine; the bound is for a loaded CI host
const BOOT_TIMEOUT_MS = 10 * 60_000;
const hasScript = spawnSync("script", ["--version"], { encoding: "utf8" }).status === 0;
const missing = linuxMissing ?? (hasScript ? undefined : "util-linux script is not installed");

const quote = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

describe.skipIf(missing !== undefined)(
  `an interactive Linux shell on a terminal${missing ? ` (skipped: ${missing})` : ""}`,
  () => {
    it("busybox sh answers what is typed and powers off when told", async () => {
      const cmd = [
        process.execPath,
        "bin/nodevmm.js",
        "run",
        KERNEL!,
        "--initrd",
        INITRD!,
        "--append",
        "console=ttyS0 quiet rdinit=/bin/busybox -- sh",
        "--backend",
        "soft",
        "--mem",
        "256M",
        "--timeout",
        String(BOOT_TIMEOUT_MS / 1000),
      ]
        .map(quote)
        .join(" ");
      const child = spawn("script", ["-qec", cmd, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"] });
      let out = "";
      const steps: { waitFor: RegExp; type?: string }[] = [
        // the shell's prompt (busybox's line editor then asks the terminal where the cursor is),
        // then a command whose answer only the shell can compute
        { waitFor: /^\/ # /m, type: "echo hello $((6 * 7))\r" },
        // the answer on its own line and the next prompt (typing earlier would echo the next
        // command onto the answer's line)
        { waitFor: /^hello 42\r*\n[\s\S]*^\/ # /m, type: "/bin/busybox poweroff -f\r" },
      ];
      let step = 0;
      child.stdout.on("data", (b: Buffer) => {
        out += b.toString("latin1");
        while (step < steps.length && steps[step]!.waitFor.test(out)) {
          const t = steps[step]!.type;
          step++;
          if (t !== undefined) child.stdin.write(t);
        }
      });
      child.stderr.on("data", (b: Buffer) => {
        out += b.toString("latin1");
      });
      const status = await new Promise<number | null>((resolve) => {
        const timer = setTimeout(() => child.kill("SIGKILL"), BOOT_TIMEOUT_MS + 60_000);
        child.on("close", (code) => {
          clearTimeout(timer);
          resolve(code);
        });
      });
      expect(step, out.slice(-3000)).toBe(steps.length);
      // the typed line came back (echoed by the guest's tty) and so did its answer
      expect(out).toContain("echo hello $((6 * 7))");
      expect(out).toMatch(/^hello 42\r*$/m);
      expect(out).toContain("reboot: Power down");
      // a poweroff, not the --timeout or a crash
      expect(status, out.slice(-3000)).toBe(0);
    });
  },
);

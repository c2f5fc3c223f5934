// Spawns the real bin/nodevmm.js (which loads dist/; helpers.ts rebuilds it when stale, and a
// build that cannot produce dist/lib/cli/main.js skips the suite with the reason). The examples run
// in examples.test.ts, options in flags.test.ts, plugins in plugins.test.ts.

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendMissing, bin, nodevmm, root, distMissing as skipReason } from "./helpers.js";

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "nodevmm-cli-"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function image(name: string, bytes: number[]): string {
  const p = join(dir, name);
  writeFileSync(p, Uint8Array.from(bytes));
  return p;
}

describe.skipIf(skipReason !== undefined)(
  `nodevmm CLI${skipReason ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    it("--help lists the commands; run --help documents options and exit status", () => {
      const top = nodevmm(["--help"]);
      expect(top.status).toBe(0);
      expect(top.stdout).toMatch(/run \[options\] <image>/);
      expect(top.stdout).toMatch(/info/);
      const run = nodevmm(["run", "--help"]);
      expect(run.status).toBe(0);
      for (const opt of [
        "--format",
        "--mem",
        "--backend",
        "--address",
        "--mode",
        "--cmdline",
        "--serial",
        "--debugcon",
        "--trace",
        "--stats",
        "--max-exits",
        "--timeout",
        "--strict",
        "--plugin",
        "--dump-regs",
        "--verbose",
      ]) {
        expect(run.stdout).toContain(opt);
      }
      expect(run.stdout).toMatch(/Exit status:/);
      expect(run.stdout).toMatch(/^Plugins: --plugin PATH/m);
      expect(nodevmm(["help", "run"]).stdout).toBe(run.stdout);
      const info = nodevmm(["info", "--help"]);
      expect(info.status).toBe(0);
      expect(info.stdout).toContain("--json");
      const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
      expect(nodevmm(["--version"])).toMatchObject({ status: 0, stdout: `${pkg.version}\n` });
    });

    it("--backend kvm without KVM is a usage error; auto falls back to soft and says why", () => {
      const hlt = image("hlt-nokvm.bin", [0xfa, 0xf4]);
      const env = { NODEVMM_KVM_DEVICE: join(dir, "no-kvm-here") };
      const kvm = nodevmm(["run", hlt, "--backend", "kvm"], { env });
      expect(kvm.status).toBe(2);
      // a message for people: no class names, here or nested in the reason
      expect(kvm.stderr).toMatch(/^nodevmm: KVM unavailable: .*no-kvm-here/);
      expect(kvm.stderr).not.toMatch(/[A-Za-z]+Error\b/);
      // said without --verbose in one short line: a fallback is worth a line on stderr
      const auto = nodevmm(["run", hlt], { env });
      expect(auto.status).toBe(0);
      expect(auto.stderr).toMatch(
        /^nodevmm: KVM unavailable \(.*no-kvm-here does not exist\), using the soft backend\n$/,
      );
      // --quiet silences it; --verbose says it all
      expect(nodevmm(["run", hlt, "--quiet"], { env })).toMatchObject({ status: 0, stderr: "" });
      const verbose = nodevmm(["run", hlt, "--verbose"], { env });
      expect(verbose.stderr).toMatch(/^nodevmm: backend soft \(KVM unavailable: .*no-kvm-here.*\)$/m);
      // info looks at the same device the backend opens
      expect(nodevmm(["info"], { env }).stdout).toMatch(/^\S*no-kvm-here: missing$/m);
    });

    it("info reports /dev/kvm as this host has it, and --json is parseable", () => {
      const present = existsSync("/dev/kvm");
      const text = nodevmm(["info"]);
      expect(text.status).toBe(0);
      expect(text.stdout).toMatch(present ? /^\/dev\/kvm: present/m : /^\/dev\/kvm: missing/m);
      expect(text.stdout).toMatch(/^cpu vendor: /m);
      if (/^kvm usable: true$/m.test(text.stdout)) {
        expect(text.stdout).toMatch(/^kvm capabilities: .*\bUSER_MEMORY\b/m);
        // KVM_GET_API_VERSION has been 12 since Linux 2.6.22
        expect(text.stdout).toMatch(/^kvm apiVersion: 12$/m);
        expect(text.stdout).toMatch(/^kvm binding: (addon|koffi)$/m);
      }
      const json = nodevmm(["info", "--json"]);
      const info = JSON.parse(json.stdout) as {
        kvmDevice: { present: boolean };
        soft: { available: boolean };
      };
      expect(info.kvmDevice.present).toBe(present);
      expect(typeof info.soft.available).toBe("boolean");
    });

    it("usage errors exit 2 with a message naming the problem", () => {
      const missing = nodevmm(["run", join(dir, "does-not-exist.bin")]);
      expect(missing.status).toBe(2);
      expect(missing.stderr).toMatch(/cannot read .*does-not-exist\.bin: ENOENT/);
      const hlt = image("hlt.bin", [0xf4]);
      const mem = nodevmm(["run", hlt, "--mem", "12X"]);
      expect(mem.status).toBe(2);
      expect(mem.stderr).toMatch(/--mem: "12X"/);
      expect(nodevmm(["run", hlt, "--serial", "tty"]).stderr).toMatch(/--serial: "tty" is not one of/);
      expect(nodevmm(["run", hlt, "--backend", "qemu"]).status).toBe(2);
      expect(nodevmm(["frobnicate"]).status).toBe(2);
      expect(nodevmm(["run"]).status).toBe(2);
    });
  },
);

// End-to-end runs on every backend this build and host can provide.
for (const kind of ["soft", "kvm"] as const) {
  const why = backendMissing(kind);
  describe.skipIf(why !== undefined)(`nodevmm run on ${kind}${why ? ` (skipped: ${why})` : ""}`, () => {
    it("a boot sector printing to 0xE9 and COM1 exits with its debug-exit code", () => {
      // mov al,'h'; out 0xe9,al; mov al,'i'; out 0xe9,al; mov dx,0x3f8; mov al,'!'; out dx,al;
      // mov al,0x2a; out 0xf4,al; hlt
      const p = image(
        `hello-${kind}.bin`,
        [
          0xb0, 0x68, 0xe6, 0xe9, 0xb0, 0x69, 0xe6, 0xe9, 0xba, 0xf8, 0x03, 0xb0, 0x21, 0xee, 0xb0, 0x2a,
          0xe6, 0xf4, 0xf4,
        ],
      );
      const r = nodevmm(["run", p, "--backend", kind, "--timeout", "20", "--stats", "--trace"]);
      expect(r.stdout).toBe("hi!");
      expect(r.status).toBe((0x2a << 1) | 1);
      // reason, port, data, then RIP: after the OUT, as both backends report it
      // (an "intr" line may come between: the host interrupted the guest, a slice or a device timer)
      const guestExits = r.stderr.split("\n").filter((l) => /^#\d+ /.test(l) && !/^#\d+ intr /.test(l));
      expect(guestExits[0]).toMatch(/^#0 io out port=0x00e9 size=1 data=0x68 'h' rip=0x7c04 \[/);
      expect(guestExits[3]).toMatch(/^#\d+ io out port=0x00f4 size=1 data=0x2a '\*' rip=0x7c12 \[/);
      expect(r.stderr).toMatch(/^io\s+4\s/m);
    });

    it("cli; hlt exits 0; a triple fault exits 3 with a register dump", () => {
      const halt = nodevmm([
        "run",
        image(`halt-${kind}.bin`, [0xfa, 0xf4]),
        "--backend",
        kind,
        "--timeout",
        "20",
      ]);
      expect(halt.status).toBe(0);
      // ud2 in protected mode with an empty IDT: #UD -> #GP -> #DF -> triple fault
      const tf = nodevmm([
        "run",
        image(`tf-${kind}.bin`, [0x0f, 0x0b]),
        "--backend",
        kind,
        "--mode",
        "protected",
        "--timeout",
        "20",
      ]);
      expect(tf.status).toBe(3);
      expect(tf.stderr).toMatch(/guest stopped: shutdown/);
      expect(tf.stderr).toMatch(/^EIP=00100000 /m);
      expect(tf.stderr).toMatch(/^CS =0008 00000000 ffffffff 00cf9b00 DPL=0 CS32 \[-RA\]$/m);
    });

    // util-linux `script` gives the command a terminal, so stdin goes to COM1 in raw mode
    const script = spawnSync("script", ["--version"], { encoding: "utf8" }).status === 0;
    it.skipIf(!script)("a terminal's keystrokes reach COM1: an echo guest echoes until 'q'", () => {
      // wait for LSR.DR; read RBR; 'q' ends with cli; hlt; else echo it back and loop
      const echo = image(
        `echo-${kind}.bin`,
        [
          0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xfb, 0xba, 0xf8, 0x03, 0xec, 0x3c, 0x71, 0x74, 0x03,
          0xee, 0xeb, 0xed, 0xfa, 0xf4,
        ],
      );
      const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(bin)} run ${JSON.stringify(echo)} --backend ${kind} --timeout 20`;
      const r = spawnSync(
        "sh",
        ["-c", `(sleep 1; printf 'hello'; sleep 0.3; printf 'q') | script -qec '${cmd}' /dev/null`],
        {
          encoding: "utf8",
          timeout: 30_000,
        },
      );
      // stderr shares the terminal here: without the escape-key hint a terminal gets at the start
      expect(r.stdout.replace(/nodevmm: Ctrl-A x stops the machine, Ctrl-A h lists the keys\r?\n/, "")).toBe(
        "hello",
      );
      expect(r.status).toBe(0);
    });

    it("piped stdin reaches COM1 byte for byte, with flow control past the 16-byte FIFO", () => {
      // the echo guest of the terminal test, fed from a pipe instead
      const echo = image(
        `echo-pipe-${kind}.bin`,
        [
          0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xfb, 0xba, 0xf8, 0x03, 0xec, 0x3c, 0x71, 0x74, 0x03,
          0xee, 0xeb, 0xed, 0xfa, 0xf4,
        ],
      );
      const text = "the serial line: 0123456789 ABCDEFGHIJKLMNOP\n".repeat(30);
      const r = nodevmm(["run", echo, "--backend", kind, "--timeout", "30"], { input: `${text}q` });
      expect(r.stdout).toBe(text);
      expect(r.status).toBe(0);
    });

    it("--max-exits stops a guest that loops on port I/O with status 124", () => {
      // 1: out 0x80,al; jmp 1
      const r = nodevmm([
        "run",
        image(`loop-${kind}.bin`, [0xe6, 0x80, 0xeb, 0xfc]),
        "--backend",
        kind,
        "--max-exits",
        "50",
      ]);
      expect(r.status).toBe(124);
      expect(r.stderr).toMatch(/max-exits/);
    });
  });
}

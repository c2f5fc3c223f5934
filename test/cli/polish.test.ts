// `nodevmm run` as a person meets it (issue 14, CLI): every argument checked and every output file
// opened before a backend starts, RAM sizes a backend cannot give named with the limit, images that
// are not regular files refused, --trace-file, nodevmm's lines on a line of their own after the
// guest's output, --verbose notes on images that look wrong, and a plugin's late failure in one line.

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendMissing, nodevmm, distMissing as skipReason } from "./helpers.js";

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "nodevmm-polish-"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function image(name: string, bytes: number[] | Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, Uint8Array.from(bytes));
  return p;
}

/** a device path that does not exist: "auto" falls back to soft, "kvm" fails, on any host */
const noKvm = () => ({ NODEVMM_KVM_DEVICE: join(dir, "no-kvm-here") });
const HLT = [0xfa, 0xf4];
// mov al,'h'; out 0xe9,al; mov al,'i'; out 0xe9,al; jmp $ (prints "hi", no newline, spins)
const HI_SPIN = [0xb0, 0x68, 0xe6, 0xe9, 0xb0, 0x69, 0xe6, 0xe9, 0xeb, 0xfe];
// mov al,'A'; out 0xe9,al; cli; hlt
const A_HLT = [0xb0, 0x41, 0xe6, 0xe9, 0xfa, 0xf4];

/** a usage error: status 2, one line on stderr naming `what`, nothing of the guest's */
function expectUsage(r: { status: number | null; stdout: string; stderr: string }, what: RegExp): void {
  expect(r.status, r.stderr).toBe(2);
  expect(r.stderr).toMatch(what);
  expect(r.stderr.trimEnd().split("\n"), r.stderr).toHaveLength(1);
  expect(r.stderr).not.toMatch(/[A-Za-z]+Error\b/);
  expect(r.stdout).toBe("");
}

describe.skipIf(skipReason !== undefined)(
  `nodevmm run: usage${skipReason ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    it("every argument is checked before a backend starts: --address zz with no KVM names --address", () => {
      const hlt = image("hlt.bin", HLT);
      expectUsage(
        nodevmm(["run", hlt, "--address", "zz", "--backend", "kvm"], { env: noKvm() }),
        /--address: "zz"/,
      );
      const noDisk = join(dir, "no-disk.img");
      expectUsage(
        nodevmm(["run", hlt, "--drive", `file=${noDisk}`], { env: noKvm() }),
        /^nodevmm: --drive: cannot open .*no-disk\.img: no such file$/m,
      );
      expectUsage(nodevmm(["run", hlt, "--drive", `file=${dir}`]), /--drive: .* is not a regular file/);
      // no fallback notice either: the backend was never asked
      expectUsage(nodevmm(["run", hlt, "--address", "zz"], { env: noKvm() }), /^nodevmm: --address: "zz"/);
    });

    it("a RAM size a backend cannot give is a usage error naming the limit", () => {
      const hlt = image("hlt-mem.bin", HLT);
      expectUsage(
        nodevmm(["run", hlt, "--mem", "100G"]),
        /--mem: 100G is more than a machine can have \(at most 64G\)/,
      );
      // the soft backend gives as much as a machine can have (RAM above 3 GiB from 4 GiB on)
      const big = nodevmm(["run", hlt, "--mem", "5G", "--backend", "soft"]);
      expect(big.status, big.stderr).toBe(0);
    });

    it("output files are opened before the run: a bad path is status 2 in one line, not a guest crash", () => {
      const hlt = image("hlt-out.bin", A_HLT);
      const bad = join(dir, "no-such-dir", "out.txt");
      expectUsage(
        nodevmm(["run", hlt, "--serial", `file:${bad}`]),
        /^nodevmm: --serial: cannot write .*out\.txt: no such directory$/m,
      );
      expectUsage(nodevmm(["run", hlt, "--debugcon", `file:${bad}`]), /^nodevmm: --debugcon: cannot write /);
      expectUsage(
        nodevmm(["run", hlt, "--trace-file", dir]),
        /^nodevmm: --trace-file: cannot write .*: is a directory$/m,
      );
    });

    it("devices, directories and FIFOs are refused as images (they may never end)", () => {
      expectUsage(nodevmm(["run", "/dev/zero"]), /cannot read \/dev\/zero: a device; give an image file/);
      expectUsage(nodevmm(["run", dir]), /: a directory; give an image file/);
      const fifo = join(dir, "fifo");
      const made = spawnSync("mkfifo", [fifo]);
      if (made.status !== 0 || !existsSync(fifo)) {
        console.log(`FIFO case skipped: mkfifo failed (${made.error?.message ?? made.stderr})`);
        return;
      }
      // opening a FIFO would wait for a writer: refused by its type before it is opened
      expectUsage(nodevmm(["run", fifo]), /cannot read .*fifo: a FIFO; give an image file/);
    });
  },
);

const softWhy = backendMissing("soft");
describe.skipIf(softWhy !== undefined)(
  `nodevmm run: output${softWhy ? ` (skipped: ${softWhy})` : ""}`,
  () => {
    it("--trace-file PATH gets the trace lines; stderr gets none", () => {
      const p = image("a-hlt.bin", A_HLT);
      const trace = join(dir, "trace.txt");
      const r = nodevmm(["run", p, "--backend", "soft", "--trace-file", trace]);
      expect(r.status).toBe(0);
      expect(r.stdout).toBe("A");
      expect(r.stderr).not.toMatch(/^#\d+ /m);
      const lines = readFileSync(trace, "utf8").split("\n");
      expect(lines.find((l) => /^#\d+ io out port=0x00e9 size=1 data=0x41 'A'/.test(l))).toBeDefined();
      expect(lines.find((l) => /^#\d+ hlt /.test(l))).toBeDefined();
    });

    it("nodevmm's own line starts a new line when the guest's output did not end one", () => {
      const p = image("hi-spin.bin", HI_SPIN);
      const r = nodevmm(["run", p, "--backend", "soft", "--timeout", "0.3"]);
      expect(r.status).toBe(124);
      expect(r.stdout).toBe("hi");
      expect(r.stderr).toMatch(/^\nnodevmm: timeout: /);
      // a guest that ended its line gets no extra one
      const nl = image("nl-spin.bin", [0xb0, 0x0a, 0xe6, 0xe9, 0xeb, 0xfe]);
      const r2 = nodevmm(["run", nl, "--backend", "soft", "--timeout", "0.3"]);
      expect(r2.stderr).toMatch(/^nodevmm: timeout: /);
    });

    it("--verbose says when an image looks like text, or like a boot sector run in long mode", () => {
      const text = image("notes.txt", new TextEncoder().encode("#!/bin/sh\necho this is a script\n"));
      const t = nodevmm(["run", text, "--backend", "soft", "--timeout", "0.3", "--verbose"]);
      expect(t.stderr).toMatch(/notes\.txt looks like text, not machine code/);
      const sector = new Uint8Array(512);
      sector.set(A_HLT);
      sector[510] = 0x55;
      sector[511] = 0xaa;
      const boot = image("boot.bin", sector);
      const l = nodevmm(["run", boot, "--backend", "soft", "--mode", "long", "--timeout", "5", "--verbose"]);
      expect(l.stderr).toMatch(
        /boot\.bin ends its first sector with the boot signature 0x55AA: a real-mode boot sector\? --mode long runs it as 64-bit code/,
      );
      // said only under --verbose, and never about an image run as it is meant
      expect(nodevmm(["run", boot, "--backend", "soft", "--mode", "long"]).stderr).not.toMatch(
        /boot signature/,
      );
      expect(nodevmm(["run", boot, "--backend", "soft", "--verbose"]).stderr).not.toMatch(/boot signature/);
    });

    it("a plugin's late rejection or timer exception ends the run in one line with status 2", () => {
      const p = image("spin.bin", [0xeb, 0xfe]);
      const cases: [string, string, RegExp][] = [
        [
          "late-reject.mjs",
          "setTimeout(() => { Promise.reject(new Error('late failure')); }, 50);",
          /late failure$/,
        ],
        [
          "late-throw.mjs",
          "setTimeout(() => { throw new TypeError('thrown in a timer'); }, 50);",
          /thrown in a timer$/,
        ],
      ];
      for (const [name, body, message] of cases) {
        const plugin = join(dir, name);
        writeFileSync(plugin, `export default function () { ${body} }\n`);
        const r = nodevmm(["run", p, "--backend", "soft", "--timeout", "20", "--plugin", plugin]);
        expect(r.status, r.stderr).toBe(2);
        const lines = r.stderr.trimEnd().split("\n");
        expect(lines, r.stderr).toHaveLength(1);
        expect(lines[0]).toMatch(/^nodevmm: a plugin failed after the run started: /);
        expect(lines[0]).toMatch(message);
      }
    });
  },
);

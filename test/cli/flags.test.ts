// `nodevmm run` options, each through the real binary: where output goes (--serial/--debugcon
// file:PATH and none), --format, --mem, --address/--mode, --timeout on a guest that never exits,
// --trace marking unregistered ports, and the --stats table's layout.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendMissing, bin, nodevmm, root, distMissing as skipReason } from "./helpers.js";

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "nodevmm-flags-"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function image(name: string, bytes: number[]): string {
  const p = join(dir, name);
  writeFileSync(p, Uint8Array.from(bytes));
  return p;
}

// mov al,'h'; out 0xe9,al; mov dx,0x3f8; mov al,'s'; out dx,al; cli; hlt
const TWO_SINKS = [0xb0, 0x68, 0xe6, 0xe9, 0xba, 0xf8, 0x03, 0xb0, 0x73, 0xee, 0xfa, 0xf4];
// mov al,'A'; out 0xe9,al; cli; hlt (6 bytes: the same meaning in 16-, 32- and 64-bit code)
const A_HLT = [0xb0, 0x41, 0xe6, 0xe9, 0xfa, 0xf4];
// mov al,5; out 0x99,al; cli; hlt (port 0x99 has no device)
const UNREGISTERED = [0xb0, 0x05, 0xe6, 0x99, 0xfa, 0xf4];

const soft = ["--backend", "soft", "--timeout", "20"];

describe.skipIf(skipReason !== undefined)(
  `nodevmm run options${skipReason ? ` (skipped: ${skipReason})` : ""}`,
  () => {
    it("--serial file:PATH and --debugcon file:PATH write each port's bytes to its file", () => {
      const com = join(dir, "com1.txt");
      const con = join(dir, "e9.txt");
      const r = nodevmm([
        "run",
        image("sinks.bin", TWO_SINKS),
        ...soft,
        "--serial",
        `file:${com}`,
        "--debugcon",
        `file:${con}`,
      ]);
      expect(r.status).toBe(0);
      expect(r.stdout).toBe("");
      expect(readFileSync(com, "utf8")).toBe("s");
      expect(readFileSync(con, "utf8")).toBe("h");
      const both = nodevmm(["run", join(dir, "sinks.bin"), ...soft]);
      expect(both.stdout).toBe("hs");
      const none = nodevmm([
        "run",
        join(dir, "sinks.bin"),
        ...soft,
        "--serial",
        "none",
        "--debugcon",
        "none",
      ]);
      expect(none).toMatchObject({ status: 0, stdout: "" });
    });

    it("--address and --mode place a flat image and set the entry mode", () => {
      const p = image("a.bin", A_HLT);
      const real = nodevmm(["run", p, ...soft, "--address", "0x8000", "--dump-regs"]);
      expect(real.status).toBe(0);
      expect(real.stdout).toBe("A");
      expect(real.stderr).toMatch(/^EIP=00008006 /m);
      const prot = nodevmm(["run", p, ...soft, "--mode", "protected", "--dump-regs"]);
      expect(prot.stderr).toMatch(/^EIP=00100006 /m);
      expect(prot.stderr).toMatch(/^CS =0008 00000000 ffffffff 00cf9b00 DPL=0 CS32/m);
      const long = nodevmm(["run", p, ...soft, "--mode", "long", "--address", "0x200000", "--dump-regs"]);
      expect(long.stdout).toBe("A");
      expect(long.stderr).toMatch(/^RIP=0000000000200006 /m);
      expect(long.stderr).toMatch(/CS64/);
    });

    it("--mem sizes RAM: an image placed past its end is refused before anything runs", () => {
      const p = image("high.bin", A_HLT);
      const tooSmall = nodevmm([
        "run",
        p,
        ...soft,
        "--mem",
        "1M",
        "--mode",
        "protected",
        "--address",
        "0x200000",
      ]);
      expect(tooSmall.status).toBe(2);
      expect(tooSmall.stdout).toBe("");
      // for people: the file and what is wrong, no class name
      expect(tooSmall.stderr).toMatch(/^nodevmm: .*high\.bin: .*file offset/);
      expect(tooSmall.stderr).not.toMatch(/Error\b/);
      const enough = nodevmm([
        "run",
        p,
        ...soft,
        "--mem",
        "4M",
        "--mode",
        "protected",
        "--address",
        "0x200000",
      ]);
      expect(enough).toMatchObject({ status: 0, stdout: "A" });
    });

    it("--format forces a loader: a flat image is not an ELF, and auto detects an ELF", () => {
      const p = image("flat.bin", A_HLT);
      const elf = nodevmm(["run", p, ...soft, "--format", "elf"]);
      expect(elf.status).toBe(2);
      expect(elf.stderr).toMatch(/^nodevmm: .*flat\.bin: .*(magic|ELF)/i);
      const mb = nodevmm(["run", p, ...soft, "--format", "multiboot"]);
      expect(mb.status).toBe(2);
      expect(mb.stderr).toMatch(/^nodevmm: .*flat\.bin: .*multiboot/i);
      const crc = join(root, "examples", "images", "protected-hello.elf");
      if (existsSync(crc)) {
        const auto = nodevmm(["run", crc, ...soft, "--verbose", "--debugcon", "none"]);
        expect(auto.stderr).toMatch(/loaded .* as elf/);
        // forced flat, the ELF file is a boot sector of header bytes: loaded at 0x7C00 as such
        const forced = nodevmm([
          "run",
          crc,
          ...["--backend", "soft", "--format", "flat", "--verbose", "--timeout", "0.2"],
          ...["--serial", "none", "--debugcon", "none"],
        ]);
        expect(forced.stderr).toMatch(/loaded .* as flat, entry rip=0x7c00\b/);
      }
    });

    it("--trace marks writes to unregistered ports; --stats prints a perf-kvm-stat style table", () => {
      const r = nodevmm(["run", image("unreg.bin", UNREGISTERED), ...soft, "--trace", "--stats"]);
      expect(r.status).toBe(0);
      expect(r.stderr).toMatch(/io out port=0x0099 size=1 data=0x05 .*\(unregistered\)/);
      const lines = r.stderr.split("\n");
      const header = lines.findIndex((l) =>
        /^Exit kind\s+Samples\s+Samples%\s+Time%\s+Min Time\s+Max Time\s+Avg time$/.test(l),
      );
      expect(header).toBeGreaterThanOrEqual(0);
      expect(lines.slice(header + 1)).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^io\s+1\s+\d+\.\d\d%/),
          expect.stringMatching(/^hlt\s+1\s/),
        ]),
      );
      // the guest's two exits, and any "intr" the host's timer took (a loaded host may end an entry
      // before the guest's first instruction)
      const intr = lines.filter((l) => /^#\d+ intr /.test(l)).length;
      expect(r.stderr).toMatch(new RegExp(`^Total Samples:${2 + intr},`, "m"));
      expect(r.stderr).toMatch(/^Unregistered accesses: 1$/m);
      const strict = nodevmm(["run", join(dir, "unreg.bin"), ...soft, "--strict"]);
      expect(strict.status).toBe(3);
      expect(strict.stderr).toMatch(/UnhandledAccessError.*port 0x99/);
    });

    it("an unregistered port reads all-ones, unless --strict makes the read an error", () => {
      // in al,0x99; out 0xf4,al; cli; hlt: the byte read becomes the debug-exit code
      const p = image("unreg-in.bin", [0xe4, 0x99, 0xe6, 0xf4, 0xfa, 0xf4]);
      const lax = nodevmm(["run", p, ...soft]);
      expect(lax.status).toBe(((0xff << 1) | 1) & 0xff);
      const strict = nodevmm(["run", p, ...soft, "--strict"]);
      expect(strict.status).toBe(3);
      expect(strict.stderr).toMatch(/UnhandledAccessError.*port 0x99/);
      expect(strict.stderr).toMatch(/^EIP=/m);
    });
  },
);

for (const kind of ["soft", "kvm"] as const) {
  const why = backendMissing(kind);
  describe.skipIf(why !== undefined)(
    `nodevmm run --timeout on ${kind}${why ? ` (skipped: ${why})` : ""}`,
    () => {
      it("a guest spinning forever stops at --timeout with status 124", () => {
        const r = nodevmm([
          "run",
          image(`spin-${kind}.bin`, [0xeb, 0xfe]),
          "--backend",
          kind,
          "--timeout",
          "0.3",
        ]);
        expect(r.status).toBe(124);
        expect(r.stderr).toMatch(/timeout: timed out after 300 ms/);
      });

      it("SIGINT stops a guest that runs without a limit, with status 130", async () => {
        const spin = image(`int-${kind}.bin`, [0xeb, 0xfe]);
        const child = spawn(process.execPath, [bin, "run", spin, "--backend", kind, "--verbose"], {
          cwd: root,
          stdio: ["ignore", "pipe", "pipe"],
        });
        let stderr = "";
        child.stderr.on("data", (d: Buffer) => {
          stderr += d.toString();
          // --verbose says "loaded" just before the run starts (the SIGINT handler is in place by then)
          if (/loaded /.test(stderr) && !child.killed) child.kill("SIGINT");
        });
        const status = await new Promise<number | null>((resolve) =>
          child.on("exit", (code) => resolve(code)),
        );
        expect(status).toBe(130);
        expect(stderr).toMatch(/stopped/);
      });
    },
  );
}

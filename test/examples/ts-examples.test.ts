// The TypeScript examples are programs people copy: run the compiled ones as a user would and check
// what they print, on the soft backend (always there) and on KVM where /dev/kvm is usable.

import { spawnSync } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ensureDist, root } from "../support/dist.js";

const skip = ensureDist("dist/examples/hello.js", ["lib", "examples"]);
const backends = ["soft"];
try {
  accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
  backends.push("kvm");
} catch {}

function example(name: string, args: string[] = []) {
  const r = spawnSync(process.execPath, [join(root, "dist", "examples", `${name}.js`), ...args], {
    cwd: root,
    encoding: "utf8",
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const expected = (name: string) => readFileSync(join(root, "examples", "guests", `${name}.expected`), "utf8");

describe.skipIf(skip !== undefined)(`TypeScript examples${skip ? ` (skipped: ${skip})` : ""}`, () => {
  it("hello (npm start) prints the guest's greeting and a register dump", () => {
    const r = example("hello");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(expected("real-hello"));
    expect(r.stdout).toMatch(/guest stopped: hlt/);
    expect(r.stdout).toMatch(/^EIP=00007c1[0-9a-f]/m);
  });
  for (const backend of backends) {
    it(`custom-device on ${backend}: the TypeScript device answers the guest`, () => {
      const r = example("custom-device", [backend]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain(expected("custom-device"));
      expect(r.stdout).toContain(`[${backend}] hlt`);
    });
    it(`exit-trace on ${backend}: one line per exit, ending in hlt`, () => {
      const r = example("exit-trace", [backend]);
      expect(r.status, r.stderr).toBe(0);
      const lines = r.stdout.trim().split("\n");
      const outs = lines.filter((l) => /io out port=0x03f8/.test(l));
      expect(outs.length).toBe(expected("real-hello").length);
      expect(lines.at(-1)).toBe(`[${backend}] hlt after ${lines.length - 1} exits`);
      if (backend === "soft") expect(outs[0]).toMatch(/\[vmx 30 IO_INSTRUCTION qual=0x3f80000 len=1\]/);
    });
  }
});

// `nodevmm run IMAGE --max-exits N --save PATH`, then `nodevmm resume PATH`: the two parts' output
// together is an uninterrupted run's (in-process through main(), soft backend).

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { main } from "../../lib/cli/main.js";
import { countingGuest } from "./guests.js";

const dir = mkdtempSync(join(tmpdir(), "nodevmm-snap-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  process.exitCode = 0;
});

async function cli(args: string[]): Promise<{ status: number; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let err = "";
  stderr.on("data", (c: Buffer) => {
    err += c.toString();
  });
  const io = { stdout, stderr, stdin: new PassThrough() as unknown as NodeJS.ReadStream };
  const status = await main(args, io);
  return { status, stderr: err };
}

const read = (p: string): string => {
  try {
    return readFileSync(p, "latin1");
  } catch {
    return "";
  }
};

describe("nodevmm run --save / nodevmm resume", () => {
  it("resumes a run stopped by --max-exits to the uninterrupted output", async () => {
    const image = join(dir, "count.bin");
    writeFileSync(image, countingGuest(120));
    const sinks = (tag: string) => [
      "--serial",
      `file:${join(dir, `${tag}.com1`)}`,
      "--debugcon",
      `file:${join(dir, `${tag}.e9`)}`,
    ];

    const whole = await cli(["run", image, "--backend", "soft", ...sinks("whole")]);
    expect(whole.status, whole.stderr).toBe(0);

    const snap = join(dir, "count.snap");
    const first = await cli([
      "run",
      image,
      "--backend",
      "soft",
      "--max-exits",
      "151",
      "--save",
      snap,
      ...sinks("a"),
    ]);
    expect(first.status, first.stderr).toBe(124);
    expect(first.stderr).toMatch(/saved .*count\.snap/);

    const second = await cli(["resume", snap, "--backend", "soft", ...sinks("b")]);
    expect(second.status, second.stderr).toBe(0);
    expect(read(join(dir, "a.com1")).length).toBeGreaterThan(20);
    expect(read(join(dir, "a.com1")) + read(join(dir, "b.com1"))).toBe(read(join(dir, "whole.com1")));
    expect(read(join(dir, "a.e9")) + read(join(dir, "b.e9"))).toBe(read(join(dir, "whole.e9")));
  });

  it("resume of a damaged file is a usage error naming the section", async () => {
    const bad = join(dir, "bad.snap");
    writeFileSync(bad, Buffer.from("NVMMSNAP\x07\x00\x00\x00\x00\x00\x00\x00", "latin1"));
    const r = await cli(["resume", bad, "--backend", "soft", "--serial", "none", "--debugcon", "none"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^nodevmm: snapshot header: format version 7/);
  });
});

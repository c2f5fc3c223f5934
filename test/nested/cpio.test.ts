import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildCpio, type CpioEntry, parseCpio } from "../../scripts/nested-kvm/cpio.mjs";

const entries: CpioEntry[] = [
  { type: "dir", path: "bin" },
  { type: "dir", path: "dev" },
  { type: "char", path: "dev/console", major: 5, minor: 1 },
  { type: "file", path: "bin/tool", data: Buffer.from([1, 2, 3, 4, 5]), mode: 0o755 },
  { type: "symlink", path: "bin/sh", target: "tool" },
  { type: "file", path: "init", data: "#!/bin/sh\necho hi\n", mode: 0o755 },
  { type: "file", path: "empty", data: "" },
];

describe("cpio newc writer", () => {
  it("round-trips entries with types, modes, device numbers and data", () => {
    const buf = buildCpio(entries);
    expect(buf.length % 4).toBe(0);
    const back = parseCpio(buf);
    expect(back.map((e) => e.path)).toEqual(entries.map((e) => e.path));
    const byPath = new Map(back.map((e) => [e.path, e]));
    expect(byPath.get("bin")!.mode).toBe(0o040755);
    expect(byPath.get("dev/console")!.mode).toBe(0o020600);
    expect([byPath.get("dev/console")!.rdevMajor, byPath.get("dev/console")!.rdevMinor]).toEqual([5, 1]);
    expect(byPath.get("bin/tool")!.mode).toBe(0o100755);
    expect([...byPath.get("bin/tool")!.data]).toEqual([1, 2, 3, 4, 5]);
    expect(byPath.get("bin/sh")!.mode).toBe(0o120777);
    expect(byPath.get("bin/sh")!.data.toString()).toBe("tool");
    expect(byPath.get("init")!.data.toString()).toBe("#!/bin/sh\necho hi\n");
    expect(byPath.get("empty")!.size).toBe(0);
  });

  it("is reproducible byte for byte", () => {
    expect(buildCpio(entries).equals(buildCpio(entries))).toBe(true);
  });

  it("rejects bad entries with a clear error", () => {
    expect(() => buildCpio([{ type: "dir", path: "/abs" }])).toThrow(/relative/);
    expect(() => buildCpio([{ type: "dir", path: "" }])).toThrow(/bad entry path/);
    expect(() =>
      buildCpio([
        { type: "dir", path: "a" },
        { type: "dir", path: "a" },
      ]),
    ).toThrow(/duplicate entry "a"/);
    expect(() => buildCpio([{ type: "fifo", path: "p" } as unknown as CpioEntry])).toThrow(
      /unknown entry type/,
    );
    expect(() => buildCpio([{ type: "file", path: "f" } as unknown as CpioEntry])).toThrow(/needs data/);
  });

  it("parseCpio reports truncation and bad magic", () => {
    const buf = buildCpio(entries);
    expect(() => parseCpio(buf.subarray(0, 200))).toThrow(/truncated/);
    const bad = Buffer.from(buf);
    bad.write("070707", 0, "latin1");
    expect(() => parseCpio(bad)).toThrow(/bad magic/);
  });

  // An independent reader: busybox's cpio applet, when the host has busybox (the lane installs it).
  const busybox = ["/bin/busybox", "/usr/bin/busybox"].find((p) => existsSync(p));
  it.skipIf(!busybox)("unpacks with busybox cpio into the same tree", () => {
    const dir = mkdtempSync(join(tmpdir(), "nkvm-cpio-"));
    try {
      const files = entries.filter((e) => e.type !== "char");
      const r = spawnSync(busybox!, ["cpio", "-i", "-d"], { cwd: dir, input: buildCpio(files) });
      expect(r.status, r.stderr.toString()).toBe(0);
      expect([...readFileSync(join(dir, "bin/tool"))]).toEqual([1, 2, 3, 4, 5]);
      expect(statSync(join(dir, "bin/tool")).mode & 0o777).toBe(0o755);
      expect(readlinkSync(join(dir, "bin/sh"))).toBe("tool");
      expect(readFileSync(join(dir, "init"), "utf8")).toBe("#!/bin/sh\necho hi\n");
      expect(statSync(join(dir, "empty")).size).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

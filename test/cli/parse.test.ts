import { describe, expect, it } from "vitest";
import { exitStatus } from "../../lib/cli/exit-status.js";
import {
  CliUsageError,
  parseAddress,
  parseCount,
  parseDrive,
  parseMemory,
  parseSeconds,
  parseSink,
} from "../../lib/cli/parse.js";
import { PluginError, parsePluginSpec } from "../../lib/cli/plugins.js";

describe("CLI value parsers", () => {
  it("--mem takes K/M/G suffixes (MiB by default) and whole MiB only", () => {
    expect(parseMemory("64M")).toBe(64);
    expect(parseMemory("1G")).toBe(1024);
    expect(parseMemory("65536K")).toBe(64);
    expect(parseMemory("128")).toBe(128);
    expect(parseMemory("2GiB")).toBe(2048);
    expect(() => parseMemory("1000K")).toThrow(/whole number of MiB/);
    expect(() => parseMemory("lots")).toThrow(CliUsageError);
    expect(() => parseMemory("0M")).toThrow(CliUsageError);
  });

  it("addresses are decimal or 0x hex", () => {
    expect(parseAddress("0x7C00")).toBe(0x7c00);
    expect(parseAddress("1048576")).toBe(0x100000);
    expect(parseAddress("0x10_0000")).toBe(0x100000);
    expect(() => parseAddress("-1")).toThrow(/--address/);
    expect(() => parseAddress("0xzz")).toThrow(CliUsageError);
  });

  it("counts, seconds and sinks", () => {
    expect(parseCount("50", "--max-exits")).toBe(50);
    expect(() => parseCount("5.5", "--max-exits")).toThrow(/--max-exits/);
    expect(parseSeconds("0.5", "--timeout")).toBe(0.5);
    expect(() => parseSeconds("-1", "--timeout")).toThrow(/--timeout/);
    expect(parseSink("stdio", "--serial")).toEqual({ kind: "stdio" });
    expect(parseSink("none", "--serial")).toEqual({ kind: "none" });
    expect(parseSink("file:/tmp/x.log", "--serial")).toEqual({ kind: "file", path: "/tmp/x.log" });
    expect(() => parseSink("file:", "--serial")).toThrow(CliUsageError);
  });
});

describe("--drive file=PATH[,readonly][,serial=ID]", () => {
  it("takes QEMU's spelling, the part a virtio-blk disk needs", () => {
    expect(parseDrive("file=disk.img")).toEqual({ path: "disk.img", readonly: false });
    expect(parseDrive("file=/a/b.img,readonly")).toEqual({ path: "/a/b.img", readonly: true });
    expect(parseDrive("readonly=off,file=x,serial=root1")).toEqual({
      path: "x",
      readonly: false,
      serial: "root1",
    });
    expect(parseDrive("file=a,,b.img,readonly=on")).toEqual({ path: "a,b.img", readonly: true });
  });
  it("names what it does not take", () => {
    expect(() => parseDrive("disk.img")).toThrow(/disk\.img.*file=PATH/);
    expect(() => parseDrive("file=x,if=virtio")).toThrow(CliUsageError);
    expect(() => parseDrive("readonly")).toThrow(/names no file=/);
  });
});

describe("exit status", () => {
  const r = (reason: Parameters<typeof exitStatus>[0]["reason"], exitCode?: number) =>
    exitStatus({ reason, exits: 1, durationMs: 1, ...(exitCode !== undefined ? { exitCode } : {}) });
  it("maps run results to process statuses", () => {
    expect(r("debug-exit", 0x55)).toBe(0x55);
    expect(r("debug-exit", 0x1ff)).toBe(0xff);
    expect(r("hlt")).toBe(0);
    expect(r("reset")).toBe(0);
    expect(r("shutdown")).toBe(3);
    expect(r("fail-entry")).toBe(3);
    expect(r("internal-error")).toBe(3);
    expect(r("error")).toBe(3);
    expect(r("timeout")).toBe(124);
    expect(r("max-exits")).toBe(124);
    expect(r("stopped")).toBe(130);
  });
});

describe("--plugin PATH[,key=value...]", () => {
  it("splits the path from its options; ,, is a literal comma; bare keys are empty", () => {
    expect(parsePluginSpec("./dev.js")).toMatchObject({ path: "./dev.js", options: {}, optionText: "" });
    const p = parsePluginSpec("a,,b.mjs,port=0x600,name=x,,y,verbose");
    expect(p.path).toBe("a,b.mjs");
    expect({ ...p.options }).toEqual({ port: "0x600", name: "x,y", verbose: "" });
    expect(p.optionText).toBe("port=0x600,name=x,,y,verbose");
    // only the first = separates: values may hold more
    expect({ ...parsePluginSpec("d.js,expr=a=b").options }).toEqual({ expr: "a=b" });
    // keys like "constructor" are plain options, not Object.prototype's
    expect(parsePluginSpec("d.js").options.constructor).toBeUndefined();
  });

  it("rejects a missing path, nameless and repeated options", () => {
    for (const bad of ["", " ", ",port=1"]) expect(() => parsePluginSpec(bad)).toThrow(/no module path/);
    expect(() => parsePluginSpec("d.js,=1")).toThrow(PluginError);
    expect(() => parsePluginSpec("d.js,a=1,a=2")).toThrow(/"a" given twice/);
  });
});

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DebugConsole, DebugExit, DeviceConfigError, PostPort } from "../../lib/devices/index.js";
import { attach } from "./helpers.js";

describe("debug console (0xE9)", () => {
  it("sends written bytes to a callback and reads back 0xE9", () => {
    const got: number[] = [];
    const con = new DebugConsole({ output: (b) => got.push(...b) });
    const h = attach(con);
    for (const c of "hi\n") h.outb(0xe9, c.charCodeAt(0));
    expect(String.fromCharCode(...got)).toBe("hi\n");
    expect(h.inb(0xe9)).toBe(0xe9);
    expect(con.bytesWritten).toBe(3);
  });
  it("splits a word write into bytes, low first, and writes to a Writable-like stream", () => {
    const chunks: Uint8Array[] = [];
    const con = new DebugConsole({ output: { write: (c: Uint8Array) => chunks.push(c) } });
    const h = attach(con);
    h.outw(0xe9, 0x6948); // "Hi"
    expect(Buffer.concat(chunks).toString()).toBe("Hi");
  });
  it("writes to a file", () => {
    const dir = mkdtempSync(join(tmpdir(), "debugcon-"));
    try {
      const path = join(dir, "out.txt");
      const con = new DebugConsole({ output: { path } });
      const h = attach(con);
      for (const c of "file") h.outb(0xe9, c.charCodeAt(0));
      con.close();
      expect(readFileSync(path, "utf8")).toBe("file");
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
  it("rejects a port outside the I/O space", () => {
    expect(() => new DebugConsole({ port: 0x10000 })).toThrow(DeviceConfigError);
  });
});

describe("isa-debug-exit (0xf4)", () => {
  it("requests a stop with code (value << 1) | 1", () => {
    const dev = new DebugExit();
    const h = attach(dev);
    h.outb(0xf4, 0x10);
    expect(h.stops).toEqual([{ reason: "debug-exit", code: 0x21 }]);
    h.outl(0xf4, 0x80000000);
    expect(h.stops[1]).toEqual({ reason: "debug-exit", code: 0x100000001 });
    expect(dev.lastCode).toBe(0x100000001);
  });
  it("decodes the configured size and masks the value to the access width", () => {
    const dev = new DebugExit({ port: 0x501, size: 2 });
    expect(dev.ranges).toEqual([{ space: "io", base: 0x501, length: 2 }]);
    const h = attach(dev);
    h.outb(0x502, 0x1ff);
    expect(h.stops).toEqual([{ reason: "debug-exit", code: 0x1ff }]);
    expect(h.inb(0x501)).toBe(0);
  });
  it("rejects a bad size", () => {
    expect(() => new DebugExit({ size: 3 as 4 })).toThrow(/size/);
  });
});

describe("POST port (0x80)", () => {
  it("records the last code and a bounded history, and reports each code", () => {
    const seen: number[] = [];
    const post = new PostPort({ historyLength: 3, onCode: (c) => seen.push(c) });
    const h = attach(post);
    for (const c of [1, 2, 3, 4]) h.outb(0x80, c);
    expect(post.lastCode).toBe(4);
    expect(post.history).toEqual([2, 3, 4]);
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(post.writes).toBe(4);
    expect(h.inb(0x80)).toBe(0xff);
  });
});

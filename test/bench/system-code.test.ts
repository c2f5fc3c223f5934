// The system-code benchmark's guests (bench/guests/sys-*.S) on the soft backend with tiny iteration
// counts: each must report the result its loop computes (behaviour, never speed), so that a guest or
// a soft-backend change cannot break a row of bench/system-code silently.
import { describe, expect, it } from "vitest";
import { DebugStream, unexpectedText } from "../../bench/cpu-mips/debug-stream.js";
import { runOnMachine } from "../../bench/cpu-mips/product.js";
import { ROWS, rowImage } from "../../bench/system-code/rows.js";

const N = 25;

describe("system-code guests on the soft backend", () => {
  for (const row of ROWS) {
    it(`${row.name} (${row.image}) reports the expected result`, async () => {
      const r = await runOnMachine(rowImage(row, N), 20_000);
      expect(unexpectedText(r.stream)).toBeUndefined();
      expect(r.error).toBeUndefined();
      expect(r.stream.stray).toEqual([]);
      expect(r.stream.phases).toHaveLength(1);
      const sum = r.stream.phases[0]!.checksum;
      expect(row.check(N, sum)).toBeUndefined();
      expect(row.events(N, sum)).toBe(row.image === "sys-cr3" ? 2 * N : N);
      // the exits the rows exist to measure reach the loop once per event
      if (row.image === "sys-pio") expect(r.devices.post.writes).toBe(N);
      if (row.image === "sys-pio" || row.image === "sys-mmio") expect(r.exits).toBeGreaterThanOrEqual(N);
    });
  }

  it("a different iteration count changes the result (the count is read from the image)", async () => {
    const row = ROWS.find((r) => r.image === "sys-invlpg")!;
    const r = await runOnMachine(rowImage(row, 7), 20_000);
    expect(r.error).toBeUndefined();
    expect(row.check(7, r.stream.phases[0]!.checksum)).toBeUndefined();
    expect(row.check(N, r.stream.phases[0]!.checksum)).toBeDefined();
  });

  it("an unexpected exception is reported, not timed", async () => {
    // the PAUSE row with its PAUSE (F3 90) turned into UD2 (0F 0B): #UD reaches the catch-all gate
    const row = ROWS.find((r) => r.image === "sys-pause")!;
    const img = rowImage(row, N);
    const at = img.findIndex((b, i) => b === 0xf3 && img[i + 1] === 0x90);
    img.set([0x0f, 0x0b], at);
    const r = await runOnMachine(img, 20_000);
    expect(r.stream.phases).toEqual([]);
    // #UD pushes no error code: RIP (the UD2) and CS
    expect(r.stream.unexpected).toEqual([[0x7c00 + at, 0x08]]);
    expect(r.error).toMatch(/debug-exit code 255/);
  });

  it("the timer rows work with another timer count (1 tick)", async () => {
    for (const row of ROWS.filter((r) => r.image.startsWith("sys-timer"))) {
      const r = await runOnMachine(rowImage(row, 10, 1), 20_000);
      expect(r.error, row.name).toBeUndefined();
      expect(row.check(10, r.stream.phases[0]!.checksum), row.name).toBeUndefined();
    }
  });
});

describe("the debug-port protocol", () => {
  it("parses a phase and an unexpected-event report", () => {
    const s = new DebugStream();
    const bytes = [0x53, 0x45, 0x21, 0x45, 0x53, 0x21, 0x21, 0x0e, 0, 0, 0, 0x10, 0x7d, 0, 0];
    bytes.forEach((b, i) => {
      s.push(b, i);
    });
    // the checksum bytes may be anything, '!' included
    expect(s.phases).toEqual([
      { startMs: 0, endMs: 1, startRetired: Number.NaN, endRetired: Number.NaN, checksum: 0x21534521 },
    ]);
    expect(s.unexpected).toEqual([[0x0e, 0x7d10]]);
    expect(unexpectedText(s)).toContain("0xe 0x7d10");
  });
});

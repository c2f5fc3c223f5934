import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import {
  countsLine,
  parseMarkers,
  shQuote,
  stripAnsi,
  testCounts,
  vitestSummary,
} from "../../scripts/nested-kvm/text.mjs";

describe("shQuote", () => {
  it("passes any word through /bin/sh unchanged", () => {
    const words = ["plain", "with space", "it's", "$HOME `id` \\n", "a'b'c", "", "*", "new\nline", "ümlaut"];
    const script = `printf '%s\\0' ${words.map(shQuote).join(" ")}`;
    const r = spawnSync("/bin/sh", ["-c", script], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout.split("\0").slice(0, -1)).toEqual(words);
  });

  it("refuses NUL bytes", () => {
    expect(() => shQuote("a\0b")).toThrow(TypeError);
  });
});

const VITEST_OUTPUT = `
 \u001b[32m✓\u001b[39m test/kvm/real-mode.test.ts (3 tests) 120ms
 \u001b[31m×\u001b[39m test/kvm/irq.test.ts (2 tests | 1 failed) 300ms

\u001b[2m Test Files \u001b[22m \u001b[1m\u001b[31m1 failed\u001b[39m\u001b[22m\u001b[2m | \u001b[22m\u001b[1m\u001b[32m1 passed\u001b[39m\u001b[22m\u001b[90m (2)\u001b[39m
\u001b[2m      Tests \u001b[22m \u001b[1m\u001b[31m1 failed\u001b[39m\u001b[22m\u001b[2m | \u001b[22m\u001b[1m\u001b[32m4 passed\u001b[39m\u001b[22m\u001b[90m (5)\u001b[39m
\u001b[2m   Start at \u001b[22m 04:10:00
\u001b[2m   Duration \u001b[22m 2.31s (transform 50ms, setup 0ms)

`;

describe("vitestSummary", () => {
  it("extracts the closing block without colours", () => {
    expect(vitestSummary(VITEST_OUTPUT)).toEqual([
      "Test Files  1 failed | 1 passed (2)",
      "Tests  1 failed | 4 passed (5)",
      "Start at  04:10:00",
      "Duration  2.31s (transform 50ms, setup 0ms)",
    ]);
  });

  it("counts executed and skipped tests for the lane's closing line", () => {
    const c = testCounts(vitestSummary(VITEST_OUTPUT));
    expect(c).toEqual({ filesFailed: 1, executed: 5, passed: 4, failed: 1, skipped: 0, total: 5 });
    expect(countsLine(c!, "here")).toBe(
      "5 tests executed (4 passed, 1 failed), 0 skipped, 1 test files failed, here",
    );
    expect(testCounts(["Test Files  2 passed (2)", "Tests  30 passed | 1 skipped | 2 todo (33)"])).toEqual({
      filesFailed: 0,
      executed: 30,
      passed: 30,
      failed: 0,
      skipped: 3,
      total: 33,
    });
    expect(testCounts(["Duration 1s"])).toBeUndefined();
  });

  it("returns nothing when vitest did not get to a summary", () => {
    expect(vitestSummary("Error: Cannot find module 'vitest'\n")).toEqual([]);
  });

  it("strips colour codes", () => {
    expect(stripAnsi("\u001b[1m\u001b[31mred\u001b[39m\u001b[22m")).toBe("red");
  });
});

describe("parseMarkers", () => {
  it("finds stage and failure markers among kernel messages", () => {
    const consoleText =
      "[    0.1] boot\r\n@@nkvm:stage:init\r\n@@nkvm:stage:share\r\n[    3.0] kvm: no hardware support\r\n@@nkvm:fail:insmod kvm_amd.ko failed\r\n";
    expect(parseMarkers(consoleText)).toEqual([
      { kind: "stage", value: "init" },
      { kind: "stage", value: "share" },
      { kind: "fail", value: "insmod kvm_amd.ko failed" },
    ]);
  });
});

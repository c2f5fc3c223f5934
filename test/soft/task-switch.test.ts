// The soft backend answers task-switch exits as KVM does (emulates the switch and resumes): the
// shared task-switch guest runs under createMachine to the same output and final state as on the
// bare interpreter, and the exit loop never sees a task switch.
import { describe, expect, it } from "vitest";
import { GPR_NAMES } from "../../lib/types/regs.js";
import {
  ALL_CASES,
  PAGING_CASE,
  runTaskGuestBare,
  runTaskGuestOn,
  TS_CASE,
} from "../cpu/task-switch-guest.js";

describe("task switches on the soft backend", () => {
  it("the task-switch guest prints and ends as on the bare interpreter", async () => {
    const bare = runTaskGuestBare(ALL_CASES | PAGING_CASE);
    const soft = await runTaskGuestOn("soft", ALL_CASES | PAGING_CASE);
    expect(soft.reason).toBe("hlt");
    expect(soft.out).toBe(bare.out);
    expect(
      soft.out
        .trim()
        .split("\n")
        .map((l) => l[0]),
    ).toEqual([..."AaBbCcEeApD"]);
    // "intr" exits are the host's (device deadlines, slices), not the guest's
    expect([...soft.kinds].filter((k) => k !== "intr").sort()).toEqual(["hlt", "io"]);
    GPR_NAMES.forEach((name, i) => {
      expect(soft.regs[name], name).toBe(bare.cpu.getGpr(i));
    });
    expect(soft.regs.rip).toBe(bare.cpu.getRip());
    expect(soft.regs.rflags).toBe(bare.cpu.getRflags());
    expect(soft.sregs.tr.selector).toBe(0x48);
    expect(soft.sregs.tr.type).toBe(11);
    expect(soft.sregs.cr0 & 8n).toBe(8n);
  });

  it("a fault the emulated switch raises past its commit point is injected into the new task", async () => {
    const bare = runTaskGuestBare(TS_CASE);
    const soft = await runTaskGuestOn("soft", TS_CASE);
    expect(soft.out.startsWith("T ")).toBe(true);
    expect(soft.out).toBe(bare.out);
    expect(soft.regs.rip).toBe(bare.cpu.getRip());
    expect(soft.sregs.tr.selector).toBe(0x50);
  });
});

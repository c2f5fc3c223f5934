import { describe, expect, it } from "vitest";
import { disassemble, formatDisassembly } from "../../lib/inspect/disasm.js";
import { kvmExitName, vmxExitReasonName } from "../../lib/inspect/index.js";
import { formatStatsTable } from "../../lib/inspect/stats-table.js";
import { formatExit } from "../../lib/inspect/trace.js";
import type { VmExit } from "../../lib/types/exits.js";
import { ExitStats } from "../../lib/vmm/stats.js";
import { ExitReason, exitReasonName } from "../../lib/vmx/constants.js";

describe("disassembly", () => {
  it("decodes 16-bit code at an address", () => {
    const list = disassemble(Uint8Array.from([0xb8, 0x34, 0x12, 0xe6, 0x80, 0xf4]), 0x7c00n, 16, 10);
    expect(list.map((i) => [i.address, i.length, i.text])).toEqual([
      [0x7c00n, 3, "mov ax,1234h"],
      [0x7c03n, 2, "out 80h,al"],
      [0x7c05n, 1, "hlt"],
    ]);
    expect(formatDisassembly(list, 4).split("\n")[0]).toMatch(/^7c00 {2}b8 34 12\s+mov ax,1234h$/);
  });

  it("the same bytes mean different things per bitness; count limits the output", () => {
    const bytes = Uint8Array.from([0x48, 0x89, 0xc3, 0x90]);
    expect(disassemble(bytes, 0, 64, 1).map((i) => i.text)).toEqual(["mov rbx,rax"]);
    expect(disassemble(bytes, 0, 32, 1).map((i) => i.text)).toEqual(["dec eax"]);
  });

  it("marks undecodable bytes and rejects a bad bitness", () => {
    const list = disassemble(Uint8Array.from([0x0f, 0xff]), 0, 64);
    expect(list.at(-1)!.invalid).toBe(true);
    expect(() => disassemble(new Uint8Array(1), 0, 8 as 16)).toThrow(RangeError);
  });
});

describe("exit trace", () => {
  const out: VmExit = {
    kind: "io",
    direction: "out",
    port: 0x3f8,
    size: 1,
    count: 1,
    data: Uint8Array.from([0x48]),
    raw: { backend: "kvm", code: 2 },
  };

  it("formats a KVM port write with character, RIP and exit code name", () => {
    expect(formatExit(out, { index: 3, rip: 0x7c05n })).toBe(
      "#3 io out port=0x03f8 size=1 data=0x48 'H' rip=0x7c05 [kvm IO(2)]",
    );
  });

  it("formats soft-backend exits with the VMX basic reason, qualification and length", () => {
    const e: VmExit = {
      kind: "io",
      direction: "in",
      port: 0x64,
      size: 2,
      count: 3,
      data: Uint8Array.from([1, 0, 2, 0, 0x34, 0x12]),
      raw: {
        backend: "soft",
        reason: 30,
        exitReasonField: 30,
        qualification: 0x640019n,
        instructionLength: 2,
      },
    };
    expect(formatExit(e, { unhandled: true })).toBe(
      "io in port=0x0064 size=2 count=3 data=0x0001,0x0002,0x1234 (unregistered) [vmx 30 IO_INSTRUCTION qual=0x640019 len=2]",
    );
    const fail: VmExit = {
      kind: "fail-entry",
      reason: 0x80000021,
      raw: {
        backend: "soft",
        reason: 33,
        exitReasonField: 0x80000021,
        qualification: 0n,
        instructionLength: 0,
      },
    };
    expect(formatExit(fail)).toBe(
      "fail-entry reason=0x80000021 [vmx 33 INVALID_STATE entry-failure qual=0x0 len=0]",
    );
  });

  it("knows exit names", () => {
    expect(vmxExitReasonName(48)).toBe("EPT_VIOLATION");
    expect(vmxExitReasonName(999)).toBe("UNKNOWN_999");
    expect(kvmExitName(8)).toBe("SHUTDOWN");
  });

  it("names VMX exit reasons as the VMX layer does, in Linux's spelling", () => {
    const reasons = [
      [ExitReason.InvalidGuestState, "INVALID_STATE"],
      [ExitReason.Vmxoff, "VMOFF"],
      [ExitReason.Vmxon, "VMON"],
      [ExitReason.Sipi, "SIPI_SIGNAL"],
      [ExitReason.MsrLoading, "MSR_LOAD_FAIL"],
    ] as const;
    for (const [reason, name] of reasons) {
      expect([vmxExitReasonName(reason), exitReasonName(reason)]).toEqual([name, name]);
    }
  });

  it("prints a perf-kvm-stat style table", () => {
    const s = new ExitStats();
    s.record(out, 1000);
    s.record(out, 3000);
    s.record({ kind: "hlt", raw: { backend: "kvm", code: 5 } }, 4000);
    const lines = formatStatsTable(s.rows(), { unhandled: 1 }).split("\n");
    expect(lines[0]).toMatch(/^Exit kind\s+Samples\s+Samples%\s+Time%\s+Min Time\s+Max Time\s+Avg time$/);
    expect(lines[1]).toMatch(/^io\s+2\s+66\.67%\s+50\.00%\s+1\.00us\s+3\.00us\s+2\.00us$/);
    expect(lines[2]).toMatch(/^hlt\s+1\s+33\.33%\s+50\.00%/);
    expect(lines).toContain("Unregistered accesses: 1");
  });
});

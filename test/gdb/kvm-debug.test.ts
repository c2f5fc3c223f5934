// The KVM side of the debugger without /dev/kvm: the kvm_guest_debug struct and DR7 encodings
// KVM_SET_GUEST_DEBUG receives (control flags, DR0-DR3, DR7 enables, R/W and LEN fields).

import { describe, expect, it } from "vitest";
import { parseGdbAddress } from "../../lib/cli/parse.js";
import {
  KVM_GUESTDBG_ENABLE,
  KVM_GUESTDBG_SINGLESTEP,
  KVM_GUESTDBG_USE_HW_BP,
  KVM_GUESTDBG_USE_SW_BP,
} from "../../lib/kvm/constants.js";
import { LAYOUTS } from "../../lib/kvm/layouts.js";
import { dr7For, guestDebugStruct } from "../../lib/vmm/debug-kvm.js";

describe("KVM_SET_GUEST_DEBUG encoding", () => {
  it("sets DR7 global enables, R/W and LEN per slot", () => {
    expect(dr7For([{ kind: "exec", length: 1 }])).toBe(0x2n);
    // slot 1: write, 4 bytes -> G1 (bit 3), RW1=01 (bits 21:20), LEN1=11 (bits 23:22)
    expect(
      dr7For([
        { kind: "exec", length: 1 },
        { kind: "write", length: 4 },
      ]),
    ).toBe(0x2n | 0x8n | (0b1101n << 20n));
    // slot 0: access, 8 bytes -> RW0=11, LEN0=10
    expect(dr7For([{ kind: "access", length: 8 }])).toBe(0x2n | (0b1011n << 16n));
  });

  it("writes control and debugreg[] as kvm_guest_debug lays them out", () => {
    const off = LAYOUTS.kvm_guest_debug.fields;
    const none = guestDebugStruct({ swBreakpoints: false, singleStep: false, points: [] });
    expect(none.getUint32(off.control, true)).toBe(0);
    const dv = guestDebugStruct({
      swBreakpoints: true,
      singleStep: true,
      points: [{ linear: 0x100017n, gpa: 0x100017, length: 1, kind: "exec" }],
    });
    expect(dv.byteLength).toBe(72);
    expect(dv.getUint32(off.control, true)).toBe(
      KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_USE_SW_BP | KVM_GUESTDBG_USE_HW_BP,
    );
    expect(dv.getBigUint64(off["arch.debugreg"], true)).toBe(0x100017n);
    expect(dv.getBigUint64(off["arch.debugreg"] + 56, true)).toBe(0x2n);
  });
});

describe("--gdb addresses", () => {
  it("parses [HOST:]PORT and rejects anything else", () => {
    expect(parseGdbAddress("1234")).toEqual({ host: "127.0.0.1", port: 1234 });
    expect(parseGdbAddress("0.0.0.0:9000")).toEqual({ host: "0.0.0.0", port: 9000 });
    expect(parseGdbAddress("[::1]:1")).toEqual({ host: "::1", port: 1 });
    expect(() => parseGdbAddress("70000")).toThrow(/not \[HOST:\]PORT/);
    expect(() => parseGdbAddress("host:")).toThrow(/not \[HOST:\]PORT/);
  });
});

// VMX instructions executed by a guest ask the VMX layer (which always makes them exit in non-root
// operation); the exit must report the whole instruction's length, operands included.

import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { hex, loggedVector, makeGuest } from "./guest.js";

function firstVmxExit(code: number[]) {
  const g = makeGuest("long", [...code, 0xf4]);
  const seen: { insn: string; length: number }[] = [];
  g.hooks.vmxInstruction = (insn, ctx) => {
    seen.push({ insn, length: ctx.length });
    return true;
  };
  return { stop: g.run(), seen, g };
}

describe("VMX instructions in the guest", () => {
  it.each([
    ["vmread rax, rbx", "0f 78 d8", "vmread", 3],
    ["vmread [rax+disp32], rbx", "0f 78 98 78 56 34 12", "vmread", 7],
    ["vmwrite rbx, [rax+rcx*8+disp8]", "0f 79 5c c8 10", "vmwrite", 5],
    ["invept rax, [rbx]", "66 0f 38 80 03", "invept", 5],
    ["invvpid rax, [rbx+disp8]", "66 0f 38 81 43 08", "invvpid", 6],
  ])("%s exits with its full length", (_name, bytes, insn, length) => {
    const { stop, seen } = firstVmxExit(hex(bytes));
    expect(stop).toBe(StopReason.Exit);
    expect(seen).toEqual([{ insn, length }]);
  });

  it("the 0F 38 map without 66 is not INVEPT: #UD, counted", () => {
    const { seen, g } = firstVmxExit(hex("0f 38 80 03"));
    expect(seen).toEqual([]);
    expect(loggedVector(g)).toBe(6);
    expect(g.cpu.udCounts[0x280]).toBe(1);
  });
});

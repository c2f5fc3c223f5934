// Watchpoints on the soft backend are exact in direction as well as in address and width: each
// access to a watched page comes to the host on its own (an EPT violation naming it), so a read
// watchpoint ignores a plain store, a MOVS whose read is elsewhere on the page still stops on its
// write, and an access watchpoint takes either. Driven through the gdb stub as gdb drives it.

import { beforeAll, describe, expect, it } from "vitest";
import { addPcDevices, createMachine } from "../../lib/index.js";
import { Client } from "./client.js";
import { buildGuest, type GdbGuest } from "./guest.js";
import { hex, reg, stubFixture } from "./stub-fixture.js";

const SOURCE = `
        .code64
        .globl _start, after_store, after_load, after_movs, after_add, src, target
        .text
_start:
        movl    $7, target(%rip)
after_store:
        movl    target(%rip), %eax
after_load:
        leaq    src(%rip), %rsi
        leaq    target(%rip), %rdi
        movsl
after_movs:
        addl    $1, target(%rip)
after_add:
        movl    target(%rip), %eax
        outb    %al, $0xf4
        cli
        hlt
        .data
        .balign 8
src:    .long 0x11
target: .long 0
        .section .note.GNU-stack, "", @progbits
`;

let guest: GdbGuest | string;
beforeAll(() => {
  guest = buildGuest(SOURCE);
});

const fixture = stubFixture();

describe.each([{ vcpuThread: false }, { vcpuThread: true }])(
  "soft watchpoints by direction (vcpuThread: $vcpuThread)",
  ({ vcpuThread }) => {
    it("rwatch skips a store, watch stops on MOVS's store, awatch on an ADD to memory", async (ctx) => {
      if (typeof guest === "string") return ctx.skip(guest);
      const sym = (n: string) => (guest as GdbGuest).symbols.get(n)!;
      const vm = await createMachine({ backend: "soft", memoryMiB: 16, vcpuThread });
      addPcDevices(vm, {});
      vm.loadElf(guest.image);
      const { stub, run } = await fixture.serve(vm, 60_000);
      const c = await Client.open(stub.port);
      const rip = () => reg(c, "rip");
      const target = hex(sym("target"));
      expect(await c.ask("?")).toBe("T05thread:1;");

      // the store at _start writes target without reading it: the load after it is the first read
      expect(await c.ask(`Z3,${target},4`)).toBe("OK");
      expect(await c.ask("c")).toBe(`T05thread:1;rwatch:${target};`);
      expect(await rip()).toBe(sym("after_load"));
      expect(await c.ask(`z3,${target},4`)).toBe("OK");

      // MOVS reads src (the same page, not watched) and then writes target
      expect(await c.ask(`Z2,${target},4`)).toBe("OK");
      expect(await c.ask("c")).toBe(`T05thread:1;watch:${target};`);
      expect(await rip()).toBe(sym("after_movs"));
      expect(await c.ask(`m${target},4`)).toBe("11000000");
      expect(await c.ask(`z2,${target},4`)).toBe("OK");

      // one byte in the middle of the ADD's four, either direction
      expect(await c.ask(`Z4,${hex(sym("target") + 2n)},1`)).toBe("OK");
      expect(await c.ask("c")).toBe(`T05thread:1;awatch:${hex(sym("target") + 2n)};`);
      expect(await rip()).toBe(sym("after_add"));
      expect(await c.ask(`m${target},4`)).toBe("12000000");
      expect(await c.ask(`z4,${hex(sym("target") + 2n)},1`)).toBe("OK");

      expect(await c.ask("D")).toBe("OK");
      const r = await run;
      expect(r.reason).toBe("debug-exit");
      expect(r.exitCode).toBe((0x12 << 1) | 1);
      c.close();
    });
  },
);

// Which mode this vitest project runs the interpreter's suites in: the "shared-memory" project
// (vitest.config.ts) puts every interpreter in the mode of several vCPU threads over one guest
// memory before its first run; the others leave them on their own. A setup that silently failed to
// take effect would run the same mode twice and prove nothing.
import { expect, it } from "vitest";
import { makeGuest } from "./guest.js";

const shared = process.env.NODEVMM_SHARED_MEMORY === "1";

it(`interpreters run ${shared ? "in" : "outside"} shared-memory mode in this project`, () => {
  // lock xadd [0x9000], eax ; hlt
  const g = makeGuest("prot32", [0xb8, 5, 0, 0, 0, 0xf0, 0x0f, 0xc1, 0x05, 0x00, 0x90, 0, 0, 0xf4]);
  g.cpu.run(100);
  expect(g.cpu.smp !== null).toBe(shared);
});

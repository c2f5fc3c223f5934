// `nodevmm run --plugin MODULE[,key=value...]` through the real binary: what a plugin receives, what
// it can register, and every way a module can be bad (one line on stderr, status 2, no stack trace).

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { distMissing, nodevmm, root } from "./helpers.js";

let dir = "";
let guest = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "nodevmm-plugins-"));
  // real mode: mov dx,0x500; mov eax,20; out dx,eax; in eax,dx; out 0xf4,al; cli; hlt
  // -> the byte read back from port 0x500 is the debug-exit value
  guest = join(dir, "ask-0x500.bin");
  writeFileSync(
    guest,
    Uint8Array.from([
      0xba, 0x00, 0x05, 0x66, 0xb8, 0x14, 0x00, 0x00, 0x00, 0x66, 0xef, 0x66, 0xed, 0xe6, 0xf4, 0xfa, 0xf4,
    ]),
  );
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function plugin(name: string, source: string): string {
  const p = join(dir, name);
  writeFileSync(p, source);
  return p;
}

/** the status the guest exits with when port 0x500 answered `value` */
const answered = (value: number) => (((value & 0xff) << 1) | 1) & 0xff;
const run = (...args: string[]) => nodevmm(["run", guest, "--backend", "soft", "--timeout", "20", ...args]);
const doubler = join(root, "dist", "examples", "plugins", "doubler.js");

// a plugin that answers port 0x500 with operand + `add` and logs what it was given
const ECHO_CONTEXT = `
export default function (vm, ctx) {
  ctx.log("options " + JSON.stringify(ctx.options) + " text " + JSON.stringify(ctx.optionText));
  const add = Number(ctx.options.add ?? 0);
  let operand = 0;
  vm.io.onOut(0x500, (_p, _s, v) => { operand = v; }, 4);
  vm.io.onIn(0x500, () => operand + add, 4);
}
`;

function noStackTrace(stderr: string): void {
  expect(stderr).not.toMatch(/^\s+at /m);
  expect(stderr.trim().split("\n")).toHaveLength(1);
}

describe.skipIf(distMissing !== undefined)(
  `nodevmm run --plugin${distMissing ? ` (skipped: ${distMissing})` : ""}`,
  () => {
    it("the example doubler answers the guest; port= moves it", () => {
      expect(run("--plugin", doubler).status).toBe(answered(41));
      // moved away from 0x500, the guest reads all-ones there
      expect(run("--plugin", `${doubler},port=0x600`).status).toBe(answered(0xff));
      const bad = run("--plugin", `${doubler},speed=2`);
      expect(bad.status).toBe(2);
      expect(bad.stderr).toMatch(/--plugin .*doubler\.js: Error: unknown option "speed"/);
      noStackTrace(bad.stderr);
    });

    it("options arrive parsed and as typed, with ,, for a comma; bare keys are empty strings", () => {
      const p = plugin("ctx.mjs", ECHO_CONTEXT);
      const r = run("--plugin", `${p},add=3,label=a,,b,flag`);
      expect(r.status).toBe(answered(23));
      expect(r.stderr).toBe(
        `nodevmm: ctx.mjs: options {"add":"3","label":"a,b","flag":""} text "add=3,label=a,,b,flag"\n`,
      );
      const dup = run("--plugin", `${p},add=1,add=2`);
      expect(dup.status).toBe(2);
      expect(dup.stderr).toMatch(/option "add" given twice/);
      expect(run("--plugin", `${p},=1`).stderr).toMatch(/option "=1" has no name/);
      expect(run("--plugin", ",add=1").stderr).toMatch(/no module path/);
    });

    it("a relative path resolves from the working directory; ,, escapes a comma in the path", () => {
      const sub = join(dir, "cwd");
      mkdirSync(sub, { recursive: true });
      writeFileSync(join(sub, "odd,name.mjs"), ECHO_CONTEXT);
      const r = nodevmm(["run", guest, "--backend", "soft", "--plugin", "./odd,,name.mjs,add=1"], {
        cwd: sub,
      });
      expect(r.status).toBe(answered(21));
      expect(r.stderr).toContain('odd,name.mjs: options {"add":"1"}');
    });

    it("plugins run in the order given, after the image is loaded; async plugins are awaited", () => {
      const first = plugin(
        "first.mjs",
        `export default async function (vm, ctx) {
          await new Promise((r) => setTimeout(r, 50));
          ctx.log("first rip=0x" + vm.vcpu(0).getRegs().rip.toString(16));
          vm.io.onOut(0x500, () => {}, 4);
        }`,
      );
      const second = plugin(
        "second.mjs",
        `export default (vm, ctx) => { ctx.log("second"); vm.io.onIn(0x500, () => 0x2a, 4); };`,
      );
      const r = run("--plugin", first, "--plugin", second);
      expect(r.stderr).toBe("nodevmm: first.mjs: first rip=0x7c00\nnodevmm: second.mjs: second\n");
      expect(r.status).toBe(answered(0x2a));
    });

    it("an exit handler from a plugin sees the guest's exits", () => {
      const p = plugin(
        "io.mjs",
        `export default (vm, ctx) => {
          vm.io.onIn(0x500, () => 7, 4);
          vm.io.onOut(0x500, () => {}, 4);
          const prev = vm.setExitHandler("io", (exit, c) => {
            ctx.log(exit.direction + " 0x" + exit.port.toString(16));
            return prev?.(exit, c);
          });
        }`,
      );
      const r = run("--plugin", p);
      expect(r.stderr).toBe(
        ["out 0x500", "in 0x500", "out 0xf4"].map((l) => `nodevmm: io.mjs: ${l}\n`).join(""),
      );
      expect(r.status).toBe(answered(7));
    });

    it("a CommonJS module's module.exports function serves as its default export", () => {
      const p = plugin(
        "answer.cjs",
        "module.exports = (vm) => { vm.io.onIn(0x500, () => 9, 4); vm.io.onOut(0x500, () => {}, 4); };",
      );
      expect(run("--plugin", p).status).toBe(answered(9));
    });

    it("bad modules are one-line errors with status 2", () => {
      const cases: [string, RegExp][] = [
        [join(dir, "missing.mjs"), /: no such file \(.*missing\.mjs\)$/],
        [dir, /: not a file /],
        [join(root, "examples", "plugins", "doubler.ts"), /a TypeScript source; give the compiled module/],
        [plugin("syntax.mjs", "export default function ( {"), /the module failed to load: SyntaxError/],
        [plugin("throws.mjs", "throw new RangeError('no config');"), /failed to load: RangeError: no config/],
        [plugin("none.mjs", "export const x = 1;"), /no default export that is a function .*; it exports x$/],
        [plugin("object.mjs", "export default { name: 'x' };"), /no default export that is a function/],
        [
          plugin("fails.mjs", "export default () => { throw new TypeError('bad port'); };"),
          /: TypeError: bad port$/,
        ],
        [
          plugin("rejects.mjs", "export default async () => { throw new Error('later'); };"),
          /: Error: later$/,
        ],
        [
          plugin("conflict.mjs", "export default (vm) => vm.io.onOut(0x3f8, () => {});"),
          /: BusConflictError: .*0x3f8/,
        ],
      ];
      for (const [path, message] of cases) {
        const r = run("--plugin", path);
        expect(r.status, path).toBe(2);
        expect(r.stdout, path).toBe("");
        expect(r.stderr, path).toMatch(/^nodevmm: --plugin /);
        expect(r.stderr.trim(), path).toMatch(message);
        noStackTrace(r.stderr);
      }
    });

    it("a handler that throws during the run ends it as a crash: status 3 and a register dump", () => {
      const p = plugin(
        "crash.mjs",
        `export default (vm) => {
          vm.io.onOut(0x500, () => { throw new Error("device on fire"); }, 4);
        }`,
      );
      const r = run("--plugin", p);
      expect(r.status).toBe(3);
      expect(r.stderr).toMatch(/guest stopped: error \(Error: device on fire\)/);
      expect(r.stderr).toMatch(/^EIP=/m);
    });

    it("a plugin that leaves the machine unable to run gives status 3, not a stack trace", () => {
      const p = plugin("closer.mjs", "export default (vm) => vm.close();");
      const r = run("--plugin", p);
      expect(r.status).toBe(3);
      expect(r.stderr).toBe("nodevmm: internal error: the machine is closed\n");
    });
  },
);

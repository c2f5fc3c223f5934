// The crashes issue 14 found with ordinary non-KVM fds, on both bindings. Each case runs in a child
// process of its own: a SIGBUS or SIGSEGV there is a failed assertion here, not a dead test runner.
// What the child does is printed as JSON (each step's result or error), and asserted below.

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { availableBindings, type BindingKind } from "../../lib/kvm/index.js";
import { ensureDist, root } from "../support/dist.js";

const available = availableBindings();
const distMissing = ensureDist("dist/lib/kvm/binding.js", ["lib/kvm"]);
const dir = mkdtempSync(join(tmpdir(), "nodevmm-foreign-fds-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Step {
  step: string;
  ok?: unknown;
  error?: { name: string; message: string; code?: string };
}

/**
 * Runs `body` (an async function body with `b`, the binding, `fs` and `dir` in scope, and
 * `step(name, fn)` recording what fn returned or threw) in a fresh node process.
 */
function inChild(
  kind: BindingKind,
  body: string,
): { steps: Step[]; status: number | null; signal: string | null; stderr: string } {
  const url = pathToFileURL(join(root, "dist", "lib", "kvm", "binding.js")).href;
  const script = `
    import * as fs from "node:fs";
    const { loadBinding } = await import(${JSON.stringify(url)});
    const b = loadBinding(${JSON.stringify(kind)});
    const dir = ${JSON.stringify(dir)};
    const step = (name, fn) => {
      let rec;
      try {
        const v = fn();
        rec = { step: name, ok: v instanceof ArrayBuffer ? "ArrayBuffer" : v ?? null };
      } catch (e) {
        rec = { step: name, error: { name: e?.constructor?.name, message: String(e?.message), code: e?.code } };
      }
      // one line per step, written before the next step can crash the process
      fs.writeSync(1, JSON.stringify(rec) + "\\n");
      return rec;
    };
    ${body}
  `;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, NODEVMM_BINDING: "" },
  });
  const steps = r.stdout
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Step);
  return { steps, status: r.status, signal: r.signal, stderr: r.stderr };
}

function expectSurvived(r: ReturnType<typeof inChild>): void {
  expect({ signal: r.signal, status: r.status, stderr: r.stderr }).toEqual({
    signal: null,
    status: 0,
    stderr: "",
  });
}

const stepOf = (r: ReturnType<typeof inChild>, name: string): Step => {
  const s = r.steps.find((x) => x.step === name);
  if (!s) throw new Error(`the child never reached step ${name} (${r.signal ?? r.status}): ${r.stderr}`);
  return s;
};

describe.each(["addon", "koffi"] as BindingKind[])("binding %s with fds that are not KVM's", (kind) => {
  const skip =
    distMissing ?? (available.includes(kind) ? undefined : `the ${kind} binding is not available here`);
  if (skip) console.log(`skipped: ${skip}`);

  it.skipIf(skip !== undefined)(
    "an empty file: mmap of 4096 bytes is refused; run() then kick() do not crash",
    () => {
      const r = inChild(
        kind,
        `
      const path = dir + "/${kind}-empty.bin";
      fs.writeFileSync(path, "");
      const fd = b.open(path);
      step("mmap", () => b.mmap(fd, 4096, 0));
      step("run", () => b.run(fd));
      step("kick", () => b.kick(fd));
      step("close", () => b.close(fd));
    `,
      );
      expectSurvived(r);
      expect(stepOf(r, "mmap").error).toMatchObject({
        name: "RangeError",
        message: expect.stringMatching(/past the end of the file/),
      });
      expect(stepOf(r, "run").error).toMatchObject({ code: "ENOTTY" });
      expect(stepOf(r, "kick")).toEqual({ step: "kick", ok: null });
    },
  );

  it.skipIf(skip !== undefined)(
    "a file's mapping is not taken for kvm_run: kick() does not write into it",
    () => {
      const path = join(dir, `${kind}-page.bin`);
      const r = inChild(
        kind,
        `
      const path = ${JSON.stringify(path)};
      fs.writeFileSync(path, Buffer.alloc(4096));
      const fd = b.open(path);
      let ab;
      step("mmap", () => (ab = b.mmap(fd, 4096, 0)));
      step("run", () => b.run(fd));
      step("kick", () => b.kick(fd));
      step("run again", () => b.run(fd));
      step("munmap", () => b.munmap(ab));
      step("close", () => b.close(fd));
    `,
      );
      expectSurvived(r);
      expect(stepOf(r, "mmap")).toEqual({ step: "mmap", ok: "ArrayBuffer" });
      expect(stepOf(r, "run").error).toMatchObject({ code: "ENOTTY" });
      expect(stepOf(r, "run again").error).toMatchObject({ code: "ENOTTY" });
      // kvm_run.immediate_exit is byte 1: a kick that took the file for a vCPU would have set it
      expect([...readFileSync(path).subarray(0, 4)]).toEqual([0, 0, 0, 0]);
    },
  );

  it.skipIf(skip !== undefined)("a mapping longer than the file is refused; one within it is fine", () => {
    const r = inChild(
      kind,
      `
      const empty = dir + "/${kind}-empty2.bin";
      fs.writeFileSync(empty, "");
      const small = dir + "/${kind}-small.bin";
      fs.writeFileSync(small, Buffer.alloc(4097, 7));
      const e = b.open(empty);
      const s = b.open(small);
      step("8192 of an empty file", () => b.mmap(e, 8192, 0));
      step("12288 of a 4097-byte file", () => b.mmap(s, 12288, 0));
      step("4096 at offset 8192 of a 4097-byte file", () => b.mmap(s, 4096, 8192));
      let ab;
      step("8192 of a 4097-byte file", () => (ab = b.mmap(s, 8192, 0)));
      // the last page's tail past the end of the file reads as zeroes, not SIGBUS
      step("read", () => [new Uint8Array(ab)[4096], new Uint8Array(ab)[4097], new Uint8Array(ab)[8191]]);
      step("munmap", () => b.munmap(ab));
      b.close(e);
      b.close(s);
    `,
    );
    expectSurvived(r);
    for (const name of [
      "8192 of an empty file",
      "12288 of a 4097-byte file",
      "4096 at offset 8192 of a 4097-byte file",
    ]) {
      expect(stepOf(r, name).error, name).toMatchObject({ name: "RangeError" });
    }
    expect(stepOf(r, "read")).toEqual({ step: "read", ok: [7, 0, 0] });
  });

  it.skipIf(skip !== undefined)("fds that are neither KVM vCPUs nor regular files are not mapped", () => {
    const r = inChild(
      kind,
      `
      const zero = b.open("/dev/zero");
      step("/dev/zero", () => b.mmap(zero, 4096, 0));
      b.close(zero);
      const efd = b.eventfd(0, 0);
      step("eventfd", () => b.mmap(efd, 4096, 0));
      b.close(efd);
      step("directory", () => {
        const d = fs.openSync(dir, "r");
        try {
          return b.mmap(d, 4096, 0);
        } finally {
          fs.closeSync(d);
        }
      });
      step("closed fd", () => b.mmap(987, 4096, 0));
    `,
    );
    expectSurvived(r);
    for (const name of ["/dev/zero", "eventfd", "directory"]) {
      expect(stepOf(r, name).error, name).toMatchObject({
        name: "TypeError",
        message: expect.stringMatching(/neither a KVM vCPU this binding created nor a regular file/),
      });
    }
    expect(stepOf(r, "closed fd").error).toMatchObject({ code: "EBADF" });
  });

  it.skipIf(skip !== undefined)(
    "writing and reading through a view after munmap neither crashes nor reaches the file",
    () => {
      const path = join(dir, `${kind}-stale.bin`);
      const r = inChild(
        kind,
        `
      const path = ${JSON.stringify(path)};
      fs.writeFileSync(path, Buffer.alloc(8192));
      const fd = b.open(path);
      const ab = b.mmap(fd, 8192, 0);
      const view = new Uint8Array(ab);
      const dv = new DataView(ab);
      view[5] = 1;
      step("munmap", () => b.munmap(ab));
      step("write", () => {
        view.fill(0xff);
        if (dv.byteLength > 0) dv.setUint32(4096, 0xdeadbeef);
        return view.length;
      });
      step("read", () => (view.length === 0 ? "detached" : view.every((x, i) => x === 0xff || i >= 4096) ? "inert" : "other"));
      const anon = b.mmapAnonymous(4096);
      const av = new Uint32Array(anon);
      b.munmap(anon);
      step("anonymous write", () => { av.fill(0xffffffff); return av.length; });
      step("munmap twice", () => b.munmap(ab));
      b.close(fd);
    `,
      );
      expectSurvived(r);
      // the addon's views are detached: fill() says so with a TypeError; koffi's write inert pages
      for (const name of ["write", "anonymous write"]) {
        if (kind === "addon") {
          expect(stepOf(r, name).error, name).toMatchObject({
            name: "TypeError",
            message: expect.stringMatching(/detached/),
          });
        } else {
          expect(stepOf(r, name).error, name).toBeUndefined();
        }
      }
      expect(stepOf(r, "munmap twice").error).toMatchObject({ name: "TypeError" });
      // the addon detaches; koffi's stale views reach inert pages only
      expect(stepOf(r, "read").ok).toBe(kind === "addon" ? "detached" : "inert");
      const file = readFileSync(path);
      expect(file[5]).toBe(1); // written while mapped
      expect(file.subarray(6).every((x) => x === 0)).toBe(true); // nothing after munmap
    },
  );
});

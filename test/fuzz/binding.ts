// Fuzz target "binding": sequences of calls to the KVM system-call bindings (the native addon when it
// is built, and koffi) with ordinary, non-KVM file descriptors only (there is no /dev/kvm here, and
// the fuzzer never opens it): regular files of 0, 4096 and 8192 bytes, /dev/null, /dev/zero, a
// directory, eventfds, fds already closed, and numbers nobody opened. Mappings the binding hands out
// are read and written through views, before and after munmap; run() and kick() are called on
// whatever fd comes up.
//
// Oracle: every call returns or throws an Error; nothing crashes the process (the runner catches a
// SIGSEGV/SIGBUS in the child and reports the case that was running). close() is only ever called
// on fds this target has open, so the fuzzer cannot pull Node's own descriptors away.

import { closeSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import {
  availableBindings,
  type BindingKind,
  KVM_IOCTLS,
  type KvmBinding,
  loadBinding,
} from "../../lib/kvm/index.js";
import { type CaseOutcome, type FuzzTarget, OracleViolation } from "./target.js";

const BINDINGS: readonly BindingKind[] = availableBindings();

let dir: string | undefined;
/** The files the target opens (made once per process, removed at its exit). */
function files(): string[] {
  if (!dir) {
    const d = mkdtempSync(join(tmpdir(), "nodevmm-fuzz-binding-"));
    dir = d;
    writeFileSync(join(d, "empty"), "");
    writeFileSync(join(d, "page"), new Uint8Array(4096).fill(0x5a));
    writeFileSync(join(d, "two-pages"), new Uint8Array(8192).fill(0xa5));
    process.on("exit", () => rmSync(d, { recursive: true, force: true }));
  }
  return ["empty", "page", "two-pages"]
    .map((f) => join(dir!, f))
    .concat(["/dev/null", "/dev/zero", dir, "/nonexistent/x"]);
}

type Op =
  | { op: "open"; file: number; flags: number }
  | { op: "eventfd"; init: unknown; flags: unknown }
  | { op: "close"; fd: number }
  | { op: "ioctl"; fd: number; request: unknown; arg: unknown }
  | { op: "mmap"; fd: number; length: unknown; offset: unknown }
  | { op: "mmapAnonymous"; length: unknown }
  | { op: "munmap"; map: number }
  | { op: "touch"; map: number; at: number; write: boolean; viewAfter: boolean }
  | { op: "run" | "kick" | "kickTarget"; fd: number }
  | { op: "setUserMemoryRegion"; fd: number; slot: unknown; flags: unknown; gpa: unknown; map: number }
  | { op: "getDirtyLog"; fd: number; slot: unknown; bitmap: unknown };

/** fd operands: an index into what the case opened (low values) or a raw number */
const fd = fc.oneof(fc.nat(7), fc.constantFrom(-1, 0, 1, 2, 3, 1000, 2 ** 31 - 1, 2 ** 31));
const weirdNumber = fc.oneof(
  fc.constantFrom<unknown>(
    0,
    1,
    4095,
    4096,
    4097,
    8192,
    12288,
    1 << 30,
    2 ** 32,
    -1,
    -4096,
    Number.NaN,
    0.5,
    1n,
    "4096",
    null,
    undefined,
  ),
  fc.integer(),
);
const request = fc.oneof(
  fc.constantFrom(...Object.values(KVM_IOCTLS)),
  fc.integer(),
  fc.constantFrom<unknown>(null, "x", 1n),
);
const ioctlArg = fc.oneof(
  fc.constantFrom<unknown>(undefined, 0, 1, -1, 0n, null),
  fc.integer({ min: 0, max: 600 }).map((n) => new ArrayBuffer(n) as unknown),
  fc.integer({ min: 0, max: 300 }).map((n) => new DataView(new ArrayBuffer(n + 8), 8) as unknown),
  fc.uint8Array({ maxLength: 600 }) as fc.Arbitrary<unknown>,
);

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("open" as const),
      file: fc.nat(6),
      flags: fc.constantFrom(0, 2, 0o4000),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("eventfd" as const), init: weirdNumber, flags: weirdNumber }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("close" as const), fd: fc.nat(7) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("ioctl" as const), fd, request, arg: ioctlArg }) },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant("mmap" as const), fd, length: weirdNumber, offset: weirdNumber }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("mmapAnonymous" as const), length: weirdNumber }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("munmap" as const), map: fc.nat(7) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("touch" as const),
      map: fc.nat(7),
      at: fc.nat(16383),
      write: fc.boolean(),
      viewAfter: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constantFrom("run" as const, "kick" as const, "kickTarget" as const), fd }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("setUserMemoryRegion" as const),
      fd,
      slot: weirdNumber,
      flags: weirdNumber,
      gpa: weirdNumber,
      map: fc.nat(7),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("getDirtyLog" as const),
      fd,
      slot: weirdNumber,
      bitmap: ioctlArg,
    }),
  },
);

export interface BindingCase {
  binding: number;
  ops: Op[];
}

const bindingCase: fc.Arbitrary<BindingCase> = fc.record({
  binding: fc.nat(Math.max(0, BINDINGS.length - 1)),
  ops: fc.array(op, { minLength: 1, maxLength: 24 }),
});

interface State {
  b: KvmBinding;
  /** fds this case opened (closed ones stay, by number: using them again is part of the test) */
  fds: number[];
  open: Set<number>;
  maps: ArrayBuffer[];
  /** views made before their mapping was unmapped */
  views: Map<ArrayBuffer, Uint8Array>;
}

const fdOf = (s: State, v: number): number =>
  v >= 0 && v < 8 && s.fds.length ? s.fds[v % s.fds.length]! : v;
const mapOf = (s: State, i: number): ArrayBuffer | undefined =>
  s.maps.length ? s.maps[i % s.maps.length] : undefined;

function apply(s: State, o: Op): unknown {
  const { b } = s;
  switch (o.op) {
    case "open": {
      const f = b.open(files()[o.file]!, o.flags);
      s.fds.push(f);
      s.open.add(f);
      return f;
    }
    case "eventfd": {
      const f = b.eventfd(o.init as number, o.flags as number);
      s.fds.push(f);
      s.open.add(f);
      return f;
    }
    case "close": {
      // only an fd this case has open: a number it closed before may be Node's own by now
      const open = [...s.open];
      const f = open.length ? open[o.fd % open.length]! : -1;
      if (f < 0) return undefined;
      b.close(f);
      s.open.delete(f);
      return undefined;
    }
    case "ioctl":
      return b.ioctl(fdOf(s, o.fd), o.request as number, o.arg as number);
    case "mmap": {
      const m = b.mmap(fdOf(s, o.fd), o.length as number, o.offset as number);
      s.maps.push(m);
      s.views.set(m, new Uint8Array(m));
      return m.byteLength;
    }
    case "mmapAnonymous": {
      const m = b.mmapAnonymous(o.length as number);
      s.maps.push(m);
      s.views.set(m, new Uint8Array(m));
      return m.byteLength;
    }
    case "munmap": {
      const m = mapOf(s, o.map);
      if (!m) return undefined;
      b.munmap(m);
      return undefined;
    }
    case "touch": {
      const m = mapOf(s, o.map);
      if (!m) return undefined;
      // a view made now, or the one made when the mapping was new (it may outlive munmap)
      const view = o.viewAfter ? new Uint8Array(m) : s.views.get(m)!;
      if (view.length === 0) return undefined;
      const at = o.at % view.length;
      if (o.write) view[at] = 0x77;
      return view[at];
    }
    case "run":
    case "kick":
      return b[o.op](fdOf(s, o.fd));
    case "kickTarget":
      return b.kickTarget?.(fdOf(s, o.fd));
    case "setUserMemoryRegion":
      return b.setUserMemoryRegion(
        fdOf(s, o.fd),
        o.slot as number,
        o.flags as number,
        o.gpa as number,
        mapOf(s, o.map) ?? null,
      );
    case "getDirtyLog":
      return b.getDirtyLog(fdOf(s, o.fd), o.slot as number, o.bitmap as ArrayBuffer);
  }
}

export async function runBindingCase(c: BindingCase): Promise<CaseOutcome> {
  const kind = BINDINGS[c.binding % Math.max(1, BINDINGS.length)];
  if (!kind) return { outcome: "no binding here", bytes: 0 };
  const s: State = { b: loadBinding(kind), fds: [], open: new Set(), maps: [], views: new Map() };
  let errors = 0;
  try {
    for (const o of c.ops) {
      try {
        apply(s, o);
      } catch (e) {
        if (!(e instanceof Error)) {
          throw new OracleViolation(
            `binding ${o.op} threw a non-Error`,
            `${kind} ${o.op} threw ${String(e)}`,
          );
        }
        errors++;
      }
    }
  } finally {
    for (const m of s.maps) {
      try {
        s.b.munmap(m);
      } catch {
        // unmapped by the case already
      }
    }
    for (const f of s.open) {
      try {
        closeSync(f);
      } catch {
        // the binding's close() may have closed it
      }
    }
  }
  return { outcome: `${kind}: ${errors ? "errors thrown" : "all returned"}`, bytes: 0 };
}

export const bindingTarget: FuzzTarget<BindingCase> = {
  name: "binding",
  about: "KVM bindings (addon, koffi) on ordinary fds: Errors, never a crash",
  arbitrary: bindingCase,
  run: runBindingCase,
  describe: (c) => `${BINDINGS[c.binding % Math.max(1, BINDINGS.length)] ?? "none"} ${fc.stringify(c.ops)}`,
};

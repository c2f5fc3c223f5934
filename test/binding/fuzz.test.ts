// Nothing a caller passes may crash the process: random arguments to every binding function must
// come back as a thrown Error or a result. A crash would kill this test's worker and fail the run.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { availableBindings, KVM_IOCTLS, loadBinding } from "../../lib/kvm/index.js";

const requests = Object.values(KVM_IOCTLS);
const arg = fc.oneof(
  fc.anything(),
  fc.integer(),
  fc.bigInt(),
  fc.constantFrom(...requests),
  fc.uint8Array({ maxLength: 600 }).map((a) => a as unknown),
  fc.integer({ min: 0, max: 2000 }).map((n) => new ArrayBuffer(n) as unknown),
  fc.integer({ min: 0, max: 300 }).map((n) => new DataView(new ArrayBuffer(n + 8), 8) as unknown),
);

describe.each(availableBindings())("binding %s under random arguments", (kind) => {
  it("throws Errors, never crashes", () => {
    const b = loadBinding(kind);
    // the functions that cannot touch files: fds come from the fuzzer (an eventfd among them)
    const efd = b.eventfd(0, 0);
    const fns = {
      ioctl: b.ioctl,
      run: b.run,
      kick: b.kick,
      kickTarget: b.kickTarget,
      mmapAnonymous: b.mmapAnonymous,
      munmap: b.munmap,
      setUserMemoryRegion: b.setUserMemoryRegion,
      getDirtyLog: b.getDirtyLog,
    } as Record<string, (...a: unknown[]) => unknown>;
    try {
      fc.assert(
        fc.property(
          fc.constantFrom(...Object.keys(fns)),
          fc.oneof(fc.constant(efd), arg),
          fc.array(arg, { maxLength: 4 }),
          (name, fd, rest) => {
            let result: unknown;
            try {
              result = fns[name]!(fd, ...rest);
            } catch (e) {
              expect(e).toBeInstanceOf(Error);
              return;
            }
            if (result instanceof ArrayBuffer) b.munmap(result);
          },
        ),
        { numRuns: 400 },
      );
    } finally {
      b.close(efd);
    }
  });
});

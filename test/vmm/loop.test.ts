import { describe, expect, it } from "vitest";
import type { HltExit, VmExit } from "../../lib/types/exits.js";
import { type ExitHandler, ExitLoop, type StopRun } from "../../lib/vmm/loop.js";
import { FakeBackend, hlt, intr, io } from "./fake-backend.js";

function vcpuFor(script: ConstructorParameters<typeof FakeBackend>[0], opts = {}) {
  return new FakeBackend(script, opts).createVcpu(0);
}

describe("ExitLoop", () => {
  it("dispatches each exit to the handler registered for its kind until one stops", () => {
    const seen: string[] = [];
    const loop = new ExitLoop({
      io: (e) => void seen.push(`io ${e.port}`),
      intr: () => void seen.push("intr"),
      hlt: () => ({ reason: "hlt" }),
    });
    const vcpu = vcpuFor([io("out", 0x3f8, 1, [0x41]), intr(), io("out", 0x80, 1, [1]), hlt(), intr()]);
    const r = loop.runSync(vcpu);
    expect(seen).toEqual(["io 1016", "intr", "io 128"]);
    expect(r.reason).toBe("hlt");
    expect(r.exits).toBe(4);
    expect(r.exit?.kind).toBe("hlt");
    expect(vcpu.runs).toBe(4);
  });

  it("an exit kind with no handler ends the run as an internal error naming the kind", () => {
    const loop = new ExitLoop({});
    const r = loop.runSync(
      vcpuFor([{ kind: "cpuid", leaf: 1, subleaf: 0, raw: { backend: "kvm", code: 0 } }]),
    );
    expect(r.reason).toBe("internal-error");
    expect(r.message).toMatch(/cpuid/);
  });

  it("setHandler overrides and returns the previous handler for chaining", () => {
    const loop = new ExitLoop({ hlt: () => ({ reason: "hlt" }) });
    let halts = 0;
    const prev: ExitHandler<HltExit> | undefined = loop.setHandler("hlt", (e, ctx): StopRun | undefined => {
      halts++;
      return halts < 3 ? undefined : (prev?.(e, ctx) ?? undefined);
    });
    const r = loop.runSync(vcpuFor([], { tail: hlt }));
    expect(halts).toBe(3);
    expect(r.reason).toBe("hlt");
    expect(r.exits).toBe(3);
  });

  it("maxExits stops after exactly that many exits", () => {
    const loop = new ExitLoop({ intr: () => undefined });
    const vcpu = vcpuFor([], { tail: intr });
    const r = loop.runSync(vcpu, { maxExits: 25 });
    expect(r.reason).toBe("max-exits");
    expect(r.exits).toBe(25);
    expect(vcpu.runs).toBe(25);
    expect(loop.runSync(vcpu, { maxExits: 0 }).exits).toBe(0);
  });

  it("timeoutMs ends a guest that keeps exiting", () => {
    const loop = new ExitLoop({ intr: () => undefined });
    const r = loop.runSync(vcpuFor([], { tail: intr }), { timeoutMs: 20 });
    expect(r.reason).toBe("timeout");
    expect(r.exits).toBeGreaterThan(0);
  });

  it("maxInstructions arms the backend budget and stops when it is used up", () => {
    const loop = new ExitLoop({ intr: () => undefined });
    const backend = new FakeBackend([], {
      countsInstructions: true,
      tail: () => {
        const v = backend.vcpus[0]!;
        v.retired += v.budget ?? 1000;
        return intr();
      },
    });
    const vcpu = backend.createVcpu(0);
    const r = loop.runSync(vcpu, { maxInstructions: 450_000 });
    expect(r.reason).toBe("max-instructions");
    expect(r.instructions).toBe(450_000);
    // slices of at most 200k, the last one trimmed to what is left, and the budget removed after
    expect(vcpu.budgets).toEqual([200_000, 200_000, 50_000, undefined]);
  });

  it("maxInstructions on a backend that cannot count is a clear error", () => {
    const loop = new ExitLoop({});
    expect(() => loop.runSync(vcpuFor([]), { maxInstructions: 10 })).toThrow(/soft backend/);
    expect(() => loop.runSync(vcpuFor([]), { maxExits: -1 })).toThrow(/non-negative/);
  });

  it("a handler that throws ends the run with reason error and the error attached", () => {
    const loop = new ExitLoop({
      io: () => {
        throw new RangeError("bad port");
      },
    });
    const r = loop.runSync(vcpuFor([io("in", 0x60, 1)]));
    expect(r.reason).toBe("error");
    expect(r.error).toBeInstanceOf(RangeError);
    expect(r.message).toBe("RangeError: bad port");
  });

  it("pendingStop and afterExit hooks are honoured", () => {
    const after: VmExit["kind"][] = [];
    let stopAt = 3;
    const loop = new ExitLoop(
      { intr: () => undefined },
      {
        afterExit: (e) => void after.push(e.kind),
        pendingStop: () => (--stopAt === 0 ? { reason: "debug-exit", exitCode: 7 } : undefined),
      },
    );
    const r = loop.runSync(vcpuFor([], { tail: intr }));
    expect(r).toMatchObject({ reason: "debug-exit", exitCode: 7 });
    expect(after.length).toBe(r.exits);
  });

  it("records per-kind statistics", () => {
    const loop = new ExitLoop({ io: () => undefined, hlt: () => ({ reason: "hlt" }) });
    loop.runSync(vcpuFor([io("out", 1, 1, [0]), io("out", 2, 1, [0]), hlt()]));
    const rows = loop.stats.rows();
    expect(rows.map((r) => [r.kind, r.stats.count])).toEqual([
      ["io", 2],
      ["hlt", 1],
    ]);
    expect(loop.stats.exits).toBe(3);
    expect(rows[0]!.stats.minNs).toBeLessThanOrEqual(rows[0]!.stats.maxNs);
  });

  it("run() yields to the event loop between slices", async () => {
    const loop = new ExitLoop({ intr: () => undefined, hlt: () => ({ reason: "hlt" }) });
    let timerFired = false;
    const vcpu = vcpuFor([], {
      // a busy guest that halts once a host timer has run, which it can only if run() yields
      tail: () => {
        const until = performance.now() + 0.2;
        while (performance.now() < until) {}
        return timerFired ? hlt() : intr();
      },
    });
    setTimeout(() => {
      timerFired = true;
    }, 5);
    const r = await loop.run(vcpu, { maxExits: 1_000_000 });
    expect(r.reason).toBe("hlt");
    expect(r.exits).toBeGreaterThan(1);
  });

  it("runSync() does not yield: the same timer cannot fire during it", () => {
    const loop = new ExitLoop({ intr: () => undefined });
    let timerFired = false;
    setTimeout(() => {
      timerFired = true;
    }, 0);
    const vcpu = vcpuFor([], {
      tail: () => {
        const until = performance.now() + 0.2;
        while (performance.now() < until) {}
        return intr();
      },
    });
    const r = loop.runSync(vcpu, { timeoutMs: 30 });
    expect(r.reason).toBe("timeout");
    expect(timerFired).toBe(false);
  });

  it("refineExit can stand an exit for another before dispatch (in-kernel HLT seen as hlt)", () => {
    const seen: string[] = [];
    const loop = new ExitLoop(
      { intr: () => undefined, hlt: () => ({ reason: "hlt" }) },
      {
        refineExit: (e) => (e.kind === "intr" && seen.length === 2 ? { kind: "hlt", raw: e.raw } : e),
        afterExit: (e) => void seen.push(e.kind),
      },
    );
    const r = loop.runSync(vcpuFor([], { tail: intr }));
    expect(seen).toEqual(["intr", "intr", "hlt"]);
    expect(r.reason).toBe("hlt");
    expect(r.exit?.raw).toEqual({ backend: "kvm", code: 10 });
  });
});

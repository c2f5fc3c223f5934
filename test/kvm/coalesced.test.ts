// Coalesced PIO on real KVM: the debug console's and POST port's writes go to KVM's ring instead of
// exiting one by one, and the loop replays them before the next exit. What the guest wrote must
// reach the handlers byte for byte and in the same order (interleaved with a port that still
// exits) as without coalescing, sync and async, also when the ring (170 slots) fills up.

import { describe, expect, it } from "vitest";
import type { KvmVcpuBackend } from "../../lib/vmm/backends/kvm.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { probe, skipReason } from "./helpers.js";

const ITERATIONS = 1000;
// xor cx,cx; l: mov al,cl; out 0xe9,al; out 0x80,al; test cl,7; jnz s; out 0x99,al;
// s: inc cx; cmp cx,1000; jne l; cli; hlt
const GUEST = [
  0x31,
  0xc9,
  0x88,
  0xc8,
  0xe6,
  0xe9,
  0xe6,
  0x80,
  0xf6,
  0xc1,
  0x07,
  0x75,
  0x02,
  0xe6,
  0x99,
  0x41,
  0x81,
  0xf9,
  ITERATIONS & 0xff,
  ITERATIONS >> 8,
  0x75,
  0xec,
  0xfa,
  0xf4,
];

function expected(): string[] {
  const out: string[] = [];
  for (let i = 0; i < ITERATIONS; i++) {
    out.push(`e9:${i & 0xff}`, `80:${i & 0xff}`);
    if ((i & 7) === 0) out.push(`99:${i & 0xff}`);
  }
  return out;
}

async function trace(coalesce: boolean, sync: boolean) {
  const vm = await createMachine({ memoryMiB: 4, backend: "kvm" });
  try {
    const log: string[] = [];
    for (const port of [0xe9, 0x80, 0x99]) {
      vm.io.onOut(port, (p, _s, v) => void log.push(`${p.toString(16)}:${v}`));
    }
    const on = coalesce && vm.coalesceWrites("io", 0xe9) && vm.coalesceWrites("io", 0x80);
    vm.loadFlat(Uint8Array.from(GUEST));
    const r = sync ? vm.runSync({ timeoutMs: 30_000 }) : await vm.run({ timeoutMs: 30_000 });
    const kvmVcpu = (vm.vcpu(0).backend as KvmVcpuBackend).kvmVcpu;
    const io = vm.stats.byKind.get("io")?.count ?? 0;
    return { log, reason: r.reason, io, on, coalesced: kvmVcpu.coalescedWrites };
  } finally {
    vm.close();
  }
}

describe.skipIf(!probe.usable)(`KVM coalesced PIO${skipReason}`, () => {
  it("the debug console and POST port print byte for byte what they print without coalescing", async (ctx) => {
    const plain = await trace(false, true);
    expect(plain.reason).toBe("hlt");
    expect(plain.log).toEqual(expected());
    expect(plain.coalesced).toBe(0);
    const sync = await trace(true, true);
    if (!sync.on) {
      console.warn("coalesced PIO test skipped: this KVM lacks KVM_CAP_COALESCED_MMIO/_PIO");
      ctx.skip();
    }
    const async = await trace(true, false);
    for (const t of [sync, async]) {
      expect(t.reason).toBe("hlt");
      expect(t.log).toEqual(plain.log);
      // the writes really went through the ring (and the loop still counted one exit per write;
      // the interrupted entries, the watchdog's kicks, vary from run to run)
      expect(t.coalesced).toBeGreaterThan(ITERATIONS);
      expect(t.io).toBe(plain.io);
    }
  });
});

// The local APIC as a soft vCPU in a worker thread reaches it without crossing to the machine's
// thread (lib/vmm/backends/soft/threads.ts): register reads served from the copy the machine's
// thread keeps, EOIs posted and applied before the vCPU's next exit, interrupts taken without an
// acknowledge request. Each guest runs with the vCPU on the machine's thread and in a thread of its
// own, and must leave the same values; the exits show which accesses stayed in the thread.

import { describe, expect, it } from "vitest";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { APIC, Code, EAX, EBX, ECX, EDX } from "../support/mmio-guests.js";

const IOAPIC = 0xfec00000;
const IDTR = 0x2ff0;
const IDT = 0x3000;
const OUT = 0x2000;
const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

interface GuestRun {
  out: number[];
  /** the APIC page's accesses that reached the machine's thread, "R 300" / "W b0" */
  apicExits: string[];
  reason: string;
}

async function runGuest(
  code: Uint8Array,
  vcpuThread: boolean,
  words: number,
  setup?: (vm: Machine) => void,
): Promise<GuestRun> {
  const vm = await createMachine({ backend: "soft", memoryMiB: 1, vcpuThread });
  try {
    expect(vm.hasVcpuThread).toBe(vcpuThread);
    const apicExits: string[] = [];
    vm.on("exit", (e) => {
      if (e.kind === "mmio" && e.address >= APIC && e.address < APIC + 0x1000) {
        apicExits.push(`${e.write ? "W" : "R"} ${(e.address - APIC).toString(16)}`);
      }
    });
    setup?.(vm);
    vm.loadFlat(code, { address: 0x10000, mode: "protected" });
    const result = await vm.run({ timeoutMs: 30_000, maxExits: 10_000 });
    const out = Array.from({ length: words }, (_, i) => vm.memory.readU32(OUT + 4 * i));
    return { out, apicExits, reason: result.reason };
  } finally {
    vm.close();
  }
}

/** mov eax, [ebx+off] (`load`: the opcode bytes) ; mov [OUT+4*slot], eax */
function readTo(c: Code, slot: number, off: number, load: number[] = [0x8b]): void {
  c.mem([], load, EAX, EBX, off);
  c.abs([], [0x89], EAX, OUT + 4 * slot);
}

describe("the local APIC from a soft vCPU thread", () => {
  it("register reads give the values the machine's thread gives, and only IRR/ISR/PPR and the count exit", async () => {
    const c = new Code("protected");
    c.movAddr(EBX, APIC);
    const write = (off: number, v: number) => c.mem([], [0xc7], 0, EBX, off, le32(v));
    write(0xf0, 0x1ff); // SVR: enabled, spurious 0xff
    write(0x80, 0x20); // TPR
    write(0xe0, 0x0fffffff); // DFR: cluster model
    write(0xd0, 0x03000000); // LDR
    write(0x320, 0x10030); // LVT timer: masked
    write(0x360, 0x400); // LINT1: NMI
    write(0x3e0, 0xb); // divide by 1
    write(0x380, 0x12345); // initial count (masked: no interrupt)
    write(0x310, 0x05000000); // ICR high: no IPI until the low half is written
    const regs = [0x20, 0x30, 0x80, 0xd0, 0xe0, 0xf0, 0x280, 0x300, 0x310];
    const lvts = [0x320, 0x330, 0x340, 0x350, 0x360, 0x370];
    let slot = 0;
    for (const off of [...regs, ...lvts, 0x380, 0x3e0]) readTo(c, slot++, off);
    readTo(c, slot++, 0xf1, [0x0f, 0xb6]); // movzx eax, byte [SVR+1]
    readTo(c, slot++, 0x312, [0x0f, 0xb7]); // movzx eax, word [ICR high+2]
    readTo(c, slot++, 0x24); // bytes 4-15 of a register read as zero
    readTo(c, slot++, 0xa0); // PPR (exits)
    // IA32_APIC_BASE.EN cleared: the page reads all-ones
    c.mov(ECX, 0x1b)
      .mov(EAX, APIC | 0x100)
      .mov(EDX, 0)
      .raw(0x0f, 0x30);
    readTo(c, slot++, 0xf0);
    c.raw(0xfa, 0xf4); // cli; hlt
    const code = c.link();

    const here = await runGuest(code, false, slot);
    const threaded = await runGuest(code, true, slot);
    expect(here.reason).toBe("hlt");
    expect(threaded.reason).toBe("hlt");
    expect(threaded.out).toEqual(here.out);
    expect(here.out.slice(0, 6)).toEqual([0, 0x00050014, 0x20, 0x03000000, 0x0fffffff, 0x1ff]);
    expect(here.out.slice(regs.length - 2, regs.length)).toEqual([0, 0x05000000]);
    expect(here.out.slice(-5)).toEqual([0x01, 0x0500, 0, 0x20, 0xffffffff]);
    // on the machine's thread every access exits; in the thread only PPR and the disabled page's
    const reads = here.apicExits.filter((a) => a.startsWith("R"));
    expect(reads).toHaveLength(slot);
    expect(threaded.apicExits.filter((a) => a.startsWith("R"))).toEqual(["R a0", "R f0"]);
  });

  it("a level-triggered interrupt's EOI reaches the I/O APIC before the vCPU's next exit", async () => {
    // I/O APIC pin 20, level-triggered, vector 0x50, to APIC 0. The guest raises the line (OUT
    // 0x500); the handler's first run EOIs with the line still high (Remote IRR set again: the
    // I/O APIC sent it again), its second lowers the line (OUT 0x501) before its EOI (Remote IRR
    // clear, no third interrupt). Each reads the entry right after its EOI.
    const PIN = 20;
    const VECTOR = 0x50;
    const COUNT = OUT;
    const c = new Code("protected");
    c.raw(0xbc, ...le32(0x8000)); // mov esp, 0x8000
    c.abs([], [0x0f, 0x01], 3, IDTR); // lidt
    c.movAddr(EBX, APIC);
    c.mem([], [0xc7], 0, EBX, 0xf0, le32(0x1ff)); // SVR
    c.mov(EDX, IOAPIC);
    const ioWrite = (reg: number, v: number) => {
      c.mem([], [0xc7], 0, EDX, 0, le32(reg));
      c.mem([], [0xc7], 0, EDX, 0x10, le32(v));
    };
    ioWrite(0x10 + 2 * PIN, (1 << 15) | VECTOR);
    ioWrite(0x11 + 2 * PIN, 0);
    c.raw(0xfb, 0x90); // sti; nop
    c.raw(0x66, 0xba, 0x00, 0x05, 0xee); // mov dx, 0x500; out dx, al
    c.mov(EDX, IOAPIC);
    c.label("wait");
    c.abs([], [0x83], 7, COUNT, [2]); // cmp dword [COUNT], 2
    c.jShort(2, "wait"); // jb
    // a while longer: a third interrupt would come now
    c.mov(ECX, 20000);
    c.label("spin");
    c.raw(0x49); // dec ecx
    c.jShort(5, "spin"); // jnz
    c.raw(0xfa, 0xf4); // cli; hlt
    c.label("handler");
    c.abs([], [0xff], 0, COUNT); // inc dword [COUNT]
    c.abs([], [0x83], 7, COUNT, [2]);
    c.jShort(2, "eoi"); // jb: the first run keeps the line high
    c.raw(0x52, 0x66, 0xba, 0x01, 0x05, 0xee, 0x5a); // push edx; mov dx, 0x501; out dx, al; pop edx
    c.label("eoi");
    // the entry selected first: the IOWIN read is the vCPU's first exit after the EOI
    c.mem([], [0xc7], 0, EDX, 0, le32(0x10 + 2 * PIN)); // IOREGSEL
    c.mem([], [0xc7], 0, EBX, 0xb0, le32(0)); // EOI
    c.mem([], [0x8b], EAX, EDX, 0x10); // mov eax, IOWIN
    c.abs([], [0x8b], ECX, COUNT); // mov ecx, [COUNT]
    c.raw(0x89, 0x04, 0x8d, ...le32(OUT)); // mov [OUT + ecx*4], eax
    c.raw(0xcf); // iret
    const code = c.link();
    const handler = 0x10000 + c.labels.get("handler")!;

    const setup = (vm: Machine) => {
      const gate = [
        handler & 0xff,
        (handler >> 8) & 0xff,
        0x08,
        0,
        0,
        0x8e,
        (handler >> 16) & 0xff,
        handler >>> 24,
      ];
      vm.memory.write(IDT + VECTOR * 8, Uint8Array.from(gate));
      vm.memory.write(IDTR, Uint8Array.from([0xff, 0x07, ...le32(IDT)]));
      vm.io.onOut(0x500, () => vm.pic!.setIrq(PIN, true));
      vm.io.onOut(0x501, () => vm.pic!.setIrq(PIN, false));
    };
    const here = await runGuest(code, false, 3, setup);
    const threaded = await runGuest(code, true, 3, setup);
    expect(here.reason).toBe("hlt");
    expect(threaded.reason).toBe("hlt");
    expect(threaded.out).toEqual(here.out);
    const REMOTE_IRR = 1 << 14;
    expect(here.out[0]).toBe(2);
    expect(here.out[1]! & REMOTE_IRR).toBe(REMOTE_IRR);
    expect(here.out[2]! & REMOTE_IRR).toBe(0);
    expect(here.out[2]! & 0xff).toBe(VECTOR);
    // the thread posted both EOIs: no EOI write reached the machine's thread
    expect(here.apicExits.filter((a) => a === "W b0")).toHaveLength(2);
    expect(threaded.apicExits.filter((a) => a === "W b0")).toHaveLength(0);
  });
});

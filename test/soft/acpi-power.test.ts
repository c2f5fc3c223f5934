// A guest that does what Linux's ACPI code does at power-off and reboot, on each backend through
// vm.loadLinux (the machine writes the tables) and addPcDevices (the hardware they describe):
// scan 0xE0000-0xFFFFF for the RSDP on 16-byte steps, follow the XSDT to the FADT, then write
// SLP_TYP(S5) | SLP_EN to PM1a_CNT_BLK (poweroff) or RESET_VALUE to RESET_REG (reboot).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createMachine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { backendMissing, distMissing, nodevmm } from "../cli/helpers.js";
import { Alu, Asm, AX, BX, CX, DX } from "../support/asm.js";
import { bzImage } from "../support/bzimage.js";
import { unavailable } from "../vmm/available.js";

const JE = 4;
const JNE = 5;
const JB = 2;

/** Finds the FADT as Linux does; leaves its address in EBX. Prints 'R' (RSDP found), 'Z' (it is the
 * one boot_params.acpi_rsdp_addr names), 'F' (FADT found); 'N' and a halt when something is missing. */
function findFadt(a: Asm): Asm {
  a.movRI(BX, 0xe0000);
  a.label("scan");
  a.load(AX, { base: "bx", disp: 0 }).aluRI(Alu.Cmp, AX, 0x20445352); // "RSD "
  a.jShort(JNE, "next");
  a.load(AX, { base: "bx", disp: 4 }).aluRI(Alu.Cmp, AX, 0x20525450); // "PTR "
  a.jShort(JE, "found");
  a.label("next");
  a.aluRI(Alu.Add, BX, 16).aluRI(Alu.Cmp, BX, 0x100000).jShort(JB, "scan");
  a.jNear(-1, "missing");
  a.label("found");
  a.db(0xb0, 0x52).outImm(0xe9, 1); // 'R'
  // boot_params.acpi_rsdp_addr (ESI = zero page) names the same RSDP
  a.db(0x3b, 0x5e, 0x70); // cmp ebx, [esi+0x70]
  a.jShort(JNE, "xsdt");
  a.db(0xb0, 0x5a).outImm(0xe9, 1); // 'Z'
  a.label("xsdt");
  a.load(BX, { base: "bx", disp: 24 }); // XsdtAddress (low dword)
  a.load(CX, { base: "bx", disp: 4 }).aluRI(Alu.Sub, CX, 36).shiftI(5, CX, 3); // entries
  a.aluRI(Alu.Add, BX, 36);
  a.label("entry");
  a.push(BX).load(BX, { base: "bx", disp: 0 });
  a.load(AX, { base: "bx", disp: 0 }).aluRI(Alu.Cmp, AX, 0x50434146); // "FACP"
  a.jShort(JE, "fadt");
  a.pop(BX).aluRI(Alu.Add, BX, 8).dec(CX).jShort(JNE, "entry");
  a.label("missing");
  a.db(0xb0, 0x4e).outImm(0xe9, 1).db(0xfa, 0xf4); // 'N'; cli; hlt
  a.label("fadt");
  a.db(0xb0, 0x46).outImm(0xe9, 1); // 'F'
  return a;
}

function guest(action: (a: Asm) => void): Uint8Array {
  const a = findFadt(new Asm(32, 0x100000));
  action(a);
  // still running: the write did not stop the machine
  a.db(0xb0, 0x58).outImm(0xe9, 1).db(0xfa, 0xf4); // 'X'; cli; hlt
  const pm = new Uint8Array(0x1000);
  pm.set(a.link());
  return bzImage({ pm, xloadflags: 0 }); // 32-bit boot protocol: EIP = load address, ESI = zero page
}

async function run(backend: "soft" | "kvm", image: Uint8Array) {
  const vm = await createMachine({ backend, memoryMiB: 8 });
  let out = "";
  try {
    addPcDevices(vm, { debugcon: (b: Uint8Array) => (out += Buffer.from(b).toString("latin1")) });
    vm.loadLinux({ kernel: image });
    const r = vm.runSync({ timeoutMs: 20_000 });
    return { reason: r.reason, out };
  } finally {
    vm.close();
  }
}

const backends = (["soft", "kvm"] as const).filter((b) => {
  const why = unavailable(b);
  if (why) console.log(`skipping the ACPI power guests on ${b}: ${why}`);
  return !why;
});

describe.each(backends)("ACPI power-off and reset as Linux does them (%s backend)", (backend) => {
  it("SLP_TYP(\\_S5) | SLP_EN to the FADT's PM1a_CNT_BLK ends the run as poweroff", async () => {
    const image = guest((a) => {
      a.load(DX, { base: "bx", disp: 64 }); // PM1a_CNT_BLK
      a.movRI(AX, (5 << 10) | (1 << 13)).outDx(2);
    });
    expect(await run(backend, image)).toEqual({ reason: "poweroff", out: "RZF" });
  });

  it("RESET_VALUE to the FADT's RESET_REG (port 0xCF9) ends the run as reset", async () => {
    const image = guest((a) => {
      a.load(DX, { base: "bx", disp: 120 }); // RESET_REG.Address (low dword)
      a.load8(AX, { base: "bx", disp: 128 }); // RESET_VALUE
      a.outDx(1);
    });
    expect(await run(backend, image)).toEqual({ reason: "reset", out: "RZF" });
  });

  it("port 0x92 bit 0 ends the run as reset", async () => {
    const image = guest((a) => {
      a.inImm(0x92, 1).db(0x0c, 0x01).outImm(0x92, 1); // in al,0x92; or al,1; out 0x92,al
    });
    expect(await run(backend, image)).toEqual({ reason: "reset", out: "RZF" });
  });

  it("a sleep type that is not \\_S5 does not power off", async () => {
    const image = guest((a) => {
      a.load(DX, { base: "bx", disp: 64 });
      a.movRI(AX, (1 << 10) | (1 << 13)).outDx(2);
    });
    expect(await run(backend, image)).toEqual({ reason: "hlt", out: "RZFX" });
  });
});

const cliMissing = distMissing ?? backendMissing("soft");
describe.skipIf(cliMissing !== undefined)(
  `nodevmm run: a guest's ACPI power-off and reset${cliMissing ? ` (skipped: ${cliMissing})` : ""}`,
  () => {
    it("end the run with status 0, saying poweroff / reset", () => {
      const dir = mkdtempSync(join(tmpdir(), "nodevmm-acpi-"));
      try {
        const off = join(dir, "off.bz");
        writeFileSync(
          off,
          guest((a) => {
            a.load(DX, { base: "bx", disp: 64 });
            a.movRI(AX, (5 << 10) | (1 << 13)).outDx(2);
          }),
        );
        const r = nodevmm(["run", off, "--backend", "soft", "--timeout", "20"]);
        expect([r.status, r.stdout]).toEqual([0, "RZF"]); // the CLI sends port 0xE9 to stdout
        expect(r.stderr).toMatch(/poweroff: guest powered off/);
        const reboot = join(dir, "reboot.bz");
        writeFileSync(
          reboot,
          guest((a) => {
            a.load(DX, { base: "bx", disp: 120 }).load8(AX, { base: "bx", disp: 128 }).outDx(1);
          }),
        );
        const b = nodevmm(["run", reboot, "--backend", "soft", "--timeout", "20"]);
        expect(b.status).toBe(0);
        expect(b.stderr).toMatch(/reset: guest requested a reset/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);

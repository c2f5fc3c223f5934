// A device defined in TypeScript: the guest (examples/guests/custom-device.c) writes operands to
// port 0x500 and reads back operand * 2 + 1. Runs on either backend: `node dist/examples/custom-device.js [soft|kvm]`.
import { readFileSync } from "node:fs";
import { addPcDevices, type BackendRequest, createMachine, type Device } from "../lib/index.js";
import { imagePath } from "./paths.js";

class Doubler implements Device {
  readonly name = "doubler";
  readonly ranges = [{ space: "io" as const, base: 0x500, length: 4 }];
  #operand = 0;
  read(): number {
    return (this.#operand * 2 + 1) >>> 0;
  }
  write(_offset: number, _size: number, value: number): void {
    this.#operand = value >>> 0;
  }
}

const backend = (process.argv[2] ?? "auto") as BackendRequest;
const vm = await createMachine({ memoryMiB: 64, backend });
addPcDevices(vm, { serial: process.stdout });
vm.addDevice(new Doubler());
vm.loadFlat(readFileSync(imagePath("custom-device.bin")), { address: 0x100000, mode: "protected" });
const result = await vm.run({ timeoutMs: 10_000 });
console.log(`[${vm.backendInfo.kind}] ${result.reason} after ${result.exits} exits`);
vm.close();

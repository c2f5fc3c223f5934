// A device defined in TypeScript: the guest (examples/guests/custom-device.c) writes operands to
// port 0x500 and reads back operand * 2 + 1. Runs on either backend: `node dist/examples/custom-device.js [soft|kvm]`.
// The device is the one `nodevmm run --plugin dist/examples/plugins/doubler.js` attaches.
import { readFileSync } from "node:fs";
import { addPcDevices, type BackendRequest, createMachine } from "../lib/index.js";
import { imagePath } from "./paths.js";
import { Doubler } from "./plugins/doubler.js";

const backend = (process.argv[2] ?? "auto") as BackendRequest;
const vm = await createMachine({ memoryMiB: 64, backend });
addPcDevices(vm, { serial: process.stdout });
vm.addDevice(new Doubler());
vm.loadFlat(readFileSync(imagePath("custom-device.bin")), { address: 0x100000, mode: "protected" });
const result = await vm.run({ timeoutMs: 10_000 });
console.log(`[${vm.backendInfo.kind}] ${result.reason} after ${result.exits} exits`);
vm.close();

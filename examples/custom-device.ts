// A device defined in TypeScript: the guest (examples/guests/custom-device.c) writes operands to
// port 0x500 and reads back operand * 2 + 1. Runs on either backend: `node dist/examples/custom-device.js [soft|kvm]`.
// The device is the one `nodevmm run --plugin dist/examples/plugins/doubler.js` attaches.

import { exampleImage } from "../lib/examples/index.js";
import { addPcDevices, type BackendRequest, createMachine } from "../lib/index.js";
import { Doubler } from "./plugins/doubler.js";

const backend = (process.argv[2] ?? "auto") as BackendRequest;
const vm = await createMachine({ memoryMiB: 64, backend });
addPcDevices(vm, { serial: process.stdout });
vm.addDevice(new Doubler());
const guest = exampleImage("custom-device"); // what `import { exampleImage } from "nodevmm/examples"` gives
vm.load(guest.read(), guest.loadOptions);
const result = await vm.run({ timeoutMs: 10_000 });
console.log(`[${vm.backendInfo.kind}] ${result.reason} after ${result.exits} exits`);
vm.close();

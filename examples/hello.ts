// What `npm start` runs: boots the real-mode hello guest on the best backend this host has
// (KVM when /dev/kvm is usable, the software VT-x otherwise) and shows what happened.

import { exampleImage } from "../lib/examples/index.js";
import { addPcDevices, createMachine } from "../lib/index.js";

const vm = await createMachine({ memoryMiB: 64, backend: "auto" });
console.log(`nodevmm: ${vm.backendInfo.message}`);
addPcDevices(vm, { serial: process.stdout });
const guest = exampleImage("real-hello"); // what `import { exampleImage } from "nodevmm/examples"` gives
vm.load(guest.read(), guest.loadOptions);

const result = await vm.run({ timeoutMs: 10_000 });
console.log(`nodevmm: guest stopped: ${result.reason} after ${result.exits} exits`);
console.log(vm.vcpu(0).dump());
vm.close();
process.exitCode = result.reason === "hlt" ? 0 : 1;

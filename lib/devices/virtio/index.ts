export * from "./blk.js";
export * from "./console.js";
export * from "./disk-image.js";
export { flatGuestRam, type GuestRam } from "./guest-ram.js";
export * from "./mmio-transport.js";
export * from "./queue.js";
export * from "./rng.js";

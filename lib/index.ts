export type * from "./vmm/exits.js";
export { GuestMemory, GuestMemoryError, type MemoryRegion } from "./vmm/memory.js";
export type * from "./vmm/regs.js";

// Moved to lib/types (a leaf every layer may import); re-exported while importers move over.
export * from "../types/regs.js";

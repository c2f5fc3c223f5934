export { kvmExitName, vmxExitReasonName } from "../types/exit-names.js";
export { type DisassembledInstruction, disassemble, formatDisassembly } from "./disasm.js";
export { type DumpOptions, formatRegisters, formatSegmentLine } from "./dump.js";
export * from "./flags.js";
export * from "./gdt.js";
export * from "./pagewalk.js";
export * from "./segments.js";
export { formatStatsTable, type StatsRow } from "./stats-table.js";
export { formatExit, formatExitDetail, formatRaw, type TraceInfo } from "./trace.js";

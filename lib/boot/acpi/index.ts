// ACPI tables for the PC nodevmm emulates (RSDP, RSDT/XSDT, FADT + FACS, MADT, DSDT) and the AML
// encoder the DSDT is written with.
export * as aml from "./aml.js";
export * from "./dsdt.js";
export * from "./fadt.js";
export * from "./madt.js";
export * from "./pc.js";
export * from "./rsdp.js";
export * from "./sdt.js";

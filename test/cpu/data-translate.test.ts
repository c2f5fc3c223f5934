// translateData (lib/cpu/data-translate.ts): the checks a data access gets when a hypervisor makes
// it for the guest (string I/O after its exit), through the interpreter's own page walk: #PF error
// codes for a page not present, a read-only page (user, and supervisor with CR0.WP), SMAP, a
// protection key; A/D bits set as the walk succeeds; an access across a page boundary translated
// page by page.
import { describe, expect, it } from "vitest";
import { type DataAccessState, translateData } from "../../lib/cpu/data-translate.js";
import { createBareHooks, Interpreter } from "../../lib/cpu/index.js";

const PML4 = 0x10000;
const PT = 0x13000;

/** 4-level paging: 0..2 MiB through one page table whose entries `pte` sets (identity otherwise) */
function setup(pte: Record<number, number> = {}, keyOf: Record<number, number> = {}) {
  const ram = new Uint8Array(4 << 20);
  const v = new DataView(ram.buffer);
  v.setUint32(PML4, 0x11007, true);
  v.setUint32(0x11000, 0x12007, true);
  v.setUint32(0x12000, PT | 7, true);
  for (let i = 0; i < 512; i++) {
    v.setUint32(PT + i * 8, pte[i] ?? (i << 12) | 7, true);
    v.setUint32(PT + i * 8 + 4, (keyOf[i] ?? 0) << 27, true);
  }
  const emu = new Interpreter();
  emu.hooks = createBareHooks(ram);
  return { ram, v, emu };
}

const state = (s: Partial<DataAccessState> = {}): DataAccessState => ({
  cr0: 0x80000011,
  cr3: PML4,
  cr4: 0x20,
  efer: 0x500,
  cpl: 0,
  rflags: 2,
  pkru: 0,
  ...s,
});

describe("translateData", () => {
  it("without paging the linear address is the physical one", () => {
    const { emu } = setup();
    expect(translateData(emu, state({ cr0: 0x11 }), 0x12345, 4, true)).toEqual({
      gpa: 0x12345,
      gpaLast: 0x12348,
    });
  });

  it("a page not present: error code W for a write, 0 for a read, U at CPL 3; CR2 the address", () => {
    const { emu } = setup({ 32: 0 });
    expect(translateData(emu, state(), 0x20010, 1, true)).toEqual({ errorCode: 2, cr2: 0x20010 });
    expect(translateData(emu, state(), 0x20010, 1, false)).toEqual({ errorCode: 0, cr2: 0x20010 });
    expect(translateData(emu, state({ cpl: 3 }), 0x20010, 1, true)).toEqual({ errorCode: 6, cr2: 0x20010 });
  });

  it("a read-only page: a user write faults (P|W|U), a supervisor one only with CR0.WP", () => {
    const { emu } = setup({ 33: 0x21005 });
    expect(translateData(emu, state({ cpl: 3 }), 0x21000, 2, true)).toEqual({ errorCode: 7, cr2: 0x21000 });
    expect(translateData(emu, state(), 0x21000, 2, true)).toEqual({ gpa: 0x21000, gpaLast: 0x21001 });
    expect(translateData(emu, state({ cr0: 0x80010011 }), 0x21000, 2, true)).toEqual({
      errorCode: 3,
      cr2: 0x21000,
    });
  });

  it("SMAP: a supervisor access to a user page faults unless EFLAGS.AC", () => {
    const { emu } = setup();
    const smap = state({ cr4: 0x20 | 0x200000 });
    expect(translateData(emu, smap, 0x30000, 1, true)).toEqual({ errorCode: 3, cr2: 0x30000 });
    expect(translateData(emu, { ...smap, rflags: 0x40002 }, 0x30000, 1, true)).toEqual({
      gpa: 0x30000,
      gpaLast: 0x30000,
    });
  });

  it("a protection key with AD: P|W|PK at CPL 0, and PKRU is read only with CR4.PKE", () => {
    const { emu } = setup({}, { 34: 3 });
    const pkru = 1 << 6;
    expect(translateData(emu, state({ cr4: 0x400020, pkru }), 0x22000, 1, true)).toEqual({
      errorCode: 0x23,
      cr2: 0x22000,
    });
    expect(translateData(emu, state({ pkru }), 0x22000, 1, true)).toEqual({ gpa: 0x22000, gpaLast: 0x22000 });
  });

  it("sets the accessed bits, and dirty on a write", () => {
    const { emu, v } = setup();
    translateData(emu, state(), 0x40000, 4, false);
    expect(v.getUint32(PT + 0x40 * 8, true) & 0x60).toBe(0x20);
    translateData(emu, state(), 0x40000, 4, true);
    expect(v.getUint32(PT + 0x40 * 8, true) & 0x60).toBe(0x60);
  });

  it("across a page boundary: each page's own frame, and the second page's fault with its address", () => {
    const { emu } = setup({ 81: 0x90007, 97: 0 });
    expect(translateData(emu, state(), 0x50ffe, 4, true)).toEqual({ gpa: 0x50ffe, gpaLast: 0x90001 });
    expect(translateData(emu, state(), 0x60ffe, 4, true)).toEqual({ errorCode: 2, cr2: 0x61000 });
  });
});

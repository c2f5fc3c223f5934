// A small assembler for 16-bit and 32-bit guest code in tests: the handful of forms that generated
// guests use (ALU, moves, loops, port I/O, string instructions, faults, system instructions), with
// labels that later code or data may refer to (rel8/near branches, absolute addresses).
// Register numbers are the x86 encodings: 0 AX, 1 CX, 2 DX, 3 BX, 4 SP, 5 BP, 6 SI, 7 DI. Operands
// are the code's native size (16 or 32 bits) unless a method says otherwise.

export const AX = 0;
export const CX = 1;
export const DX = 2;
export const BX = 3;
export const SP = 4;
export const BP = 5;
export const SI = 6;
export const DI = 7;

/** ALU operations as their /digit (00+8n opcodes) */
export const enum Alu {
  Add = 0,
  Or = 1,
  Adc = 2,
  Sbb = 3,
  And = 4,
  Sub = 5,
  Xor = 6,
  Cmp = 7,
}

/** a memory operand: [BX+disp] / [EBX+disp], or an absolute address (a number or a label + offset) */
export type Mem = { base: "bx"; disp: number } | { abs: number | string; add?: number };

type FixupKind = "rel8" | "near" | "abs16" | "abs32";

interface Fixup {
  at: number;
  label: string;
  add: number;
  kind: FixupKind;
}

export class Asm {
  readonly bytes: number[] = [];
  readonly labels = new Map<string, number>();
  readonly #fixups: Fixup[] = [];
  #unique = 0;

  constructor(
    readonly bits: 16 | 32,
    readonly origin: number,
  ) {}

  get here(): number {
    return this.origin + this.bytes.length;
  }

  /** a label name no other call returns */
  fresh(prefix = "L"): string {
    return `${prefix}.${this.#unique++}`;
  }

  label(name: string): this {
    if (this.labels.has(name)) throw new Error(`label ${name} defined twice`);
    this.labels.set(name, this.here);
    return this;
  }

  db(...b: number[]): this {
    for (const x of b) this.bytes.push(x & 0xff);
    return this;
  }

  #le(value: number, size: number): void {
    for (let i = 0; i < size; i++) this.bytes.push(Math.floor(value / 2 ** (8 * i)) & 0xff);
  }

  /** an immediate of the native operand size */
  imm(value: number): this {
    this.#le(value >>> 0, this.bits / 8);
    return this;
  }

  #fix(label: string, add: number, kind: FixupKind, size: number): void {
    this.#fixups.push({ at: this.bytes.length, label, add, kind });
    for (let i = 0; i < size; i++) this.bytes.push(0);
  }

  /** an absolute address of the native address size (label or number) */
  addr(target: number | string, add = 0): this {
    if (typeof target === "number") return this.imm(target + add);
    this.#fix(target, add, this.bits === 16 ? "abs16" : "abs32", this.bits / 8);
    return this;
  }

  /** a ModR/M with a memory operand (mod/rm and displacement) for register field `reg` */
  #modrmMem(reg: number, m: Mem): void {
    const r = (reg & 7) << 3;
    if ("base" in m) {
      // [BX+disp16] (rm 111) / [EBX+disp32] (rm 011), always with a full displacement
      this.bytes.push(0x80 | r | (this.bits === 16 ? 7 : 3));
      this.imm(m.disp);
    } else {
      this.bytes.push(r | (this.bits === 16 ? 6 : 5));
      this.addr(m.abs, m.add ?? 0);
    }
  }

  /** a ModR/M with a register operand */
  #modrmReg(reg: number, rm: number): void {
    this.bytes.push(0xc0 | ((reg & 7) << 3) | (rm & 7));
  }

  // --- data movement and ALU ---------------------------------------------------------------------
  movRI(r: number, value: number): this {
    return this.db(0xb8 + r).imm(value);
  }
  /** MOV r32, imm32 whatever the code size (66 in 16-bit code) */
  movR32I(r: number, value: number): this {
    if (this.bits === 16) this.db(0x66);
    this.db(0xb8 + r);
    this.#le(value >>> 0, 4);
    return this;
  }
  movRR(dst: number, src: number): this {
    this.db(0x89);
    this.#modrmReg(src, dst);
    return this;
  }
  load(r: number, m: Mem): this {
    this.db(0x8b);
    this.#modrmMem(r, m);
    return this;
  }
  store(m: Mem, r: number): this {
    this.db(0x89);
    this.#modrmMem(r, m);
    return this;
  }
  load8(r: number, m: Mem): this {
    this.db(0x8a);
    this.#modrmMem(r, m);
    return this;
  }
  store8(m: Mem, r: number): this {
    this.db(0x88);
    this.#modrmMem(r, m);
    return this;
  }
  /** MOV byte [m], imm8 */
  storeI8(m: Mem, value: number): this {
    this.db(0xc6);
    this.#modrmMem(0, m);
    return this.db(value);
  }
  /** XOR byte [m], imm8 */
  xorI8(m: Mem, value: number): this {
    this.db(0x80);
    this.#modrmMem(6, m);
    return this.db(value);
  }
  aluRR(op: Alu, dst: number, src: number): this {
    this.db((op << 3) | 1);
    this.#modrmReg(src, dst);
    return this;
  }
  aluRI(op: Alu, dst: number, value: number): this {
    this.db(0x81);
    this.#modrmReg(op, dst);
    return this.imm(value);
  }
  /** op r, [m] */
  aluRM(op: Alu, r: number, m: Mem): this {
    this.db((op << 3) | 3);
    this.#modrmMem(r, m);
    return this;
  }
  /** op [m], r */
  aluMR(op: Alu, m: Mem, r: number): this {
    this.db((op << 3) | 1);
    this.#modrmMem(r, m);
    return this;
  }
  /** INC/DEC word or dword [m] */
  incM(m: Mem, dec = false): this {
    this.db(0xff);
    this.#modrmMem(dec ? 1 : 0, m);
    return this;
  }
  inc(r: number): this {
    return this.db(0x40 + r);
  }
  dec(r: number): this {
    return this.db(0x48 + r);
  }
  /** shifts and rotates by an immediate: /0 ROL, /1 ROR, /4 SHL, /5 SHR, /7 SAR */
  shiftI(kind: 0 | 1 | 4 | 5 | 7, r: number, count: number): this {
    this.db(0xc1);
    this.#modrmReg(kind, r);
    return this.db(count);
  }
  imulRR(dst: number, src: number): this {
    this.db(0x0f, 0xaf);
    this.#modrmReg(dst, src);
    return this;
  }
  /** /2 NOT, /3 NEG, /6 DIV */
  unary(kind: 2 | 3 | 6, r: number): this {
    this.db(0xf7);
    this.#modrmReg(kind, r);
    return this;
  }
  lea(r: number, m: Mem): this {
    this.db(0x8d);
    this.#modrmMem(r, m);
    return this;
  }
  push(r: number): this {
    return this.db(0x50 + r);
  }
  pop(r: number): this {
    return this.db(0x58 + r);
  }
  /** PUSH/POP of the 32-bit register whatever the code size */
  push32(r: number): this {
    if (this.bits === 16) this.db(0x66);
    return this.db(0x50 + r);
  }
  pop32(r: number): this {
    if (this.bits === 16) this.db(0x66);
    return this.db(0x58 + r);
  }

  // --- control flow ------------------------------------------------------------------------------
  /** Jcc rel8 (cc 0-15), or JMP rel8 with cc = -1 */
  jShort(cc: number, label: string): this {
    this.db(cc < 0 ? 0xeb : 0x70 + cc);
    this.#fix(label, 0, "rel8", 1);
    return this;
  }
  /** Jcc with a native-size displacement (0F 8x), or JMP near (E9) with cc = -1 */
  jNear(cc: number, label: string): this {
    if (cc < 0) this.db(0xe9);
    else this.db(0x0f, 0x80 + cc);
    this.#fix(label, 0, "near", this.bits / 8);
    return this;
  }

  // --- string, I/O, system -------------------------------------------------------------------------
  inImm(port: number, size: 1 | 2 | 4): this {
    this.#sizePrefix(size);
    return this.db(size === 1 ? 0xe4 : 0xe5, port);
  }
  outImm(port: number, size: 1 | 2 | 4): this {
    this.#sizePrefix(size);
    return this.db(size === 1 ? 0xe6 : 0xe7, port);
  }
  inDx(size: 1 | 2 | 4): this {
    this.#sizePrefix(size);
    return this.db(size === 1 ? 0xec : 0xed);
  }
  outDx(size: 1 | 2 | 4): this {
    this.#sizePrefix(size);
    return this.db(size === 1 ? 0xee : 0xef);
  }
  /** the operand-size prefix that makes a word/dword instruction `size` bytes wide */
  #sizePrefix(size: 1 | 2 | 4): void {
    if ((size === 2 && this.bits === 32) || (size === 4 && this.bits === 16)) this.db(0x66);
  }
  /** a string instruction (A4 MOVS, AA STOS, AC LODS, A6 CMPS, AE SCAS, 6C INS, 6E OUTS) of `size` */
  string(
    op: 0xa4 | 0xaa | 0xac | 0xa6 | 0xae | 0x6c | 0x6e,
    size: 1 | 2 | 4,
    rep: "" | "rep" | "repne",
  ): this {
    if (rep === "rep") this.db(0xf3);
    if (rep === "repne") this.db(0xf2);
    this.#sizePrefix(size);
    return this.db(size === 1 ? op : op + 1);
  }
  invlpg(m: Mem): this {
    this.db(0x0f, 0x01);
    this.#modrmMem(7, m);
    return this;
  }
  /** MOV CRn, r32 / MOV r32, CRn */
  movToCr(cr: number, r: number): this {
    return this.db(0x0f, 0x22, 0xc0 | (cr << 3) | r);
  }
  movFromCr(r: number, cr: number): this {
    return this.db(0x0f, 0x20, 0xc0 | (cr << 3) | r);
  }

  /** Resolves the label references; returns the code. */
  link(): Uint8Array {
    for (const f of this.#fixups) {
      const target = this.labels.get(f.label);
      if (target === undefined) throw new Error(`undefined label ${f.label}`);
      const value = target + f.add;
      const end = this.origin + f.at + (f.kind === "rel8" ? 1 : this.bits / 8);
      let v: number;
      let size: number;
      switch (f.kind) {
        case "rel8":
          v = value - end;
          if (v < -128 || v > 127) throw new RangeError(`rel8 to ${f.label} out of range (${v})`);
          size = 1;
          break;
        case "near":
          v = value - end;
          size = this.bits / 8;
          break;
        case "abs16":
          v = value;
          size = 2;
          break;
        case "abs32":
          v = value;
          size = 4;
          break;
      }
      for (let i = 0; i < size; i++) this.bytes[f.at + i] = Math.floor((v >>> 0) / 2 ** (8 * i)) & 0xff;
    }
    return Uint8Array.from(this.bytes);
  }
}

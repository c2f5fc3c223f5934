// What the loaders need of guest memory. lib/vmm's GuestMemory satisfies this structurally; boot/
// never imports vmm/.

export interface RamRange {
  readonly guestPhysAddr: number;
  readonly size: number;
}

export interface LoadTarget {
  /** total RAM in bytes */
  readonly size: number;
  /** the RAM regions, in any order */
  readonly regions: readonly RamRange[];
  write(gpa: number, data: Uint8Array): void;
  /** a writable view of [gpa, gpa+length); throws when the range is not RAM */
  view(gpa: number, length: number): Uint8Array;
  /** the RAM region holding all of [gpa, gpa+length), or undefined */
  find(gpa: number, length?: number): RamRange | undefined;
  /**
   * Optional (firmware): maps `bytes` read-only at `gpa`, outside RAM (the guest reads and runs
   * them, its writes are dropped); throws when the machine cannot.
   */
  mapRom?(gpa: number, bytes: Uint8Array): void;
}

// Sizes and field offsets of the KVM structs (x86-64 ABI of <linux/kvm.h>), used by DataView code in
// lib/kvm. Checked field by field against offsetof() in the addon's C table (test/binding/abi.test.ts).

/** A KVM struct's size and field offsets (x86-64 ABI). */
export interface StructLayout {
  /** sizeof the struct, in bytes. */
  readonly size: number;
  /** Byte offset of each field, by its C name (nested fields as "a.b"). */
  readonly fields: Readonly<Record<string, number>>;
}

/**
 * Sizes and field offsets of the KVM structs lib/kvm encodes (x86-64 `linux/kvm.h`), checked against the
 * addon's offsetof() table in tests.
 */
export const LAYOUTS = {
  kvm_run: {
    size: 2352,
    fields: {
      request_interrupt_window: 0,
      immediate_exit: 1,
      exit_reason: 8,
      ready_for_interrupt_injection: 12,
      if_flag: 13,
      flags: 14,
      cr8: 16,
      apic_base: 24,
      "hw.hardware_exit_reason": 32,
      "fail_entry.hardware_entry_failure_reason": 32,
      "fail_entry.cpu": 40,
      "io.direction": 32,
      "io.size": 33,
      "io.port": 34,
      "io.count": 36,
      "io.data_offset": 40,
      "debug.arch.exception": 32,
      "debug.arch.pc": 40,
      "debug.arch.dr6": 48,
      "debug.arch.dr7": 56,
      "mmio.phys_addr": 32,
      "mmio.data": 40,
      "mmio.len": 48,
      "mmio.is_write": 52,
      "hypercall.nr": 32,
      "hypercall.args": 40,
      "hypercall.ret": 88,
      "internal.suberror": 32,
      "internal.ndata": 36,
      "internal.data": 40,
      "system_event.type": 32,
      "system_event.ndata": 36,
      "system_event.data": 40,
      "msr.error": 32,
      "msr.reason": 40,
      "msr.index": 44,
      "msr.data": 48,
      kvm_valid_regs: 288,
      kvm_dirty_regs: 296,
      s: 304,
    },
  },
  kvm_regs: {
    size: 144,
    fields: {
      rax: 0,
      rbx: 8,
      rcx: 16,
      rdx: 24,
      rsi: 32,
      rdi: 40,
      rsp: 48,
      rbp: 56,
      r8: 64,
      r9: 72,
      r10: 80,
      r11: 88,
      r12: 96,
      r13: 104,
      r14: 112,
      r15: 120,
      rip: 128,
      rflags: 136,
    },
  },
  kvm_segment: {
    size: 24,
    fields: {
      base: 0,
      limit: 8,
      selector: 12,
      type: 14,
      present: 15,
      dpl: 16,
      db: 17,
      s: 18,
      l: 19,
      g: 20,
      avl: 21,
      unusable: 22,
    },
  },
  kvm_dtable: {
    size: 16,
    fields: {
      base: 0,
      limit: 8,
    },
  },
  kvm_sregs: {
    size: 312,
    fields: {
      cs: 0,
      ds: 24,
      es: 48,
      fs: 72,
      gs: 96,
      ss: 120,
      tr: 144,
      ldt: 168,
      gdt: 192,
      idt: 208,
      cr0: 224,
      cr2: 232,
      cr3: 240,
      cr4: 248,
      cr8: 256,
      efer: 264,
      apic_base: 272,
      interrupt_bitmap: 280,
    },
  },
  kvm_fpu: {
    size: 416,
    fields: {
      fpr: 0,
      fcw: 128,
      fsw: 130,
      ftwx: 132,
      last_opcode: 134,
      last_ip: 136,
      last_dp: 144,
      xmm: 152,
      mxcsr: 408,
    },
  },
  kvm_msrs: {
    size: 8,
    fields: {
      nmsrs: 0,
      entries: 8,
    },
  },
  kvm_msr_entry: {
    size: 16,
    fields: {
      index: 0,
      reserved: 4,
      data: 8,
    },
  },
  kvm_msr_list: {
    size: 4,
    fields: {
      nmsrs: 0,
      indices: 4,
    },
  },
  kvm_cpuid2: {
    size: 8,
    fields: {
      nent: 0,
      padding: 4,
      entries: 8,
    },
  },
  kvm_cpuid_entry2: {
    size: 40,
    fields: {
      function: 0,
      index: 4,
      flags: 8,
      eax: 12,
      ebx: 16,
      ecx: 20,
      edx: 24,
    },
  },
  kvm_userspace_memory_region: {
    size: 32,
    fields: {
      slot: 0,
      flags: 4,
      guest_phys_addr: 8,
      memory_size: 16,
      userspace_addr: 24,
    },
  },
  kvm_irq_level: {
    size: 8,
    fields: {
      irq: 0,
      level: 4,
    },
  },
  kvm_irq_routing: {
    size: 8,
    fields: {
      nr: 0,
      flags: 4,
      entries: 8,
    },
  },
  kvm_irq_routing_entry: {
    size: 48,
    fields: {
      gsi: 0,
      type: 4,
      flags: 8,
      "u.irqchip.irqchip": 16,
      "u.irqchip.pin": 20,
    },
  },
  kvm_pit_config: {
    size: 64,
    fields: {
      flags: 0,
    },
  },
  kvm_ioeventfd: {
    size: 64,
    fields: {
      datamatch: 0,
      addr: 8,
      len: 16,
      fd: 20,
      flags: 24,
    },
  },
  kvm_irqfd: {
    size: 32,
    fields: {
      fd: 0,
      gsi: 4,
      flags: 8,
      resamplefd: 12,
    },
  },
  kvm_dirty_log: {
    size: 16,
    fields: {
      slot: 0,
      dirty_bitmap: 8,
    },
  },
  kvm_clock_data: {
    size: 48,
    fields: {
      clock: 0,
      flags: 8,
    },
  },
  kvm_mp_state: {
    size: 4,
    fields: {
      mp_state: 0,
    },
  },
  kvm_vcpu_events: {
    size: 64,
    fields: {
      "exception.injected": 0,
      "exception.nr": 1,
      "exception.has_error_code": 2,
      "exception.error_code": 4,
      "interrupt.injected": 8,
      "interrupt.nr": 9,
      "interrupt.soft": 10,
      "interrupt.shadow": 11,
      "nmi.injected": 12,
      "nmi.pending": 13,
      "nmi.masked": 14,
      sipi_vector: 16,
      flags: 20,
    },
  },
  kvm_lapic_state: {
    size: 1024,
    fields: {
      regs: 0,
    },
  },
  kvm_translation: {
    size: 24,
    fields: {
      linear_address: 0,
      physical_address: 8,
      valid: 16,
      writeable: 17,
      usermode: 18,
    },
  },
  kvm_guest_debug: {
    size: 72,
    fields: {
      control: 0,
      pad: 4,
      "arch.debugreg": 8,
    },
  },
  kvm_xsave: {
    size: 4096,
    fields: {
      region: 0,
    },
  },
  kvm_xcrs: {
    size: 392,
    fields: {
      nr_xcrs: 0,
      flags: 4,
      xcrs: 8,
    },
  },
  kvm_xcr: {
    size: 16,
    fields: {
      xcr: 0,
      value: 8,
    },
  },
  kvm_debugregs: {
    size: 128,
    fields: {
      db: 0,
      dr6: 32,
      dr7: 40,
      flags: 48,
    },
  },
  kvm_irqchip: {
    size: 520,
    fields: {
      chip_id: 0,
      chip: 8,
    },
  },
  kvm_pic_state: {
    size: 16,
    fields: {
      last_irr: 0,
      irr: 1,
      imr: 2,
      isr: 3,
      priority_add: 4,
      irq_base: 5,
      read_reg_select: 6,
      poll: 7,
      special_mask: 8,
      init_state: 9,
      auto_eoi: 10,
      rotate_on_auto_eoi: 11,
      special_fully_nested_mode: 12,
      init4: 13,
      elcr: 14,
      elcr_mask: 15,
    },
  },
  kvm_ioapic_state: {
    size: 216,
    fields: {
      base_address: 0,
      ioregsel: 8,
      id: 12,
      irr: 16,
      redirtbl: 24,
    },
  },
  kvm_pit_channel_state: {
    size: 24,
    fields: {
      count: 0,
      latched_count: 4,
      count_latched: 6,
      status_latched: 7,
      status: 8,
      read_state: 9,
      write_state: 10,
      write_latch: 11,
      rw_mode: 12,
      mode: 13,
      bcd: 14,
      gate: 15,
      count_load_time: 16,
    },
  },
  kvm_pit_state2: {
    size: 112,
    fields: {
      channels: 0,
      flags: 72,
    },
  },
  kvm_enable_cap: {
    size: 104,
    fields: {
      cap: 0,
      flags: 4,
      args: 8,
    },
  },
} as const satisfies Record<string, StructLayout>;

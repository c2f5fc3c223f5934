/* Multiboot v1 kernel (ELF32): prints what the boot loader handed over (magic, flags, memory sizes,
 * command line, boot loader name, memory map, module count), then halts. Its output depends on the
 * machine: multiboot-info.expected is for 64 MiB of RAM in one region at 0 and the command line
 * given in ../images/manifest.json. */
#include "guest.h"

struct mb_info {
  u32 flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
  u32 syms[4];
  u32 mmap_length, mmap_addr;
};

struct __attribute__((packed)) mb_mmap_entry {
  u32 size;
  u64 base, length;
  u32 type;
};

void kmain(u32 magic, const struct mb_info *mbi);

static void put_field(const char *name, const char *value) {
  put_str(name);
  put_str(" \"");
  put_str(value);
  put_str("\"\n");
}

void kmain(u32 magic, const struct mb_info *mbi) {
  put_str("multiboot magic ");
  put_hex(magic);
  if (magic != 0x2badb002u) {
    put_str(" (not a multiboot boot loader)\n");
    return;
  }
  put_str(", flags ");
  put_hex(mbi->flags);
  put_char('\n');
  if (mbi->flags & (1u << 0)) {
    put_str("mem_lower ");
    put_dec(mbi->mem_lower);
    put_str(" KiB, mem_upper ");
    put_dec(mbi->mem_upper);
    put_str(" KiB\n");
  }
  if (mbi->flags & (1u << 2)) put_field("cmdline", (const char *)mbi->cmdline);
  if (mbi->flags & (1u << 9)) put_field("boot loader", (const char *)((const u32 *)mbi)[16]);
  if (mbi->flags & (1u << 6)) {
    u32 at = mbi->mmap_addr;
    while (at < mbi->mmap_addr + mbi->mmap_length) {
      const struct mb_mmap_entry *e = (const struct mb_mmap_entry *)at;
      put_str("mmap ");
      put_hex(e->base);
      put_str(" len ");
      put_hex(e->length);
      put_str(" type ");
      put_dec(e->type);
      put_char('\n');
      at += e->size + 4;
    }
  }
  if (mbi->flags & (1u << 3)) {
    put_str("modules ");
    put_dec(mbi->mods_count);
    put_char('\n');
  }
}

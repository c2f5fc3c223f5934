/* Shared by the C example guests: fixed-width types, port I/O and printing over the 16550 UART at
 * 0x3f8. Output does not poll the line-status register: the VMM's UART takes a byte per OUT, and
 * every poll would be one more VM exit. No libc, no SSE (built with -mgeneral-regs-only). */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define UART 0x3f8
#define DEBUG_EXIT 0xf4

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u32 inl(u16 port) {
  u32 v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

static inline void put_char(char c) { outb(UART, (u8)c); }

static inline void put_str(const char *s) {
  while (*s) put_char(*s++);
}

static inline void put_dec(u32 v) {
  char buf[10];
  int n = 0;
  do {
    buf[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) put_char(buf[--n]);
}

/* "0x" and the digits without leading zeros; 64-bit by shifts only (no libgcc on 32-bit). */
static inline void put_hex(u64 v) {
  int shift = 60;
  put_str("0x");
  while (shift > 0 && ((v >> shift) & 0xf) == 0) shift -= 4;
  for (; shift >= 0; shift -= 4) put_char("0123456789abcdef"[(v >> shift) & 0xf]);
}

/* isa-debug-exit: the VMM ends the run with exit status (value << 1) | 1, as QEMU does. */
static inline void debug_exit(u8 value) { outb(DEBUG_EXIT, value); }

#endif

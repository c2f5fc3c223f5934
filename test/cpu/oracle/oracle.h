/* Wire format shared with test/cpu/support/oracle-format.ts: fixed-size little-endian records. */
#ifndef NODEVMM_CPU_ORACLE_H
#define NODEVMM_CPU_ORACLE_H
#include <stdint.h>

#define ORACLE_CODE_ADDR 0x200000UL
#define ORACLE_SCRATCH_ADDR 0x300000UL
#define ORACLE_SCRATCH_SIZE 1024
#define ORACLE_CODE_MAX 64
#define ORACLE_MAGIC 0x4f52434cU /* "LCRO" */
/* 16-bit segments the helper installs in its LDT with modify_ldt (selectors with RPL 3): a 16-bit
 * code segment based at ORACLE_CODE_ADDR (a 16-bit case starts at IP 0) and a 16-bit (B = 0)
 * expand-up data segment of 64 KiB based at ORACLE_STACK16_ADDR for cases with ORACLE_FLAG_STACK16 */
#define ORACLE_STACK16_ADDR 0x310000UL
#define ORACLE_SEL_STACK16 0x07
#define ORACLE_SEL_CODE16 0x0f
/* SS is the 16-bit stack segment; the scratch bytes are then its two ends, where SP wraps:
 * scratch[0..511] is SS:0xFE00..0xFFFF and scratch[512..1023] is SS:0x0000..0x01FF (the scratch
 * page at ORACLE_SCRATCH_ADDR still starts with the same bytes, as data) */
#define ORACLE_FLAG_STACK16 1U

struct oracle_state {
  uint64_t gpr[16]; /* x86 order: rax rcx rdx rbx rsp rbp rsi rdi r8..r15 */
  uint64_t rflags;
  uint64_t rip;
  uint8_t xmm[16][16];
  /* bytes 0-159 of an FXSAVE image: FCW, FSW, abridged FTW, ..., MXCSR, ST0-7 (the MMX registers).
   * In a request only FCW, FSW, FTW and ST0-7 are used (MXCSR stays the host's). */
  uint8_t fx[160];
  uint8_t scratch[ORACLE_SCRATCH_SIZE];
};

struct oracle_request {
  uint32_t magic;
  uint32_t code_len;
  /* 64: 64-bit mode; 32: compatibility mode (32-bit code segment, as 32-bit protected mode runs);
   * 16: 16-bit code (the LDT code segment ORACLE_SEL_CODE16) */
  uint32_t bits;
  uint32_t flags; /* ORACLE_FLAG_* */
  uint8_t code[ORACLE_CODE_MAX];
  struct oracle_state state;
};

struct oracle_response {
  uint32_t magic;
  int32_t vector; /* -1: ran to the end of the code; else the exception vector (trapno) */
  /* state.rip is linear (a 16-bit case's IP plus ORACLE_CODE_ADDR) */
  uint64_t error_code;
  struct oracle_state state;
};

#endif

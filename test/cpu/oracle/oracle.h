/* Wire format shared with test/cpu/support/oracle-format.ts: fixed-size little-endian records. */
#ifndef NODEVMM_CPU_ORACLE_H
#define NODEVMM_CPU_ORACLE_H
#include <stdint.h>

#define ORACLE_CODE_ADDR 0x200000UL
#define ORACLE_SCRATCH_ADDR 0x300000UL
#define ORACLE_SCRATCH_SIZE 1024
#define ORACLE_CODE_MAX 64
#define ORACLE_MAGIC 0x4f52434cU /* "LCRO" */

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
  /* 64: 64-bit mode; 32: compatibility mode (32-bit code segment, as 32-bit protected mode runs) */
  uint32_t bits;
  uint32_t reserved;
  uint8_t code[ORACLE_CODE_MAX];
  struct oracle_state state;
};

struct oracle_response {
  uint32_t magic;
  int32_t vector; /* -1: ran to the end of the code; else the exception vector (trapno) */
  uint64_t error_code;
  struct oracle_state state;
};

#endif

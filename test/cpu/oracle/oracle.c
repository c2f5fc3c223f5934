/* The host CPU as a correctness oracle for the x86 interpreter (see test/cpu/differential.test.ts).
 * Reads fixed-size oracle_request records from stdin, runs each case's code in user mode on the real
 * processor from the given state (general, XMM and x87/MMX registers, flags, the scratch page), and
 * writes one oracle_response per request to stdout. A fault in the case's code is caught by a
 * signal handler and reported as its vector (the kernel's trapno), with the register state at the
 * faulting instruction, as the interpreter reports an exception it would deliver. A request's
 * `bits` selects 64-bit mode or compatibility mode (a far jump to the 32-bit user code segment 0x23;
 * the case returns through a far jump to a 64-bit trampoline), or 16-bit code; ORACLE_FLAG_STACK16
 * runs the case on a 16-bit stack segment (SS.B = 0). The 16-bit segments are LDT descriptors the
 * helper installs with modify_ldt; `--probe-ldt` says whether this host runs them. Linux x86-64 only. */
#define _GNU_SOURCE
#include <asm/ldt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "oracle.h"

/* offset in the code page of the 64-bit jump back to oracle_exit used by compatibility-mode cases */
#define ORACLE_TRAMPOLINE 0x800

#if !defined(__x86_64__) || !defined(__linux__)
#error "the CPU oracle runs x86-64 code natively on Linux"
#endif

/* Shared with oracle-entry.S. */
__attribute__((visibility("hidden"))) struct oracle_state oracle_out;
__attribute__((visibility("hidden"))) uint64_t oracle_host_rsp;
/* SS for the case (oracle-entry.S loads it last, with RSP): the 64-bit user data segment, or the
 * 16-bit LDT stack segment */
__attribute__((visibility("hidden"))) uint16_t oracle_ss = 0x2b;
/* FXSAVE areas: the case's x87/MMX state going in (oracle-entry.S loads it with FXRSTOR) and
 * coming out when the code ran to its end (a fault takes it from the signal frame instead) */
__attribute__((visibility("hidden"), aligned(16))) uint8_t oracle_fx_in[512];
__attribute__((visibility("hidden"), aligned(16))) uint8_t oracle_fx_out[512];
/* m16:32 far pointer used by oracle_run to enter the case's code */
__attribute__((visibility("hidden"))) struct __attribute__((packed)) {
  uint32_t offset;
  uint16_t selector;
} oracle_far_entry = {ORACLE_CODE_ADDR, 0x33};
int oracle_run(const struct oracle_state *in);
void oracle_exit(void);
void oracle_recover(void);

static volatile int fault_vector;
static volatile uint64_t fault_error;
/* linear address of the running case's CS: 16-bit code runs at IP 0 of a segment based at the code page */
static volatile uint64_t code_base;

static const int greg_of_gpr[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP,
                                    REG_RSI, REG_RDI, REG_R8,  REG_R9,  REG_R10, REG_R11,
                                    REG_R12, REG_R13, REG_R14, REG_R15};

static void on_fault(int sig, siginfo_t *info, void *ctx) {
  (void)info;
  ucontext_t *uc = ctx;
  greg_t *g = uc->uc_mcontext.gregs;
  uint64_t rip = (uint64_t)g[REG_RIP];
  /* 16-bit code reports IP; a fault after the far jump back (in 64-bit code) is linear already */
  if (code_base != 0 && (g[REG_CSGSFS] & 0xffff) == ORACLE_SEL_CODE16) rip += code_base;
  if (rip < ORACLE_CODE_ADDR || rip >= ORACLE_CODE_ADDR + 4096) {
    /* not the case's code: a bug in the helper itself; die with the signal */
    signal(sig, SIG_DFL);
    return;
  }
  for (int i = 0; i < 16; i++) oracle_out.gpr[i] = (uint64_t)g[greg_of_gpr[i]];
  oracle_out.rflags = (uint64_t)g[REG_EFL];
  oracle_out.rip = rip;
  if (uc->uc_mcontext.fpregs) {
    memcpy(oracle_out.xmm, uc->uc_mcontext.fpregs->_xmm, sizeof oracle_out.xmm);
    memcpy(oracle_out.fx, uc->uc_mcontext.fpregs, sizeof oracle_out.fx);
  }
  fault_vector = (int)g[REG_TRAPNO];
  fault_error = (uint64_t)g[REG_ERR];
  g[REG_RIP] = (greg_t)(uintptr_t)oracle_recover;
  g[REG_RSP] = (greg_t)oracle_host_rsp;
  /* back to the 64-bit user code and data segments if the fault happened in compatibility mode or
   * on the 16-bit stack (SS is the top 16 bits of this slot) */
  g[REG_CSGSFS] = (g[REG_CSGSFS] & ~(greg_t)0xffff & ~((greg_t)0xffff << 48)) | 0x33 | ((greg_t)0x2b << 48);
  g[REG_EFL] &= ~(greg_t)(0x100 | 0x400 | 0x40000); /* TF, DF, AC */
}

static int read_full(void *buf, size_t len) {
  uint8_t *p = buf;
  while (len) {
    ssize_t n = read(0, p, len);
    if (n <= 0) return 0;
    p += n;
    len -= (size_t)n;
  }
  return 1;
}

static void map_fixed(uint64_t addr, size_t size, int prot) {
  void *p = mmap((void *)addr, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p != (void *)addr) {
    fprintf(stderr, "cpu-oracle: cannot map 0x%lx\n", (unsigned long)addr);
    exit(2);
  }
}

/* Installs the 16-bit LDT segments; NULL when the CPU sees them (LAR accepts both selectors, so a
 * load will not fault for the kernel's sake), else why not. Some hypervisors (PVM among them) let
 * modify_ldt succeed while the processor never loads the LDT. */
static const char *install_ldt(void) {
  static int done;
  static const char *result;
  if (done) return result;
  done = 1;
  struct user_desc d;
  memset(&d, 0, sizeof d);
  d.entry_number = ORACLE_SEL_STACK16 >> 3;
  d.base_addr = ORACLE_STACK16_ADDR;
  d.limit = 0xffff;
  d.seg_32bit = 0;
  d.contents = MODIFY_LDT_CONTENTS_DATA;
  d.useable = 1;
  if (syscall(SYS_modify_ldt, 0x11, &d, sizeof d) != 0) return result = "modify_ldt refused a 16-bit data segment";
  d.entry_number = ORACLE_SEL_CODE16 >> 3;
  d.base_addr = ORACLE_CODE_ADDR;
  d.contents = MODIFY_LDT_CONTENTS_CODE;
  if (syscall(SYS_modify_ldt, 0x11, &d, sizeof d) != 0) return result = "modify_ldt refused a 16-bit code segment";
  static const uint32_t sels[2] = {ORACLE_SEL_STACK16, ORACLE_SEL_CODE16};
  for (int i = 0; i < 2; i++) {
    uint32_t ar = 0;
    uint8_t ok = 0;
    __asm__ volatile("lar %2, %0\n\tsetz %1" : "=r"(ar), "=q"(ok) : "r"(sels[i]) : "cc");
    if (!ok) return result = "modify_ldt accepted the 16-bit descriptors but the processor does not see them (LAR fails)";
    /* present, DPL 3, B/D = 0 */
    if ((ar & 0x8000) == 0 || ((ar >> 13) & 3) != 3 || (ar & 0x400000) != 0)
      return result = "the LDT descriptors read back with other access rights";
  }
  return result = NULL;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--version") == 0) {
    printf("cpu-oracle 4 request=%zu response=%zu\n", sizeof(struct oracle_request),
           sizeof(struct oracle_response));
    return 0;
  }
  if (argc > 1 && strcmp(argv[1], "--probe-ldt") == 0) {
    const char *why = install_ldt();
    printf("ldt: %s\n", why ? why : "ok");
    return why ? 1 : 0;
  }
  map_fixed(ORACLE_CODE_ADDR, 4096, PROT_READ | PROT_WRITE | PROT_EXEC);
  map_fixed(ORACLE_SCRATCH_ADDR, 4096, PROT_READ | PROT_WRITE);
  map_fixed(ORACLE_STACK16_ADDR, 0x10000, PROT_READ | PROT_WRITE);
  uint8_t *stack16 = (uint8_t *)ORACLE_STACK16_ADDR;

  static uint8_t altstack[65536];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  int sigs[] = {SIGSEGV, SIGILL, SIGFPE, SIGTRAP, SIGBUS};
  for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);

  /* the helper's own x87 state, back in place after every case (the C ABI wants an empty x87
   * stack, which MMX code does not leave) */
  static uint8_t host_fx[512] __attribute__((aligned(16)));
  static struct oracle_request req;
  static struct oracle_response resp;
  uint8_t *code = (uint8_t *)ORACLE_CODE_ADDR;
  uint8_t *scratch = (uint8_t *)ORACLE_SCRATCH_ADDR;
  static const uint8_t jmp_abs[6] = {0xff, 0x25, 0, 0, 0, 0}; /* jmp [rip+0] ; .quad oracle_exit */
  uint64_t exit_addr = (uint64_t)(uintptr_t)oracle_exit;

  while (read_full(&req, sizeof req)) {
    if (req.magic != ORACLE_MAGIC || req.code_len > ORACLE_CODE_MAX ||
        (req.bits != 64 && req.bits != 32 && req.bits != 16) || (req.flags & ~ORACLE_FLAG_STACK16) != 0) {
      fprintf(stderr, "cpu-oracle: malformed request (magic %08x, code_len %u, bits %u, flags %x)\n", req.magic,
              req.code_len, req.bits, req.flags);
      return 2;
    }
    const int stack16_case = (req.flags & ORACLE_FLAG_STACK16) != 0;
    if (req.bits == 16 || stack16_case) {
      const char *why = install_ldt();
      if (why) {
        fprintf(stderr, "cpu-oracle: 16-bit segments unavailable: %s\n", why);
        return 4;
      }
    }
    memset(code, 0xcc, 4096);
    memcpy(code, req.code, req.code_len);
    if (req.bits == 64) {
      memcpy(code + req.code_len, jmp_abs, sizeof jmp_abs);
      memcpy(code + req.code_len + sizeof jmp_abs, &exit_addr, sizeof exit_addr);
    } else {
      /* jmp far 0x33:TRAMPOLINE (EA ptr16:32; 66 EA in 16-bit code), then the 64-bit trampoline
       * jumps to oracle_exit */
      uint8_t *p = code + req.code_len;
      uint32_t tramp = ORACLE_CODE_ADDR + ORACLE_TRAMPOLINE;
      if (req.bits == 16) *p++ = 0x66;
      p[0] = 0xea;
      memcpy(p + 1, &tramp, 4);
      p[5] = 0x33;
      p[6] = 0x00;
      memcpy(code + ORACLE_TRAMPOLINE, jmp_abs, sizeof jmp_abs);
      memcpy(code + ORACLE_TRAMPOLINE + sizeof jmp_abs, &exit_addr, sizeof exit_addr);
    }
    oracle_far_entry.selector = req.bits == 64 ? 0x33 : req.bits == 32 ? 0x23 : ORACLE_SEL_CODE16;
    oracle_far_entry.offset = req.bits == 16 ? 0 : ORACLE_CODE_ADDR;
    code_base = req.bits == 16 ? ORACLE_CODE_ADDR : 0;
    oracle_ss = stack16_case ? ORACLE_SEL_STACK16 : 0x2b;
    if (stack16_case) {
      memset(stack16, 0, 0x10000);
      memcpy(stack16 + 0xfe00, req.state.scratch, 512);
      memcpy(stack16, req.state.scratch + 512, 512);
    }
    memcpy(scratch, req.state.scratch, ORACLE_SCRATCH_SIZE);
    memset(&oracle_out, 0, sizeof oracle_out);
    fault_vector = -1;
    fault_error = 0;
    __asm__ volatile("fxsave64 %0" : "=m"(host_fx));
    memcpy(oracle_fx_in, host_fx, sizeof oracle_fx_in);
    memcpy(oracle_fx_in, req.state.fx, 24);             /* FCW, FSW, FTW, FOP, FIP, FDP */
    memcpy(oracle_fx_in + 32, req.state.fx + 32, 128); /* ST0-7 */

    int faulted = oracle_run(&req.state);
    if (!faulted) memcpy(oracle_out.fx, oracle_fx_out, sizeof oracle_out.fx);
    __asm__ volatile("fxrstor64 %0" : : "m"(host_fx));

    memset(&resp, 0, sizeof resp);
    resp.magic = ORACLE_MAGIC;
    resp.vector = faulted ? fault_vector : -1;
    resp.error_code = faulted ? fault_error : 0;
    resp.state = oracle_out;
    if (!faulted) resp.state.rip = ORACLE_CODE_ADDR + req.code_len;
    if (stack16_case) {
      memcpy(resp.state.scratch, stack16 + 0xfe00, 512);
      memcpy(resp.state.scratch + 512, stack16, 512);
    } else {
      memcpy(resp.state.scratch, scratch, ORACLE_SCRATCH_SIZE);
    }
    if (fwrite(&resp, sizeof resp, 1, stdout) != 1) return 3;
  }
  return fflush(stdout) == 0 ? 0 : 3;
}

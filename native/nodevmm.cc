// nodevmm's thin addon: the system calls a KVM VMM needs (open, close, ioctl, mmap, eventfd) and a
// KVM_RUN fast path with a cross-thread kick. Everything above this is TypeScript (lib/kvm).
//
// Safety contract: nothing a JS caller passes may crash the process. Hence every argument is type-
// and range-checked, ioctl only accepts the KVM requests it knows (so it can size-check the buffer
// the kernel will read or write), and the two ioctls that carry raw user pointers
// (KVM_SET_USER_MEMORY_REGION, KVM_GET_DIRTY_LOG) have their own functions that take ArrayBuffers.
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "kvm_abi.h"
#include "nodevmm.h"

namespace nodevmm {
namespace {

// ---- errors -------------------------------------------------------------------------------------

const char* ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char* name = strerrorname_np(err);
  if (name != nullptr) return name;
#endif
  switch (err) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case ENOMEM: return "ENOMEM";
    case EEXIST: return "EEXIST";
    case ENOTTY: return "ENOTTY";
    case EINTR: return "EINTR";
    case EAGAIN: return "EAGAIN";
    case ENXIO: return "ENXIO";
    case E2BIG: return "E2BIG";
    default: return "EUNKNOWN";
  }
}

// Mirrors Node's own system errors (fs, net): code is the errno name, errno is negative.
Napi::Error SysError(Napi::Env env, int err, const char* syscall, const char* request = nullptr) {
  std::string msg = std::string(syscall);
  if (request != nullptr) msg += std::string(" ") + request;
  msg += std::string(" failed: ") + strerror(err) + " (" + ErrnoName(err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (request != nullptr) e.Set("request", Napi::String::New(env, request));
  return e;
}

[[noreturn]] void ThrowType(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }
[[noreturn]] void ThrowRange(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

// ---- argument conversion -------------------------------------------------------------------------

int64_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t min, int64_t max) {
  Napi::Env env = info.Env();
  Napi::Value v = info[i];
  if (v.IsBigInt()) {
    bool lossless = false;
    int64_t n = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless || n < min || n > max) ThrowRange(env, std::string(name) + " is out of range");
    return n;
  }
  if (!v.IsNumber()) ThrowType(env, std::string(name) + " must be an integer");
  double d = v.As<Napi::Number>().DoubleValue();
  // checked before any cast: converting NaN or an out-of-range double to an integer is undefined
  if (!std::isfinite(d) || std::trunc(d) != d) ThrowType(env, std::string(name) + " must be an integer");
  if (d < static_cast<double>(min) || d > static_cast<double>(max) || d >= 9223372036854775807.0) {
    ThrowRange(env, std::string(name) + " is out of range");
  }
  return static_cast<int64_t>(d);
}

int FdArg(const Napi::CallbackInfo& info, size_t i, const char* name = "fd") {
  return static_cast<int>(IntArg(info, i, name, 0, INT32_MAX));
}

struct Bytes {
  uint8_t* data;
  size_t length;
};

// The bytes behind an ArrayBuffer, a TypedArray or a DataView (views: only their window).
bool BytesOfUnchecked(Napi::Value v, Bytes* out) {
  if (v.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
    *out = {static_cast<uint8_t*>(ab.Data()), ab.ByteLength()};
    return true;
  }
  if (v.IsTypedArray()) {
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    Napi::ArrayBuffer ab = ta.ArrayBuffer();
    *out = {static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset(), ta.ByteLength()};
    return true;
  }
  if (v.IsDataView()) {
    Napi::DataView dv = v.As<Napi::DataView>();
    Napi::ArrayBuffer ab = dv.ArrayBuffer();
    *out = {static_cast<uint8_t*>(ab.Data()) + dv.ByteOffset(), dv.ByteLength()};
    return true;
  }
  return false;
}

bool BytesOf(Napi::Value v, Bytes* out) {
  try {
    return BytesOfUnchecked(v, out);
  } catch (const Napi::Error&) {
    // N-API cannot reach a SharedArrayBuffer's memory
    ThrowType(v.Env(), "views of a SharedArrayBuffer are not supported");
  }
}

// ---- mappings ------------------------------------------------------------------------------------

// One mmap handed to JS as an external ArrayBuffer. The finalizer (GC) and munmap() both end a
// mapping; `live` says whether it is still mapped, so whichever comes second does nothing.
struct Mapping {
  void* addr;
  size_t length;
  bool live;
  int fd;  // -1 for anonymous memory
};

std::mutex g_mappings_mutex;
std::unordered_map<uintptr_t, Mapping*> g_mappings;  // live mappings by address

// ---- vCPU run state (for kicks) -------------------------------------------------------------------

// run() touches only the atomics on its fast path; kick() and everything that changes `run` or
// `thread` hold the mutex. A kick stores `pending` then reads `in_run`; run() stores `in_run` then
// reads `pending` (both sequentially consistent): at least one of them sees the other, so a kick is
// never lost (and kick() writes immediate_exit before it signals, for a signal that lands early).
struct VcpuState {
  std::mutex m;
  std::atomic<bool> is_vcpu{false};  // run() was called on this fd
  std::atomic<bool> in_run{false};
  std::atomic<bool> pending{false};  // a kick not yet consumed by an interrupted run
  pthread_t thread{};
  struct kvm_run* run = nullptr;  // the fd's offset-0 mapping (kvm_run) when mapped through us
};

std::mutex g_vcpus_mutex;
std::map<int, std::unique_ptr<VcpuState>> g_vcpus;

VcpuState* StateFor(int fd) {
  std::lock_guard<std::mutex> lock(g_vcpus_mutex);
  std::unique_ptr<VcpuState>& slot = g_vcpus[fd];
  if (!slot) slot = std::make_unique<VcpuState>();
  return slot.get();
}

VcpuState* FindState(int fd) {
  std::lock_guard<std::mutex> lock(g_vcpus_mutex);
  auto it = g_vcpus.find(fd);
  return it == g_vcpus.end() ? nullptr : it->second.get();
}

// The kick signal. Its handler does nothing: its only job is to make a blocking KVM_RUN return
// EINTR in the thread it is sent to (Firecracker and rust-vmm use SIGRTMIN the same way).
int KickSignal() { return SIGRTMIN + 3; }

void NoopHandler(int) {}

void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = NoopHandler;
    sigemptyset(&sa.sa_mask);
    sigaction(KickSignal(), &sa, nullptr);
  });
}

void UnblockKickSignalInThisThread() {
  static thread_local bool done = false;
  if (done) return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, KickSignal());
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  done = true;
}

// ---- KVM fds this binding made ---------------------------------------------------------------------

// Which fds are KVM's: /dev/kvm as open() found it, and the VM and vCPU fds KVM_CREATE_VM and
// KVM_CREATE_VCPU returned through ioctl(). Only a vCPU fd gets its kvm_run mapped and kicked; any
// other fd that reached mmap() (an empty file, a device) could hand JS pages that raise SIGBUS.
// A vCPU fd is also checked against /proc/self/fd when mapped: an fd closed behind our back (fs.
// closeSync) may since name something else.
enum class FdKind { kSystem, kVm, kVcpu };
struct KvmFd {
  FdKind kind;
  size_t vcpu_mmap_size;  // KVM_GET_VCPU_MMAP_SIZE of the /dev/kvm it came from; 0 if unknown
};

std::mutex g_fds_mutex;
std::unordered_map<int, KvmFd> g_fds;
size_t g_last_vcpu_mmap_size = 0;  // the host's, once any /dev/kvm was opened through us

constexpr unsigned kKvmMajor = 10;   // a misc device
constexpr unsigned kKvmMinor = 232;  // KVM_MINOR in <linux/miscdevice.h>

void RecordFd(int fd, bool kvm, FdKind kind, size_t mmap_size) {
  std::lock_guard<std::mutex> lock(g_fds_mutex);
  if (!kvm) {
    g_fds.erase(fd);
    return;
  }
  if (mmap_size == 0) mmap_size = g_last_vcpu_mmap_size;
  if (kind == FdKind::kSystem && mmap_size != 0) g_last_vcpu_mmap_size = mmap_size;
  g_fds[fd] = KvmFd{kind, mmap_size};
}

bool LookupFd(int fd, KvmFd* out) {
  std::lock_guard<std::mutex> lock(g_fds_mutex);
  auto it = g_fds.find(fd);
  if (it == g_fds.end()) return false;
  *out = it->second;
  return true;
}

// What /proc/self/fd says the fd is ("anon_inode:kvm-vcpu:0", "/dev/kvm", ...).
bool FdLinkStartsWith(int fd, const char* prefix) {
  char path[64];
  char target[256];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) return false;
  target[n] = '\0';
  return strncmp(target, prefix, strlen(prefix)) == 0;
}

// memory slots registered through SetUserMemoryRegion: (vm fd, slot) -> size, to size dirty logs
std::mutex g_slots_mutex;
std::map<std::pair<int, uint32_t>, uint64_t> g_slots;

// ---- functions -----------------------------------------------------------------------------------

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  if (path.find('\0') != std::string::npos) ThrowType(env, "path must not contain NUL");
  int flags = O_RDWR;
  if (info.Length() > 1 && !info[1].IsUndefined()) flags = static_cast<int>(IntArg(info, 1, "flags", 0, INT32_MAX));
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    Napi::Error e = SysError(env, errno, "open");
    e.Set("path", Napi::String::New(env, path));
    throw e;
  }
  struct stat st;
  bool kvm = fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == kKvmMajor &&
             minor(st.st_rdev) == kKvmMinor;
  size_t mmap_size = 0;
  if (kvm) {
    int n = ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (n > 0) mmap_size = static_cast<size_t>(n);
  }
  RecordFd(fd, kvm, FdKind::kSystem, mmap_size);
  return Napi::Number::New(env, fd);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  RecordFd(fd, false, FdKind::kSystem, 0);
  if (VcpuState* st = FindState(fd)) {
    std::lock_guard<std::mutex> lock(st->m);
    st->is_vcpu = false;
    st->pending.store(false);
    st->run = nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(g_slots_mutex);
    for (auto it = g_slots.begin(); it != g_slots.end();) {
      it = it->first.first == fd ? g_slots.erase(it) : std::next(it);
    }
  }
  if (close(fd) < 0) throw SysError(env, errno, "close");
  return env.Undefined();
}

bool IsPointerRequest(uint32_t request) {
  switch (request) {
    case KVM_SET_USER_MEMORY_REGION:
    case KVM_GET_DIRTY_LOG:
      return true;
    default:
      return false;
  }
}

Napi::Value Ioctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  uint32_t request = static_cast<uint32_t>(IntArg(info, 1, "request", 0, UINT32_MAX));
  const char* name = IoctlName(request);
  if (name == nullptr) {
    ThrowRange(env, "ioctl request 0x" + ([&] {
                 char buf[16];
                 snprintf(buf, sizeof buf, "%x", request);
                 return std::string(buf);
               })() + " is not a KVM ioctl this binding knows");
  }
  if (IsPointerRequest(request)) {
    ThrowType(env, std::string(name) + " carries a raw pointer: use setUserMemoryRegion/getDirtyLog");
  }
  const unsigned dir = _IOC_DIR(request);
  const size_t size = _IOC_SIZE(request);
  Napi::Value arg = info[2];
  long rc;
  if (dir == _IOC_NONE) {
    unsigned long n = 0;
    if (!arg.IsUndefined()) n = static_cast<unsigned long>(IntArg(info, 2, "arg", 0, INT64_MAX));
    rc = ioctl(fd, request, n);
  } else {
    Bytes b;
    if (!BytesOf(arg, &b)) ThrowType(env, std::string(name) + " needs an ArrayBuffer, TypedArray or DataView argument");
    if (b.length < size) {
      ThrowRange(env, std::string(name) + " needs at least " + std::to_string(size) + " bytes, got " +
                          std::to_string(b.length));
    }
    size_t need = nodevmm_variable_arg_size(request, b.data, b.length);
    if (need > b.length) {
      ThrowRange(env, std::string(name) + " header asks for " + std::to_string(need) + " bytes, the buffer has " +
                          std::to_string(b.length));
    }
    rc = ioctl(fd, request, b.data);
  }
  if (rc < 0) throw SysError(env, errno, "ioctl", name);
  if (request == KVM_CREATE_VM || request == KVM_CREATE_VCPU) {
    // only KVM answers ioctls of type 0xAE: the new fd is KVM's whatever `fd` was recorded as
    KvmFd parent{FdKind::kSystem, 0};
    LookupFd(fd, &parent);
    RecordFd(static_cast<int>(rc), true, request == KVM_CREATE_VM ? FdKind::kVm : FdKind::kVcpu,
             parent.vcpu_mmap_size);
  }
  return Napi::Number::New(env, static_cast<double>(rc));
}

// A kvm_run mapping that goes away must not stay registered: a later kick would write into it.
void ForgetRunMapping(int fd, void* addr) {
  if (fd < 0) return;
  if (VcpuState* st = FindState(fd)) {
    std::lock_guard<std::mutex> lock(st->m);
    if (st->run == addr) st->run = nullptr;
  }
}

void FinalizeMapping(Napi::Env, void*, Mapping* m) {
  bool unmap = false;
  {
    std::lock_guard<std::mutex> lock(g_mappings_mutex);
    if (m->live) {
      g_mappings.erase(reinterpret_cast<uintptr_t>(m->addr));
      m->live = false;
      unmap = true;
    }
  }
  if (unmap) {
    ForgetRunMapping(m->fd, m->addr);
    munmap(m->addr, m->length);
  }
  delete m;
}

Napi::Value WrapMapping(Napi::Env env, void* addr, size_t length, int fd) {
  Mapping* m = new Mapping{addr, length, true, fd};
  {
    std::lock_guard<std::mutex> lock(g_mappings_mutex);
    g_mappings[reinterpret_cast<uintptr_t>(addr)] = m;
  }
  return Napi::ArrayBuffer::New(env, addr, length, FinalizeMapping, m);
}

// Node 20's largest ArrayBuffer. Past it creating the external buffer fails, and on that path
// Node and node-addon-api would both free the finalizer data: refuse such lengths up front.
constexpr int64_t kMaxMapping = int64_t{1} << 32;

Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  size_t length = static_cast<size_t>(IntArg(info, 1, "length", 1, kMaxMapping));
  int64_t offset = IntArg(info, 2, "offset", 0, INT64_MAX);
  const int64_t page = sysconf(_SC_PAGESIZE);
  if (offset % page != 0) ThrowRange(env, "offset must be a multiple of the page size");
  const uint64_t end = static_cast<uint64_t>(offset) + length;
  // Pages the kernel has nothing behind fault with SIGBUS when touched, long after this call: only
  // ranges known to be backed are mapped. A vCPU has KVM_GET_VCPU_MMAP_SIZE bytes (kvm_run, the PIO
  // page, the coalesced MMIO ring); a regular file has its size (the last page's tail reads as
  // zeroes). Truncating a mapped file is still the caller's doing, as with any shared mapping.
  KvmFd rec;
  const bool vcpu = LookupFd(fd, &rec) && rec.kind == FdKind::kVcpu && FdLinkStartsWith(fd, "anon_inode:kvm-vcpu");
  if (vcpu) {
    const uint64_t limit = rec.vcpu_mmap_size != 0 ? rec.vcpu_mmap_size : static_cast<uint64_t>(page);
    if (end > limit) {
      ThrowRange(env, "a vCPU fd maps at most " + std::to_string(limit) + " bytes (KVM_GET_VCPU_MMAP_SIZE), asked for " +
                          std::to_string(length) + " at offset " + std::to_string(offset));
    }
  } else {
    struct stat st;
    if (fstat(fd, &st) < 0) throw SysError(env, errno, "fstat");
    if (!S_ISREG(st.st_mode)) {
      ThrowType(env, "fd " + std::to_string(fd) + " is neither a KVM vCPU this binding created nor a regular file: refusing to map it");
    }
    const uint64_t backed = (static_cast<uint64_t>(st.st_size) + page - 1) / page * page;
    if (end > backed) {
      ThrowRange(env, "mapping " + std::to_string(length) + " bytes at offset " + std::to_string(offset) +
                          " reaches past the end of the file (" + std::to_string(st.st_size) +
                          " bytes): those pages would raise SIGBUS");
    }
  }
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  if (p == MAP_FAILED) throw SysError(env, errno, "mmap");
  if (vcpu && offset == 0) {
    // a new kvm_run means a new vCPU behind this fd number: nothing from an earlier user of the
    // number (a kick aimed at a closed fd) may carry over
    VcpuState* st = StateFor(fd);
    std::lock_guard<std::mutex> lock(st->m);
    st->run = static_cast<struct kvm_run*>(p);
    st->pending.store(false);
    st->is_vcpu = false;
  }
  return WrapMapping(env, p, length, fd);
}

Napi::Value MmapAnonymous(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t length = static_cast<size_t>(IntArg(info, 0, "length", 1, kMaxMapping));
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw SysError(env, errno, "mmap");
  return WrapMapping(env, p, length, -1);
}

// The live mapping an ArrayBuffer is, or nullptr.
Mapping* MappingOf(Napi::Value v) {
  if (!v.IsArrayBuffer()) return nullptr;
  Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
  uintptr_t addr = reinterpret_cast<uintptr_t>(ab.Data());
  std::lock_guard<std::mutex> lock(g_mappings_mutex);
  auto it = g_mappings.find(addr);
  if (it == g_mappings.end() || it->second->length != ab.ByteLength()) return nullptr;
  return it->second;
}

Napi::Value Munmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) ThrowType(env, "munmap needs the ArrayBuffer that mmap returned");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  if (ab.IsDetached()) ThrowType(env, "this mapping was already unmapped");
  Mapping* m = MappingOf(ab);
  if (m == nullptr) ThrowType(env, "munmap needs an ArrayBuffer that mmap returned");
  ForgetRunMapping(m->fd, m->addr);
  void* addr = m->addr;
  size_t length = m->length;
  {
    std::lock_guard<std::mutex> lock(g_mappings_mutex);
    g_mappings.erase(reinterpret_cast<uintptr_t>(addr));
    m->live = false;  // the finalizer, whenever it runs, now only frees the record
  }
  // Detach first: from here on every view of it reads as empty, so JS can never touch the pages.
  ab.Detach();
  if (munmap(addr, length) < 0) throw SysError(env, errno, "munmap");
  return env.Undefined();
}

Napi::Value Eventfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  unsigned initval = info[0].IsUndefined() ? 0 : static_cast<unsigned>(IntArg(info, 0, "initval", 0, UINT32_MAX));
  int flags = info[1].IsUndefined() ? 0 : static_cast<int>(IntArg(info, 1, "flags", 0, INT32_MAX));
  int fd = eventfd(initval, flags | EFD_CLOEXEC);
  if (fd < 0) throw SysError(env, errno, "eventfd");
  RecordFd(fd, false, FdKind::kSystem, 0);
  return Napi::Number::New(env, fd);
}

// KVM_RUN. Returns true when the guest exited (the reason is in kvm_run), false when the run was
// interrupted (signal, kick, immediate_exit): the caller reports that as an "intr" exit.
Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // the hot path of every exit: a plain small integer is the only cheap case; anything else is
  // checked (and rejected) by FdArg
  Napi::Value a0 = info[0];
  int fd;
  if (a0.IsNumber()) {
    double d = a0.As<Napi::Number>().DoubleValue();
    fd = d >= 0 && d <= INT32_MAX && std::trunc(d) == d ? static_cast<int>(d) : FdArg(info, 0, "vcpuFd");
  } else {
    fd = FdArg(info, 0, "vcpuFd");
  }
  static thread_local int cached_fd = -1;
  static thread_local VcpuState* cached = nullptr;
  static thread_local pthread_t self = pthread_self();
  VcpuState* st = cached_fd == fd ? cached : (cached = StateFor(fd), cached_fd = fd, cached);
  UnblockKickSignalInThisThread();
  if (!st->is_vcpu || !pthread_equal(st->thread, self)) {
    std::lock_guard<std::mutex> lock(st->m);
    st->is_vcpu = true;
    st->thread = self;
  }
  st->in_run.store(true);
  if (st->pending.load()) {
    std::lock_guard<std::mutex> lock(st->m);
    if (st->run != nullptr) st->run->immediate_exit = 1;
  }
  int rc = ioctl(fd, KVM_RUN, 0);
  int err = errno;
  st->in_run.store(false);
  bool interrupted = rc < 0 && (err == EINTR || err == EAGAIN);
  if (interrupted) {
    std::lock_guard<std::mutex> lock(st->m);
    st->pending.store(false);
    if (st->run != nullptr) st->run->immediate_exit = 0;
  }
  if (rc < 0 && !interrupted) throw SysError(env, err, "ioctl", "KVM_RUN");
  return Napi::Boolean::New(env, !interrupted);
}

// Makes the vCPU's KVM_RUN in progress (or its next one) return promptly as interrupted. Callable
// from any thread of the process (a worker holding the fd number).
Napi::Value Kick(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "vcpuFd");
  VcpuState* st = StateFor(fd);
  std::lock_guard<std::mutex> lock(st->m);
  // one signal per pending kick: the signal is real-time, so every pthread_kill queues another
  // delivery, and a caller kicking in a loop would keep the vCPU thread in its handler for good
  // (immediate_exit, set before the first signal, already ends any entry that starts later)
  const bool already = st->pending.exchange(true);
  if (st->is_vcpu && st->run != nullptr) st->run->immediate_exit = 1;
  if (st->in_run.load() && !already) pthread_kill(st->thread, KickSignal());
  return env.Undefined();
}

Napi::Value SetUserMemoryRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "vmFd");
  uint32_t slot = static_cast<uint32_t>(IntArg(info, 1, "slot", 0, UINT32_MAX));
  uint32_t flags = static_cast<uint32_t>(IntArg(info, 2, "flags", 0, UINT32_MAX));
  uint64_t gpa = static_cast<uint64_t>(IntArg(info, 3, "guestPhysAddr", 0, INT64_MAX));
  struct kvm_userspace_memory_region r;
  memset(&r, 0, sizeof r);
  r.slot = slot;
  r.flags = flags;
  r.guest_phys_addr = gpa;
  if (info[4].IsNull() || info[4].IsUndefined()) {
    r.memory_size = 0;  // deletes the slot
  } else {
    Mapping* m = MappingOf(info[4]);
    if (m == nullptr) {
      ThrowType(env, "guest memory must be an ArrayBuffer returned by mmap/mmapAnonymous (GC'd memory cannot back a slot)");
    }
    r.memory_size = m->length;
    r.userspace_addr = reinterpret_cast<uint64_t>(m->addr);
  }
  if (ioctl(fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) throw SysError(env, errno, "ioctl", "KVM_SET_USER_MEMORY_REGION");
  std::lock_guard<std::mutex> lock(g_slots_mutex);
  if (r.memory_size == 0) {
    g_slots.erase({fd, slot});
  } else {
    g_slots[{fd, slot}] = r.memory_size;
  }
  return env.Undefined();
}

Napi::Value GetDirtyLog(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "vmFd");
  uint32_t slot = static_cast<uint32_t>(IntArg(info, 1, "slot", 0, UINT32_MAX));
  Bytes b;
  if (!BytesOf(info[2], &b)) ThrowType(env, "bitmap must be an ArrayBuffer, TypedArray or DataView");
  uint64_t size;
  {
    std::lock_guard<std::mutex> lock(g_slots_mutex);
    auto it = g_slots.find({fd, slot});
    if (it == g_slots.end()) ThrowRange(env, "slot " + std::to_string(slot) + " was not set through this binding");
    size = it->second;
  }
  // KVM writes whole longs: one bit per 4 KiB page, rounded up to 64 pages.
  uint64_t pages = (size + 4095) / 4096;
  uint64_t need = (pages + 63) / 64 * 8;
  if (b.length < need) ThrowRange(env, "dirty bitmap needs " + std::to_string(need) + " bytes, got " + std::to_string(b.length));
  struct kvm_dirty_log log;
  memset(&log, 0, sizeof log);
  log.slot = slot;
  log.dirty_bitmap = b.data;
  if (ioctl(fd, KVM_GET_DIRTY_LOG, &log) < 0) throw SysError(env, errno, "ioctl", "KVM_GET_DIRTY_LOG");
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallKickHandler();
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("ioctl", Napi::Function::New(env, Ioctl, "ioctl"));
  exports.Set("mmap", Napi::Function::New(env, Mmap, "mmap"));
  exports.Set("mmapAnonymous", Napi::Function::New(env, MmapAnonymous, "mmapAnonymous"));
  exports.Set("munmap", Napi::Function::New(env, Munmap, "munmap"));
  exports.Set("eventfd", Napi::Function::New(env, Eventfd, "eventfd"));
  exports.Set("run", Napi::Function::New(env, Run, "run"));
  exports.Set("kick", Napi::Function::New(env, Kick, "kick"));
  exports.Set("setUserMemoryRegion", Napi::Function::New(env, SetUserMemoryRegion, "setUserMemoryRegion"));
  exports.Set("getDirtyLog", Napi::Function::New(env, GetDirtyLog, "getDirtyLog"));
  exports.Set("layout", LayoutTable(env));
  exports.Set("kickSignal", Napi::Number::New(env, KickSignal()));
  return exports;
}

}  // namespace
}  // namespace nodevmm

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return nodevmm::Init(env, exports); }

NODE_API_MODULE(nodevmm, InitAddon)

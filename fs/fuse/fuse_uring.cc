#include "fs/fuse/fuse_uring.h"

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <liburing.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <sched.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

namespace cmkfs::fs {
namespace {

// What Debian 12's <linux/fuse.h> (Linux 6.1) lacks of the protocol (FUSE ABI 7.42).
constexpr uint64_t kOverIoUring = 1ULL << 41;
constexpr uint64_t kDirectIoAllowMmap = 1ULL << 36;  // Linux 6.6+
constexpr uint32_t kInitExt = 1u << 30;
constexpr uint32_t kMaxPagesFlag = 1u << 22;
constexpr uint32_t kCmdRegister = 1, kCmdCommitAndFetch = 2;
struct RingEntInOut {
  uint64_t flags, commit_id;
  uint32_t payload_sz, padding;
  uint64_t reserved;
};
struct RingHeader {
  char in_out[128];  // fuse_in_header on fetch, fuse_out_header on commit
  char op_in[128];   // the request's fixed per-operation header
  RingEntInOut ent;
};
struct RingCmd {  // in the SQE's command area
  uint64_t flags, commit_id;
  uint16_t qid;
  uint8_t padding[6];
};
constexpr char kSwitch[] = "/sys/module/fuse/parameters/enable_uring";
constexpr size_t kPrefix = 4096;  // room before the payload to rebuild the request as libfuse reads it

// One request slot registered with the kernel: its headers and payload buffer.
struct Slot {
  explicit Slot(size_t payload_size)
      : buf(static_cast<uint8_t*>(std::aligned_alloc(4096, kPrefix + payload_size))), payload(payload_size) {
    iov[0] = {&header, sizeof(header)};
    iov[1] = {payload_at(), payload};
  }
  ~Slot() { std::free(buf); }
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;

  RingHeader header{};
  uint8_t* buf;  // kPrefix + payload bytes; the kernel holds its address
  size_t payload;
  iovec iov[2]{};
  uint64_t unique = 0;
  bool replied = false;

  uint8_t* payload_at() { return buf + kPrefix; }
  // Takes libfuse's reply (out header, then the arguments) into the ring buffers.
  ssize_t take_reply(const iovec* iov, int count) {
    size_t total = 0, used = 0;
    for (int i = 1; i < count; ++i) total += iov[i].iov_len;
    std::memcpy(header.in_out, iov[0].iov_base, std::min(iov[0].iov_len, sizeof(fuse_out_header)));
    auto* out = reinterpret_cast<fuse_out_header*>(header.in_out);
    if (total > payload) {
      out->error = -EIO;  // cannot happen: replies are bounded by max_write and max_pages
    } else {
      for (int i = 1; i < count; ++i) {
        uint8_t* to = payload_at() + used;
        if (iov[i].iov_base != to) std::memmove(to, iov[i].iov_base, iov[i].iov_len);  // else built in place
        used += iov[i].iov_len;
      }
    }
    header.ent.payload_sz = static_cast<uint32_t>(used);
    replied = true;
    return static_cast<ssize_t>(iov[0].iov_len + total);
  }
};

thread_local Slot* t_slot = nullptr;  // the ring request this worker is answering

// A large READ or WRITE: worth running wherever a core is free rather than where it was made.
bool is_bulk(const Slot& slot) {
  constexpr uint32_t kBulk = 128 << 10;
  const auto* in = reinterpret_cast<const fuse_in_header*>(slot.header.in_out);
  if (in->opcode == FUSE_WRITE) return slot.header.ent.payload_sz >= kBulk;
  if (in->opcode != FUSE_READ) return false;
  fuse_read_in read;
  std::memcpy(&read, slot.header.op_in, sizeof(read));
  return read.size >= kBulk;
}

// After a reply the pinned worker polls its ring for a while before sleeping, yielding to anyone
// runnable on its CPU. Why: the scheduler places a woken application on an idle CPU if it finds
// one, and an application that has moved once keeps moving back and forth, every request then
// waking a halted CPU. While the previous request's worker polls, its CPU is not idle, so the
// application stays where it is (measurements in docs/performance.md).
int poll_cqe(io_uring* ring, io_uring_cqe** cqe) {
  // Long enough to cover the application's move and its next request, short enough to cost
  // little: at most this much CPU after the last request of a burst.
  constexpr auto kPoll = std::chrono::microseconds(100);
  auto until = std::chrono::steady_clock::now() + kPoll;
  for (;;) {
    if (io_uring_peek_cqe(ring, cqe) == 0) return 0;
    if (std::chrono::steady_clock::now() >= until) return -EAGAIN;
    sched_yield();  // also runs the io_uring task work that delivers a request to this ring
  }
}

// The calling thread's CPU affinity: pinned to its queue's CPU from the start, or free to run on
// any CPU the process may use; changed only when it must be.
class Affinity {
 public:
  explicit Affinity(unsigned cpu) {
    pthread_getaffinity_np(pthread_self(), sizeof(any_), &any_);
    CPU_ZERO(&one_);
    CPU_SET(cpu, &one_);
    set(true);
  }
  void pin(bool pinned) {
    if (pinned != pinned_) set(pinned);
  }

 private:
  void set(bool pinned) {
    pthread_setaffinity_np(pthread_self(), sizeof(cpu_set_t), pinned ? &one_ : &any_);  // an offline CPU: stays
    pinned_ = pinned;
  }
  cpu_set_t any_, one_;
  bool pinned_ = false;
};

// The CPUs the kernel may queue on: one ring queue each ("0-1", "0-3,6").
unsigned possible_cpus() {
  std::ifstream in("/sys/devices/system/cpu/possible");
  std::string spec;
  unsigned highest = 0;
  if (in >> spec) {
    size_t end = spec.find_last_of(",-");
    highest = static_cast<unsigned>(std::strtoul(spec.c_str() + (end == std::string::npos ? 0 : end + 1), nullptr, 10));
  }
  return highest + 1;
}

}  // namespace

struct UringTransport::Impl {
  fuse_session* se;
  unsigned per_cpu;
  int fd = -1;
  std::atomic<uint64_t> init_unique{0};
  std::atomic<bool> offered{false};
  std::atomic<bool>* direct_io_mmap = nullptr;  // asked for when set; true once the kernel has it
  std::atomic<bool> mmap_offered{false};
  size_t payload = 0;
  std::atomic<bool> stopping{false};
  std::mutex mu;  // guards the two below
  std::vector<std::thread> workers;
  size_t registered = 0;  // workers whose entries the kernel has (or that failed to register)
  std::condition_variable registered_cv;

  static inline std::atomic<Impl*> current{nullptr};  // libfuse's I/O hooks carry no context of ours

  static ssize_t hook_read(int fd, void* buf, size_t len, void*);
  static ssize_t hook_writev(int fd, iovec* iov, int count, void*);
  void start();
  void serve(unsigned cpu, bool always_pinned, unsigned slots);
  bool submit(io_uring* ring, Slot& slot, uint64_t id, uint32_t op, unsigned qid);
  void answer(Slot& slot);
};

// Notes the INIT request, and whether the kernel offers io_uring in it.
ssize_t UringTransport::Impl::hook_read(int fd, void* buf, size_t len, void*) {
  ssize_t n = ::read(fd, buf, len);
  Impl* self = current.load();
  if (self == nullptr || n < static_cast<ssize_t>(sizeof(fuse_in_header) + sizeof(fuse_init_in))) return n;
  const auto* in = static_cast<const fuse_in_header*>(buf);
  if (in->opcode != FUSE_INIT) return n;
  const auto* init = reinterpret_cast<const fuse_init_in*>(in + 1);
  bool offered = (init->flags & kInitExt) && (init->flags2 & (kOverIoUring >> 32));
  self->offered.store(offered);
  self->mmap_offered.store((init->flags & kInitExt) && (init->flags2 & (kDirectIoAllowMmap >> 32)));
  self->init_unique.store(in->unique);
  if (!offered) {
    spdlog::warn("io_uring requested, but the kernel does not offer it: serving over /dev/fuse{}",
                 self->direct_io_mmap != nullptr ? "; reads stay cached" : "");
  }
  return n;
}

// Replies to ring requests go into their ring buffers; the INIT reply takes up io_uring and,
// once the kernel has it, the rings are registered; everything else goes to /dev/fuse.
ssize_t UringTransport::Impl::hook_writev(int fd, iovec* iov, int count, void*) {
  const auto* out = static_cast<const fuse_out_header*>(iov[0].iov_base);
  if (t_slot != nullptr && out->unique == t_slot->unique) return t_slot->take_reply(iov, count);
  Impl* self = current.load();
  bool init_reply = self != nullptr && out->unique != 0 && out->unique == self->init_unique.load() &&
                    self->offered.load() && out->error == 0 && count >= 2 &&
                    iov[1].iov_len >= offsetof(fuse_init_out, unused);
  if (!init_reply) return ::writev(fd, iov, count);
  auto* init = static_cast<fuse_init_out*>(iov[1].iov_base);
  init->flags |= kInitExt;
  init->flags2 |= static_cast<uint32_t>(kOverIoUring >> 32);
  bool mmap = self->direct_io_mmap != nullptr && self->mmap_offered.load();
  if (mmap) init->flags2 |= static_cast<uint32_t>(kDirectIoAllowMmap >> 32);
  size_t pages = (init->flags & kMaxPagesFlag) ? std::max<uint32_t>(init->max_pages, 1) : 32;
  self->payload = std::max({size_t{8192}, size_t{init->max_write}, pages * static_cast<size_t>(getpagesize())});
  ssize_t n = ::writev(fd, iov, count);
  if (n >= 0 && mmap) self->direct_io_mmap->store(true);
  if (n >= 0 && self->direct_io_mmap != nullptr) {
    if (mmap) spdlog::info("direct reads: files opened read-only bypass the page cache");
    else spdlog::warn("direct reads need a kernel that maps direct-I/O files (Linux 6.6+): reads stay cached");
  }
  if (n >= 0) self->start();
  return n;
}

void UringTransport::Impl::start() {
  std::unique_lock<std::mutex> lk(mu);
  unsigned cpus = possible_cpus();
  for (unsigned cpu = 0; cpu < cpus; ++cpu) {
    // The first worker stays on its CPU and takes two requests at a time; with the request that
    // the application does not wait for (a RELEASE, a write-back) in hand, the next one still
    // lands on this CPU. The others take one request each and stay on the CPU too, except while
    // serving a large READ or WRITE: several 1 MiB readahead READs at once then spread over the
    // cores (pinned throughout, they could not; never pinned, they also took the small requests
    // of a single stream and served them from the other CPU).
    for (unsigned i = 1; i < per_cpu; ++i) workers.emplace_back([this, cpu] { serve(cpu, false, 1); });
  }
  // The kernel hands a request to the entry made ready last: registered after the others, the
  // pinned workers' entries come first.
  registered_cv.wait(lk, [&] { return registered == workers.size(); });
  for (unsigned cpu = 0; cpu < cpus; ++cpu) workers.emplace_back([this, cpu] { serve(cpu, true, 2); });
  spdlog::info("FUSE over io_uring: {} queues, {} workers each", cpus, per_cpu);
}

bool UringTransport::Impl::submit(io_uring* ring, Slot& slot, uint64_t id, uint32_t op, unsigned qid) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe == nullptr) return false;
  std::memset(sqe, 0, 2 * sizeof(io_uring_sqe));  // an SQE128 entry
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = fd;
  sqe->cmd_op = op;
  sqe->addr = reinterpret_cast<uintptr_t>(slot.iov);
  sqe->len = 2;
  sqe->user_data = id;
  auto* cmd = reinterpret_cast<RingCmd*>(sqe->cmd);
  cmd->qid = static_cast<uint16_t>(qid);
  cmd->commit_id = slot.header.ent.commit_id;
  return io_uring_submit(ring) == 1;
}

// Rebuilds the request as /dev/fuse would have delivered it (header, per-operation header,
// payload: contiguous, since both headers go just before the payload) and lets libfuse run it.
void UringTransport::Impl::answer(Slot& slot) {
  auto* in = reinterpret_cast<fuse_in_header*>(slot.header.in_out);
  size_t fixed = sizeof(fuse_in_header), body = slot.header.ent.payload_sz;
  slot.unique = in->unique;
  slot.replied = false;
  if (in->len >= fixed + body && in->len - fixed - body <= sizeof(slot.header.op_in) && body <= slot.payload) {
    size_t op_size = in->len - fixed - body;
    uint8_t* start = slot.payload_at() - op_size - fixed;
    std::memcpy(start, in, fixed);
    std::memcpy(start + fixed, slot.header.op_in, op_size);
    fuse_buf request{};
    request.size = in->len;
    request.mem = start;
    t_slot = &slot;
    fuse_session_process_buf(se, &request);
    t_slot = nullptr;
  }
  if (!slot.replied) {  // malformed, or libfuse had no answer: the kernel must not wait forever
    fuse_out_header err{sizeof(fuse_out_header), -EIO, slot.unique};
    iovec iov{&err, sizeof(err)};
    slot.take_reply(&iov, 1);
  }
}

void UringTransport::Impl::serve(unsigned cpu, bool always_pinned, unsigned slots) {
  Affinity affinity(cpu);
  io_uring ring;
  io_uring_params params{};
  params.flags = IORING_SETUP_SQE128;
  // start() waits for every worker to be counted here, whether its queue registered or not: a
  // worker that returned uncounted left start() and the INIT reply waiting forever.
  auto counted = [this] {
    {
      std::lock_guard<std::mutex> g(mu);
      ++registered;
    }
    registered_cv.notify_all();
  };
  if (int rc = io_uring_queue_init_params(2 * slots, &ring, &params); rc < 0) {
    spdlog::error("io_uring setup failed: {}; requests go through /dev/fuse", std::strerror(-rc));
    counted();
    return;
  }
  std::vector<std::unique_ptr<Slot>> slot;
  bool ok = true;
  for (unsigned i = 0; i < slots && ok; ++i) {
    slot.push_back(std::make_unique<Slot>(payload));
    ok = slot.back()->buf != nullptr && submit(&ring, *slot.back(), i, kCmdRegister, cpu);
  }
  counted();
  while (ok && !stopping.load()) {
    io_uring_cqe* cqe = nullptr;
    int rc = always_pinned ? poll_cqe(&ring, &cqe) : -EAGAIN;
    __kernel_timespec tick{1, 0};  // to notice `stopping` should the kernel never answer
    if (rc == -EAGAIN) rc = io_uring_wait_cqe_timeout(&ring, &cqe, &tick);
    if (rc == -ETIME || rc == -EINTR) continue;
    if (rc < 0) break;
    int res = cqe->res;
    uint64_t i = cqe->user_data;
    io_uring_cqe_seen(&ring, cqe);
    if (res < 0 || i >= slot.size()) {  // the connection went (unmount) or the kernel refused the ring
      if (res != -ENOTCONN && res != -ECONNABORTED && res != -ECANCELED && res != -ENODEV) {
        spdlog::warn("FUSE io_uring queue {}: {}", cpu, std::strerror(-res));
      }
      break;
    }
    if (!always_pinned) affinity.pin(!is_bulk(*slot[i]));
    answer(*slot[i]);
    ok = submit(&ring, *slot[i], i, kCmdCommitAndFetch, cpu);
  }
  io_uring_queue_exit(&ring);
}

std::span<uint8_t> uring_reply_space(size_t size) {
  if (t_slot == nullptr || size > t_slot->payload) return {};
  return {t_slot->payload_at(), size};
}

Status enable_kernel_uring() {
  std::ifstream probe(kSwitch);
  if (!probe) return Status(EOPNOTSUPP, "this kernel has no FUSE io_uring support (Linux 6.14+)");
  std::ofstream flip(kSwitch);
  flip << "Y";
  flip.close();
  if (!flip) return Status(EACCES, std::string("cannot turn on ") + kSwitch + " (root only)");
  return Status::Ok();
}

UringTransport::UringTransport(fuse_session* se, unsigned workers_per_cpu, std::atomic<bool>* direct_io_mmap)
    : impl_(std::make_unique<Impl>()) {
  impl_->se = se;
  impl_->per_cpu = std::max(2u, workers_per_cpu);
  impl_->direct_io_mmap = direct_io_mmap;
}

UringTransport::~UringTransport() {
  impl_->stopping.store(true);
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> g(impl_->mu);
    workers.swap(impl_->workers);
  }
  for (auto& w : workers) w.join();
  Impl::current.store(nullptr);
}

Status UringTransport::install() {
  impl_->fd = fuse_session_fd(impl_->se);
  fuse_custom_io io{};
  io.read = &Impl::hook_read;
  io.writev = &Impl::hook_writev;
  Impl::current.store(impl_.get());
  if (int rc = fuse_session_custom_io(impl_->se, &io, impl_->fd); rc != 0) {
    Impl::current.store(nullptr);
    return Status(-rc, "cannot install the io_uring transport");
  }
  return Status::Ok();
}

}  // namespace cmkfs::fs

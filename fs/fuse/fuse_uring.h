// FUSE over io_uring (Linux 6.14+, `--io-uring`). The kernel queues each request on the ring of
// the CPU that made it, and workers pinned to that CPU answer it: the request and its reply are
// handed over on one CPU, with no wake-up of another: on small virtual machines a cross-CPU
// wake-up is most of a FUSE round trip (docs/performance.md).
//
// libfuse 3.14 predates the protocol, so this transport feeds libfuse's request decoder
// (fuse_session_process_buf) from the ring and catches its replies through libfuse's custom I/O
// hooks. /dev/fuse still carries INIT, FORGET, INTERRUPT, notifications, and every request until
// all rings are registered.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "crypto/base/status.h"

struct fuse_session;

namespace cmkfs::fs {

// Turns on the kernel's switch (a fuse module parameter, root only) so that INIT offers io_uring.
// Fails when the kernel has no FUSE io_uring support.
Status enable_kernel_uring();

// On a thread answering a ring request: the ring's payload buffer, where a reply of up to `size`
// bytes can be built so that it is not copied again. Empty elsewhere.
std::span<uint8_t> uring_reply_space(size_t size);

class UringTransport {
 public:
  // `workers_per_cpu` (at least 2) workers per CPU queue, each with its own ring: one pinned to
  // the CPU with two request buffers, the rest with one each, on the CPU too except while serving
  // a large READ or WRITE, so that large requests in flight together spread over the cores and
  // one blocked on the disk does not hold up the queue.
  // With `direct_io_mmap`, the INIT reply also asks that files opened for direct I/O may be
  // mapped shared (Linux 6.6+, FUSE_DIRECT_IO_ALLOW_MMAP; refused with ENODEV otherwise), and
  // *direct_io_mmap turns true once the kernel has taken it. That kernel also writes back the
  // dirty pages a direct read covers before it (fs/core/filesystem.h: Filesystem::open has the rest).
  UringTransport(fuse_session* se, unsigned workers_per_cpu, std::atomic<bool>* direct_io_mmap = nullptr);
  ~UringTransport();  // joins the workers; the mount must be gone by then
  UringTransport(const UringTransport&) = delete;
  UringTransport& operator=(const UringTransport&) = delete;

  // Installs the I/O hooks: after fuse_session_mount, before the session loop. The rings are
  // registered once the kernel has taken the INIT reply.
  Status install();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cmkfs::fs

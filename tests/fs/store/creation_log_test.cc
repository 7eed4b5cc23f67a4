// The creation log's two files take turns; the retired one is emptied once the metadata batch is
// durable, while creates keep noting into the other. A create notes its object holding the
// batch's lock, so the turn must not hold the log's lock while it waits for the batch's (it once
// did: the mount hung after about 64,000 creates).
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "fs/store/store.h"

namespace cmkfs::fs {
namespace {

// An empty directory of this test's own, open; removed at the end.
struct LogDir {
  explicit LogDir(const std::string& name)
      : path(std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
    fd = ::open(path.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  }
  ~LogDir() {
    if (fd >= 0) ::close(fd);
    std::filesystem::remove_all(path);
  }
  std::string path;
  int fd = -1;
};

TEST(CreationLogTest, EmptyingTheRetiredFileWhileACreateHoldsTheBatchDoesNotDeadlock) {
  LogDir dir("creation-log");
  int dir_fd = dir.fd;
  ASSERT_GE(dir_fd, 0);
  auto log = CreationLog::open(dir_fd, true);
  ASSERT_TRUE(log.ok()) << log.status().message();
  Id128 id{};
  auto key = crypto::HmacKey::make(crypto::as_bytes(std::string(32, 'k')));
  ASSERT_TRUE(key.ok());
  // Past the turn (1 MiB of 40-byte notes), every create committed.
  for (uint64_t ino = 0; ino < (1 << 20) / 40 + 1; ++ino) {
    auto ticket = (*log)->note(ino, id, *key);
    ASSERT_TRUE(ticket.ok());
    (*log)->committed(*ticket);
  }
  auto at_once = [](std::function<void()> fn) { fn(); };
  (*log)->maybe_turn(at_once);  // notes now go to the other file

  std::mutex batch;  // the metadata batch's lock
  std::atomic<bool> create_holds_batch{false}, flush_waits_for_batch{false};
  std::thread flusher([&] {
    while (!create_holds_batch) std::this_thread::yield();
    (*log)->maybe_turn([&](std::function<void()> truncate) {
      flush_waits_for_batch = true;
      std::lock_guard<std::mutex> g(batch);
      truncate();
    });
  });
  auto create = std::async(std::launch::async, [&] {
    std::lock_guard<std::mutex> g(batch);
    create_holds_batch = true;
    while (!flush_waits_for_batch) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the flusher is in when_durable
    return (*log)->note(1, id, *key).ok();
  });
  if (create.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    std::fprintf(stderr, "deadlock: a create waits for the log, the log's turn for the batch\n");
    std::abort();  // the threads can never be joined
  }
  EXPECT_TRUE(create.get());
  flusher.join();
  auto entries = (*log)->entries(*key);
  ASSERT_TRUE(entries.ok());
  EXPECT_EQ(entries->size(), 1u);  // the retired file was emptied; the new note is in the other
  log->reset();
}

// Recovery removes the object a note names: a note the store's writer planted (of a live file's
// object) is not listed, nor one tagged under another store's key.
TEST(CreationLogTest, ANotePlantedInTheLogIsNotListed) {
  LogDir dir("creation-log-planted");
  int dir_fd = dir.fd;
  ASSERT_GE(dir_fd, 0);
  auto key = crypto::HmacKey::make(crypto::as_bytes(std::string(32, 'k')));
  auto other = crypto::HmacKey::make(crypto::as_bytes(std::string(32, 'o')));
  ASSERT_TRUE(key.ok() && other.ok());
  {
    auto log = CreationLog::open(dir_fd, true);
    ASSERT_TRUE(log.ok()) << log.status().message();
    Id128 mine{}, theirs{};
    mine[0] = 1, theirs[0] = 2;
    ASSERT_TRUE((*log)->note(7, mine, *key).ok());
    ASSERT_TRUE((*log)->note(8, theirs, *other).ok());
  }
  // As the writer of the store appends it: inode 9, a live file's object, and any tag.
  std::string planted(40, '\0');
  planted[7] = 9, planted[8] = 3;
  int fd = ::openat(dir_fd, "created.0", O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, planted.data(), planted.size()), 40);
  ::close(fd);
  auto log = CreationLog::open(dir_fd, false);
  ASSERT_TRUE(log.ok());
  size_t unauthentic = 0;
  auto entries = (*log)->entries(*key, &unauthentic);
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].ino, 7u);
  EXPECT_EQ((*entries)[0].file_id[0], 1);
  EXPECT_EQ(unauthentic, 2u);
  log->reset();
}

}  // namespace
}  // namespace cmkfs::fs

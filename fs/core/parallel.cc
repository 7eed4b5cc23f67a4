#include "fs/core/parallel.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "crypto/crypto.h"

namespace cmkfs::fs {
namespace {

class Pool {
 public:
  // Built on first use; at exit the helpers are stopped and joined, so that OpenSSL's per-thread
  // state (the RNG behind the nonces) is freed with them.
  static Pool& get() {
    static Pool pool(std::max(1u, std::thread::hardware_concurrency()) - 1);
    return pool;
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  size_t helpers() const { return threads_.size(); }

  void submit(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> g(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

 private:
  explicit Pool(unsigned n) {
    // Threads inherit their creator's CPU affinity, and the first caller may be a worker pinned to
    // one CPU: the creator takes the main thread's (the process's) while it starts the helpers, so
    // that they have it from their first instant, then goes back to its own.
    cpu_set_t process, mine;
    bool swap = sched_getaffinity(getpid(), sizeof(process), &process) == 0 &&
                pthread_getaffinity_np(pthread_self(), sizeof(mine), &mine) == 0 &&
                pthread_setaffinity_np(pthread_self(), sizeof(process), &process) == 0;
    for (unsigned i = 0; i < n; ++i) {
      threads_.emplace_back([this] {
        for (;;) {
          std::function<void()> task;
          {
            std::unique_lock<std::mutex> g(mu_);
            cv_.wait(g, [this] { return stopping_ || !tasks_.empty(); });
            if (tasks_.empty()) break;  // stopping, and nothing left to do
            task = std::move(tasks_.front());
            tasks_.pop_front();
          }
          task();
        }
        crypto::release_thread_state();
      });
    }
    if (swap) pthread_setaffinity_np(pthread_self(), sizeof(mine), &mine);
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// One parallel_for call. Its pieces are claimed in order by whoever comes first, the caller or a
// helper: a caller whose helper is busy with another request's pieces runs its own instead of
// waiting (with two requests at once on two cores, waiting left a core idle).
struct Job {
  const std::function<void(size_t, size_t)>* fn;
  size_t n, per, parts;
  std::atomic<size_t> next{0};
  std::atomic<size_t> finished{0};

  // Runs unclaimed pieces until none is left.
  void work() {
    for (size_t p; (p = next.fetch_add(1)) < parts;) {
      size_t b = p * per, e = std::min(n, b + per);
      if (b < e) (*fn)(b, e);
      if (finished.fetch_add(1) + 1 == parts) finished.notify_all();
    }
  }
};

// Calls that could split, in progress now.
std::atomic<int> g_splittable{0};

}  // namespace

void parallel_for(size_t n, size_t min_per_task, const std::function<void(size_t, size_t)>& fn) {
  Pool& pool = Pool::get();
  size_t parts = std::min(pool.helpers() + 1, n / std::max<size_t>(1, min_per_task));
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  // A call splits only when it is alone. With several large requests in flight (readahead,
  // writeback) each already keeps a core busy, and splitting them too only moved their bytes
  // between the cores' caches (docs/performance.md). One O_DIRECT reader or writer still gets
  // every core.
  struct Count {
    int others = g_splittable.fetch_add(1);
    ~Count() { g_splittable.fetch_sub(1); }
  } count;
  if (count.others > 0) {
    fn(0, n);
    return;
  }
  // Shared: a helper may reach its task after the caller has returned, and then finds no piece
  // left (fn, on the caller's stack, is only called for a claimed piece, which the caller awaits).
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  job->per = (n + parts - 1) / parts;
  job->parts = parts;
  for (size_t p = 1; p < parts; ++p) pool.submit([job] { job->work(); });
  job->work();
  for (size_t done = job->finished.load(); done < parts; done = job->finished.load()) job->finished.wait(done);
}

}  // namespace cmkfs::fs

#include "fs/parallel.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <latch>
#include <mutex>
#include <thread>
#include <vector>

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
        OPENSSL_thread_stop();
      });
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

void parallel_for(size_t n, size_t min_per_task, const std::function<void(size_t, size_t)>& fn) {
  Pool& pool = Pool::get();
  size_t parts = std::min(pool.helpers() + 1, n / std::max<size_t>(1, min_per_task));
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  size_t per = (n + parts - 1) / parts;
  std::latch done(static_cast<ptrdiff_t>(parts - 1));
  for (size_t p = 1; p < parts; ++p) {
    size_t b = p * per, e = std::min(n, b + per);
    pool.submit([&, b, e] {
      if (b < e) fn(b, e);
      done.count_down();
    });
  }
  fn(0, std::min(n, per));
  done.wait();
}

}  // namespace cmkfs::fs

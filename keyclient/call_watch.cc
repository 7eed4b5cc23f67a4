#include "keyclient/call_watch.h"

#include <system_error>

namespace cmkfs::keyclient {
namespace {

class ObservedProvider : public KeyProvider {
 public:
  ObservedProvider(std::unique_ptr<KeyProvider> inner, std::shared_ptr<CallObserver> observer)
      : inner_(std::move(inner)), observer_(std::move(observer)) {}
  ~ObservedProvider() override {
    CallObserver::Inside in(*observer_);
    inner_.reset();
  }
  Result<WrappedKey> wrap(const crypto::SecretBytes& dek) override {
    CallObserver::Inside in(*observer_);
    return inner_->wrap(dek);
  }
  Result<crypto::SecretBytes> unwrap(const WrappedKey& w) override {
    CallObserver::Inside in(*observer_);
    return inner_->unwrap(w);
  }
  Result<std::string> current_key_id() override {
    CallObserver::Inside in(*observer_);
    return inner_->current_key_id();
  }
  bool revocable() const override { return inner_->revocable(); }
  Status validate() override {
    CallObserver::Inside in(*observer_);
    return inner_->validate();
  }

 private:
  std::unique_ptr<KeyProvider> inner_;
  std::shared_ptr<CallObserver> observer_;
};

}  // namespace

std::unique_ptr<KeyProvider> observed(std::unique_ptr<KeyProvider> inner, std::shared_ptr<CallObserver> observer) {
  return std::make_unique<ObservedProvider>(std::move(inner), std::move(observer));
}

CallWatchdog::~CallWatchdog() {
  stop();
  if (thread_.joinable()) thread_.join();
}

void CallWatchdog::enter() {
  std::lock_guard<std::mutex> g(mu_);
  if (stopped_) return;
  if (inside_++ == 0) since_ = std::chrono::steady_clock::now();
  if (!thread_.joinable()) {
    try {
      thread_ = std::thread([this] { run(); });
    } catch (const std::system_error&) {  // no thread to be had: the call goes unwatched
    }
  }
  cv_.notify_all();
}

void CallWatchdog::leave() {
  std::lock_guard<std::mutex> g(mu_);
  if (inside_ > 0) --inside_;
}

void CallWatchdog::stop() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopped_ = true;
    inside_ = 0;
  }
  cv_.notify_all();
}

void CallWatchdog::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopped_) {
    if (inside_ == 0) {
      cv_.wait(lock);
      continue;
    }
    auto deadline = since_ + limit_;
    cv_.wait_until(lock, deadline);
    if (!stopped_ && inside_ > 0 && since_ + limit_ <= std::chrono::steady_clock::now()) {
      on_hung_();  // under the lock: the call cannot return, nor another start, while it runs
      return;
    }
  }
}

}  // namespace cmkfs::keyclient

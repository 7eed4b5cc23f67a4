// Drives a data-key rotation in a mounted store (fs/core/filesystem.h, rekey_step): while the
// keyring holds older generations, moves files and records a bounded amount every second,
// between the requests it shares the store with, then tells the key monitor, which forgets the
// older keys. Its progress goes into the published status.
//
// Thread-safety: its own thread; status() from any.
#pragma once

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>

#include "fs/core/filesystem.h"
#include "fs/daemon/key_monitor.h"
#include "fs/daemon/periodic.h"

namespace cmkfs::fs {

class Rekeyer {
 public:
  Rekeyer(Filesystem& fs, Keyring& keyring, KeyMonitor& monitor)
      : fs_(fs), keyring_(keyring), monitor_(monitor), periodic_(std::chrono::seconds(1), [this] { tick(); }) {}

  // {"dataKeyRotation": {...}} while a rotation runs (older generations are installed), else {}.
  nlohmann::json status() const {
    if (keyring_.older_generations().empty()) return nlohmann::json::object();
    std::lock_guard<std::mutex> g(mu_);
    return {{"dataKeyRotation",
             {{"filesLeft", progress_.files_left}, {"filesMoved", files_}, {"recordsResealed", records_}}}};
  }

 private:
  // Work per tick: enough to finish a large store in hours, little enough to stay out of the way.
  static constexpr auto kBudget = std::chrono::milliseconds(250);

  void tick() {
    if (keyring_.older_generations().empty()) return;
    auto until = std::chrono::steady_clock::now() + kBudget;
    while (std::chrono::steady_clock::now() < until) {
      auto step = fs_.rekey_step(4, 1024);
      std::lock_guard<std::mutex> g(mu_);
      if (!step.ok()) {
        if (step.status().code() != EACCES) spdlog::warn("data-key rotation: {} (retried)", step.status().message());
        return;
      }
      progress_ = *step;
      files_ += step->files_moved;
      records_ += step->records_resealed;
      if (step->done) {
        monitor_.rotation_finished();
        return;
      }
    }
  }

  Filesystem& fs_;
  Keyring& keyring_;
  KeyMonitor& monitor_;
  mutable std::mutex mu_;  // guards what status() reads
  Filesystem::RekeyProgress progress_;
  uint64_t files_ = 0, records_ = 0;
  Periodic periodic_;  // last: starts once the rest is ready
};

}  // namespace cmkfs::fs

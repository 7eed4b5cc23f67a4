// The daemon's log file, reopened on SIGHUP so that logrotate can move it away
// (`postrotate kill -HUP`): lines go on to the new file, none is lost or split between them.
#pragma once

#include <spdlog/sinks/base_sink.h>

#include <cstdio>
#include <mutex>
#include <string>

namespace cmkfs::fs {

class ReopenableFileSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit ReopenableFileSink(std::string path) : path_(std::move(path)) { file_ = std::fopen(path_.c_str(), "ae"); }
  ~ReopenableFileSink() override {
    if (file_ != nullptr) std::fclose(file_);
  }
  // Closes the file and opens the path again (a new file, if it was moved away).
  void reopen() {
    std::lock_guard<std::mutex> g(mutex_);
    if (file_ != nullptr) std::fclose(file_);
    file_ = std::fopen(path_.c_str(), "ae");
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (file_ == nullptr) return;
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    std::fwrite(line.data(), 1, line.size(), file_);
  }
  void flush_() override {
    if (file_ != nullptr) std::fflush(file_);
  }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace cmkfs::fs

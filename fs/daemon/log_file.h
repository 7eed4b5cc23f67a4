// Where log lines go and how they look: the daemon's log file, reopened on SIGHUP so that
// logrotate can move it away (`postrotate kill -HUP`: lines go on to the new file, none is lost or
// split between them); one JSON object per line with --log-format json; the journal, with each
// line's priority, when systemd connected stderr to it.
#pragma once

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

namespace cmkfs::fs {

// {"time":"2026-11-30T12:00:00.123Z","level":"info","logger":"cmkfs-daemon","message":"..."}
class JsonLogFormatter : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto since = msg.time.time_since_epoch();
    std::time_t secs = std::chrono::duration_cast<std::chrono::seconds>(since).count();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since).count() % 1000;
    struct tm tm;
    gmtime_r(&secs, &tm);
    char when[40];
    size_t n = std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(when + n, sizeof when - n, ".%03dZ", static_cast<int>(ms));
    nlohmann::json line{{"time", when},
                        {"level", spdlog::level::to_string_view(msg.level).data()},
                        {"logger", std::string(msg.logger_name.data(), msg.logger_name.size())},
                        {"message", std::string(msg.payload.data(), msg.payload.size())}};
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<formatter> clone() const override { return std::make_unique<JsonLogFormatter>(); }
};

// The line format for `format` ("text" or "json").
inline std::unique_ptr<spdlog::formatter> log_formatter(const std::string& format) {
  if (format == "json") return std::make_unique<JsonLogFormatter>();
  return std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
}

// Whether systemd connected stderr to the journal ($JOURNAL_STREAM names its device and inode).
inline bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  struct stat st;
  if (stream == nullptr || ::fstat(2, &st) != 0) return false;
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) == stream;
}

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

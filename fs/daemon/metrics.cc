#include "fs/daemon/metrics.h"

#include <httplib.h>

#include <sstream>

namespace cmkfs::fs {
namespace {

// One metric's HELP and TYPE lines.
void head(std::ostringstream& o, const char* name, const char* type, const char* help) {
  o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}

}  // namespace

std::string render_metrics(const MetricsSnapshot& m) {
  std::ostringstream o;
  o.precision(9);
  std::string mp = "mountpoint=\"" + m.mountpoint + "\"";
  head(o, "cmkfs_fuse_requests_total", "counter", "FUSE requests served, by operation");
  for (int i = 0; i < OpStats::kCount; ++i) {
    o << "cmkfs_fuse_requests_total{" << mp << ",op=\"" << OpStats::kNames[i] << "\"} " << m.ops->ops[i].count << "\n";
  }
  head(o, "cmkfs_fuse_request_errors_total", "counter", "FUSE requests answered with an error, by operation");
  for (int i = 0; i < OpStats::kCount; ++i) {
    o << "cmkfs_fuse_request_errors_total{" << mp << ",op=\"" << OpStats::kNames[i] << "\"} " << m.ops->ops[i].errors << "\n";
  }
  head(o, "cmkfs_fuse_request_duration_seconds", "histogram", "Time to serve a FUSE request, by operation");
  for (int i = 0; i < OpStats::kCount; ++i) {
    const auto& p = m.ops->ops[i];
    std::string labels = mp + ",op=\"" + OpStats::kNames[i] + "\"";
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= OpStats::kBounds.size(); ++b) {
      cumulative += p.buckets[b];
      o << "cmkfs_fuse_request_duration_seconds_bucket{" << labels << ",le=\"";
      if (b < OpStats::kBounds.size()) o << OpStats::kBounds[b];
      else o << "+Inf";
      o << "\"} " << cumulative << "\n";
    }
    o << "cmkfs_fuse_request_duration_seconds_sum{" << labels << "} " << p.sum_ns / 1e9 << "\n";
    o << "cmkfs_fuse_request_duration_seconds_count{" << labels << "} " << p.count << "\n";
  }
  head(o, "cmkfs_read_bytes_total", "counter", "Bytes read through the mount");
  o << "cmkfs_read_bytes_total{" << mp << "} " << m.ops->bytes_read << "\n";
  head(o, "cmkfs_written_bytes_total", "counter", "Bytes written through the mount");
  o << "cmkfs_written_bytes_total{" << mp << "} " << m.ops->bytes_written << "\n";
  head(o, "cmkfs_io_errors_total", "counter", "Requests answered EIO: chunks that did not authenticate, store I/O errors");
  o << "cmkfs_io_errors_total{" << mp << "} " << m.io_errors << "\n";
  head(o, "cmkfs_key_state", "gauge", "1 for the key's current state");
  for (KeyState s : {KeyState::kAvailable, KeyState::kRevoked, KeyState::kUnreachable, KeyState::kFailedClosed,
                     KeyState::kTampered}) {
    o << "cmkfs_key_state{" << mp << ",state=\"" << to_string(s) << "\"} " << (s == m.key_state ? 1 : 0) << "\n";
  }
  head(o, "cmkfs_key_checks_total", "counter", "Key checks against the vault, by result");
  for (auto [result, n] : {std::pair<const char*, uint64_t>{"ok", m.checks.ok}, {"refused", m.checks.refused},
                           {"unreachable", m.checks.unreachable}, {"tampered", m.checks.tampered}}) {
    o << "cmkfs_key_checks_total{" << mp << ",result=\"" << result << "\"} " << n << "\n";
  }
  head(o, "cmkfs_key_check_duration_seconds", "gauge", "The last key check's round trip to the vault");
  o << "cmkfs_key_check_duration_seconds{" << mp << "} " << m.checks.last_seconds << "\n";
  head(o, "cmkfs_key_last_success_timestamp_seconds", "gauge", "When a key check last succeeded (Unix time)");
  o << "cmkfs_key_last_success_timestamp_seconds{" << mp << "} " << m.checks.last_success_unix << "\n";
  head(o, "cmkfs_key_offline_grace_remaining_seconds", "gauge", "Offline grace left while the vault is unreachable (-1: not in grace)");
  o << "cmkfs_key_offline_grace_remaining_seconds{" << mp << "} " << m.checks.grace_left_seconds << "\n";
  head(o, "cmkfs_data_key_generation", "gauge", "The data-key generation in use");
  o << "cmkfs_data_key_generation{" << mp << "} " << m.checks.data_key_generation << "\n";
  head(o, "cmkfs_key_info", "gauge", "The key-encryption key version wrapping the data key");
  o << "cmkfs_key_info{" << mp << ",key=\"" << (m.checks.key_version.empty() ? "local" : m.checks.key_version) << "\"} 1\n";
  return o.str();
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& listen, std::function<std::string()> render) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return Status::InvalidArgument("--metrics-listen wants HOST:PORT, not " + listen);
  std::string host = listen.substr(0, colon);
  int port = std::atoi(listen.c_str() + colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  std::unique_ptr<MetricsServer> m(new MetricsServer());
  m->server_ = std::make_unique<httplib::Server>();
  m->server_->Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4");
  });
  if (port <= 0 || !m->server_->bind_to_port(host, port)) {
    return Status(EADDRINUSE, "cannot listen for metrics on " + listen);
  }
  httplib::Server* srv = m->server_.get();
  m->thread_ = std::thread([srv] { srv->listen_after_bind(); });
  return m;
}

MetricsServer::~MetricsServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace cmkfs::fs

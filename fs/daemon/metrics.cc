#include "fs/daemon/metrics.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include <sstream>

namespace cmkfs::fs {
namespace {

// One metric's HELP and TYPE lines.
void head(std::ostringstream& o, const char* name, const char* type, const char* help) {
  o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}

// One histogram's series: cumulative buckets, sum and count.
template <typename H>
void histogram(std::ostringstream& o, const char* name, const std::string& labels, const H& h) {
  uint64_t cumulative = 0;
  for (size_t b = 0; b < H::kBuckets; ++b) {
    cumulative += h.bucket(b);
    o << name << "_bucket{" << labels << ",le=\"";
    if (b < H::kBounds.size()) o << H::kBounds[b];
    else o << "+Inf";
    o << "\"} " << cumulative << "\n";
  }
  o << name << "_sum{" << labels << "} " << h.sum() << "\n";
  o << name << "_count{" << labels << "} " << h.count() << "\n";
}

// A label value as the exposition format spells it: backslash, quote and newline escaped, so a
// mountpoint or key id cannot end its label and add lines of its own.
std::string label_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

}  // namespace

std::string render_metrics(const MetricsSnapshot& m) {
  std::ostringstream o;
  o.precision(9);
  std::string mp = "mountpoint=\"" + label_value(m.mountpoint) + "\"";
  auto op_label = [&](int i) { return mp + ",op=\"" + OpStats::kNames[i] + "\""; };
  head(o, "cmkfs_fuse_requests_total", "counter", "FUSE requests served, by operation");
  for (int i = 0; i < OpStats::kCount; ++i) {
    o << "cmkfs_fuse_requests_total{" << op_label(i) << "} " << m.ops->ops[i].seconds.count() << "\n";
  }
  head(o, "cmkfs_fuse_request_errors_total", "counter", "FUSE requests answered with an error, by operation");
  for (int i = 0; i < OpStats::kCount; ++i) {
    o << "cmkfs_fuse_request_errors_total{" << op_label(i) << "} " << m.ops->ops[i].errors << "\n";
  }
  head(o, "cmkfs_fuse_request_duration_seconds", "histogram", "Time to serve a FUSE request, by operation");
  for (int i = 0; i < OpStats::kCount; ++i) histogram(o, "cmkfs_fuse_request_duration_seconds", op_label(i), m.ops->ops[i].seconds);
  head(o, "cmkfs_read_bytes_total", "counter", "Bytes read through the mount");
  o << "cmkfs_read_bytes_total{" << mp << "} " << m.ops->bytes_read << "\n";
  head(o, "cmkfs_written_bytes_total", "counter", "Bytes written through the mount");
  o << "cmkfs_written_bytes_total{" << mp << "} " << m.ops->bytes_written << "\n";
  head(o, "cmkfs_io_errors_total", "counter", "Requests answered EIO: chunks that did not authenticate, store I/O errors");
  o << "cmkfs_io_errors_total{" << mp << "} " << m.io_errors << "\n";
  head(o, "cmkfs_inodes_in_memory", "gauge", "Inodes the kernel references or that are open, whole in the daemon's memory");
  o << "cmkfs_inodes_in_memory{" << mp << "} " << m.inodes << "\n";
  head(o, "cmkfs_inodes_demoted", "gauge", "Inodes the kernel references, held as a count only (read again on use)");
  o << "cmkfs_inodes_demoted{" << mp << "} " << m.inodes_demoted << "\n";
  if (m.batches != nullptr) {
    head(o, "cmkfs_commit_batch_changes", "histogram", "Metadata changes per group-commit batch written");
    histogram(o, "cmkfs_commit_batch_changes", mp, m.batches->changes);
    head(o, "cmkfs_commit_batch_duration_seconds", "histogram", "Time to write a metadata batch, its sync included");
    histogram(o, "cmkfs_commit_batch_duration_seconds", mp, m.batches->seconds);
    head(o, "cmkfs_commit_batch_failures_total", "counter", "Metadata batches that did not reach the disk");
    o << "cmkfs_commit_batch_failures_total{" << mp << "} " << m.batches->failed << "\n";
  }
  head(o, "cmkfs_key_state", "gauge", "1 for the key's current state");
  for (KeyState s : {KeyState::kAvailable, KeyState::kRevoked, KeyState::kUnreachable, KeyState::kFailedClosed,
                     KeyState::kTampered}) {
    o << "cmkfs_key_state{" << mp << ",state=\"" << to_string(s) << "\"} " << (s == m.key_state ? 1 : 0) << "\n";
  }
  head(o, "cmkfs_key_checks_total", "counter",
       "Key checks (calls to the vault or key provider), by result: ok, refused (no access, key disabled or "
       "deleted), unreachable (network, timeout, server error), tampered");
  for (auto [result, n] : {std::pair<const char*, uint64_t>{"ok", m.checks.ok}, {"refused", m.checks.refused},
                           {"unreachable", m.checks.unreachable}, {"tampered", m.checks.tampered}}) {
    o << "cmkfs_key_checks_total{" << mp << ",result=\"" << result << "\"} " << n << "\n";
  }
  if (m.check_seconds != nullptr) {
    head(o, "cmkfs_key_check_duration_seconds", "histogram", "Round trip of a key check to the vault or key provider");
    histogram(o, "cmkfs_key_check_duration_seconds", mp, *m.check_seconds);
  }
  head(o, "cmkfs_key_last_success_timestamp_seconds", "gauge", "When a key check last succeeded (Unix time)");
  o << "cmkfs_key_last_success_timestamp_seconds{" << mp << "} " << m.checks.last_success_unix << "\n";
  head(o, "cmkfs_key_offline_grace_remaining_seconds", "gauge", "Offline grace left while the vault is unreachable (-1: not in grace)");
  o << "cmkfs_key_offline_grace_remaining_seconds{" << mp << "} " << m.checks.grace_left_seconds << "\n";
  head(o, "cmkfs_data_key_generation", "gauge", "The data-key generation in use");
  o << "cmkfs_data_key_generation{" << mp << "} " << m.checks.data_key_generation << "\n";
  head(o, "cmkfs_key_info", "gauge", "The key-encryption key version wrapping the data key");
  o << "cmkfs_key_info{" << mp << ",key=\"" << (m.checks.key_version.empty() ? "local" : label_value(m.checks.key_version)) << "\"} 1\n";
  return o.str();
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& listen, std::function<std::string()> render) {
  size_t colon = listen.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  int port = colon == std::string::npos ? 0 : std::atoi(listen.c_str() + colon + 1);
  std::string host = colon == std::string::npos ? "" : listen.substr(0, colon);
  if (host.empty() || host == "*") host = "0.0.0.0";
  if (port <= 0 || port > 65535 || ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return Status::InvalidArgument("--metrics-listen wants IPv4-ADDRESS:PORT, not " + listen);
  }
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::unique_ptr<MetricsServer> m(new MetricsServer());
  m->render_ = std::move(render);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0) {
    Status s(errno, "cannot listen for metrics on " + listen + ": " + std::strerror(errno));
    if (fd >= 0) ::close(fd);
    return s;
  }
  MetricsServer* self = m.get();
  m->loop_ = std::make_unique<AcceptLoop>(fd, 0, [self](int c) {
    timeval tv{2, 0};  // a client that sends nothing does not hold the endpoint
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    self->answer(c);
  });
  return m;
}

MetricsServer::~MetricsServer() = default;

void MetricsServer::answer(int fd) {
  std::string request;
  char buf[1024];
  // Two seconds for the whole request, not for each byte: one byte every 1.9 s held the endpoint
  // (served one client at a time) for hours, and the key-state alerts with it.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 8192) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    request.append(buf, static_cast<size_t>(n));
  }
  bool metrics = request.rfind("GET /metrics ", 0) == 0 || request.rfind("GET /metrics?", 0) == 0;
  std::string body = metrics ? render_() : "not found: only /metrics is served here\n";
  std::string reply = std::string(metrics ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.1 404 Not Found\r\n") +
                      "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  for (size_t done = 0; done < reply.size();) {
    ssize_t n = ::send(fd, reply.data() + done, reply.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

}  // namespace cmkfs::fs

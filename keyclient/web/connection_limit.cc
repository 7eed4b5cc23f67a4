#include "keyclient/web/connection_limit.h"

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <iostream>

#include "keyclient/web/peer.h"

namespace cmkfs::web {

bool ConnectionLimit::acquire(const Client& client) {
  std::string line;
  {
    std::lock_guard<std::mutex> g(mu_);
    const bool is_trusted = trusted(client);
    size_t& n = held_[client.name];
    const char* why = nullptr;
    if (n >= (is_trusted ? kPerTrustedClient : kPerClient)) {
      why = "its limit of connections at once";
    } else if (!is_trusted && untrusted_ >= kServerThreads - kReserved) {
      why = "the limit of connections of all but this host's trusted users";
    }
    if (why == nullptr) {
      ++n;
      untrusted_ += !is_trusted;
      return true;
    }
    if (n == 0) held_.erase(client.name);
    ++refused_;
    line = refusal_line(client, why);
  }
  if (!line.empty()) std::cerr << line;  // not under the lock: a stalled log must not stall the server
  return false;
}

void ConnectionLimit::release(const Client& client) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = held_.find(client.name);
  if (it == held_.end()) return;
  if (--it->second == 0) held_.erase(it);
  if (!trusted(client) && untrusted_ > 0) --untrusted_;
}

size_t ConnectionLimit::held(const std::string& client) const {
  std::lock_guard<std::mutex> g(mu_);
  auto it = held_.find(client);
  return it == held_.end() ? 0 : it->second;
}

size_t ConnectionLimit::refused() const {
  std::lock_guard<std::mutex> g(mu_);
  return refused_;
}

std::string ConnectionLimit::refusal_line(const Client& client, const char* why) {
  ++unreported_;
  auto now = std::chrono::steady_clock::now();
  if (last_report_ != std::chrono::steady_clock::time_point{} && now - last_report_ < std::chrono::seconds(10)) return "";
  std::string line = name_ + ": refused " + std::to_string(unreported_) + " connection(s) since the last report; the last from " +
                     client.name + ", for " + why + "\n";
  unreported_ = 0;
  last_report_ = now;
  return line;
}

namespace {

// One counted connection, kept in its SSL object and released when httplib frees that.
struct Slot {
  std::shared_ptr<ConnectionLimit> limit;
  Client client;
  ~Slot() { limit->release(client); }
};

void free_slot(void*, void* slot, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<Slot*>(slot); }
// A copy of the SSL object (SSL_dup; httplib never makes one) holds no count of its own.
int dup_slot(CRYPTO_EX_DATA*, const CRYPTO_EX_DATA*, void** slot, int, long, void*) {
  *slot = nullptr;
  return 1;
}
void free_limit(void*, void* limit, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<std::shared_ptr<ConnectionLimit>*>(limit);
}

int slot_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, dup_slot, free_slot);
  return index;
}
int limit_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_limit);
  return index;
}

// OpenSSL calls this as SSL_accept begins, on the thread that serves the connection, before it
// reads the client's hello.
void on_handshake(const SSL* tls, int where, int) {
  if ((where & SSL_CB_HANDSHAKE_START) == 0) return;
  SSL* ssl = const_cast<SSL*>(tls);  // our own data is all that is set on it
  if (SSL_get_ex_data(ssl, slot_index()) != nullptr) return;  // a renegotiation: counted already
  auto* limit = static_cast<std::shared_ptr<ConnectionLimit>*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), limit_index()));
  int fd = SSL_get_fd(ssl);
  auto connection = connection_of(fd);
  if (limit != nullptr && connection) {
    Client client = client_of(*connection);
    if ((*limit)->acquire(client)) {
      auto* slot = new Slot{*limit, std::move(client)};
      if (SSL_set_ex_data(ssl, slot_index(), slot) == 1) return;
      delete slot;
    }
  }
  // The handshake now reads the end of the stream and fails, and httplib closes the connection.
  ::shutdown(fd, SHUT_RDWR);
}

}  // namespace

void limit_connections(httplib::SSLServer& server, std::shared_ptr<ConnectionLimit> limit) {
  server.new_task_queue = [] { return new httplib::ThreadPool(kServerThreads); };
  SSL_CTX* ctx = server.ssl_context();
  SSL_CTX_set_ex_data(ctx, limit_index(), new std::shared_ptr<ConnectionLimit>(std::move(limit)));
  SSL_CTX_set_info_callback(ctx, on_handshake);
}

}  // namespace cmkfs::web

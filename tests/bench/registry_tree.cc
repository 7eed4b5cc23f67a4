// registry_tree: a registry-shaped store as a benchmark, at any size.
//   registry_tree create DIR FROM TO     makes files FROM..TO-1, then sync()s
//   registry_tree stat DIR FROM TO STEP  stats every STEP-th of them by path
//   registry_tree remove DIR FROM TO     unlinks them and their digest directories
// Prints the seconds taken. File i is a blob of the distribution registry's filesystem layout
// (`blobs/sha256/xx/<digest>/data`, 100 B to 4 MiB, log-uniform) when i % 100 == 0, else one of
// its link files (`repositories/repoN/_layers/sha256/<digest>/link`, 71 bytes): every file in a
// directory of its own, as the registry lays them out, and nine repositories whose `_layers`
// directories hold a ninth of the links each (111,000 entries at a million files).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

constexpr uint64_t kBlobEvery = 100;
constexpr int kRepos = 9;
constexpr size_t kMaxBlob = 4 << 20;

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string digest(uint64_t i) {
  static const char* hex = "0123456789abcdef";
  std::string d;
  for (int w = 0; w < 4; ++w) {
    uint64_t v = mix(i * 4 + w);
    for (int k = 0; k < 16; ++k) d += hex[(v >> (4 * k)) & 15];
  }
  return d;
}

bool is_blob(uint64_t i) { return i % kBlobEvery == 0; }

size_t blob_size(uint64_t i) {  // log-uniform in [100 B, 4 MiB]
  double u = static_cast<double>(mix(~i) >> 11) / 9007199254740992.0;
  return static_cast<size_t>(100.0 * std::pow(kMaxBlob / 100.0, u));
}

std::string dir_of(const std::string& root, uint64_t i) {
  std::string d = digest(i);
  if (is_blob(i)) return root + "/blobs/sha256/" + d.substr(0, 2) + "/" + d;
  return root + "/repositories/repo" + std::to_string(i % kRepos) + "/_layers/sha256/" + d;
}

std::string file_of(const std::string& root, uint64_t i) { return dir_of(root, i) + (is_blob(i) ? "/data" : "/link"); }

bool make_dir(const std::string& path) { return ::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST; }

bool make_parents(const std::string& root) {
  static const char* hex = "0123456789abcdef";
  bool ok = make_dir(root + "/blobs") && make_dir(root + "/blobs/sha256") && make_dir(root + "/repositories");
  for (int a = 0; a < 16 && ok; ++a) {
    for (int b = 0; b < 16 && ok; ++b) ok = make_dir(root + "/blobs/sha256/" + hex[a] + hex[b]);
  }
  for (int r = 0; r < kRepos && ok; ++r) {
    std::string repo = root + "/repositories/repo" + std::to_string(r);
    ok = make_dir(repo) && make_dir(repo + "/_layers") && make_dir(repo + "/_layers/sha256");
  }
  return ok;
}

bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool create(const std::string& root, uint64_t i, const std::vector<char>& noise) {
  std::string dir = dir_of(root, i);
  if (::mkdir(dir.c_str(), 0755) != 0) return false;
  int fd = ::open(file_of(root, i).c_str(), O_CREAT | O_WRONLY | O_EXCL, 0644);
  if (fd < 0) return false;
  std::string link = "sha256:" + digest(i);
  bool ok = is_blob(i) ? write_all(fd, noise.data() + (i % 4096), blob_size(i)) : write_all(fd, link.data(), link.size());
  return ::close(fd) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s create|stat|remove DIR FROM TO [STEP]\n", argv[0]);
    return 2;
  }
  std::string op = argv[1], root = argv[2];
  uint64_t from = std::strtoull(argv[3], nullptr, 10), to = std::strtoull(argv[4], nullptr, 10);
  uint64_t step = argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 1;
  if (step == 0) step = 1;

  auto start = std::chrono::steady_clock::now();
  if (op == "create") {
    std::vector<char> noise(kMaxBlob + 4096);
    for (size_t k = 0; k < noise.size(); k += 8) {
      uint64_t v = mix(k);
      for (size_t b = 0; b < 8 && k + b < noise.size(); ++b) noise[k + b] = static_cast<char>(v >> (8 * b));
    }
    if (!make_parents(root)) return std::perror("mkdir"), 1;
    for (uint64_t i = from; i < to; ++i) {
      if (!create(root, i, noise)) return std::perror(file_of(root, i).c_str()), 1;
    }
    ::sync();
  } else if (op == "stat") {
    struct stat st;
    for (uint64_t i = from; i < to; i += step) {
      size_t want = is_blob(i) ? blob_size(i) : 71;
      if (::stat(file_of(root, i).c_str(), &st) != 0) return std::perror(file_of(root, i).c_str()), 1;
      if (static_cast<size_t>(st.st_size) != want) return std::fprintf(stderr, "wrong size\n"), 1;
    }
  } else if (op == "remove") {
    for (uint64_t i = from; i < to; ++i) {
      if (::unlink(file_of(root, i).c_str()) != 0 || ::rmdir(dir_of(root, i).c_str()) != 0) {
        return std::perror(file_of(root, i).c_str()), 1;
      }
    }
  } else {
    return 2;
  }
  std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  std::printf("%.4f\n", took.count());
  return 0;
}

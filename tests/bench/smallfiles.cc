// smallfiles: the registry's many tiny link files as a benchmark.
//   smallfiles create|stat|remove DIR [FILES=3000] [DIRS=50] [SIZE=4096]
// create makes DIRS directories holding FILES files of SIZE bytes in all, then sync()s; stat
// stats every file by path; remove unlinks them all and the directories. Prints the seconds.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s create|stat|remove DIR [FILES] [DIRS] [SIZE]\n", argv[0]);
    return 2;
  }
  std::string op = argv[1], root = argv[2];
  int files = argc > 3 ? std::atoi(argv[3]) : 3000;
  int dirs = argc > 4 ? std::atoi(argv[4]) : 50;
  size_t size = argc > 5 ? std::strtoul(argv[5], nullptr, 10) : 4096;
  std::vector<char> data(size, 'x');
  auto dir_of = [&](int i) { return root + "/d" + std::to_string(i % dirs); };
  auto file_of = [&](int i) { return dir_of(i) + "/f" + std::to_string(i); };

  auto start = std::chrono::steady_clock::now();
  if (op == "create") {
    for (int d = 0; d < dirs; ++d) {
      if (::mkdir(dir_of(d).c_str(), 0755) != 0 && errno != EEXIST) return std::perror("mkdir"), 1;
    }
    for (int i = 0; i < files; ++i) {
      int fd = ::open(file_of(i).c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
      if (fd < 0 || ::write(fd, data.data(), size) != static_cast<ssize_t>(size) || ::close(fd) != 0) {
        return std::perror("create"), 1;
      }
    }
    ::sync();
  } else if (op == "stat") {
    struct stat st;
    for (int i = 0; i < files; ++i) {
      if (::stat(file_of(i).c_str(), &st) != 0 || static_cast<size_t>(st.st_size) != size) return std::perror("stat"), 1;
    }
  } else if (op == "remove") {
    for (int i = 0; i < files; ++i) {
      if (::unlink(file_of(i).c_str()) != 0) return std::perror("unlink"), 1;
    }
    for (int d = 0; d < dirs; ++d) {
      if (::rmdir(dir_of(d).c_str()) != 0) return std::perror("rmdir"), 1;
    }
  } else {
    return 2;
  }
  std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  std::printf("%.4f\n", took.count());
  return 0;
}

#include "fs/daemon/clock.h"

namespace cmkfs::fs {
namespace {

class RealClock : public Clock {
 public:
  std::chrono::steady_clock::time_point steady() override { return std::chrono::steady_clock::now(); }
  std::chrono::system_clock::time_point wall() override { return std::chrono::system_clock::now(); }
};

}  // namespace

Clock& real_clock() {
  static RealClock clock;
  return clock;
}

}  // namespace cmkfs::fs

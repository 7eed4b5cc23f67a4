// Time for the daemon's background work, behind an interface so that tests can move it by hand.
// Intervals and the offline grace run on the monotonic clock (a wall-clock jump changes neither);
// the wall clock only stamps what people read (status, logs).
#pragma once

#include <chrono>

namespace cmkfs::fs {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point steady() = 0;
  virtual std::chrono::system_clock::time_point wall() = 0;
};

// The machine's clocks.
Clock& real_clock();

}  // namespace cmkfs::fs

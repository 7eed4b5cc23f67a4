// A streaming reader of tar archives (ustar, GNU long names, PAX extended headers), as image
// layers are: fed the archive's bytes in any pieces, it records each entry and where its data
// starts. Untrusted input: checksums are verified, every size is bounded, and a path that leaves
// the archive's root ("..") is an error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/base/status.h"

namespace cmkfs::oci {

struct TarEntry {
  std::string path;  // normalised: no leading "./" or "/", no trailing "/", never ".."; "" the root
  char type = '0';   // '0' file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo
  uint32_t mode = 0;  // permission bits, with set-id and sticky bits
  uint32_t uid = 0, gid = 0;
  int64_t mtime = 0;  // seconds
  uint32_t mtime_nsec = 0;
  uint64_t size = 0;    // of the data
  uint64_t offset = 0;  // of the data, in the archive
  std::string link;     // hard link target (a path like `path`) or symlink target (as written)
  uint32_t dev_major = 0, dev_minor = 0;
};

class TarReader {
 public:
  static constexpr size_t kMaxEntries = 1 << 20;
  static constexpr size_t kMaxPath = 4096;
  static constexpr size_t kMaxExtendedHeader = 1 << 20;
  static constexpr size_t kMaxNameBytes = 256 << 20;  // all paths and link targets together

  // Consumes the next bytes of the archive. After an error, or the end, further bytes are ignored.
  Status feed(const uint8_t* data, size_t n);
  bool finished() const { return done_; }  // the end-of-archive blocks (or a clean end) were seen
  // Ends the stream: EIO when it ended inside an entry.
  Status finish();
  std::vector<TarEntry>& entries() { return entries_; }

 private:
  Status header(const uint8_t* block);
  Status extended(const std::string& body, char type);
  uint64_t pos_ = 0;          // bytes consumed
  uint64_t skip_ = 0;         // data (and padding) of the current entry still to pass over
  uint64_t collect_ = 0;      // bytes of an extended header still to collect into ext_
  char collect_type_ = 0;
  std::string ext_;
  std::string block_;         // a header block being gathered
  std::string long_name_, long_link_;  // from GNU 'L'/'K' entries, for the next entry
  std::string pax_path_, pax_link_;
  std::optional<uint64_t> pax_size_;
  std::optional<uint32_t> pax_uid_, pax_gid_;
  std::optional<std::pair<int64_t, uint32_t>> pax_mtime_;
  int zero_blocks_ = 0;
  size_t name_bytes_ = 0;
  bool done_ = false;
  Status error_;
  std::vector<TarEntry> entries_;
};

// Normalises a tar member name; nullopt when it climbs out of the root or is empty.
std::optional<std::string> normalise_tar_path(std::string_view name);

}  // namespace cmkfs::oci

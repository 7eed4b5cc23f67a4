// Internal to fs/: writes changed inode records in one write transaction and applies the same
// changes in memory only once it commits, so a failed commit (ENOSPC, EIO) changes nothing.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "fs/core/inode_table.h"
#include "meta/meta.h"

namespace cmkfs::fs {

using RecordChange = std::function<void(meta::InodeRecord&)>;

class InodeWriter {
 public:
  explicit InodeWriter(meta::Txn& txn) : txn_(txn) {}

  // Stages `change` applied to the node's current record.
  Status stage(const std::shared_ptr<Inode>& node, RecordChange change) {
    uint64_t seq;
    meta::InodeRecord rec = node->snapshot(&seq);
    change(rec);
    CMKFS_RETURN_IF_ERROR(txn_.put_inode(rec));
    staged_.push_back({node, std::move(change), seq});
    return Status::Ok();
  }

  // Applied in memory before the next writer begins: a flush that began meanwhile would otherwise
  // write a node's older copy back over this commit (a renamed-over file's link count).
  // `also` runs there too, after them.
  Status commit(const std::function<void()>& also = {}) {
    return txn_.commit([&] {
      for (auto& s : staged_) s.node->apply_committed(s.change, s.seq);
      if (also) also();
    });
  }

 private:
  struct Staged {
    std::shared_ptr<Inode> node;
    RecordChange change;
    uint64_t seq;
  };
  meta::Txn& txn_;
  std::vector<Staged> staged_;
};

}  // namespace cmkfs::fs

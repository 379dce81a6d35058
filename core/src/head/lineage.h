// LineageTable: how to make a finished task's returns again. A task that succeeded with
// retries left keeps its spec here while any of its returns (or any lineage that needs them as
// arguments) is alive; each return object holds one reference, each lineage one on the lineage
// of its by-reference arguments, so freeing the last return releases the chain. Uses the
// object directory (pins, return entries); the task table runs the kept specs again.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "head/object_directory.h"
#include "protocol.h"

namespace mpiray::head {

/// @brief A kept task spec.
struct LineageRec {
  proto::TaskSpec spec;
  // Arguments it keeps pinned because running a task cannot make them again: put objects (a
  // large by-value argument is one, stored for the call and let go by its submitter at once),
  // small results of tasks kept without lineage, refs nested in arguments (a Python function's
  // export is one).
  std::vector<ObjectId> pinned;
  int32_t refs = 0;
  int32_t retries_left = 0;
  uint32_t shape = 0;
};

class LineageTable {
 public:
  explicit LineageTable(ObjectDirectory& objects) : objects_(objects) {}

  /// @brief Task `spec` finished: keep its spec (its returns now hold references on it) and
  /// let its arguments go, except those only the lineage can keep. A task run again (its
  /// lineage exists) only lets its arguments go.
  void Keep(proto::TaskSpec&& spec, int32_t retries_left, uint32_t shape);
  /// @brief Drop one reference to `task`'s lineage (`drop_ref`; else only check it has none),
  /// freeing it (and, in turn, its arguments' lineage) when none is left.
  void Release(TaskId task, bool drop_ref);
  LineageRec* Find(TaskId task) {
    auto it = lineage_.find(task);
    return it == lineage_.end() ? nullptr : &it->second;
  }
  bool Has(TaskId task) const { return lineage_.count(task) != 0; }
  size_t size() const { return lineage_.size(); }

 private:
  ObjectDirectory& objects_;
  std::unordered_map<TaskId, LineageRec> lineage_;
};

}  // namespace mpiray::head

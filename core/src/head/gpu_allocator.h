// GpuAllocator: which GPU devices of a node each task or actor is given (CUDA_VISIBLE_DEVICES).
// The scheduler accounts GPU amounts per node; this owner picks the devices. Only GPU work has
// a grant, so CPU tasks pay nothing. Knows no other owner.
#pragma once

#include <cstdint>
#include <map>
#include <unordered_map>
#include <vector>

#include "mpiray/core/ids.h"
#include "resources.h"

namespace mpiray::head {

class GpuAllocator {
 public:
  /// @brief Who holds a grant: a task (until it ends) or an actor (for its lifetime).
  enum class Holder : uint8_t { kTask = 0, kActor = 1 };

  /// @brief Node `node` has devices 0..count-1.
  void SetDevices(NodeId node, int count);
  /// @brief Devices for `id` on `node` (a grant it held before is given back first): whole
  /// devices for whole amounts, the least used first; a fraction shares the fullest device
  /// that still has room, so fractions pack.
  const std::vector<int32_t>& Grant(Holder holder, TaskId id, NodeId node, int64_t amount);
  /// @brief Give `id`'s devices back (nothing if it has none).
  void Release(Holder holder, TaskId id);
  /// @brief The GPU part (fixed point) of a request; 0 for CPU work.
  static int64_t Amount(const ResourceRequest& request);

 private:
  struct Held {
    NodeId node = 0;
    int64_t amount = 0;  // fixed point
    std::vector<int32_t> ids;
  };
  std::vector<int32_t> Assign(NodeId node, int64_t amount);

  std::map<NodeId, int> devices_;
  std::map<NodeId, std::vector<int64_t>> used_;  // per device: how much is given out
  std::unordered_map<TaskId, Held> grants_[2];  // by Holder
};

}  // namespace mpiray::head

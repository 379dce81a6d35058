// Placement groups (as Ray's C++ API): bundles of resources reserved together, all or none,
// on nodes chosen by a strategy; tasks and actors are then scheduled into a bundle with
// `.SetPlacementGroup(pg, bundle_index)`.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mpiray/core/detail/core_client.h"
#include "mpiray/core/errors.h"
#include "mpiray/core/ids.h"
#include "mpiray/core/object_ref.h"
#include "mpiray/core/serialization.h"

namespace mpiray {

enum class PlacementStrategy : uint8_t {
  PACK = 0,           // as few nodes as possible (best effort)
  SPREAD = 1,         // as many nodes as possible (best effort)
  STRICT_PACK = 2,    // all bundles on one node, or wait
  STRICT_SPREAD = 3,  // every bundle on a different node, or wait
};

struct PlacementGroupCreationOptions {
  std::string name;
  std::vector<std::map<std::string, double>> bundles;
  PlacementStrategy strategy = PlacementStrategy::PACK;
};

/// @brief A handle to a placement group (copyable; the group lives until removed or the job
/// ends).
class PlacementGroup {
 public:
  PlacementGroup() = default;
  PlacementGroup(TaskId id, ObjectRef<bool> ready, PlacementGroupCreationOptions options)
      : id_(id), ready_(std::move(ready)), options_(std::move(options)) {}

  TaskId GetID() const { return id_; }
  const std::string& GetName() const { return options_.name; }
  const std::vector<std::map<std::string, double>>& GetBundles() const { return options_.bundles; }
  PlacementStrategy GetStrategy() const { return options_.strategy; }
  bool Empty() const { return id_.nil(); }
  /// @brief Ready once every bundle is reserved; Get raises if the group can never be placed
  /// (InfeasibleError naming the bundles and the nodes) or was removed first.
  const ObjectRef<bool>& Ready() const { return ready_; }
  /// @brief Wait up to `timeout_seconds` for the reservation; false if it is still pending.
  /// Throws when the group can never be placed.
  bool Wait(int timeout_seconds) const {
    std::vector<ObjectId> ids{ready_.ID()};
    auto ready = detail::Client()->Wait(ids, 1, static_cast<int64_t>(timeout_seconds) * 1000);
    if (!ready[0]) return false;
    auto payload = detail::Client()->Get(ids, 0);
    if (detail::CheckPayload(payload[0]) == detail::PayloadFormat::kError) {
      ThrowIfError(detail::ErrorFromPayload(payload[0]));  // can never be placed, or removed
    }
    return true;
  }

 private:
  TaskId id_;
  ObjectRef<bool> ready_;
  PlacementGroupCreationOptions options_;
};

/// @brief Reserve a placement group (returns at once; see PlacementGroup::Wait/Ready).
inline PlacementGroup CreatePlacementGroup(const PlacementGroupCreationOptions& options) {
  std::vector<std::vector<std::pair<std::string, double>>> bundles;
  for (const auto& b : options.bundles) bundles.emplace_back(b.begin(), b.end());
  TaskId id;
  ObjectId ready = detail::Client()->CreatePlacementGroup(
      options.name, static_cast<uint8_t>(options.strategy), bundles, &id);
  return PlacementGroup(id, ObjectRef<bool>(ready, detail::AdoptRef{}), options);
}

/// @brief Release a group's resources; actors in it die, its tasks that have not started fail.
inline void RemovePlacementGroup(const PlacementGroup& group) {
  detail::Client()->RemovePlacementGroup(group.GetID());
}

/// @brief Every placement group of the job, as the head reports it (driver only).
inline std::vector<detail::PlacementGroupEntry> GetPlacementGroupTable() {
  return detail::Client()->PlacementGroups();
}

}  // namespace mpiray

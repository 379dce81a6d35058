// PlacementGroups: bundles of resources reserved together (all or none) and the resources
// named after them. Uses the scheduler to place bundles and the object directory for each
// group's ready object. Removing a group is a cross-cutting event: the HeadService asks the
// actor directory and task table who uses it (Uses) and tells them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "head/object_directory.h"
#include "head/routes.h"
#include "head/views.h"
#include "mpiray/core/status.h"
#include "protocol.h"
#include "scheduler.h"
#include "session.h"

namespace mpiray::head {

/// @brief One placement group.
struct GroupRec {
  enum State : uint8_t { kPending = 0, kCreated = 1, kRemoved = 2, kInfeasible = 3 };
  proto::PlacementGroupSpec spec;
  State state = kPending;
  std::vector<ResourceRequest> base;   // per bundle: taken from its node
  std::vector<ResourceRequest> group;  // per bundle: the resources named after the group
  std::vector<NodeId> nodes;           // per bundle (kNoNode: not placed)
  std::vector<uint32_t> indices;       // every resource index named after the group
  std::string error;
  bool ready_set = false;
};

class PlacementGroups {
 public:
  PlacementGroups(const RuntimeConfig& config, Scheduler& sched, ObjectDirectory& objects);

  /// @brief Handle kCreatePlacementGroup (an invalid group's error goes to its ready object).
  void Register(HeadRoutes& routes);
  /// @brief Reserve a group for `submitter` (who holds its ready object), at once or as soon
  /// as resources allow; an impossible group gets an error in its ready object.
  Status Create(proto::PlacementGroupSpec&& spec, ProcId submitter);
  /// @brief The live (not removed) group `id`, or an error naming it.
  Result<GroupRec*> FindForRemoval(TaskId id);
  /// @brief Give a group's resources back and mark it removed (its users were collected
  /// before, with Uses).
  void Remove(GroupRec& g);
  /// @brief A removed group that was never ready: its ready object gets an error.
  void FailIfUnready(TaskId id, GroupRec& g);
  /// @brief Place pending groups whose bundles now fit (all or nothing).
  void PlacePending();
  bool HasPending() const { return pending_ > 0; }
  /// @brief Does work of this shape use group `g`'s resources?
  bool Uses(uint32_t shape, const GroupRec& g) const;
  /// @brief Does work of this shape use the resources of some live group (it may still wait
  /// for that group to be placed)?
  bool AnyUses(uint32_t shape) const;
  /// @brief Bundles on a node that is gone are placed again (elsewhere) when there is room.
  void OnNodeRemoved(NodeId node);
  std::vector<PlacementGroupInfo> Table() const;

 private:
  Status BuildRequests(const proto::PlacementGroupSpec& spec, GroupRec* g);
  std::string InfeasibleMessage(const GroupRec& g, TaskId id) const;

  const RuntimeConfig& config_;
  Scheduler& sched_;
  ObjectDirectory& objects_;
  std::map<TaskId, std::unique_ptr<GroupRec>> groups_;
  size_t pending_ = 0;
};

}  // namespace mpiray::head

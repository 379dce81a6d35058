// What the head shows about itself: the cluster status, the timeline's task events, the
// placement group table and ray.util.state's listing. Plain structs shared by the head's owners
// (each fills its part) and the runtime's status, metrics and timeline endpoints.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "protocol.h"
#include "scheduler.h"

namespace mpiray {

/// @brief One finished task or actor call, for the timeline.
struct TaskEvent {
  std::string name;
  std::string id;  // TaskId::ToString() (ray.util.state shows it for finished tasks too)
  ProcId worker = 0;
  NodeId node = 0;
  int64_t start_us = 0;
  int64_t end_us = 0;
  uint8_t kind = 0;
  bool failed = false;
};

/// @brief Snapshot of the cluster for status displays and tests.
struct ClusterStatus {
  struct Node {
    NodeId id;
    std::map<std::string, double> total;
    std::map<std::string, double> available;
    std::vector<ProcId> workers;
  };
  std::vector<Node> nodes;
  size_t queued_tasks = 0;
  size_t pipelined_tasks = 0;  // dispatched but waiting behind another task on their worker
  size_t running_tasks = 0;
  size_t objects = 0;
  size_t actors = 0;
  uint64_t tasks_finished = 0;
  uint64_t tasks_failed = 0;
  uint64_t actor_restarts = 0;   // actor instances started again after a loss
  uint64_t reconstructions = 0;  // tasks run again to rebuild lost objects
  size_t lineage_tasks = 0;      // finished tasks whose spec is kept to rebuild their returns
  std::map<NodeId, uint64_t> store_bytes;  // shared-memory object bytes per node (directory view)
  uint64_t inline_bytes = 0;               // small objects kept in the head's memory
};

/// @brief A placement group as placement_group_table() shows it.
struct PlacementGroupInfo {
  TaskId id;
  std::string name;
  uint8_t strategy = 0;  // proto::PgStrategy
  std::string state;     // PENDING, CREATED, REMOVED, INFEASIBLE
  std::string error;     // why it is infeasible
  std::vector<std::map<std::string, double>> bundles;
  std::vector<NodeId> nodes;  // per bundle (kNoNode while not placed)
};

/// @brief What ray.util.state lists (live tasks and the latest finished ones, actors, objects).
struct StateListing {
  struct Task {
    std::string id;
    std::string name;
    std::string state;  // PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, RUNNING, FINISHED, FAILED
    uint8_t kind = 0;   // proto::TaskKind
    ProcId worker = kNoProc;
    NodeId node = kNoNode;
    MSGPACK_DEFINE_MAP(id, name, state, kind, worker, node);
  };
  struct Actor {
    std::string id;
    std::string name;  // the class (or given) name
    bool named = false;
    std::string ns;
    std::string state;  // DEPENDENCIES_UNREADY, PENDING_CREATION, ALIVE, RESTARTING, DEAD
    ProcId worker = kNoProc;
    NodeId node = kNoNode;
    int pid = 0;
    uint32_t incarnation = 1;
    std::string error;
    MSGPACK_DEFINE_MAP(id, name, named, ns, state, worker, node, pid, incarnation, error);
  };
  struct Object {
    std::string id;
    uint64_t size = 0;
    std::string where;  // INLINE, SHARED_MEMORY, ERROR, PENDING
    std::vector<NodeId> nodes;
    std::vector<ProcId> holders;
    int32_t pins = 0;
    MSGPACK_DEFINE_MAP(id, size, where, nodes, holders, pins);
  };
  std::vector<Task> tasks;
  std::vector<Actor> actors;
  std::vector<Object> objects;
  uint64_t total_tasks = 0, total_actors = 0, total_objects = 0;  // before the limit
  MSGPACK_DEFINE_MAP(tasks, actors, objects, total_tasks, total_actors, total_objects);
};

}  // namespace mpiray

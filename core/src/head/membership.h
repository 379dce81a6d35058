// Membership: which processes and nodes make up the cluster, alive or gone, and the resources
// each node contributes to the scheduler. Knows no other owner; the HeadService tells the
// others when a process dies (their OnProcessDied).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fabric.h"
#include "head/gpu_allocator.h"
#include "head/routes.h"
#include "protocol.h"
#include "scheduler.h"
#include "session.h"

namespace mpiray::head {

/// @brief A process as the head knows it.
struct ProcInfo {
  proto::PeerInfo peer;
  bool alive = true;
  bool worker = false;
  int64_t last_seen_ms = 0;
};

/// @brief What the cluster lost with a process.
struct Departure {
  proto::PeerInfo peer;
  bool worker = false;
  bool node_gone = false;  // it was the last process of its node
};

class Membership {
 public:
  /// @param transport tells the others when a process leaves; sends heartbeats.
  /// @param sched gets each node's resources and each worker.
  /// @param gpus gets each node's device count.
  Membership(Transport& transport, const RuntimeConfig& config, Scheduler& sched,
             GpuAllocator& gpus, int64_t now_ms);

  /// @brief Handle kHeartbeat (nothing to do: every message marks its sender alive).
  void Register(HeadRoutes& routes) {
    routes.On<proto::Empty>(proto::Msg::kHeartbeat, [](ProcId, proto::Empty&&) {});
  }
  /// @brief Register a process; workers contribute their node's resources (memory is shared
  /// among the nodes of a host, so every node of the host is updated).
  void Add(const proto::PeerInfo& peer, bool is_worker, int64_t now_ms);
  /// @brief Mark `proc` gone: the others are told (kPeerLeft), its node leaves the scheduler
  /// when it was the node's last process. Empty when it was not alive.
  /// (`expected`: it said goodbye, logged at debug level only.)
  std::optional<Departure> Remove(ProcId proc, const std::string& why, bool expected = false);
  /// @brief A message from `proc` arrived (it is alive).
  void Touch(ProcId proc, int64_t now_ms) {
    auto it = procs_.find(proc);
    if (it != procs_.end()) it->second.last_seen_ms = now_ms;
  }
  /// @brief Heartbeats to every live process once a second; returns the processes silent for
  /// longer than the heartbeat timeout, with how long.
  std::vector<std::pair<ProcId, int64_t>> Tick(int64_t now_ms);

  NodeId NodeOf(ProcId p) const;
  /// @brief A live process on `node` (kNoProc if none).
  ProcId ProcOnNode(NodeId node) const;
  bool IsAlive(ProcId p) const;
  const ProcInfo* Find(ProcId p) const;
  /// @brief Every process ever registered on `node` that has not left.
  const std::vector<ProcId>& ProcsOnNode(NodeId node);
  /// @brief All live processes (for the address book given to joiners).
  std::vector<proto::PeerInfo> Peers() const;
  /// @brief Live worker processes, sorted.
  std::vector<ProcId> Workers() const;

 private:
  void UpdateNodeResources(NodeId node);

  Transport& transport_;
  const RuntimeConfig& config_;
  Scheduler& sched_;
  GpuAllocator& gpus_;
  std::unordered_map<ProcId, ProcInfo> procs_;
  std::map<NodeId, std::vector<ProcId>> node_procs_;
  int64_t last_heartbeat_ms_ = 0;
};

}  // namespace mpiray::head

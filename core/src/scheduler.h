// Scheduler: decides which worker runs each ready task. Pure bookkeeping over nodes, workers
// and resource shapes (no I/O), so it is unit-tested on its own.
//
// Model (like Ray's worker leases): a worker that starts a task of shape S acquires S's resources
// on its node; further tasks of the same shape may be pipelined to it (up to a per-worker limit)
// and run one after another under the same lease, hiding the dispatch round trip. The lease is
// released when the worker has no unblocked task left. A task blocked in Get/Wait lends its CPUs
// (CPU, and a placement group's CPU_group_*), so a small world cannot deadlock on nested tasks;
// like Ray, it keeps the rest (memory, GPUs, custom resources) while it waits.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "mpiray/core/ids.h"
#include "mpiray/core/status.h"
#include "resources.h"

namespace mpiray {

namespace head {
struct TaskRec;
}  // namespace head

inline constexpr NodeId kNoNode = detail::kAnyNode;
inline constexpr NodeId kSpreadNode = 0xfffffffeu;  // FindWorker: round-robin over nodes

/// @brief The scheduler's view of one task (embedded in the head's task record).
struct SchedItem {
  uint32_t shape = 0;
  NodeId preferred = kNoNode;  // node holding most of the argument bytes
  ProcId worker = kNoProc;     // while dispatched
  bool queued = false;
  bool blocked = false;
  bool private_hold = false;  // holds its own resources (unblocked onto a different lease)
  bool holds_rest = false;    // blocked, and still holds its shape's part other than CPUs
  bool spread = false;        // SPREAD: round-robin over nodes rather than pack
  uint64_t seq = 0;           // its entry in the queue (set by Enqueue)
  head::TaskRec* owner = nullptr;  // the head's record of the task (the scheduler never reads it)
};

class Scheduler {
 public:
  /// @param max_inflight_per_worker upper bound on tasks pipelined to one worker.
  explicit Scheduler(int max_inflight_per_worker);

  ResourceNames& names() { return names_; }
  const ResourceNames& names() const { return names_; }

  /// @brief Intern a resource request as a shape id (validates amounts).
  Result<uint32_t> Shape(const proto::Resources& request);
  const ResourceRequest& ShapeRequest(uint32_t shape) const { return shapes_[shape]; }

  void AddNode(NodeId node, const ResourceVector& total);
  /// @brief A worker joined. A `dedicated` one is a process started for one actor (Ray's
  /// process per actor): it runs no tasks and hosts only an actor placed with `dedicated`.
  void AddWorker(ProcId worker, NodeId node, bool dedicated = false);
  /// @brief Forget a dead worker and release what it held (its items are the caller's to redo).
  void RemoveWorker(ProcId worker);
  /// @brief Forget a node whose processes are all gone.
  void RemoveNode(NodeId node);

  /// @brief `delta` workers are on their way (replacements): while any is, a node without
  /// workers still counts for feasibility. A worker that joins takes one off.
  void ExpectWorkers(int delta) { expected_workers_ = std::max(0, expected_workers_ + delta); }
  /// @brief Workers can run something now or soon (live ones, or replacements on their way).
  bool HasOrExpectsWorkers() const { return alive_workers_ > 0 || expected_workers_ > 0; }
  /// @brief Infeasible (with an explanation) if no node could ever satisfy the shape.
  Status CheckFeasible(uint32_t shape) const;

  /// @brief Queue a ready item.
  void Enqueue(SchedItem* item);
  /// @brief Drop a queued item (cancel); false if it is not queued.
  bool Dequeue(SchedItem* item);

  using Assignment = std::pair<SchedItem*, ProcId>;
  /// @brief Assign as many queued items to workers as resources and limits allow.
  void Schedule(std::vector<Assignment>* out);

  /// @brief The item finished (or failed) on its worker.
  void Finished(SchedItem* item);
  /// @brief The item's task is blocked in Get/Wait (it releases its share of the lease).
  void Blocked(SchedItem* item);
  void Unblocked(SchedItem* item);

  /// @brief Nodes for a placement group's bundles, from what is available now (`use_totals`:
  /// from the nodes' totals, i.e. could it ever fit). `placed[i]` != kNoNode keeps bundle i
  /// where it is. False when the strategy cannot be met.
  bool PlaceBundles(const std::vector<ResourceRequest>& bundles, proto::PgStrategy strategy,
                    const std::vector<NodeId>& placed, bool use_totals,
                    std::vector<NodeId>* out) const;
  /// @brief Reserve a bundle on `node`: `base` is taken from the node's resources and the
  /// bundle's own resources (`group`, named after the group) are added to it.
  void ReserveBundle(NodeId node, const ResourceRequest& base, const ResourceRequest& group);
  /// @brief Undo ReserveBundle (work still using the group's resources gives them back later).
  void ReleaseBundle(NodeId node, const ResourceRequest& base, const ResourceRequest& group);
  bool HasNode(NodeId node) const { return nodes_.count(node) > 0; }

  /// @brief Pick a worker for an actor. With `hold`, the shape's resources are acquired for the
  /// actor's lifetime. Returns kNoProc when no node has room right now. `preferred`: a node
  /// tried first (soft node affinity); `spread`: the node hosting the fewest actors first
  /// (Ray's SPREAD); otherwise the worker hosting the fewest actors. With `dedicated`, only an
  /// idle dedicated worker (AddWorker) takes it; when the best node that fits has none,
  /// kNoProc is returned, `*start_on` names that node and (with `hold`) the shape's resources
  /// are reserved there: the caller starts a process there and places the actor with
  /// TakeDedicated once it joined, or gives the reservation back with ReleaseReserved.
  ProcId PlaceActor(uint32_t shape, bool hold, NodeId preferred = kNoNode, bool spread = false,
                    bool dedicated = false, NodeId* start_on = nullptr);
  /// @brief An idle dedicated worker of `node` for an actor whose resources PlaceActor
  /// reserved there (kNoProc: none joined yet).
  ProcId TakeDedicated(NodeId node);
  void ReleaseReserved(NodeId node, uint32_t shape, bool held);
  /// @brief Give back what PlaceActor took.
  void ReleaseActor(ProcId worker, uint32_t shape, bool held);

  /// @brief A task of `shape` ran for `us` microseconds: tunes how deep tasks of that shape are
  /// pipelined (about 2 ms of queued work per worker; tiny tasks go deep, long ones one by one,
  /// so that workers that join later still find work).
  void RecordDuration(uint32_t shape, int64_t us);
  /// @brief Tasks dispatched to workers but not yet started (they wait behind another task).
  size_t Pipelined() const;
  /// @brief A draining worker gets no new tasks or actors (it is about to leave).
  void SetDraining(ProcId worker, bool draining);
  /// @brief Tasks dispatched to `worker` and actors it hosts.
  std::pair<int, int> Load(ProcId worker) const;

  size_t queued() const { return queued_; }
  size_t num_workers() const { return alive_workers_; }

  struct NodeView {
    NodeId node;
    ResourceVector total;
    ResourceVector available;
    std::vector<ProcId> workers;
  };
  std::vector<NodeView> Nodes() const;

 private:
  struct Worker {
    ProcId id = 0;
    NodeId node = 0;
    int inflight = 0;  // dispatched, not finished
    int blocked = 0;
    int lease_count = 0;  // unblocked items riding the lease
    uint32_t lease_shape = 0;
    // What its items hold outside the lease (private holds, blocked items' non-CPU parts):
    // given back to the node when the worker goes.
    ResourceVector held;
    int actors = 0;
    bool alive = true;
    bool draining = false;
    bool dedicated = false;  // a process of its own for one actor: no tasks
  };
  struct Node {
    NodeId id = 0;
    ResourceVector total;
    ResourceVector avail;
    ResourceVector extra;  // placement group bundles' resources reserved here
    std::vector<ProcId> workers;
  };

  bool Fits(const Node& n, const ResourceRequest& r) const;
  void Acquire(Node& n, const ResourceRequest& r);
  /// Count `r` (sign +1/-1) in what `w`'s items hold outside its lease (no change to the node).
  static void Held(Worker& w, const ResourceRequest& r, int sign);
  void Release(Node& n, const ResourceRequest& r);
  Worker* FindWorker(uint32_t shape, NodeId preferred, int limit);
  Worker* FindOnNode(Node& n, uint32_t shape, int limit, bool idle_only);
  void Assign(SchedItem* item, Worker& w);

  int max_inflight_;
  ResourceNames names_;
  std::vector<ResourceRequest> shapes_;
  std::vector<ResourceRequest> cpu_parts_;   // per shape: what a blocked task lends (CPUs)
  std::vector<ResourceRequest> rest_parts_;  // per shape: what it keeps
  std::map<ResourceRequest, uint32_t> shape_ids_;
  // By shape: (seq, item). An item dequeued while queued (cancelled, failed) leaves its entry,
  // dropped lazily by its seq: the item itself may be freed by then and is never read again.
  std::vector<std::deque<std::pair<uint64_t, SchedItem*>>> queues_;
  std::unordered_set<uint64_t> dropped_;
  uint64_t next_seq_ = 0;
  std::vector<double> avg_us_;                  // by shape: moving average of task durations
  int Depth(uint32_t shape) const;
  size_t queued_ = 0;
  std::map<NodeId, Node> nodes_;
  std::unordered_map<ProcId, Worker> workers_;
  // Removed workers that still hosted actors: the node whose resources those actors hold, so
  // that ReleaseActor (the head releasing each lost actor after the removal) gives them back.
  std::unordered_map<ProcId, std::pair<NodeId, int>> gone_actor_hosts_;
  size_t alive_workers_ = 0;
  int expected_workers_ = 0;  // replacements on their way
  NodeId spread_next_ = 0;  // SPREAD: the next node to try first
};

}  // namespace mpiray

// HeadService: the head's state behind one mutex. It owns one object per table — membership,
// object directory, lineage, placement groups, task table, actor directory, GPU allocator —
// which depend on each other in one direction only (docs/architecture.md, "The head"), and it
// keeps what crosses them: the lock, the message handlers (registered with the runtime's
// MessageRouter), and the fan-out of cross-cutting events (a process died: each owner's
// OnProcessDied; a placement group removed: its actors and tasks). Runs on the head's progress
// thread (messages) and on the driver's thread (direct calls).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "fabric.h"
#include "head/actor_directory.h"
#include "head/gpu_allocator.h"
#include "head/lineage.h"
#include "head/membership.h"
#include "head/object_directory.h"
#include "head/placement_groups.h"
#include "head/routes.h"
#include "head/task_table.h"
#include "head/views.h"
#include "mpiray/core/status.h"
#include "protocol.h"
#include "router.h"
#include "scheduler.h"
#include "session.h"

namespace mpiray {

class HeadService final : private head::ObjectEvents, private head::HeadRoutes::Gate {
 public:
  /// @param transport where messages go (the fabric, or a fake in tests).
  /// @param config shared runtime settings.
  /// @param now_ms clock used for heartbeats (injectable for tests).
  HeadService(Transport& transport, const RuntimeConfig& config,
              std::function<int64_t()> now_ms = nullptr);
  ~HeadService() override;

  /// @brief Register the head's message handlers (each On<Message> below) with `router`.
  void RegisterHandlers(MessageRouter& router);

  // ---- membership ---------------------------------------------------------------------
  /// @brief Register a process; workers contribute their node's resources.
  void AddProcess(const proto::PeerInfo& peer, bool is_worker);
  /// @brief A process died or left: retry or fail its tasks, kill its actors, drop its refs.
  void RemoveProcess(ProcId proc, const std::string& why, bool expected = false);
  /// @brief A process said goodbye: one started for one actor leaves now (quietly); others
  /// leave when their connection closes.
  void ProcessSaidBye(ProcId proc);
  /// @brief `delta` more (or, negative, fewer) workers are on their way (a replacement for a
  /// dead local worker): until they join, requests the cluster's nodes could hold wait for
  /// them instead of failing as infeasible.
  void ExpectWorkers(int delta);
  /// @brief A process started for an actor on `node` ended before it joined: that actor dies
  /// with `why` (instead of waiting for it forever).
  void ActorProcessFailed(NodeId node, const std::string& why);
  /// @brief Give every actor a process of its own, started by `start` (see ActorDirectory).
  void SetActorProcessStarter(head::ActorDirectory::ProcessStarter start) {
    actors_.SetProcessStarter(std::move(start));
  }
  /// @brief All known processes (for the address book given to joiners).
  std::vector<proto::PeerInfo> Peers() const;
  /// @brief Live worker processes.
  std::vector<ProcId> Workers() const;

  // ---- calls from the driver (head process) or from messages -----------------------------
  /// @brief Register a task, actor creation or actor call from `submitter`.
  Status Submit(proto::TaskSpec&& spec, ProcId submitter);
  /// @brief Register a put object held by `holder`.
  Status Put(proto::NewObject&& obj, ProcId holder);
  void AddHolder(const ObjectId& id, ProcId proc);
  void RemoveHolder(const ObjectId& id, ProcId proc);
  /// @brief Block (the calling driver thread) until `num_ready` of `ids` are ready or the
  /// timeout passes; returns the locations of the ready ones (unknown ids are reported as
  /// lost errors). `ready[i]` tells which are ready. Without `locations` (ray.wait) nothing
  /// is located and only the first `num_ready` ready ones (in order) are flagged.
  std::vector<proto::ObjectLoc> WaitLocal(const std::vector<ObjectId>& ids, size_t num_ready,
                                          int64_t timeout_ms, std::vector<bool>* ready,
                                          NodeId requester_node, bool stop_on_error = false,
                                          bool locations = true);
  /// @brief Before sleeping on `w`: look for its wake-up a little while (MPIRAY_WAIT_SPIN_US).
  void SpinForWaiter(std::unique_lock<std::mutex>& lk, head::Waiter& w, int64_t timeout_ms);
  Status Cancel(const ObjectId& id, bool force, bool recursive);
  Status KillActor(const ActorId& actor, bool no_restart);
  void CallRetried(const TaskId& task);
  void AddLocation(const ObjectId& id, NodeId node);
  /// @brief Stop giving `procs` new work; returns the objects whose every copy is on their
  /// nodes (to be copied elsewhere before they leave).
  std::vector<proto::ObjectLoc> Drain(const std::vector<ProcId>& procs, NodeId keep_node);
  /// @brief (tasks dispatched, actors hosted) of a process.
  std::pair<int, int> Load(ProcId proc) const;
  /// @brief Actors waiting for room.
  size_t PendingActors() const;
  /// @brief Reserve a placement group for `submitter` (who holds its ready object), at once or
  /// as soon as resources allow; an impossible group gets an error in its ready object.
  Status CreatePlacementGroup(proto::PlacementGroupSpec&& spec, ProcId submitter);
  /// @brief Give a group's resources back; its actors die, its queued tasks fail.
  Status RemovePlacementGroup(TaskId id);
  std::vector<PlacementGroupInfo> PlacementGroups() const;
  /// @brief `caller` waits for item `id.index` (from 1) of a streaming task: the entry exists
  /// from now on with `caller` as a holder; it becomes the item, the task's error, or the
  /// end-of-stream marker (kNotFound, proto::kEndOfStream).
  void StreamWant(const ObjectId& id, ProcId caller);
  /// @brief Up to `limit` of each (live tasks first, then the latest finished ones).
  StateListing ListState(size_t limit) const;
  /// @brief Look up a live named actor.
  bool FindNamedActor(const std::string& ns, const std::string& name, ActorId* actor,
                      Buffer* handle_meta);

  /// @brief Handle one message from `src` as the runtime's router would (tests use this).
  void Handle(ProcId src, proto::Msg type, const char* body, size_t len);
  /// @brief Heartbeats and timeouts (progress thread).
  void OnTick();
  /// @brief Stop everything: fail waiters so no driver call hangs.
  void Close(const std::string& why);

  ClusterStatus Status_() const;
  /// @brief Nodes, processes, counters and placement groups as one answer (what the driver's
  /// ray.nodes()/cluster_resources()/placement_group_table() read; other processes ask with
  /// kClusterQuery).
  proto::ClusterView View() const;
  /// @brief Number of live object entries (for tests of reference counting).
  size_t NumObjects() const;
  bool HasObject(const ObjectId& id) const;
  /// @brief Tasks whose lineage is kept (for tests of bounded lineage).
  size_t NumLineage() const;
  /// @brief The most recent task events (bounded), oldest first.
  std::vector<TaskEvent> Events() const;

 private:
  // ---- message handlers (mu_ held; the handler of kFoo is OnFoo) -------------------------
  void OnSubmit(ProcId src, proto::TaskSpec&& spec);
  void OnTaskDone(ProcId src, proto::TaskDone&& done);
  // head::HeadRoutes::Gate: a handler runs under the lock, its sender marked alive, and work
  // it made possible is dispatched afterwards.
  Status Run(ProcId src, head::StatusFn body) override;

  // All private helpers run with mu_ held.
  Status SubmitLocked(proto::TaskSpec&& spec, ProcId submitter);
  Status CancelLocked(const ObjectId& id, bool force, bool recursive);
  Status RemovePlacementGroupLocked(TaskId id);
  /// @brief Resources may have freed up: place waiting groups and actors, dispatch tasks.
  void Dispatch();

  // head::ObjectEvents
  void OnDependencyReady(TaskId dependent) override { tasks_.OnDependencyReady(dependent); }
  void OnLineageReleased(TaskId task) override { lineage_.Release(task, /*drop_ref=*/true); }
  void OnActorHandlesGone(TaskId actor) override { actors_.OnHandlesGone(actor); }

  std::optional<head::Departure> RemoveProcessLocked(ProcId proc, const std::string& why, bool expected);
  Transport& transport_;
  RuntimeConfig config_;
  std::function<int64_t()> now_ms_;
  mutable std::mutex mu_;
  bool closed_ = false;
  std::string close_reason_;

  // The owners, in dependency order (each may use those above it).
  Scheduler sched_;
  head::GpuAllocator gpus_;
  head::Membership members_;
  head::ObjectDirectory objects_;
  head::LineageTable lineage_;
  head::PlacementGroups groups_;
  head::TaskTable tasks_;
  head::ActorDirectory actors_;
  MessageRouter router_;  // for Handle (the runtime registers the same handlers in its own)
};

}  // namespace mpiray

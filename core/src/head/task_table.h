// TaskTable: the tasks the head knows that have not finished — normal tasks from submission to
// completion (dependencies, dispatch, retries after a worker death, cancellation), actor
// creations while their constructor is pending or running, and actor calls while their
// arguments are pinned — plus rebuilding lost objects from kept lineage, streaming items and
// the timeline of finished tasks. Uses the object directory, the lineage table, placement
// groups (may a request wait for a group?), the GPU allocator and the scheduler; announces to
// the actor directory, through TaskEvents, when a creation is ready to place or has failed.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "fabric.h"
#include "head/gpu_allocator.h"
#include "head/lineage.h"
#include "head/membership.h"
#include "head/object_directory.h"
#include "head/placement_groups.h"
#include "head/routes.h"
#include "head/views.h"
#include "protocol.h"
#include "scheduler.h"
#include "session.h"

namespace mpiray::head {

/// @brief One task the head tracks.
struct TaskRec {
  proto::TaskSpec spec;
  SchedItem item;                 // normal tasks: assigned by the scheduler
  ProcId actor_worker = kNoProc;  // actor creations: placed by the actor directory
  ProcId submitter = 0;
  int32_t deps = 0;
  int32_t retries_left = 0;  // -1: forever
  bool cancelled = false;
  bool whole = false;   // actor calls: the spec has the arguments (the call can be re-sent)
  bool resent = false;  // actor calls: re-sent after a restart (may report twice)
};

/// @brief What the task table announces about actor creations (to the actor directory).
class TaskEvents {
 public:
  virtual ~TaskEvents() = default;
  /// @brief The arguments of actor creation `actor` are ready: place the actor.
  virtual void OnCreationReady(TaskId actor) = 0;
  /// @brief Actor creation `actor` failed (`why`): the actor is dead.
  virtual void OnCreationFailed(TaskId actor, const std::string& why) = 0;
};

class TaskTable {
 public:
  /// @brief The owners the table works with (all outlive it).
  struct Deps {
    Transport* transport = nullptr;
    const RuntimeConfig* config = nullptr;
    Scheduler* sched = nullptr;
    ObjectDirectory* objects = nullptr;
    LineageTable* lineage = nullptr;
    const PlacementGroups* groups = nullptr;
    GpuAllocator* gpus = nullptr;
    const Membership* members = nullptr;
  };
  explicit TaskTable(const Deps& deps);
  void SetEvents(TaskEvents* events) { events_ = events; }
  /// @brief Handle kTaskBlocked, kTaskUnblocked, kStreamItem and kStreamWant.
  void Register(HeadRoutes& routes);

  // ---- submission ------------------------------------------------------------------------
  /// @brief Check a normal task or actor creation before it is registered; `*shape` gets its
  /// resource shape. (A task submitted by a running task is recorded as its child first.)
  Status Admit(const proto::TaskSpec& spec, uint32_t* shape);
  /// @brief Register an admitted task: its returns (held by `submitter`), its argument pins,
  /// and its queueing as soon as its arguments are ready.
  void Insert(proto::TaskSpec&& spec, ProcId submitter, uint32_t shape);
  /// @brief Admit and insert a normal task.
  Status Submit(proto::TaskSpec&& spec, ProcId submitter);
  /// @brief Track an actor call (its record pins its arguments until it is done).
  TaskRec& AddCall(std::unique_ptr<TaskRec> rec);
  /// @brief Remember that `child` was submitted by running task `parent` (recursive cancel).
  void RecordChild(TaskId parent, TaskId child);
  /// @brief The children of `parent` still recorded (forgotten by this call).
  std::vector<TaskId> TakeChildren(TaskId parent);

  // ---- progress --------------------------------------------------------------------------
  /// @brief One more argument of `task` is ready.
  void OnDependencyReady(TaskId task);
  /// @brief Send queued tasks to the workers the scheduler picks.
  void DispatchQueued();
  /// @brief Actor creation `t` runs on `worker` as instance `incarnation`.
  void StartCreation(TaskRec& t, ProcId worker, uint32_t incarnation);
  /// @brief Actor creation `t` is no longer running anywhere.
  void StopCreation(TaskRec& t);
  /// @brief A normal task or actor creation reported its end.
  void OnTaskDone(ProcId src, proto::TaskDone&& done);
  /// @brief `t` ends with `error_payload` in every return.
  void Fail(TaskRec& t, const Buffer& error_payload);
  /// @brief Forget `id` (its argument pins go).
  void Finish(TaskId id);
  /// @brief A running task waits in get/wait (it lends its CPU) or stopped waiting.
  void OnBlocked(ProcId src, TaskId task, bool blocked);
  /// @brief Cancel normal task `t`: fail it if queued, or ask its worker to stop it.
  Status CancelTask(TaskRec& t, bool force);
  /// @brief Record a finished task or actor call for the timeline.
  void RecordEvent(ProcId worker, const proto::TaskDone& done, const std::string& name, bool failed);

  // ---- reruns ----------------------------------------------------------------------------
  /// @brief Every copy of `id` is gone: run its task again. Returns why it cannot ("" if it can).
  std::string Reconstruct(const ObjectId& id, ObjectEntry& e);
  /// @brief Run `spec` again (restart or lineage): pin its arguments, rebuild lost ones,
  /// wait for those not ready, then queue it. Returns its record.
  TaskRec& Rerun(proto::TaskSpec spec, int32_t retries_left, uint32_t shape);

  // ---- streaming -------------------------------------------------------------------------
  /// @brief `caller` waits for item `id.index` of a streaming task (see HeadService).
  void StreamWant(const ObjectId& id, ProcId caller);
  void OnStreamItem(ProcId src, proto::StreamItem&& item);

  // ---- failures --------------------------------------------------------------------------
  /// @brief Worker `peer` died: its normal tasks are retried or failed.
  void OnProcessDied(const proto::PeerInfo& peer);
  /// @brief Normal tasks not dispatched yet whose shape matches `uses`.
  std::vector<TaskId> WaitingUsing(const std::function<bool(uint32_t shape)>& uses) const;
  void Close() { closed_ = true; }

  // ---- views -----------------------------------------------------------------------------
  TaskRec* Find(TaskId id) {
    auto it = tasks_.find(id);
    return it == tasks_.end() ? nullptr : it->second.get();
  }
  bool Has(TaskId id) const { return tasks_.count(id) != 0; }
  void AddToStatus(ClusterStatus* s) const;
  void List(StateListing* out, size_t limit) const;
  /// @brief The most recent task events (bounded), oldest first.
  std::vector<TaskEvent> Events() const;

 private:
  void DepsReady(TaskRec& t);
  void PrepareRerun(TaskRec& t);
  void SendExecute(TaskRec& t, ProcId worker);
  void FinishStream(TaskId task);
  void DropLateReturns(std::vector<proto::NewObject>& returns);
  /// @brief Whether the task put generator items (ObjectEntry::item); those a rerun did not
  /// make again become errors (`error_payload`, the task's error, when it failed).
  bool CompleteItems(TaskRec& t, const Buffer& error_payload);
  void CompleteReturns(TaskRec& t, ProcId src, proto::TaskDone& done, bool* failed, bool* stored,
                       std::string* error);
  void CancelReturns(TaskRec& t, ProcId src, proto::TaskDone& done);
  /// @brief A retryable application error: queue the task again if its budget allows.
  bool RetryAfterError(TaskRec& t);
  /// @brief A task that succeeded with retries left keeps its lineage instead of finishing.
  void KeepLineage(std::unordered_map<TaskId, std::unique_ptr<TaskRec>>::iterator it);

  Deps d_;
  TaskEvents* events_ = nullptr;
  bool closed_ = false;
  std::unordered_map<TaskId, std::unique_ptr<TaskRec>> tasks_;
  // Tasks submitted by running tasks (nested), for recursive cancel; dropped when the parent ends.
  std::unordered_map<TaskId, std::vector<TaskId>> children_;
  // Streaming tasks: items someone waits for that the task has not produced yet.
  std::unordered_map<TaskId, std::vector<uint32_t>> stream_waits_;
  size_t running_ = 0;
  uint64_t finished_ = 0;
  uint64_t failed_ = 0;
  uint64_t reconstructions_ = 0;
  std::vector<TaskEvent> events_ring_;  // the timeline (ring buffer)
  size_t events_next_ = 0;
};

}  // namespace mpiray::head

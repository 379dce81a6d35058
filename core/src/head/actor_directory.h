// ActorDirectory: every actor — placement, named actors, who asked where it is, the calls
// registered with the head (their results, re-sending after a restart), restarts and death.
// Uses the task table (an actor's creation and its calls are tasks there), the object
// directory (call results), the scheduler and the GPU allocator; implements TaskEvents so the
// task table can say when a creation is ready or failed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "fabric.h"
#include "head/gpu_allocator.h"
#include "head/membership.h"
#include "head/object_directory.h"
#include "head/routes.h"
#include "head/task_table.h"
#include "head/views.h"
#include "protocol.h"
#include "scheduler.h"

namespace mpiray::head {

/// @brief One actor.
struct ActorRec {
  enum State : uint8_t { kWaitingDeps = 0, kPending = 1, kPlaced = 2, kDead = 3 };
  ActorId id;
  State state = kWaitingDeps;
  ProcId worker = kNoProc;
  uint32_t shape = 0;
  bool hold = false;
  std::string name;
  std::string ns;
  bool named = false;
  bool ending = false;  // scoped and no handle left: ends once `calls` is empty
  // A process of its own is being started for it on this node, where its resources are
  // reserved (Scheduler::PlaceActor); kNoNode otherwise.
  NodeId reserved = kNoNode;
  Buffer handle_meta;
  std::string error;
  std::vector<proto::TaskSpec> queued_calls;  // driver calls made before placement
  std::vector<proto::TaskSpec> retry_calls;   // calls re-sent to the next instance
  std::vector<ProcId> location_waiters;
  std::unordered_set<TaskId> calls;  // registered, not done
  // Restarts: the creation spec is kept (its arguments pinned) while the actor may restart.
  bool restartable = false;
  int32_t restarts_left = 0;  // -1: forever
  int32_t max_task_retries = 0;
  uint32_t incarnation = 1;
  uint64_t next_seq = 0;  // the head process's own calls sent to this incarnation
  std::unique_ptr<proto::TaskSpec> creation;
  std::unordered_set<ProcId> subscribers;  // processes that asked where it is
};

class ActorDirectory final : public TaskEvents {
 public:
  /// @brief The owners the directory works with (all outlive it).
  struct Deps {
    Transport* transport = nullptr;
    Scheduler* sched = nullptr;
    ObjectDirectory* objects = nullptr;
    TaskTable* tasks = nullptr;
    GpuAllocator* gpus = nullptr;
    const Membership* members = nullptr;
  };
  explicit ActorDirectory(const Deps& deps);
  /// @brief Handle kCallRouted, kCallRetried, kActorLookup, kGetNamedActor and kKillActor.
  void Register(HeadRoutes& routes);

  /// @brief Register an actor creation (validated as a task, and its name as free).
  Status Create(proto::TaskSpec&& spec, ProcId submitter);
  /// @brief Register an actor call: the driver's own are routed from here; a worker's went to
  /// the actor directly and are tracked for their results (and re-sent if may be retried).
  Status SubmitCall(proto::TaskSpec&& spec, ProcId submitter);
  /// @brief The worker ran actor call `call` again after an application error.
  void OnCallRetried(TaskId call);
  /// @brief A caller that held a call back says which instance it went to.
  void OnCallRouted(proto::CallRouted&& r);
  /// @brief An actor call reported its end.
  void OnCallDone(ProcId src, proto::TaskDone&& done);
  /// @brief Kill (restart unless `no_restart` and restarts are left).
  Status Kill(const ActorId& actor, bool no_restart);
  /// @brief No process holds a handle to scoped actor `actor` any more: it ends (for good)
  /// once the calls registered with the head are done, as Ray's out-of-scope actors.
  void OnHandlesGone(const ActorId& actor);
  /// @brief Drop a call not started yet from its actor's queue (a running one runs on).
  Status CancelCall(TaskId call, bool force);
  /// @brief `src` asks where an actor is (answered now, or once it is placed).
  void OnActorLookup(ProcId src, const proto::ActorLookup& l);
  void OnGetNamedActor(ProcId src, const proto::GetNamedActor& q);
  bool FindNamed(const std::string& ns, const std::string& name, ActorId* actor,
                 Buffer* handle_meta) const;
  /// @brief Place actors waiting for room.
  void PlacePending();
  bool HasPending() const { return !pending_.empty(); }
  size_t PendingCount() const { return pending_.size(); }
  /// @brief Worker `proc` died: constructors running there and actors it hosted are lost.
  void OnProcessDied(ProcId proc, const std::string& why);
  /// @brief Live actors whose shape matches `uses` (a placement group being removed).
  std::vector<ActorId> Using(const std::function<bool(uint32_t shape)>& uses) const;
  /// @brief These actors die (their placement group was removed: `why`).
  void KillAll(const std::vector<ActorId>& actors, const std::string& why);
  void Close() { closed_ = true; }
  /// @brief Actors get a process of their own: `start(node, host, machine)` starts one there
  /// (false: it cannot, the actor shares a worker of that node instead).
  using ProcessStarter = std::function<bool(NodeId, const std::string&, const std::string&)>;
  void SetProcessStarter(ProcessStarter start) { start_process_ = std::move(start); }
  /// @brief A process started on `node` ended before joining: one actor waiting for a process
  /// there fails with `why` (a start that fails once, e.g. an import error, would again).
  void OnProcessStartFailed(NodeId node, const std::string& why);

  void AddToStatus(ClusterStatus* s) const;
  void List(StateListing* out, size_t limit) const;

  // TaskEvents
  void OnCreationReady(TaskId actor) override;
  void OnCreationFailed(TaskId actor, const std::string& why) override;

 private:
  ActorRec* FindActor(const ActorId& id) {
    auto it = actors_.find(id);
    return it == actors_.end() ? nullptr : it->second.get();
  }
  void Place(ActorRec& a);
  void SendCall(ActorRec& a, proto::TaskSpec&& spec, bool ordered);
  void RouteCall(ActorRec& a, proto::TaskSpec&& spec);
  void ReplyLocation(ActorRec& a, ProcId to);
  void NotifySubscribers(ActorRec& a);
  /// @brief The actor's instance is gone (worker died, or killed to restart): restart or die.
  void Lost(ActorRec& a, const std::string& why);
  void Restart(ActorRec& a, const std::string& why);
  void Died(ActorRec& a, const std::string& why);
  /// @brief A call went to an instance that is gone: re-send it (retries left) or fail it.
  void CallLost(ActorRec& a, TaskRec& t);
  void FailReturns(const proto::TaskSpec& spec, const Buffer& err);
  std::unique_ptr<TaskRec> CallRecord(const ActorRec& a, const proto::TaskSpec& spec,
                                      ProcId submitter, bool own);
  bool DropDuplicateResult(proto::TaskDone& done);

  bool StartProcess(NodeId node);

  Deps d_;
  ProcessStarter start_process_;
  bool closed_ = false;
  std::unordered_map<ActorId, std::unique_ptr<ActorRec>> actors_;
  std::unordered_map<TaskId, ActorId> call_actor_;  // registered actor calls not yet done
  std::unordered_set<TaskId> early_done_;           // actor calls done before registration
  std::unordered_set<TaskId> resent_done_;          // re-sent calls done (a 2nd report may come)
  std::vector<ActorId> pending_;                    // waiting for room
  std::map<std::pair<std::string, std::string>, ActorId> named_;  // (namespace, name)
  uint64_t restarts_ = 0;
};

}  // namespace mpiray::head

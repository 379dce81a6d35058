// HeadService: the head's state — object directory with reference counts, task table with
// dependency resolution, actor directory — around the Scheduler. Runs on the head's progress
// thread (messages) and on the driver's thread (direct calls); one mutex guards it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fabric.h"
#include "mpiray/core/status.h"
#include "protocol.h"
#include "scheduler.h"
#include "session.h"

namespace mpiray {

/// @brief A process as the head knows it.
struct ProcInfo {
  proto::PeerInfo peer;
  bool alive = true;
  bool worker = false;
  int64_t last_seen_ms = 0;
};

/// @brief One finished task or actor call, for the timeline.
struct TaskEvent {
  std::string name;
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
    NodeId node = 0xffffffffu;
    MSGPACK_DEFINE_MAP(id, name, state, kind, worker, node);
  };
  struct Actor {
    std::string id;
    std::string name;  // the class (or given) name
    bool named = false;
    std::string ns;
    std::string state;  // DEPENDENCIES_UNREADY, PENDING_CREATION, ALIVE, RESTARTING, DEAD
    ProcId worker = kNoProc;
    NodeId node = 0xffffffffu;
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

class HeadService {
 public:
  /// @param transport where messages go (the fabric, or a fake in tests).
  /// @param config shared runtime settings.
  /// @param now_ms clock used for heartbeats (injectable for tests).
  HeadService(Transport& transport, const RuntimeConfig& config,
              std::function<int64_t()> now_ms = nullptr);
  ~HeadService();

  // ---- membership ---------------------------------------------------------------------
  /// @brief Register a process; workers contribute their node's resources.
  void AddProcess(const proto::PeerInfo& peer, bool is_worker);
  /// @brief A process died or left: retry or fail its tasks, kill its actors, drop its refs.
  void RemoveProcess(ProcId proc, const std::string& why);
  /// @brief All known processes (for the address book given to joiners).
  std::vector<proto::PeerInfo> Peers() const;
  /// @brief Live worker processes.
  std::vector<ProcId> Workers() const;
  /// @brief A live process on `node` (kNoProc if none).
  ProcId ProcOnNode(NodeId node) const;

  // ---- calls from the driver (head process) or from messages -----------------------------
  /// @brief Register a task, actor creation or actor call from `submitter`.
  Status Submit(proto::TaskSpec&& spec, ProcId submitter);
  /// @brief Register a put object held by `holder`.
  Status Put(proto::NewObject&& obj, ProcId holder);
  void AddHolder(const ObjectId& id, ProcId proc);
  void RemoveHolder(const ObjectId& id, ProcId proc);
  /// @brief Block (the calling driver thread) until `num_ready` of `ids` are ready or the
  /// timeout passes; returns the locations of the ready ones (others have where=kError? no:
  /// absent entries are reported as lost). `ready[i]` tells which are ready.
  std::vector<proto::ObjectLoc> WaitLocal(const std::vector<ObjectId>& ids, size_t num_ready,
                                          int64_t timeout_ms, std::vector<bool>* ready,
                                          NodeId requester_node);
  Status Cancel(const ObjectId& id, bool force, bool recursive);
  Status KillActor(const ActorId& actor, bool no_restart);
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

  /// @brief Handle one message from `src` (progress thread).
  void Handle(ProcId src, proto::Msg type, const char* body, size_t len);
  /// @brief Heartbeats and timeouts (progress thread).
  void OnTick();
  /// @brief Stop everything: fail waiters so no driver call hangs.
  void Close(const std::string& why);

  ClusterStatus Status_() const;
  /// @brief Number of live object entries (for tests of reference counting).
  size_t NumObjects() const;
  bool HasObject(const ObjectId& id) const;
  /// @brief Tasks whose lineage is kept (for tests of bounded lineage).
  size_t NumLineage() const;
  /// @brief The most recent task events (bounded), oldest first.
  std::vector<TaskEvent> Events() const;

 private:
  struct Waiter;
  struct ObjEntry;
  struct TaskRec;
  struct ActorRec;
  struct Lineage;
  struct PgRec;
  void StreamWantLocked(const ObjectId& id, ProcId caller);
  void OnStreamItem(ProcId src, proto::StreamItem&& item);
  void FinalizeStream(TaskId task);
  struct GpuGrant {
    NodeId node = 0;
    int64_t amount = 0;  // fixed point
    std::vector<int32_t> ids;
  };
  int64_t GpuAmount(uint32_t shape) const;
  std::vector<int32_t> AssignGpus(NodeId node, int64_t amount);
  void ReleaseGpus(std::unordered_map<TaskId, GpuGrant>& grants, TaskId id);
  Status CreatePlacementGroupLocked(proto::PlacementGroupSpec&& spec, ProcId submitter);
  Status RemovePlacementGroupLocked(TaskId id);
  void PlacePendingGroups();
  bool UsesGroup(uint32_t shape, const PgRec& g) const;

  // All private helpers run with mu_ held.
  Status SubmitLocked(proto::TaskSpec&& spec, ProcId submitter);
  Status SubmitActorCall(proto::TaskSpec&& spec, ProcId submitter);
  Status CancelLocked(const ObjectId& id, bool force, bool recursive);
  Status KillActorLocked(const ActorId& actor, bool no_restart);
  ObjEntry& NewEntry(const ObjectId& id);
  ObjEntry* FindEntry(const ObjectId& id);
  void Pin(const ObjectId& id);
  void Unpin(const ObjectId& id);
  void MaybeFree(const ObjectId& id);
  void FreeEntry(const ObjectId& id, ObjEntry& e);
  void SetReady(const ObjectId& id, proto::NewObject&& obj);
  void SetError(const ObjectId& id, StatusCode code, const std::string& message);
  void SetErrorPayload(const ObjectId& id, const Buffer& payload);
  void OnObjectReady(const ObjectId& id, ObjEntry& e);
  void TaskDepsReady(TaskRec& t);
  void FailTask(TaskRec& t, const Buffer& error_payload);
  void FinishTask(TaskId id);
  void UnpinArgs(const proto::TaskSpec& spec);
  void Dispatch();
  void SendExecute(TaskRec& t, ProcId worker);
  proto::ObjectLoc Locate(const ObjectId& id, const ObjEntry& e, NodeId requester) const;
  void OnTaskDone(ProcId src, proto::TaskDone&& done);
  void PlaceActor(ActorRec& a);
  void PlacePendingActors();
  void RouteCall(ActorRec& a, proto::TaskSpec&& spec);
  void ActorDied(ActorRec& a, const std::string& why);
  /// @brief The actor's instance is gone (worker died, or killed to restart): restart or die.
  void ActorLost(ActorRec& a, const std::string& why);
  void RestartActor(ActorRec& a, const std::string& why);
  /// @brief A call went to an instance that is gone: re-send it (retries left) or fail it.
  void CallLost(ActorRec& a, TaskRec& t);
  void SendCall(ActorRec& a, proto::TaskSpec&& spec, bool ordered);
  void OnCallRouted(proto::CallRouted&& r);
  /// @brief Pin the arguments of a task run again (restart, lineage), wait for those not
  /// ready, rebuild lost ones from their lineage, then queue it.
  void PrepareRerun(TaskRec& t);
  /// @brief A task finished: keep its spec while its returns may have to be made again.
  void KeepLineage(std::unique_ptr<TaskRec> rec);
  /// @brief Drop one reference to a task's lineage (`drop_ref`), freeing it (and, in turn,
  /// its arguments' lineage) when none is left.
  void ReleaseLineage(TaskId tid, bool drop_ref);
  /// @brief Every copy of `id` is gone: run its task again. Returns why it cannot ("" if it can).
  std::string Reconstruct(const ObjectId& id, ObjEntry& e);
  void ReplyLocation(ActorRec& a, ProcId to);
  void HandleGet(ProcId src, proto::GetObjects&& req);
  NodeId NodeOf(ProcId p) const;
  void AddNodeResources(NodeId node);

  Transport& transport_;
  RuntimeConfig config_;
  std::function<int64_t()> now_ms_;
  mutable std::mutex mu_;
  bool closed_ = false;
  std::string close_reason_;

  Scheduler sched_;
  std::unordered_map<ProcId, ProcInfo> procs_;
  std::map<NodeId, std::vector<ProcId>> node_procs_;
  std::map<NodeId, bool> node_has_resources_;
  std::unordered_map<ObjectId, ObjEntry> objects_;
  std::unordered_map<TaskId, std::unique_ptr<TaskRec>> tasks_;
  std::unordered_map<ActorId, std::unique_ptr<ActorRec>> actors_;
  std::unordered_map<TaskId, ActorId> call_actor_;  // registered actor calls not yet done
  std::unordered_set<TaskId> early_done_;           // actor calls done before registration
  std::unordered_set<TaskId> resent_done_;          // re-sent calls done (a 2nd report may come)
  std::unordered_map<TaskId, Lineage> lineage_;
  std::map<TaskId, std::unique_ptr<PgRec>> groups_;
  // Tasks submitted by running tasks (nested), for recursive cancel; dropped when the parent ends.
  std::unordered_map<TaskId, std::vector<TaskId>> children_;
  // Gets of put objects whose registration has not arrived yet (-> when asked first).
  static constexpr int64_t kAwaitPutMs = 10000;
  std::unordered_map<ObjectId, int64_t> awaited_puts_;
  // Streaming tasks: items someone waits for that the task has not produced yet.
  std::unordered_map<TaskId, std::vector<uint32_t>> stream_waits_;
  // GPU devices: how much of each device of a node is given out, and to whom (only GPU work
  // has an entry, so CPU tasks pay nothing).
  std::map<NodeId, int> node_gpus_;
  std::map<NodeId, std::vector<int64_t>> gpu_used_;
  std::unordered_map<TaskId, GpuGrant> task_gpus_;
  std::unordered_map<TaskId, GpuGrant> actor_gpus_;
  size_t pending_groups_ = 0;
  uint64_t actor_restarts_ = 0;
  uint64_t reconstructions_ = 0;
  std::vector<ActorId> pending_actors_;
  std::map<std::pair<std::string, std::string>, ActorId> named_;  // (namespace, name)
  int64_t last_heartbeat_ms_ = 0;
  size_t running_ = 0;
  uint64_t finished_ = 0;
  uint64_t failed_ = 0;
  std::vector<TaskEvent> events_;  // ring buffer
  size_t events_next_ = 0;
  void RecordEvent(ProcId worker, const proto::TaskDone& done, const std::string& name, bool failed);
};

}  // namespace mpiray

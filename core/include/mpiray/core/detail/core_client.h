// The runtime interface the header-only API templates call. Implemented inside the core
// library; user code never calls it directly.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mpiray/core/buffer.h"
#include "mpiray/core/ids.h"
#include "mpiray/core/status.h"

namespace mpiray::detail {

struct SerializedValue;

// The one definition of each of these facts: the wire protocol (core/src/protocol.h) uses
// them, and the Python binding exports them (mpiray._core.TaskKind, ...), so no layer repeats
// their values.

/// @brief What a submission is.
enum class TaskKind : uint8_t { kNormal = 0, kActorCreate = 1, kActorCall = 2 };
/// @brief The language a task's function or actor class is written in.
enum class Language : uint8_t { kCpp = 0, kPython = 1 };
/// @brief How to pick a node besides resources: pack by data (default), spread over nodes, or
/// prefer one node (soft affinity; a hard one is the resource "node:<id>", a placement group
/// its bundles' resources).
enum class SchedulingStrategy : uint8_t { kDefault = 0, kSpread = 1, kNodeAffinitySoft = 2 };
/// @brief How a placement group's bundles are spread over nodes (Ray's names).
enum class PlacementStrategy : uint8_t { kPack = 0, kSpread = 1, kStrictPack = 2, kStrictSpread = 3 };
/// @brief Ray's name of a placement strategy ("PACK", ...; "UNKNOWN" for a bad value).
inline const char* PlacementStrategyName(uint8_t s) {
  static const char* names[] = {"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"};
  return s < 4 ? names[s] : "UNKNOWN";
}
/// @brief No node (an unplaced bundle, no preferred node).
inline constexpr uint32_t kAnyNode = 0xffffffffu;

/// A retry or restart count that means "forever" (max_retries, max_restarts, max_task_retries).
inline constexpr int kRetryForever = -1;
/// An actor call's max_retries that means "the actor's max_task_retries".
inline constexpr int kActorDefaultRetries = -2;

/// @brief One argument of a task: a value (payload bytes) or a reference resolved before the call.
struct TaskArgument {
  bool by_ref = false;
  ObjectId ref;
  std::vector<uint8_t> value;
  std::vector<ObjectId> nested;  // refs inside the value
};

/// @brief Everything needed to submit a task, an actor creation or an actor call.
struct TaskRequest {
  TaskKind kind = TaskKind::kNormal;
  uint8_t language = 0;  // Language
  std::string function;
  std::vector<TaskArgument> args;
  uint32_t num_returns = 1;
  std::vector<std::pair<std::string, double>> resources;
  bool resources_set = false;  // false: the default ({CPU: 1} for tasks, nothing for actors)
  /// Retries after a system failure; -1: forever. Actor calls: kActorDefaultRetries takes the
  /// actor's max_task_retries.
  int max_retries = 3;
  int max_restarts = 0;      // kActorCreate: restarts after its worker dies (-1: forever)
  int max_task_retries = 0;  // kActorCreate: default max_retries of its calls (-1: forever)
  std::string name;
  ActorId actor;  // kActorCall: target
  int max_concurrency = 1;
  std::string ns;                   // kActorCreate with a name: its namespace
  bool named = false;               // kActorCreate: register `name` for GetNamedActor
  /// kActorCreate: the actor ends once no process holds its creation ObjectRef any more (the
  /// return of Submit; Python handles carry it), after the calls the head knows of finish.
  bool scoped = false;
  std::vector<uint8_t> handle_meta; // kActorCreate: opaque, returned by GetNamedActor
  /// Scheduling: a SchedulingStrategy; kNodeAffinitySoft prefers `node`. A placement group
  /// (not nil) turns the resources into those of bundle `bundle_index` (-1: any of its bundles).
  uint8_t strategy = 0;
  uint32_t node = kAnyNode;
  TaskId placement_group;
  int bundle_index = -1;
};

/// @brief A placement group as the head reports it.
struct PlacementGroupEntry {
  TaskId id;
  std::string name;
  std::string strategy;  // PACK, SPREAD, STRICT_PACK, STRICT_SPREAD
  std::string state;     // PENDING, CREATED, REMOVED, INFEASIBLE
  std::string error;
  std::vector<std::vector<std::pair<std::string, double>>> bundles;
  std::vector<uint32_t> nodes;  // per bundle; kAnyNode while not placed
};

/// @brief A snapshot of the cluster, as the head sees it.
struct ClusterSnapshot {
  struct Node {
    NodeId id = 0;
    std::vector<std::pair<std::string, double>> total;
    std::vector<std::pair<std::string, double>> available;
    std::vector<ProcId> workers;
  };
  std::vector<Node> nodes;
  struct Process {
    ProcId proc = 0;
    NodeId node = 0;
    int pid = 0;
    std::string host;
    std::string job;   // Slurm job id of the process ("" outside Slurm)
    int running = 0;   // tasks dispatched to it
    int actors = 0;    // actors it hosts
    bool worker = false;
  };
  std::vector<Process> processes;  // live processes, the head included
  size_t objects = 0;        // live entries in the object directory
  size_t queued_tasks = 0;   // ready, waiting for a worker
  size_t pipelined_tasks = 0;  // sent to a worker, waiting behind another task there
  size_t running_tasks = 0;  // dispatched to a worker
  size_t actors = 0;         // alive
  size_t pending_actors = 0; // waiting for a worker with room
  uint64_t store_used = 0;   // bytes in the head node's object store
  uint64_t actor_restarts = 0;   // actor instances started again after their worker died
  uint64_t reconstructions = 0;  // tasks run again to rebuild lost objects
  size_t lineage_tasks = 0;      // finished tasks kept to rebuild their returns
};

/// @brief The runtime as seen from the API (one per process).
class CoreClient {
 public:
  virtual ~CoreClient() = default;
  /// @brief Submit; returns the ids of the returns, each already counted as a local reference.
  virtual std::vector<ObjectId> Submit(TaskRequest&& request) = 0;
  /// @brief Store a value; the id is counted as a local reference.
  virtual ObjectId Put(const SerializedValue& value) = 0;
  /// @brief Payloads of `ids` (throws GetTimeoutError, ObjectLostError ...). timeout < 0: forever.
  virtual std::vector<Buffer> Get(const std::vector<ObjectId>& ids, int64_t timeout_ms) = 0;
  /// @brief Which of `ids` are ready once `num_returns` are (or the timeout passed): the
  /// first `num_returns` ready ones in order are flagged; later ready ones may not be.
  virtual std::vector<bool> Wait(const std::vector<ObjectId>& ids, size_t num_returns,
                                 int64_t timeout_ms) = 0;
  virtual void Cancel(const ObjectId& id, bool force, bool recursive) = 0;
  virtual void KillActor(const ActorId& actor, bool no_restart) = 0;
  /// @brief The actor call `task` runs again after an application error (retry_exceptions):
  /// the head counts it in the call's retry budget, which crashes share.
  virtual void CallRetried(const TaskId& task) { (void)task; }
  virtual void AddLocalRef(const ObjectId& id) = 0;
  virtual void RemoveLocalRef(const ObjectId& id) = 0;
  /// @brief The cluster as the head sees it (driver only).
  virtual ClusterSnapshot Snapshot();
  /// @brief Prepare processes to leave (driver only): they get no new work, and objects whose
  /// only copies are on their nodes are copied to the driver's node. Returns when done.
  virtual Status DrainProcesses(const std::vector<ProcId>& procs);
  /// @brief Find a named actor: true and its id and handle metadata, or false.
  virtual bool GetNamedActor(const std::string& ns, const std::string& name, ActorId* actor,
                             Buffer* handle_meta);
  /// @brief Reserve a placement group (strategy: a PlacementStrategy). Returns its ready object (counted as a local reference); *id gets the
  /// group's id.
  virtual ObjectId CreatePlacementGroup(const std::string& name, uint8_t strategy,
                                        const std::vector<std::vector<std::pair<std::string, double>>>& bundles,
                                        TaskId* id);
  virtual void RemovePlacementGroup(TaskId id);
  /// @brief Every placement group of the job (driver only).
  virtual std::vector<PlacementGroupEntry> PlacementGroups();
  /// @brief Item `index` (from 1) of streaming task `task`: with `want`, first registers this
  /// process as waiting for it (once per index; the id then counts as a local reference).
  /// Returns 1 when the item (or the task's error) is ready, 0 at the end of the stream (the
  /// reference is dropped), -1 on timeout.
  virtual int StreamNext(TaskId task, uint32_t index, int64_t timeout_ms, bool want);
  /// @brief Drop items [from, to) of a streaming task that this process never asked for.
  virtual void StreamRelease(TaskId task, uint32_t from, uint32_t to);
  /// @brief `on`: end the waits (get, wait, next stream item) the thread `thread` (its
  /// pthread_self(), Python's threading.get_ident()) is blocked in, and those it starts
  /// until called again with `on` false: they fail with kCancelled. A running task that is
  /// cancelled must not stay blocked in a get.
  virtual void InterruptWaits(uint64_t thread, bool on);
  /// @brief ray.util.state's view of the job (driver only): a msgpack payload of
  /// {tasks, actors, objects, total_*} with up to `limit` entries each.
  virtual std::vector<uint8_t> ListState(size_t limit);
  /// @brief Raw fabric throughput in GB/s: `bytes` streamed from process `source` to this one
  /// over the same path object fetches use (benchmarks).
  virtual double MeasureFabricGbps(ProcId source, uint64_t bytes);
};

/// @brief The process's runtime; throws mpiray::Error when Init has not been called.
CoreClient* Client();
/// @brief The process's runtime or null (used by destructors).
CoreClient* ClientOrNull() noexcept;
/// @brief Which Init this process is in (0 before the first): handles remember it, so that a
/// handle from an earlier session neither touches nor reads the objects of a later one.
uint32_t ClientEpoch() noexcept;
/// @brief Unit tests only: make `client` the process's runtime (null to clear).
void SetClientForTesting(CoreClient* client);

}  // namespace mpiray::detail

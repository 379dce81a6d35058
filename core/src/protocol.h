// Messages exchanged between runtime processes. Every message is a msgpack value framed inside a
// batch (see fabric.h); structs are msgpack arrays (MSGPACK_DEFINE), so fields are positional.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mpiray/core/detail/core_client.h"
#include "wire.h"

namespace mpiray::proto {

enum class Msg : uint16_t {
  // membership and control
  kPeerJoined = 1,
  kPeerLeft = 2,
  kShutdown = 3,
  kHeartbeat = 4,
  kLog = 5,
  // process -> head
  kSubmit = 10,
  kAddRef = 11,
  kDelRef = 12,
  kPutObject = 13,
  kGetObjects = 14,
  kCancel = 15,
  kKillActor = 16,
  kActorLookup = 17,
  kTaskBlocked = 18,
  kTaskUnblocked = 19,
  kAddLocation = 20,
  kTaskDone = 21,
  kByeAck = 22,
  // head -> process
  kExecute = 30,
  kObjectsReady = 31,
  kFreeObjects = 32,
  kCancelRunning = 33,
  kActorLocation = 34,
  kDestroyActor = 35,
  // process <-> process
  kGetNamedActor = 23,
  kNamedActor = 36,
  kWorkerOutput = 37,
  kActorCall = 40,
  kActorCallDone = 41,
  kFetch = 42,
  kFetchFailed = 43,
  kBenchStream = 44,
  kCallRouted = 45,
  kCreatePlacementGroup = 46,  // process -> head
  kRemovePlacementGroup = 47,  // process -> head
  kStreamItem = 48,            // worker -> head: a streaming task yielded an object
  kStreamWant = 49,            // caller -> head: it waits for item i of a streaming task
  kClusterQuery = 50,          // process -> head: nodes, resources, processes, groups
  kClusterView = 51,           // head -> process: the answer
  kCallRetried = 52,           // worker -> head: an actor call ran again after an application error
};

/// @brief The message's name without its `k` ("Submit" for kSubmit), for logs; its handler is
/// `On<name>` in the service that registers it (see docs/architecture.md, "Messages").
inline const char* MsgName(Msg type) {
  switch (type) {
#define MPIRAY_MSG_NAME(n) \
  case Msg::k##n:          \
    return #n;
    MPIRAY_MSG_NAME(PeerJoined) MPIRAY_MSG_NAME(PeerLeft) MPIRAY_MSG_NAME(Shutdown)
    MPIRAY_MSG_NAME(Heartbeat) MPIRAY_MSG_NAME(Log) MPIRAY_MSG_NAME(Submit) MPIRAY_MSG_NAME(AddRef)
    MPIRAY_MSG_NAME(DelRef) MPIRAY_MSG_NAME(PutObject) MPIRAY_MSG_NAME(GetObjects)
    MPIRAY_MSG_NAME(Cancel) MPIRAY_MSG_NAME(KillActor) MPIRAY_MSG_NAME(ActorLookup)
    MPIRAY_MSG_NAME(TaskBlocked) MPIRAY_MSG_NAME(TaskUnblocked) MPIRAY_MSG_NAME(AddLocation)
    MPIRAY_MSG_NAME(TaskDone) MPIRAY_MSG_NAME(ByeAck) MPIRAY_MSG_NAME(Execute)
    MPIRAY_MSG_NAME(ObjectsReady) MPIRAY_MSG_NAME(FreeObjects) MPIRAY_MSG_NAME(CancelRunning)
    MPIRAY_MSG_NAME(ActorLocation) MPIRAY_MSG_NAME(DestroyActor) MPIRAY_MSG_NAME(GetNamedActor)
    MPIRAY_MSG_NAME(NamedActor) MPIRAY_MSG_NAME(WorkerOutput) MPIRAY_MSG_NAME(ActorCall)
    MPIRAY_MSG_NAME(ActorCallDone) MPIRAY_MSG_NAME(Fetch) MPIRAY_MSG_NAME(FetchFailed)
    MPIRAY_MSG_NAME(BenchStream) MPIRAY_MSG_NAME(CallRouted) MPIRAY_MSG_NAME(CreatePlacementGroup)
    MPIRAY_MSG_NAME(RemovePlacementGroup) MPIRAY_MSG_NAME(StreamItem) MPIRAY_MSG_NAME(StreamWant)
    MPIRAY_MSG_NAME(ClusterQuery) MPIRAY_MSG_NAME(ClusterView) MPIRAY_MSG_NAME(CallRetried)
#undef MPIRAY_MSG_NAME
  }
  return "unknown";
}
/// @brief One past the largest message number (the router's table size).
inline constexpr uint16_t kMsgLimit = 64;

/// Resource amounts travel as fixed point (1/10000 units) so that sums never drift.
inline constexpr int64_t kResourceUnit = 10000;
using Resources = std::vector<std::pair<std::string, int64_t>>;

// Defined once for the API, the wire and the Python binding (mpiray/core/detail/core_client.h).
using TaskKind = detail::TaskKind;
using Strategy = detail::SchedulingStrategy;
using PgStrategy = detail::PlacementStrategy;
using Language = detail::Language;

struct Arg {
  bool by_ref = false;
  ObjectId ref;
  Buffer value;                  // the payload when passed by value
  std::vector<ObjectId> nested;  // refs inside the value: kept alive while the task is pending
  MSGPACK_DEFINE(by_ref, ref, value, nested);
};

struct TaskSpec {
  // (Members are ordered to leave no padding: the head keeps one per queued task. The wire
  // order is MSGPACK_DEFINE's.)
  TaskId id;
  uint8_t kind = 0;      // TaskKind
  uint8_t language = 0;  // Language
  uint8_t strategy = 0;  // Strategy: how to pick the node
  bool named = false;    // actor creation: `name` registers it for get_actor
  bool scoped = false;   // actor creation: it ends when its creation object is freed
  // Actor creation: the default for its calls' max_retries (-1: forever).
  int32_t max_task_retries = 0;
  std::string function;
  std::vector<Arg> args;
  uint32_t num_returns = 1;
  uint32_t node = detail::kAnyNode;  // kNodeAffinitySoft: the preferred node
  Resources resources;
  int32_t max_retries = 0;
  // Actor creation: restarts after its worker dies (-1: forever). Actor calls: the actor's
  // incarnation the call was sent to (0: not sent yet, the caller holds it until it knows).
  int32_t max_restarts = 0;
  std::string name;
  ActorId actor;      // actor calls: the target; actor creation: the new actor (== id)
  ProcId caller = 0;  // actor calls: the calling process
  uint32_t incarnation = 0;
  uint64_t seq = 0;   // actor calls: per (caller, actor) order
  TaskId parent;      // the task that submitted it (nil from the driver): recursive cancel
  int32_t max_concurrency = 1;
  std::string ns;      // actor creation: the namespace of a named actor
  Buffer handle_meta;  // actor creation: what a handle needs (language-specific; for get_actor)
  MSGPACK_DEFINE(id, kind, language, function, args, num_returns, resources, max_retries, name,
                 actor, caller, seq, max_concurrency, ns, handle_meta, named, max_restarts,
                 incarnation, max_task_retries, strategy, node, parent, scoped);

  TaskKind task_kind() const { return static_cast<TaskKind>(kind); }
  ObjectId ReturnId(uint32_t i) const { return ObjectId::ForReturn(id, i); }
};

// kPending (in an Execute only): the argument is being rebuilt; the worker asks for it.
enum class Where : uint8_t { kInline = 0, kShm = 1, kError = 2, kPending = 3 };

/// Where an object is and how to read it.
struct ObjectLoc {
  ObjectId id;
  uint8_t where = 0;  // Where
  Buffer data;        // inline payload or error payload
  NodeId node = 0;    // kShm: a node holding a copy
  ProcId source = 0;  // kShm: a live process on that node that serves fetches
  uint64_t size = 0;
  MSGPACK_DEFINE(id, where, data, node, source, size);
};

/// An object produced by a task or a put, reported to the head.
struct NewObject {
  ObjectId id;
  uint8_t where = 0;  // Where
  Buffer data;
  NodeId node = 0;
  uint64_t size = 0;
  std::vector<ObjectId> nested;
  MSGPACK_DEFINE(id, where, data, node, size, nested);
};

struct PeerInfo {
  ProcId proc = 0;
  NodeId node = 0;
  std::string host;
  int32_t pid = 0;
  Buffer address;  // UCX worker address
  int32_t gpus = 0;
  std::string machine;  // identifies the physical machine (hostname + boot id)
  uint64_t memory = 0;  // MemAvailable of its host, bytes
  std::string job;      // the Slurm job the process runs in (SLURM_JOB_ID), if any
  Resources resources;  // its node's own (MPIRAY_NODE_RESOURCES): replace the session's
  bool dedicated = false;  // started for one actor (MPIRAY_ACTOR_PROCESS): adds no CPU, runs no task
  MSGPACK_DEFINE(proc, node, host, pid, address, gpus, machine, memory, job, resources, dedicated);
};

struct PeerLeft {
  ProcId proc = 0;
  MSGPACK_DEFINE(proc);
};
struct Shutdown {
  std::string reason;
  MSGPACK_DEFINE(reason);
};
struct Empty {
  MSGPACK_DEFINE();
};
struct LogLine {
  int32_t level = 0;
  std::string text;
  MSGPACK_DEFINE(level, text);
};
struct IdList {
  std::vector<ObjectId> ids;
  MSGPACK_DEFINE(ids);
};
struct GetObjects {
  uint64_t req = 0;
  std::vector<ObjectId> ids;
  MSGPACK_DEFINE(req, ids);
};
struct ObjectsReady {
  uint64_t req = 0;
  std::vector<ObjectLoc> objects;
  MSGPACK_DEFINE(req, objects);
};
struct Cancel {
  ObjectId id;
  bool force = false;
  bool recursive = true;
  MSGPACK_DEFINE(id, force, recursive);
};
/// A placement group: bundles of resources reserved together (all or none).
struct PlacementGroupSpec {
  TaskId id;  // the group's id; its ready object is ObjectId::ForReturn(id, 0)
  std::string name;
  uint8_t strategy = 0;  // PgStrategy
  std::vector<Resources> bundles;
  MSGPACK_DEFINE(id, name, strategy, bundles);
};
/// Resource names of a placement group's bundles, as Ray's: `<name>_group_<i>_<pg>` for bundle
/// i, `<name>_group_<pg>` for any of its bundles (bundle < 0). `bundle` is the name that lets
/// a request with no resources target a bundle.
inline std::string PgResourceName(const std::string& name, int bundle, TaskId pg) {
  static const char* digits = "0123456789abcdef";
  std::string hex(16, '0');
  for (int i = 15, v = 0; i >= 0; --i, ++v) hex[static_cast<size_t>(i)] = digits[(pg.value >> (4 * v)) & 15];
  return bundle < 0 ? name + "_group_" + hex : name + "_group_" + std::to_string(bundle) + "_" + hex;
}
/// What a bundle offers of its `bundle` resource (requests take kPgBundleShare of it).
inline constexpr int64_t kPgBundleAmount = 1000 * kResourceUnit;
inline constexpr int64_t kPgBundleShare = kResourceUnit / 1000;
/// The error message that marks the end of a streaming task's items (code kNotFound).
inline constexpr const char* kEndOfStream = "mpiray: end of stream";
struct RemovePlacementGroup {
  TaskId id;
  MSGPACK_DEFINE(id);
};
struct CallRetried {
  TaskId task;
  MSGPACK_DEFINE(task);
};
struct KillActor {
  ActorId actor;
  bool no_restart = true;
  // Head -> worker: the actor ends by itself (out of scope, exit_actor()), not by kill():
  // a process of its own exits cleanly (atexit handlers run).
  bool graceful = false;
  MSGPACK_DEFINE(actor, no_restart, graceful);
};
struct ActorLookup {
  ActorId actor;
  MSGPACK_DEFINE(actor);
};
enum class ActorState : uint8_t { kPending = 0, kAlive = 1, kDead = 2 };
struct ActorLocation {
  ActorId actor;
  ProcId proc = 0;
  uint8_t state = 0;  // ActorState (kPending: restarting; calls wait for the next location)
  std::string error;
  uint32_t incarnation = 0;      // 1 for the first instance, +1 per restart
  bool restartable = false;      // max_restarts != 0
  bool retriable_calls = false;  // its calls are retried by default (max_task_retries != 0)
  MSGPACK_DEFINE(actor, proc, state, error, incarnation, restartable, retriable_calls);
};
/// A call the caller held back (actor location unknown) was sent to incarnation `incarnation`.
struct CallRouted {
  TaskId task;
  ActorId actor;
  uint32_t incarnation = 0;
  std::vector<Arg> args;  // the call's arguments when it may be retried (else empty)
  MSGPACK_DEFINE(task, actor, incarnation, args);
};
struct TaskRef {
  TaskId task;
  MSGPACK_DEFINE(task);
};
struct AddLocation {
  ObjectId id;
  NodeId node = 0;
  MSGPACK_DEFINE(id, node);
};
struct Execute {
  TaskSpec spec;
  std::vector<ObjectLoc> resolved;  // one per by-ref argument, in argument order
  std::vector<int32_t> gpus;        // GPU devices of the node given to it (CUDA_VISIBLE_DEVICES)
  MSGPACK_DEFINE(spec, resolved, gpus);
};
/// Item `obj.id.index` (from 1) of streaming task `task`.
struct StreamItem {
  TaskId task;
  NewObject obj;
  MSGPACK_DEFINE(task, obj);
};
struct StreamWant {
  ObjectId id;
  MSGPACK_DEFINE(id);
};
/// kRetryable: the task failed with an application error its options retry (the head runs it
/// again while its max_retries allow, else its error returns stand).
enum class DoneStatus : uint8_t { kOk = 0, kCancelled = 1, kRetryable = 2 };
struct TaskDone {
  TaskId task;
  uint8_t kind = 0;  // TaskKind
  uint8_t status = 0;
  std::vector<NewObject> returns;
  ActorId actor;
  ProcId caller = 0;
  int64_t start_us = 0;  // when it ran on the worker (system clock, for the timeline)
  int64_t end_us = 0;
  MSGPACK_DEFINE(task, kind, status, returns, actor, caller, start_us, end_us);
};
struct CancelRunning {
  TaskId task;
  bool force = false;
  MSGPACK_DEFINE(task, force);
};
struct TaskList {
  std::vector<TaskId> tasks;
  MSGPACK_DEFINE(tasks);
};
struct Fetch {
  ObjectId id;
  uint64_t transfer = 0;
  uint64_t size = 0;
  MSGPACK_DEFINE(id, transfer, size);
};
struct FetchFailed {
  uint64_t transfer = 0;
  std::string message;
  MSGPACK_DEFINE(transfer, message);
};
struct GetNamedActor {
  uint64_t req = 0;
  std::string ns;
  std::string name;
  MSGPACK_DEFINE(req, ns, name);
};
struct NamedActor {
  uint64_t req = 0;
  bool found = false;
  ActorId actor;
  Buffer handle_meta;
  std::string error;
  MSGPACK_DEFINE(req, found, actor, handle_meta, error);
};
/// What ray.nodes(), cluster_resources(), available_resources() and placement_group_table()
/// show, asked by a process that is not the head (a task or actor calling them).
struct ClusterQuery {
  uint64_t req = 0;
  MSGPACK_DEFINE(req);
};
struct ClusterView {
  using Amounts = std::vector<std::pair<std::string, double>>;
  struct Node {
    NodeId id = 0;
    Amounts total;
    Amounts available;
    std::vector<ProcId> workers;
    MSGPACK_DEFINE(id, total, available, workers);
  };
  struct Process {
    ProcId proc = 0;
    NodeId node = 0;
    int32_t pid = 0;
    std::string host;
    std::string job;
    int32_t running = 0;
    int32_t actors = 0;
    bool worker = false;
    MSGPACK_DEFINE(proc, node, pid, host, job, running, actors, worker);
  };
  struct Group {
    TaskId id;
    std::string name;
    std::string strategy;
    std::string state;
    std::string error;
    std::vector<Amounts> bundles;
    std::vector<NodeId> nodes;
    MSGPACK_DEFINE(id, name, strategy, state, error, bundles, nodes);
  };
  uint64_t req = 0;
  std::vector<Node> nodes;
  std::vector<Process> processes;
  // pending actors, objects, queued, pipelined, running tasks, actors, actor restarts,
  // reconstructions, lineage tasks (detail::ClusterSnapshot's counters, in its order)
  std::vector<uint64_t> counts;
  std::vector<Group> groups;
  MSGPACK_DEFINE(req, nodes, processes, counts, groups);
};
struct WorkerOutput {
  std::string name;  // what the worker was running
  int32_t pid = 0;
  std::vector<std::string> lines;
  MSGPACK_DEFINE(name, pid, lines);
};

struct BenchStream {
  uint64_t transfer = 0;
  uint64_t bytes = 0;
  MSGPACK_DEFINE(transfer, bytes);
};

/// Header of a bulk (zero-copy) chunk; the chunk bytes are the message data.
struct BulkHeader {
  uint64_t transfer = 0;
  uint64_t offset = 0;
  uint64_t total = 0;
};

}  // namespace mpiray::proto

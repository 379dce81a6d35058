// Runtime: one per process. Wires the fabric, the node's object store, the client and either
// the head service (rank 0) or the worker service, routes messages between them, and owns the
// process lifecycle (signals, cleanup, exit).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "client.h"
#include "fetch.h"
#include "head.h"
#include "head_link.h"
#include "remote_head_link.h"
#include "router.h"
#include "join.h"
#include "metrics.h"
#include "output.h"
#include "session.h"
#include "shm_store.h"
#include "ucx_fabric.h"
#include "worker.h"

namespace mpiray {

enum class Role { kHead, kWorker };

/// The byte a head writes to its reaper's pipe when it ends normally (not a death).
inline constexpr char kReaperClean = 'c';

/// @brief Everything a process knows once its bootstrap or join is done.
struct RuntimeSetup {
  Role role = Role::kWorker;
  SessionInfo session;
  proto::PeerInfo self;
  std::vector<proto::PeerInfo> peers;  // every other known process
  std::unique_ptr<UcxFabric> fabric;
  std::string launcher;  // for logs, e.g. "mpirun (OpenMPI)"
};

/// @brief Assigns node ids to processes by host key, in virtual nodes of ranks_per_node.
class NodeAssigner {
 public:
  explicit NodeAssigner(int ranks_per_node) : rpn_(ranks_per_node) {}
  NodeId Assign(const std::string& host);
  /// @brief Nodes assigned so far on `host`.
  int NodesOnHost(const std::string& host) const;

 private:
  int rpn_;
  std::map<std::string, int> seen_;
  std::map<std::pair<std::string, int>, NodeId> ids_;
};

/// @brief This physical machine: hostname plus boot id (shared memory works within it).
std::string MachineId();

/// @brief The host key of this process: SLURMD_NODENAME (simulated Slurm nodes) or hostname.
std::string HostKey(const EnvMap& env);

class Runtime final : public FabricHandler {
 public:
  static Result<std::unique_ptr<Runtime>> Create(RuntimeSetup&& setup);
  ~Runtime() override;

  ClientImpl* client() { return client_.get(); }
  HeadService* head() { return head_.get(); }
  WorkerService* worker() { return worker_.get(); }
  const SessionInfo& session() const { return session_; }
  ProcId self() const { return self_.proc; }
  NodeId node() const { return self_.node; }

  // ---- head ------------------------------------------------------------------------------
  /// @brief Open the join listener and write its address into the session directory.
  Status StartListener(const EnvMap& env, int ranks_per_node,
                       const std::vector<proto::PeerInfo>& bootstrap_peers);
  /// @brief Start `n` local worker processes that join through the listener; wait for them.
  Status SpawnLocalWorkers(int n, const std::vector<std::string>& command, int timeout_ms);
  /// @brief A local worker died: start another in its place (unless shutting down, or
  /// MPIRAY_REPLACE_WORKERS=0).
  void ReplaceLocalWorker(ProcId proc);
  bool IsLocalWorker(ProcId proc);
  /// @brief Start a worker process for one actor on `node` (named `host`, on `machine`);
  /// false where this head cannot (another machine, or not a standalone run).
  bool StartActorProcess(NodeId node, const std::string& host, const std::string& machine);
  /// @brief Stop the cluster: workers exit, objects and session files are removed.
  void Shutdown();
  /// @brief A fatal signal: stop everything quickly and exit.
  [[noreturn]] void EmergencyExit(int sig);
  /// @brief End the process with `code` from a runtime thread: the head stops its workers
  /// (waiting for them when `graceful`) and removes the session's files; a worker removes its
  /// own. Other threads are not woken.
  [[noreturn]] void Exit(int code, bool graceful);
  /// @brief A second Ctrl-C while the head stops: workers told to go and local ones killed,
  /// the files removed, exit `code` now (also while Shutdown or Exit runs on another thread).
  [[noreturn]] void ForceExit(int code);
  /// @brief Write fd whose closing tells the reaper process the head is gone.
  void set_reaper_fd(int fd) { reaper_fd_ = fd; }
  /// @brief Tell the reaper this is a normal end (no death to report).
  void ReleaseReaper();
  void set_finalizer(std::function<void()> f) { finalizer_ = std::move(f); }

  // ---- worker ----------------------------------------------------------------------------
  /// @brief Serve tasks until the head shuts the cluster down, then exit the process.
  [[noreturn]] void ServeAsWorker();

  // FabricHandler
  void OnMessage(ProcId src, proto::Msg type, const char* body, size_t len) override;
  uint8_t* OnBulkBegin(ProcId src, const proto::BulkHeader& h, size_t len) override;
  void OnBulkEnd(ProcId src, const proto::BulkHeader& h, size_t len, bool ok) override;
  void OnPeerFailed(ProcId proc, const std::string& why) override;
  void OnTick() override;

 private:
  struct LocalSpawn {
    int index = 0;
    bool dedicated = false;  // for one actor, on `node` named `host`
    NodeId node = 0;
    std::string host;
  };
  Status SpawnOneWorker(const LocalSpawn& what);
  void QueueSpawn(const LocalSpawn& what);
  void StartSpawner();  // (children_mu_ held)
  bool ChildJoined(int pid);  // a child of ours joins (it no longer counts as starting)
  /// Reap exited children (children_mu_ held): the nodes of actor processes that never joined,
  /// with why.
  std::vector<std::pair<NodeId, std::string>> ReapChildren();
  Runtime() = default;
  // Create's steps.
  void StartLogging(const std::string& launcher);
  Status OpenStore();
  void ReapLeftovers();
  void MakeServices();
  Status StartWorkerOutput();
  void RegisterHandlers();
  // The runtime's own messages.
  static void OnWorkerOutput(ProcId src, const proto::WorkerOutput& o);
  void OnByeAck(ProcId src);
  void OnPeerJoined(const proto::PeerInfo& p);
  void OnPeerLeft(ProcId gone);
  void OnShutdown(const proto::Shutdown& s);
  JoinReply OnJoin(const JoinRequest& req);
  std::string StatusJson() const;
  std::string TimelineJson() const;
  std::string MetricsText() const;
  void HeadLost(const std::string& why);
  void LeaveSoon(int code);
  [[noreturn]] void WorkerExit(int code);
  void CleanupWorkerFiles();
  int64_t NowMs() const;

  Role role_ = Role::kWorker;
  SessionInfo session_;
  proto::PeerInfo self_;
  std::string head_host_;
  std::unique_ptr<UcxFabric> fabric_;
  MessageRouter router_;  // every message this process handles, by type
  std::unique_ptr<ShmStore> store_;
  std::unique_ptr<Fetcher> fetcher_;
  std::unique_ptr<HeadService> head_;
  std::unique_ptr<HeadLink> link_;
  std::unique_ptr<ClientImpl> client_;
  std::unique_ptr<WorkerService> worker_;
  std::unique_ptr<JoinListener> listener_;
  std::unique_ptr<MetricsServer> metrics_;
  OutputForwarder output_;
  std::function<void()> finalizer_;
  std::atomic<int> reaper_fd_{-1};

  std::mutex machines_mu_;
  std::map<ProcId, std::string> machines_;  // which machine each process runs on
  std::mutex join_mu_;
  std::condition_variable join_cv_;
  std::unique_ptr<NodeAssigner> assigner_;
  ProcId next_proc_ = 1;
  std::mutex children_mu_;
  std::vector<int> children_;                      // local worker processes we started
  std::unordered_map<int, NodeId> starting_actor_processes_;  // pid -> node, until it joins
  std::unordered_map<ProcId, int> local_workers_;  // which of them joined as which process
  std::vector<std::string> worker_command_;
  std::atomic<int> spawned_{0};
  std::thread spawner_;  // starts replacement workers (lives as long as they may)
  std::condition_variable spawn_cv_;
  std::deque<LocalSpawn> spawn_queue_;  // workers to start
  bool spawner_stop_ = false;

  std::mutex bye_mu_;
  std::condition_variable bye_cv_;
  std::set<ProcId> gone_;

  std::atomic<int64_t> last_head_ms_{0};
  int64_t started_ms_ = 0;
  int64_t last_beat_ms_ = 0;
  std::atomic<bool> head_lost_{false};
  std::atomic<bool> shut_{false};
};

/// @brief The early-warning signal that asks for checkpoints (MPIRAY_CHECKPOINT_SIGNAL: USR1 by
/// default, USR2, a number, or "none" -> 0), as sent by `#SBATCH --signal=USR1@120`.
int CheckpointSignal(const EnvMap& env);

/// @brief Block SIGINT/SIGTERM/SIGHUP in this thread (threads started later inherit it) so that a
/// dedicated thread handles them; call before MPI or UCX start threads.
void BlockTerminationSignals();

}  // namespace mpiray

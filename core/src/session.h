// Session and configuration: what every process of one run must agree on. Environment parsing
// is a pure function of an EnvMap so tests need no setenv.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mpiray/core/options.h"
#include "mpiray/core/status.h"
#include "protocol.h"

namespace mpiray {

using EnvMap = std::map<std::string, std::string>;

/// @brief The current process environment as a map.
EnvMap CurrentEnv();

/// @brief Runtime settings decided by the head and shared with every process.
struct RuntimeConfig {
  uint64_t inline_threshold = 100 * 1024;  // objects up to this size travel inside messages
  uint64_t store_capacity = 0;             // per node; 0: derive from /dev/shm
  int32_t ranks_per_node = 0;              // 0: group by host
  std::string log_level = "info";
  int32_t max_inflight_per_worker = 64;
  int32_t spin_us = 50;
  int32_t heartbeat_timeout_ms = 10000;
  double num_cpus = -1;
  double num_gpus = -1;
  proto::Resources custom;  // per node
  uint64_t fetch_chunk = 8ull << 20;
  int32_t num_workers = -1;  // singleton mode
  bool keep_session = false;
  bool keep_mpi = false;
  bool log_to_driver = true;
  std::string ns;  // the job's default namespace for named actors
  bool autoscale = false;  // capacity can grow: infeasible-now requests wait
  bool same_machine_copy = true;  // copy objects between nodes of one machine through memory
  bool replace_workers = true;    // singleton mode: start a new local worker when one dies
  // MPIRAY_ACTOR_PROCESSES=dedicated: every actor gets a process of its own, started for it on
  // the head's machine (Ray's model); shared (default): actors share the worker processes.
  bool actor_processes = false;
  MSGPACK_DEFINE(same_machine_copy, inline_threshold, store_capacity, ranks_per_node, log_level,
                 max_inflight_per_worker, spin_us, heartbeat_timeout_ms, num_cpus, num_gpus,
                 custom, fetch_chunk, num_workers, keep_session, keep_mpi, log_to_driver, ns,
                 autoscale, replace_workers, actor_processes);
};

/// @brief Identity of one run: its directories and secret.
struct SessionInfo {
  std::string name;      // short random id, e.g. "9f3a1c07"
  std::string dir;       // private directory (0700): token, head address, logs
  std::string shm_root;  // object store root; node stores are <shm_root>-n<node>
  std::string token;     // the secret a joining process must present
  RuntimeConfig config;
  // Spill root; node spill directories are <spill_root>-n<node>, on each node's own host:
  // <MPIRAY_SPILL_DIR>/mpiray-<name>-n<node> or <dir>/spill-n<node>.
  std::string spill_root;
  MSGPACK_DEFINE(name, dir, shm_root, token, config, spill_root);

  std::string LogDir() const { return dir + "/logs"; }
  std::string TokenFile() const { return dir + "/token"; }
  std::string AddressFile() const { return dir + "/head.addr"; }
};

/// @brief Settings from options and environment (options win). Errors name the bad variable.
Result<RuntimeConfig> ConfigFromEnv(const EnvMap& env, const InitOptions& options);

/// @brief Parse "1024", "64K", "2G" etc. into bytes.
Result<uint64_t> ParseBytes(const std::string& what, const std::string& text);

/// @brief Parse "a=1,b=2.5" into resources.
Result<proto::Resources> ParseResourceList(const std::string& what, const std::string& text);

/// @brief This process's node's own resources, MPIRAY_NODE_RESOURCES="licence=1,CPU=4,
/// memory=8G" (empty when unset): they replace, on the node of the process, the session's values
/// of the same names (CPU, GPU, memory in bytes with K/M/G/T suffixes, custom ones).
Result<proto::Resources> NodeResourcesFromEnv(const EnvMap& env);

/// @brief Node of each rank: ranks on one host form one node, or virtual nodes of
/// `ranks_per_node` ranks when it is > 0. Host indices come from the bootstrap.
std::vector<NodeId> AssignNodes(const std::vector<int>& host_of_rank, int ranks_per_node);

/// @brief MemAvailable from /proc/meminfo, in bytes (0 if unknown).
uint64_t AvailableMemory();

/// @brief GPUs visible to this process (CUDA_VISIBLE_DEVICES, else SLURM_GPUS_ON_NODE).
int DetectGpus(const EnvMap& env, const std::string& nvidia_proc = "/proc/driver/nvidia/gpus");

/// @brief Create a new session: private directory, token file (0600), shared-memory root name.
Result<SessionInfo> CreateSession(const EnvMap& env, const InitOptions& options,
                                  const RuntimeConfig& config);
/// @brief Make sure this host has the session's directories (processes on other hosts).
Status EnsureSessionDirs(const SessionInfo& session);
/// @brief Read the session a joining process was pointed at (token and head address).
Result<SessionInfo> ReadSessionForJoin(const std::string& dir, std::string* head_address);
/// @brief Remove the session directory, every object store directory of this host and the
/// spill directories of those nodes.
void RemoveSessionFiles(const SessionInfo& session);

/// @brief Removes directory `dir` and everything in it. Files of 16 MiB and more are unlinked
/// while held open and closed by a detached thread: their names are gone when this returns,
/// their pages (on tmpfs, freeing them is most of the time a shutdown took) soon after.
/// Errors are ignored, as remove_all's.
void RemoveTree(const std::string& dir);
/// @brief Default per-node store capacity: 30% of /dev/shm split among `nodes_on_host`.
uint64_t DefaultStoreCapacity(const std::string& shm_dir, int nodes_on_host);
/// @brief Random lowercase hex of 2*bytes characters (libsodium).
std::string RandomHex(size_t bytes);

}  // namespace mpiray

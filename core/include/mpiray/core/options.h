// Options for starting the runtime. Every field has an environment variable too (listed per
// field); an explicit option wins over the environment.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mpiray {

/// @brief How mpiray::Init sets up the cluster.
struct InitOptions {
  /// Without a launcher: how many local worker processes to start (MPIRAY_NUM_WORKERS; default:
  /// one per core).
  int num_workers = -1;
  /// CPUs each node offers to tasks (default: the number of worker processes on the node).
  double num_cpus = -1;
  /// GPUs each node offers (default: from CUDA_VISIBLE_DEVICES or SLURM_GPUS_ON_NODE).
  double num_gpus = -1;
  /// Custom resources every node offers, e.g. {{"licence", 2}} (MPIRAY_RESOURCES="a=1,b=2").
  std::map<std::string, double> resources;
  /// Object store capacity per node in bytes (MPIRAY_OBJECT_STORE_MEMORY; default: 30% of
  /// /dev/shm shared by the nodes of a host).
  int64_t object_store_memory = -1;
  /// Group ranks into virtual nodes of this many ranks (MPIRAY_RANKS_PER_NODE; default: by host).
  int ranks_per_node = -1;
  /// Log level of the per-process log files: trace, debug, info, warn, error, off
  /// (MPIRAY_LOG_LEVEL; default info).
  std::string log_level;
  /// Where session directories go (MPIRAY_SESSION_ROOT, then TMPDIR, then /tmp).
  std::string session_root;
  /// Where a full object store spills objects to (MPIRAY_SPILL_DIR; default: the session
  /// directory). Each node uses <dir>/mpiray-<session>-n<node>/ on its own host, so this should
  /// be node-local storage (local disk or NVMe), like /dev/shm.
  std::string spill_dir;
  /// Keep the session directory (logs) after shutdown (MPIRAY_KEEP_SESSION=1).
  bool keep_session = false;
  /// Keep MPI initialised after the bootstrap so the program may use MPI itself. Off by
  /// default: a live MPI world turns any worker death into a job abort under srun.
  bool keep_mpi = false;
  /// Calling Init again is a no-op instead of an error.
  bool ignore_reinit_error = false;
  /// Without a launcher: the command that starts a worker (default: this program again).
  std::vector<std::string> worker_command;
  /// How long the head waits for started workers to join, in milliseconds.
  int join_timeout_ms = 60000;
  /// Print the output of workers (stdout and stderr, by line, prefixed with the task name,
  /// pid and rank) on the driver's console (MPIRAY_LOG_TO_DRIVER=0 turns it off). Worker output
  /// is also kept per worker in the session's logs directory either way.
  bool log_to_driver = true;
  /// Handle SIGINT in the runtime (clean shutdown, exit 130). Off for a Python driver, where
  /// Ctrl-C must raise KeyboardInterrupt; the runtime still cleans up when it exits.
  bool handle_sigint = true;
  /// Default namespace for named actors (Ray's `namespace`); empty: an anonymous one per job.
  std::string ns;
  /// Elastic allocation under Slurm (MPIRAY_AUTOSCALE), e.g. "max=3,nodes=1,tasks_per_node=2,
  /// idle=60,time=01:00:00,partition=batch": the driver submits worker jobs while work waits
  /// and cancels them when idle. Keys: min, max, nodes, tasks_per_node, partition, account,
  /// time, idle (s), delay (s), sbatch (an extra option, repeatable). Empty: off.
  std::string autoscale;
};

}  // namespace mpiray

// Batch scripts for `mpiray submit` and for the autoscaler's worker jobs.
#pragma once

#include <string>
#include <vector>

namespace mpiray::slurm {

/// @brief What `mpiray submit` asks of Slurm.
struct BatchOptions {
  std::string job_name = "mpiray";
  int nodes = 1;
  int ntasks_per_node = 1;
  int cpus_per_task = 0;      // 0: Slurm's default
  int gpus_per_node = 0;
  std::string time;           // e.g. "01:00:00"; empty: the partition's default
  std::string partition;
  std::string account;
  std::string output = "mpiray-%j.out";
  /// Early warning before the time limit, delivered to every task; mpiray's driver then runs
  /// its checkpoint callbacks and stops cleanly. Empty: none.
  std::string signal = "USR1@120";
  bool requeue = false;
  std::vector<std::string> extra_sbatch;  // more "#SBATCH ..." option lines, e.g. "--qos=debug"
  std::vector<std::pair<std::string, std::string>> env;  // exported before srun
  std::vector<std::string> command;      // what srun runs on every task
  std::string srun_args = "--mpi=pmix";  // --mpi=none for worker jobs (they join without MPI)
};

/// @brief Quote one word for a POSIX shell.
std::string ShellQuote(const std::string& word);

/// @brief The batch script: #SBATCH lines, then `srun --mpi=pmix <command>`.
std::string BatchScript(const BatchOptions& options);

}  // namespace mpiray::slurm

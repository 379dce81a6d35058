// The Slurm allocation, read from Slurm's environment variables by pure functions (an EnvMap in,
// a value out), so every format is unit-tested on real-looking inputs.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mpiray/core/status.h"

namespace mpiray::slurm {

using EnvMap = std::map<std::string, std::string>;

/// @brief Expand a Slurm host list: "n[1-3,7],gpu-[01-04]" -> n1 n2 n3 n7 gpu-01 ... gpu-04
/// (zero padding kept; several bracket groups in one name are expanded in order).
Result<std::vector<std::string>> ExpandHostList(const std::string& list);

/// @brief Compress host names into Slurm's bracket form (inverse of ExpandHostList for simple
/// numeric suffixes): n1 n2 n3 n7 -> "n[1-3,7]".
std::string CompressHostList(const std::vector<std::string>& hosts);

/// @brief Expand a count list such as SLURM_JOB_CPUS_PER_NODE or SLURM_TASKS_PER_NODE:
/// "72(x2),36" -> 72 72 36.
Result<std::vector<int>> ExpandCounts(const std::string& list);

/// @brief A Slurm time (--time / squeue %l): "30", "30:00", "1:00:00", "2-12", "2-12:30",
/// "2-12:30:15", "UNLIMITED"/"INFINITE" (nullopt) -> seconds.
Result<std::optional<int64_t>> ParseTime(const std::string& text);

/// @brief Format seconds as Slurm's D-HH:MM:SS (or HH:MM:SS).
std::string FormatTime(int64_t seconds);

/// @brief What a job step knows about its allocation.
struct Allocation {
  std::string job_id;
  std::string job_name;
  std::string partition;
  std::string account;
  std::vector<std::string> nodes;  // every node of the job
  std::vector<int> cpus_per_node;  // parallel to nodes
  int gpus_per_node = 0;
  int64_t memory_per_node_mb = 0;  // 0: not given
  int ntasks = 0;                  // of the step (or job)
  std::vector<int> tasks_per_node; // parallel to nodes, when known
  int procid = -1;                 // this task's rank in the step (-1: not in a step)
  std::string node_name;           // the node this process runs on (SLURMD_NODENAME)
  std::optional<int64_t> end_time; // Unix time the job must end by (SLURM_JOB_END_TIME)
  bool in_step() const { return procid >= 0; }
  int total_cpus() const;
};

/// @brief Read the allocation from the environment; NotFound when not inside a Slurm job,
/// InvalidArgument naming the variable when a value is malformed.
Result<Allocation> ReadAllocation(const EnvMap& env);

}  // namespace mpiray::slurm

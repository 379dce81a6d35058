// Elastic allocation: the driver grows its job by submitting worker jobs with sbatch when
// tasks or actors wait for room, and shrinks it by draining and cancelling worker jobs that
// stayed idle. Worker jobs run `srun --mpi=none <worker command>`; their processes join the
// head's authenticated listener (no MPI needed inside a worker job).
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mpiray/core/detail/core_client.h"
#include "mpiray/core/status.h"

namespace mpiray::slurm {

/// @brief Autoscaler settings; parsed from "max=2,nodes=1,tasks_per_node=2,idle=30,..."
/// (InitOptions::autoscale, MPIRAY_AUTOSCALE, Python `init(autoscale={...})`).
struct AutoscaleOptions {
  int min_jobs = 0;            // min: worker jobs kept even when idle
  int max_jobs = 1;            // max: never more worker jobs than this
  int nodes_per_job = 1;       // nodes
  int tasks_per_node = 1;      // tasks_per_node: worker processes per node
  std::string partition;       // partition
  std::string account;         // account
  std::string time = "01:00:00";  // time: worker jobs' time limit
  double idle_timeout_s = 60;  // idle: seconds a worker job may sit idle before it is cancelled
  double upscale_delay_s = 1;  // delay: seconds demand must persist before a job is submitted
  std::vector<std::string> extra_sbatch;  // sbatch=--qos=x (repeatable)

  /// @brief Parse the spec; errors name the bad key and list the valid ones.
  static Result<AutoscaleOptions> Parse(const std::string& spec);
};

/// @brief The Slurm commands the autoscaler uses (a fake in unit tests).
class SlurmCommands {
 public:
  virtual ~SlurmCommands() = default;
  /// @brief Submit a batch script; returns the job id.
  virtual Result<std::string> Submit(const std::string& script) = 0;
  /// @brief State of each job ("PENDING", "RUNNING", ...; absent: finished or unknown).
  virtual Result<std::map<std::string, std::string>> States(const std::vector<std::string>& jobs) = 0;
  virtual Status Cancel(const std::string& job) = 0;
};

/// @brief sbatch, squeue and scancel.
class RealSlurmCommands final : public SlurmCommands {
 public:
  Result<std::string> Submit(const std::string& script) override;
  Result<std::map<std::string, std::string>> States(const std::vector<std::string>& jobs) override;
  Status Cancel(const std::string& job) override;
};

/// @brief What the autoscaler reads from and asks of the runtime (a fake in unit tests).
class ClusterControl {
 public:
  virtual ~ClusterControl() = default;
  virtual detail::ClusterSnapshot Snapshot() = 0;
  virtual Status Drain(const std::vector<ProcId>& procs) = 0;
};

class Autoscaler {
 public:
  /// @param worker_env  environment of worker processes (how to join the session).
  /// @param worker_command what each worker task runs.
  Autoscaler(AutoscaleOptions options, SlurmCommands& slurm, ClusterControl& cluster,
             std::vector<std::pair<std::string, std::string>> worker_env,
             std::vector<std::string> worker_command, std::string output_dir);
  ~Autoscaler();

  /// @brief One decision round at time `now_s` (seconds, monotonic).
  void Step(double now_s);
  /// @brief Run Step every `period_s` on a thread of its own.
  void Start(double period_s = 1.0);
  /// @brief Stop the thread and cancel every worker job this autoscaler submitted.
  void Stop();

  struct Job {
    std::string id;
    std::string state;         // last seen Slurm state
    double submitted_s = 0;
    double idle_since_s = -1;  // <0: busy or no workers yet
    bool cancelled = false;
  };
  std::vector<Job> Jobs() const;
  size_t ActiveJobs() const;
  /// @brief One line per decision taken (submitted, cancelled), for logs and tests.
  std::vector<std::string> History() const;

 private:
  std::string WorkerScript() const;

  AutoscaleOptions o_;
  SlurmCommands& slurm_;
  ClusterControl& cluster_;
  std::vector<std::pair<std::string, std::string>> env_;
  std::vector<std::string> command_;
  std::string output_dir_;
  mutable std::mutex mu_;
  std::vector<Job> jobs_;
  std::vector<std::string> history_;
  double demand_since_ = -1;
  std::thread thread_;
  std::condition_variable cv_;
  bool stop_ = false;
};

/// @brief Start the autoscaler of this driver (called by mpiray::Init when InitOptions::autoscale
/// or MPIRAY_AUTOSCALE is set); it stops, cancelling its worker jobs, at mpiray::Shutdown.
Status StartDriverAutoscaler(const std::string& spec, const std::vector<std::string>& worker_command);

}  // namespace mpiray::slurm

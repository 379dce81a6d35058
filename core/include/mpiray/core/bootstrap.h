// Bootstrap: what a launcher (mpirun, srun) gives the runtime at start-up. Implemented by the
// mpi component (MPI collectives); the core never calls MPI itself.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "mpiray/core/options.h"
#include "mpiray/core/status.h"

namespace mpiray {

/// @brief A fixed group of processes started together, used once at start-up.
class Bootstrap {
 public:
  virtual ~Bootstrap() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// @brief Every rank receives rank 0's `value`.
  virtual Result<std::string> Broadcast(const std::string& value) = 0;
  /// @brief Every rank receives every rank's `mine`, indexed by rank.
  virtual Result<std::vector<std::string>> AllGather(const std::string& mine) = 0;
  /// @brief The bootstrap is over; `keep` leaves MPI usable by the program.
  virtual Status Finish(bool keep) = 0;
  /// @brief e.g. "mpirun (OpenMPI 4.1.4)".
  virtual std::string Describe() const = 0;
  /// @brief Called by mpiray::Shutdown on rank 0 (e.g. MPI_Finalize when MPI was kept).
  virtual void AtShutdown() {}
  /// @brief A line the head logs as a warning at start-up, e.g. that this launch cannot
  /// survive a worker death; empty for none.
  virtual std::string LaunchWarning() const { return {}; }
};

namespace detail {
/// @brief Start the runtime over a launcher's processes. Rank 0 returns (it is the head and the
/// driver); every other rank serves as a worker and exits when the head shuts down.
void InitWithBootstrap(const InitOptions& options, Bootstrap& bootstrap);
/// @brief Start without a launcher: join the session named by MPIRAY_JOIN as a worker (never
/// returns), or become a head that starts its own local workers.
void InitStandalone(const InitOptions& options);
/// @brief Block SIGINT/SIGTERM/SIGHUP before a launcher library starts threads; the runtime
/// handles them on a thread of its own (clean shutdown) and restores the mask at Shutdown.
void BlockTerminationSignalsForInit();
/// @brief True when this process was started to join an existing session (MPIRAY_JOIN).
bool IsJoinLaunch();
/// @brief The command that starts a worker running this program: this executable with this
/// process's arguments (its MPIRAY_REMOTE functions are then there).
std::vector<std::string> DefaultWorkerCommand();
/// @brief Run `hook` when the driver shuts down (before the cluster stops), also when a
/// signal ends the job.
void AddShutdownHook(std::function<void()> hook);
/// @brief Write `status` to MPIRAY_EXIT_STATUS_FILE now (when set): for a driver whose end the
/// runtime cannot see, e.g. Python's death by SIGINT after an uncaught KeyboardInterrupt.
void RecordExitStatus(int status);
}  // namespace detail

}  // namespace mpiray

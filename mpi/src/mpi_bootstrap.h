// MpiBootstrap: the Bootstrap over MPI collectives (MPI_COMM_WORLD). MPI error codes are
// translated to Status in one place, MpiStatus().
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mpiray/core/bootstrap.h"

namespace mpiray::mpi {

/// @brief Translate an MPI return code into a Status naming the call.
Status MpiStatus(int code, const std::string& call);

class MpiBootstrap final : public Bootstrap {
 public:
  ~MpiBootstrap() override { DisarmWatchdog(); }
  /// @brief MPI_Init_thread unless MPI is already initialised (then it is left to the caller).
  Status Init();
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Result<std::string> Broadcast(const std::string& value) override;
  Result<std::vector<std::string>> AllGather(const std::string& mine) override;
  Status Finish(bool keep) override;
  std::string Describe() const override { return description_; }
  void set_description(std::string d) { description_ = std::move(d); }
  /// @brief MPI_Finalize if Init started MPI and Finish kept it.
  void AtShutdown() override;
  std::string LaunchWarning() const override { return warning_; }
  void set_launch_warning(std::string w) { warning_ = std::move(w); }
  /// @brief False when the program had initialised MPI before mpiray (it then stays up).
  bool we_initialized() const { return we_initialized_; }
  /// @brief Unless Finish is reached within `seconds`, call `on_expiry` (which should end the
  /// process): a rank that died before the bootstrap leaves the others waiting in MPI forever
  /// when the launcher does not end the job (mpirun --enable-recovery).
  void ArmWatchdog(int seconds, std::function<void()> on_expiry);
  void DisarmWatchdog();

 private:
  int rank_ = 0;
  int size_ = 1;
  bool we_initialized_ = false;
  bool kept_ = false;
  std::string description_ = "MPI";
  std::string warning_;
  std::mutex watchdog_mu_;
  std::condition_variable watchdog_cv_;
  bool watchdog_done_ = false;
  std::thread watchdog_;
};

}  // namespace mpiray::mpi

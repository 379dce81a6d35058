#include "mpi_bootstrap.h"

#include <mpi.h>

#include <chrono>

namespace mpiray::mpi {

Status MpiStatus(int code, const std::string& call) {
  if (code == MPI_SUCCESS) return Status::OK();
  char msg[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(code, msg, &len);
  return Status(StatusCode::kMpiError, call + " failed: " + std::string(msg, static_cast<size_t>(len)));
}

Status MpiBootstrap::Init() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    MPIRAY_RETURN_IF_ERROR(MpiStatus(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided),
                                     "MPI_Init_thread"));
    we_initialized_ = true;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPIRAY_RETURN_IF_ERROR(MpiStatus(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank"));
  MPIRAY_RETURN_IF_ERROR(MpiStatus(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size"));
  return Status::OK();
}

Result<std::string> MpiBootstrap::Broadcast(const std::string& value) {
  long long len = rank_ == 0 ? static_cast<long long>(value.size()) : 0;
  MPIRAY_RETURN_IF_ERROR(MpiStatus(MPI_Bcast(&len, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD), "MPI_Bcast"));
  std::string out = rank_ == 0 ? value : std::string(static_cast<size_t>(len), '\0');
  MPIRAY_RETURN_IF_ERROR(MpiStatus(
      MPI_Bcast(out.data(), static_cast<int>(len), MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast"));
  return out;
}

Result<std::vector<std::string>> MpiBootstrap::AllGather(const std::string& mine) {
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(static_cast<size_t>(size_));
  MPIRAY_RETURN_IF_ERROR(MpiStatus(
      MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather"));
  std::vector<int> displs(static_cast<size_t>(size_));
  int total = 0;
  for (int i = 0; i < size_; ++i) {
    displs[static_cast<size_t>(i)] = total;
    total += lens[static_cast<size_t>(i)];
  }
  std::string all(static_cast<size_t>(total), '\0');
  MPIRAY_RETURN_IF_ERROR(MpiStatus(MPI_Allgatherv(mine.data(), len, MPI_BYTE, all.data(), lens.data(),
                                                  displs.data(), MPI_BYTE, MPI_COMM_WORLD),
                                   "MPI_Allgatherv"));
  std::vector<std::string> out;
  for (int i = 0; i < size_; ++i) {
    out.push_back(all.substr(static_cast<size_t>(displs[static_cast<size_t>(i)]),
                             static_cast<size_t>(lens[static_cast<size_t>(i)])));
  }
  return out;
}

void MpiBootstrap::ArmWatchdog(int seconds, std::function<void()> on_expiry) {
  DisarmWatchdog();
  watchdog_done_ = false;
  watchdog_ = std::thread([this, seconds, cb = std::move(on_expiry)] {
    std::unique_lock<std::mutex> lk(watchdog_mu_);
    auto done = [this] { return watchdog_done_; };
    if (!watchdog_cv_.wait_for(lk, std::chrono::seconds(seconds), done)) cb();
  });
}

void MpiBootstrap::DisarmWatchdog() {
  if (!watchdog_.joinable()) return;
  {
    std::lock_guard<std::mutex> lk(watchdog_mu_);
    watchdog_done_ = true;
  }
  watchdog_cv_.notify_all();
  watchdog_.join();
}

Status MpiBootstrap::Finish(bool keep) {
  DisarmWatchdog();
  // Leaving MPI right away means a dead worker is an event the runtime handles, not a reason
  // for the launcher to tear the job down (see docs/architecture.md).
  if (keep || !we_initialized_) {
    kept_ = true;
    return Status::OK();
  }
  return MpiStatus(MPI_Finalize(), "MPI_Finalize");
}

void MpiBootstrap::AtShutdown() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (kept_ && we_initialized_ && !finalized) MPI_Finalize();
}

}  // namespace mpiray::mpi

#include "mpiray/mpi/launcher.h"

#include <cstdlib>

namespace mpiray::mpi {
namespace {

const std::string* Get(const std::map<std::string, std::string>& env, const char* key) {
  auto it = env.find(key);
  return (it == env.end() || it->second.empty()) ? nullptr : &it->second;
}

int Int(const std::string* v, int fallback) {
  if (!v) return fallback;
  char* end = nullptr;
  long n = std::strtol(v->c_str(), &end, 10);
  return (end && *end == '\0') ? static_cast<int>(n) : fallback;
}

}  // namespace

Result<LaunchInfo> DetectLauncher(const std::map<std::string, std::string>& env) {
  LaunchInfo info;
  if (Get(env, "MPIRAY_JOIN")) {
    info.launcher = Launcher::kJoin;
    info.rank = -1;
    info.size = -1;
    info.description = "join";
    return info;
  }
  bool in_step = Get(env, "SLURM_STEP_ID") != nullptr || Get(env, "SLURM_STEPID") != nullptr;
  if (in_step) info.slurm_ntasks = Int(Get(env, "SLURM_NTASKS"), 0);
  if (auto* size = Get(env, "OMPI_COMM_WORLD_SIZE")) {
    info.launcher = Launcher::kMpirun;
    info.size = Int(size, -1);
    info.rank = Int(Get(env, "OMPI_COMM_WORLD_RANK"), -1);
    info.description = "mpirun (OpenMPI)";
    // mpirun inside an allocation is fine; only a direct srun step is compared with SLURM_NTASKS.
    info.slurm_ntasks = 0;
    return info;
  }
  if (in_step) {
    bool pmix = Get(env, "PMIX_RANK") != nullptr;
    bool pmi2 = Get(env, "PMI_RANK") != nullptr || Get(env, "PMI_FD") != nullptr;
    if (pmix || pmi2) {
      info.launcher = Launcher::kSrun;
      info.rank = Int(Get(env, "SLURM_PROCID"), -1);
      info.size = info.slurm_ntasks;
      info.description = pmix ? "srun (PMIx)" : "srun (PMI2)";
      return info;
    }
    if (info.slurm_ntasks > 1) {
      return Status(StatusCode::kInvalidArgument,
                    "this is task " + std::to_string(Int(Get(env, "SLURM_PROCID"), 0)) + " of " +
                        std::to_string(info.slurm_ntasks) +
                        " in an srun step without PMIx, so MPI cannot connect the tasks (each "
                        "would become a separate head). Launch with `srun --mpi=pmix ...` or set "
                        "MpiDefault=pmix in slurm.conf");
    }
  }
  if (Get(env, "PMI_RANK") || Get(env, "PMIX_RANK") || Get(env, "MPI_LOCALRANKID")) {
    info.launcher = Launcher::kOtherMpi;
    info.rank = Int(Get(env, "PMI_RANK"), Int(Get(env, "PMIX_RANK"), -1));
    info.size = Int(Get(env, "PMI_SIZE"), -1);
    info.description = "MPI launcher";
    return info;
  }
  info.description = "none";
  return info;
}

Status CheckWorld(const LaunchInfo& info, int mpi_rank, int mpi_size) {
  if (info.slurm_ntasks > 1 && mpi_size == 1) {
    return Status(StatusCode::kInvalidArgument,
                  "MPI started a world of size 1 although this srun step has " +
                      std::to_string(info.slurm_ntasks) +
                      " tasks (a PMI mismatch: Slurm's PMI plugin and MPI's do not match). Use "
                      "`srun --mpi=pmix`; every task would otherwise become its own head");
  }
  if (info.size > 0 && info.size != mpi_size) {
    return Status(StatusCode::kInvalidArgument,
                  "the launcher announced " + std::to_string(info.size) +
                      " processes but MPI reports " + std::to_string(mpi_size));
  }
  if (info.rank >= 0 && info.rank != mpi_rank) {
    return Status(StatusCode::kInvalidArgument,
                  "the launcher announced rank " + std::to_string(info.rank) +
                      " but MPI reports rank " + std::to_string(mpi_rank));
  }
  return Status::OK();
}

}  // namespace mpiray::mpi

// Which launcher started this process, from its environment alone (a pure function, so tests
// need no real launcher).
#pragma once

#include <map>
#include <string>

#include "mpiray/core/status.h"

namespace mpiray::mpi {

enum class Launcher {
  kNone,    // plain ./prog: the head starts local workers
  kJoin,    // started by a head to join its session (MPIRAY_JOIN)
  kMpirun,  // OpenMPI's mpirun/mpiexec
  kSrun,    // Slurm's srun with PMIx (or PMI2)
  kOtherMpi // another MPI launcher (MPICH hydra, ...)
};

struct LaunchInfo {
  Launcher launcher = Launcher::kNone;
  int rank = 0;          // as announced by the launcher (-1 if unknown)
  int size = 1;          // as announced by the launcher (-1 if unknown)
  int slurm_ntasks = 0;  // SLURM_NTASKS inside an srun step, else 0
  std::string description;
};

/// @brief Classify the launcher from the environment. An srun step of several tasks without a
/// PMI that MPI can use is an error (every task would believe it is rank 0).
Result<LaunchInfo> DetectLauncher(const std::map<std::string, std::string>& env);

/// @brief Check the world MPI reports against what the launcher announced.
Status CheckWorld(const LaunchInfo& info, int mpi_rank, int mpi_size);

}  // namespace mpiray::mpi

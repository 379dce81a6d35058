// Whether the launcher lets a job outlive one of its processes (a worker that dies), decided
// from the environment and the launcher's configuration as pure functions, so tests need no
// real launcher. The head warns at start-up when the answer is no (docs/fault-tolerance.md).
#pragma once

#include <map>
#include <string>

#include "mpiray/mpi/launcher.h"

namespace mpiray::mpi {

/// @brief Launcher settings that decide what happens when a process dies but that a process
/// does not always see in its environment.
struct LauncherSettings {
  /// OpenMPI's MCA parameter files (`name = value`; the environment's OMPI_MCA_* win).
  std::map<std::string, std::string> mca_params;
  /// slurm.conf, keys in lower case (`killonbadexit`, `waittime`).
  std::map<std::string, std::string> slurm_conf;
  /// MPI stays initialised after the bootstrap (InitOptions::keep_mpi, or the program called
  /// MPI_Init itself).
  bool mpi_kept = false;
};

/// @brief The verdict: can this launch survive a worker death?
struct WorkerDeathCheck {
  bool survivable = true;
  /// One line for the driver's console when not survivable: the cause and the launch line
  /// that avoids it.
  std::string warning;
};

/// @brief Decide whether a worker death would end the whole job under this launch:
/// OpenMPI's mpirun without --enable-recovery (ranks see OMPI_MCA_orte_enable_recovery=1 with
/// it), srun with --kill-on-bad-exit (SLURM_KILL_BAD_EXIT, KillOnBadExit) or a wait limit
/// (SLURM_WAIT, WaitTime), or MPI kept alive after the bootstrap.
/// @param info what DetectLauncher found
/// @param env the process environment
/// @param settings what ReadLauncherSettings found in the launchers' configuration files
WorkerDeathCheck CheckWorkerDeathSurvivable(const LaunchInfo& info,
                                            const std::map<std::string, std::string>& env,
                                            const LauncherSettings& settings);

/// @brief How long a rank waits for every other rank to reach the bootstrap before it gives up,
/// in seconds (MPIRAY_BOOTSTRAP_TIMEOUT, default 120; 0: forever). Only launches that survive a
/// process death need it: there nothing else ends a job whose rank died before the bootstrap.
int BootstrapTimeoutSeconds(const std::map<std::string, std::string>& env);

/// @brief Parse an OpenMPI MCA parameter file (`name = value` lines, `#` comments).
std::map<std::string, std::string> ParseMcaParamFile(const std::string& text);

/// @brief Parse the global `Key=Value` settings of a slurm.conf (keys lower-cased; comments and
/// node/partition lines are skipped).
std::map<std::string, std::string> ParseSlurmConf(const std::string& text);

/// @brief Read the settings of the launcher in `info` from their usual files: the user's and
/// the system's openmpi-mca-params.conf for mpirun, $SLURM_CONF or /etc/slurm/slurm.conf for
/// srun. Missing or unreadable files are skipped.
LauncherSettings ReadLauncherSettings(const LaunchInfo& info,
                                      const std::map<std::string, std::string>& env);

}  // namespace mpiray::mpi

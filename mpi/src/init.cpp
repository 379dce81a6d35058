#include "mpiray/mpi/init.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "mpi_bootstrap.h"
#include "mpiray/core/api.h"
#include "mpiray/core/bootstrap.h"
#include "mpiray/mpi/launcher.h"
#include "mpiray/mpi/survival.h"
#include "mpiray/slurm/autoscaler.h"

extern char** environ;

namespace mpiray {

static void StartWithMpi(const InitOptions& options, const mpi::LaunchInfo& info,
                         const std::map<std::string, std::string>& env);

// Under a launch that survives process deaths (mpirun --enable-recovery, srun), a rank that died
// before the bootstrap leaves every other rank waiting inside MPI and the launcher never ends
// the job: give up with a clear message. Rank 0 records the status for a wrapper that returns
// the driver's (see core/src/init.cpp).
[[noreturn]] static void BootstrapTimedOut(int rank, int seconds) {
  if (rank == 0) {
    fprintf(stderr,
            "mpiray: start-up did not complete within %d s: some rank never reached "
            "mpiray::Init (it may have died before it), and this launcher does not end the job "
            "then; giving up (MPIRAY_BOOTSTRAP_TIMEOUT sets the limit)\n",
            seconds);
    const char* path = getenv("MPIRAY_EXIT_STATUS_FILE");
    if (path && *path) {
      int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd >= 0) {
        (void)!write(fd, "1\n", 2);
        close(fd);
      }
    }
  }
  fflush(nullptr);
  _exit(1);
}

void Init(const InitOptions& options) {
  if (IsInitialized()) {
    if (options.ignore_reinit_error) return;
    throw Error(StatusCode::kAlreadyExists,
                "mpiray::Init called twice in this process (pass ignore_reinit_error to allow it)");
  }
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  mpi::LaunchInfo info = ValueOrThrow(mpi::DetectLauncher(env));
  if (info.launcher == mpi::Launcher::kNone || info.launcher == mpi::Launcher::kJoin) {
    detail::InitStandalone(options);
  } else {
    StartWithMpi(options, info, env);
  }
  // Elastic allocation (the driver only; workers never return from the calls above).
  std::string autoscale = options.autoscale;
  if (autoscale.empty() && env.count("MPIRAY_AUTOSCALE")) autoscale = env["MPIRAY_AUTOSCALE"];
  if (!autoscale.empty()) {
    Status st = slurm::StartDriverAutoscaler(autoscale, options.worker_command);
    if (!st.ok()) {
      Shutdown();
      ThrowIfError(st);
    }
  }
}

static void StartWithMpi(const InitOptions& options, const mpi::LaunchInfo& info,
                         const std::map<std::string, std::string>& env) {
  // Signals must be blocked before MPI starts its own threads.
  detail::BlockTerminationSignalsForInit();
  static std::unique_ptr<mpi::MpiBootstrap> boot;  // kept for FinalizeKept at shutdown
  boot = std::make_unique<mpi::MpiBootstrap>();
  boot->set_description(info.description);
  mpi::LauncherSettings settings = mpi::ReadLauncherSettings(info, env);
  int timeout = mpi::BootstrapTimeoutSeconds(env);
  if ((info.launcher == mpi::Launcher::kMpirun || info.launcher == mpi::Launcher::kSrun) &&
      timeout > 0 && mpi::CheckWorkerDeathSurvivable(info, env, settings).survivable) {
    boot->ArmWatchdog(timeout, [rank = info.rank, timeout] { BootstrapTimedOut(rank, timeout); });
  }
  try {
    ThrowIfError(boot->Init());
    ThrowIfError(mpi::CheckWorld(info, boot->rank(), boot->size()));
    if (boot->rank() == 0) {
      // Warn (on the head, once the runtime logs) when a worker death would end the job.
      settings.mpi_kept = options.keep_mpi || !boot->we_initialized();
      boot->set_launch_warning(mpi::CheckWorkerDeathSurvivable(info, env, settings).warning);
    }
    detail::InitWithBootstrap(options, *boot);
  } catch (...) {
    boot->DisarmWatchdog();
    throw;
  }
}

}  // namespace mpiray

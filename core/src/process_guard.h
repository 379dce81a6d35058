// ProcessGuard: what ties the process's life to the runtime's — termination signals handled on
// a thread of their own, the head's reaper process (removes the session's files if the head
// dies without cleaning up), the exit-status file for launchers that lose the driver's status,
// the checkpoint callbacks run on the walltime signal, and the driver's shutdown hooks. One
// lives in the process's runtime handle (init.cpp); nothing here is a file-level global.
#pragma once

#include <signal.h>

#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "session.h"

namespace mpiray {

class ProcessGuard {
 public:
  ProcessGuard() = default;
  ProcessGuard(const ProcessGuard&) = delete;
  ProcessGuard& operator=(const ProcessGuard&) = delete;

  // ---- signals ---------------------------------------------------------------------------
  /// @brief Block SIGINT/SIGTERM/SIGHUP and the checkpoint signal in this thread (threads
  /// started later inherit it); the first call saves the mask RestoreSignals puts back.
  void BlockSignals();
  void RestoreSignals();
  /// @brief Run `on_signal(sig)` on a thread of its own for each termination signal (SIGINT
  /// only `with_sigint`).
  void WatchSignals(std::function<void(int)> on_signal, bool with_sigint);
  void StopWatching();
  /// @brief While the job stops (Shutdown, a signal's stop): SIGINT, whichever thread it hits
  /// and whatever handler Python installed, reaches the watcher (a second Ctrl-C forces the
  /// stop); `false` puts the previous SIGINT handler back.
  void RouteSigintToWatcher(bool on);

  // ---- the head's exit status and reaper -------------------------------------------------
  /// @brief MPIRAY_EXIT_STATUS_FILE (when set): "running" now, the status exit() ends with.
  void StartStatusFile(const EnvMap& env);
  /// @brief Write `status` (its low byte) to the status file, if there is one.
  void RecordExitStatus(int status);
  /// @brief Fork the reaper of `session`: it waits for this process to end and removes the
  /// session's files unless told first that the end is clean. Returns the pipe's write end
  /// (Runtime::set_reaper_fd), or -1 when it could not start.
  static int StartReaper(const SessionInfo& session);

  // ---- callbacks -------------------------------------------------------------------------
  void AddCheckpointCallback(std::function<void()> callback);
  std::vector<std::function<void()>> CheckpointCallbacks();
  void AddShutdownHook(std::function<void()> hook);
  /// @brief Run (once) and forget the shutdown hooks; their exceptions are swallowed.
  void RunShutdownHooks();

 private:
  void WriteStatus(const char* text);

  // signals
  sigset_t saved_mask_{};
  bool mask_saved_ = false;
  int signal_fd_ = -1;
  int wake_fd_ = -1;
  int sigint_pipe_[2] = {-1, -1};  // SIGINT while stopping: the handler writes, the watcher reads
  struct sigaction saved_sigint_ {};
  bool sigint_routed_ = false;
  std::thread watcher_;
  // status file
  std::string status_path_;
  std::string status_tmp_;
  bool on_exit_registered_ = false;
  // callbacks
  std::mutex callbacks_mu_;
  std::vector<std::function<void()>> checkpoint_callbacks_;
  std::vector<std::function<void()>> shutdown_hooks_;
};

}  // namespace mpiray

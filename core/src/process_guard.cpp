#include "process_guard.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime.h"

namespace mpiray {

// ------------------------------------------------------------------ signals

void ProcessGuard::BlockSignals() {
  if (!mask_saved_) {
    pthread_sigmask(SIG_SETMASK, nullptr, &saved_mask_);
    mask_saved_ = true;
  }
  BlockTerminationSignals();
}

void ProcessGuard::RestoreSignals() {
  if (mask_saved_) {
    pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
    mask_saved_ = false;
  }
}

namespace {
// The write end of the SIGINT pipe of the one guard that routes SIGINT (a signal handler can
// only reach a global); -1 when none does.
std::atomic<int> g_sigint_write{-1};

void ForwardSigint(int) {
  int saved = errno;
  int fd = g_sigint_write.load();
  char c = 1;
  if (fd >= 0) (void)!write(fd, &c, 1);
  errno = saved;
}
}  // namespace

void ProcessGuard::WatchSignals(std::function<void(int)> on_signal, bool with_sigint) {
  if (sigint_pipe_[0] < 0 && pipe2(sigint_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) sigint_pipe_[0] = sigint_pipe_[1] = -1;
  sigset_t set;
  sigemptyset(&set);
  if (with_sigint) sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  if (int cs = CheckpointSignal(CurrentEnv())) sigaddset(&set, cs);
  signal_fd_ = signalfd(-1, &set, SFD_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC);
  watcher_ = std::thread([sfd = signal_fd_, efd = wake_fd_, ifd = sigint_pipe_[0], cb = std::move(on_signal)] {
    pollfd p[3] = {{sfd, POLLIN, 0}, {efd, POLLIN, 0}, {ifd, POLLIN, 0}};
    while (true) {
      if (poll(p, ifd >= 0 ? 3 : 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (p[1].revents) return;
      if (ifd >= 0 && p[2].revents) {
        char buf[16];
        if (read(ifd, buf, sizeof buf) > 0) cb(SIGINT);
      }
      signalfd_siginfo si{};
      if (p[0].revents && read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        cb(static_cast<int>(si.ssi_signo));
      }
    }
  });
}

void ProcessGuard::StopWatching() {
  if (watcher_.joinable()) {
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
    watcher_.join();
  }
  RouteSigintToWatcher(false);
  if (signal_fd_ >= 0) close(signal_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
  signal_fd_ = wake_fd_ = -1;
  for (int& fd : sigint_pipe_) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
}

void ProcessGuard::RouteSigintToWatcher(bool on) {
  if (on == sigint_routed_ || sigint_pipe_[1] < 0) return;
  if (on) {
    g_sigint_write.store(sigint_pipe_[1]);
    struct sigaction sa {};
    sa.sa_handler = ForwardSigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &saved_sigint_);
    // Blocked threads (every runtime thread) leave it pending for the signalfd, if it watches
    // SIGINT, or for the first thread that unblocks it; the driver's thread may have it
    // unblocked, and the handler above then catches it.
  } else {
    sigaction(SIGINT, &saved_sigint_, nullptr);
    g_sigint_write.store(-1);
  }
  sigint_routed_ = on;
}

// ------------------------------------------------------------------ exit status file

// The driver's exit status for launchers that lose it (mpirun --enable-recovery reports 0
// whatever rank 0 returns; srun reports the worst status of any task): when
// MPIRAY_EXIT_STATUS_FILE names a file, the head writes "running" there at start-up and its
// exit status when the process ends, for a wrapper (scripts/mpirun) to return.
void ProcessGuard::WriteStatus(const char* text) {
  if (status_path_.empty()) return;
  int fd = open(status_tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  (void)!write(fd, text, strlen(text));
  close(fd);
  rename(status_tmp_.c_str(), status_path_.c_str());
}

void ProcessGuard::RecordExitStatus(int status) {
  char text[16];
  snprintf(text, sizeof text, "%d\n", status & 0xff);
  WriteStatus(text);
}

void ProcessGuard::StartStatusFile(const EnvMap& env) {
  auto it = env.find("MPIRAY_EXIT_STATUS_FILE");
  if (it == env.end() || it->second.empty()) return;
  status_path_ = it->second;
  status_tmp_ = status_path_ + ".tmp";
  WriteStatus("running\n");
  if (!on_exit_registered_) {
    on_exit_registered_ = true;
    // exit()'s status; the guard lives as long as the process.
    on_exit([](int status, void* self) { static_cast<ProcessGuard*>(self)->RecordExitStatus(status); }, this);
  }
}

// ------------------------------------------------------------------ reaper

namespace {

// The reaper's own body (in the forked child): wait for the head to end, remove the files.
[[noreturn]] void RunReaper(int read_fd, pid_t head, const SessionInfo& session) {
  setsid();
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  // The driver's stderr stays open for the one line that reports its death.
  int err = fcntl(2, F_DUPFD_CLOEXEC, 3);
  int devnull = open("/dev/null", O_RDWR);
  dup2(devnull, 0);
  dup2(devnull, 1);
  dup2(devnull, 2);
  // Close everything else (launcher pipes must not be held open by us).
  if (DIR* d = opendir("/proc/self/fd")) {
    std::vector<int> close_list;
    while (dirent* e = readdir(d)) {
      int fd = atoi(e->d_name);
      if (fd > 2 && fd != read_fd && fd != err && fd != dirfd(d)) close_list.push_back(fd);
    }
    closedir(d);
    for (int fd : close_list) close(fd);
  }
  char c = 0;
  ssize_t n;
  do {
    n = read(read_fd, &c, 1);
  } while (n < 0 && errno == EINTR);
  if (!(n == 1 && c == kReaperClean) && err >= 0) {
    dprintf(err,
            "mpiray: the driver (pid %d) died without shutting down; its workers stop and "
            "the session's files are removed\n",
            static_cast<int>(head));
  }
  if (err >= 0) close(err);
  SessionInfo doomed = session;
  if (session.config.keep_session) doomed.dir.clear();  // logs stay; shared memory goes
  RemoveSessionFiles(doomed);
  _exit(0);
}

}  // namespace

int ProcessGuard::StartReaper(const SessionInfo& session) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  pid_t head = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) RunReaper(fds[0], head, session);
  close(fds[0]);
  return fds[1];
}

// ------------------------------------------------------------------ callbacks

void ProcessGuard::AddCheckpointCallback(std::function<void()> callback) {
  std::lock_guard<std::mutex> lk(callbacks_mu_);
  checkpoint_callbacks_.push_back(std::move(callback));
}

std::vector<std::function<void()>> ProcessGuard::CheckpointCallbacks() {
  std::lock_guard<std::mutex> lk(callbacks_mu_);
  return checkpoint_callbacks_;
}

void ProcessGuard::AddShutdownHook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lk(callbacks_mu_);
  shutdown_hooks_.push_back(std::move(hook));
}

void ProcessGuard::RunShutdownHooks() {
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard<std::mutex> lk(callbacks_mu_);
    hooks.swap(shutdown_hooks_);
  }
  for (auto& h : hooks) {
    try {
      h();
    } catch (...) {
    }
  }
}

}  // namespace mpiray

// The local worker processes of a standalone run (the head started them): the first ones,
// their replacements, processes started for one actor each (actor_processes=dedicated, Ray's
// process per actor), and the reaping of those that exited.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "log.h"
#include "mpiray/core/bootstrap.h"
#include "runtime.h"

namespace mpiray {

Status Runtime::SpawnOneWorker(const LocalSpawn& what) {
  std::vector<char*> argv;
  for (auto& s : worker_command_) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::string join = session_.dir;
  std::string index_text = std::to_string(what.index);
  std::string node_text = std::to_string(what.node);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return IoError(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the head
    if (getppid() != parent) _exit(1);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, nullptr);
    // A Ctrl-C at the terminal reaches the whole process group, local workers too: the head
    // coordinates the stop, so they ignore it from the start (Python then installs no handler).
    signal(SIGINT, SIG_IGN);
    // Nothing of the head's reaches the worker but stdin/out/err: UCX's listening sockets and
    // the driver's own files are not all close-on-exec, and a worker holding them would keep
    // the head's ports open after it exits.
    if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0) {
      for (int fd = 3; fd < 65536; ++fd) close(fd);
    }
    setenv("MPIRAY_JOIN", join.c_str(), 1);
    setenv("MPIRAY_WORKER_INDEX", index_text.c_str(), 1);
    if (what.dedicated) {  // joins node `node` (named `host`), for one actor
      setenv("MPIRAY_ACTOR_PROCESS", "1", 1);
      setenv("MPIRAY_ACTOR_NODE", node_text.c_str(), 1);
      setenv("SLURMD_NODENAME", what.host.c_str(), 1);
    }
    execv(argv[0], argv.data());
    fprintf(stderr, "mpiray: cannot start worker %s: %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  std::lock_guard<std::mutex> lk(children_mu_);
  children_.push_back(pid);
  if (what.dedicated) starting_actor_processes_[pid] = what.node;
  return Status::OK();
}

bool Runtime::IsLocalWorker(ProcId proc) {
  std::lock_guard<std::mutex> lk(children_mu_);
  return local_workers_.count(proc) > 0;
}

bool Runtime::ChildJoined(int pid) {
  std::lock_guard<std::mutex> lk(children_mu_);
  starting_actor_processes_.erase(pid);  // (asked when it joins)
  return std::find(children_.begin(), children_.end(), pid) != children_.end();
}

std::vector<std::pair<NodeId, std::string>> Runtime::ReapChildren() {
  std::vector<std::pair<NodeId, std::string>> failed;  // actor processes that never joined
  for (auto it = children_.begin(); it != children_.end();) {
    int st = 0;
    if (waitpid(*it, &st, WNOHANG) != *it) {
      ++it;
      continue;
    }
    if (auto s = starting_actor_processes_.find(*it); s != starting_actor_processes_.end()) {
      std::string how = WIFEXITED(st) ? "exited with status " + std::to_string(WEXITSTATUS(st))
                                      : "was killed by signal " + std::to_string(WTERMSIG(st));
      failed.emplace_back(s->second, "the worker process started for it (pid " +
                                         std::to_string(*it) + ") " + how + " before it joined; see " +
                                         session_.LogDir());
      starting_actor_processes_.erase(s);
    }
    it = children_.erase(it);
  }
  return failed;
}

void Runtime::ReplaceLocalWorker(ProcId proc) {
  int pid = 0;
  {
    std::lock_guard<std::mutex> lk(children_mu_);
    auto it = local_workers_.find(proc);
    if (it == local_workers_.end()) return;
    pid = it->second;
    local_workers_.erase(it);
  }
  if (shut_ || !session_.config.replace_workers) return;
  LocalSpawn what;
  what.index = ++spawned_;
  MPIRAY_LOG(warn, "starting local worker #{} to replace worker {} (pid {})", what.index, proc, pid);
  QueueSpawn(what);
}

bool Runtime::StartActorProcess(NodeId node, const std::string& host, const std::string& machine) {
  // Only where this head can start processes: its own machine, in a standalone run.
  if (shut_ || worker_command_.empty() || machine != self_.machine) return false;
  LocalSpawn what;
  what.index = ++spawned_;
  what.dedicated = true;
  what.node = node;
  what.host = host;
  MPIRAY_LOG(debug, "starting local worker #{} for an actor on node {}", what.index, node);
  QueueSpawn(what);
  return true;
}

void Runtime::QueueSpawn(const LocalSpawn& what) {
  std::lock_guard<std::mutex> lk(children_mu_);
  spawn_queue_.push_back(what);
  StartSpawner();
  spawn_cv_.notify_all();
}

void Runtime::StartSpawner() {
  // Not on the progress thread (fork copies the process: keep that off the hot path), and not
  // on a short-lived thread either: PR_SET_PDEATHSIG fires when the forking *thread* exits.
  // It also reaps the children that exited (a process started for one actor exits with it,
  // and its pid must go).
  if (spawner_.joinable()) return;
  spawner_ = std::thread([this] {
    std::unique_lock<std::mutex> lk(children_mu_);
    while (true) {
      spawn_cv_.wait_for(lk, std::chrono::milliseconds(200),
                         [&] { return spawner_stop_ || !spawn_queue_.empty(); });
      if (spawner_stop_) return;
      auto failed = ReapChildren();
      if (!failed.empty() && !shut_) {
        lk.unlock();  // (the head's lock is never taken while holding ours)
        for (const auto& [node, why] : failed) head_->ActorProcessFailed(node, why);
        lk.lock();
      }
      if (spawner_stop_) return;
      if (spawn_queue_.empty()) continue;
      LocalSpawn next = spawn_queue_.front();
      spawn_queue_.pop_front();
      lk.unlock();
      Status s = shut_ ? Status::OK() : SpawnOneWorker(next);
      if (!s.ok()) {
        MPIRAY_LOG(error, "could not start a local worker: {}", s.message());
        if (!next.dedicated) head_->ExpectWorkers(-1);
      }
      lk.lock();
    }
  });
}

Status Runtime::SpawnLocalWorkers(int n, const std::vector<std::string>& command, int timeout_ms) {
  worker_command_ = command.empty() ? detail::DefaultWorkerCommand() : command;
  if (worker_command_.empty()) return Internal("cannot read /proc/self/cmdline");
  for (int i = 0; i < n; ++i) {
    LocalSpawn what;
    what.index = ++spawned_;
    MPIRAY_RETURN_IF_ERROR(SpawnOneWorker(what));
  }
  {
    std::lock_guard<std::mutex> lk(children_mu_);
    StartSpawner();
  }
  std::unique_lock<std::mutex> lk(join_mu_);
  bool ok = join_cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] {
    return head_->Workers().size() >= static_cast<size_t>(n);
  });
  if (!ok) {
    size_t joined = head_->Workers().size();
    return Unavailable("only " + std::to_string(joined) + " of " + std::to_string(n) +
                       " local workers joined within " + std::to_string(timeout_ms) +
                       " ms; see the logs in " + session_.LogDir());
  }
  return Status::OK();
}

}  // namespace mpiray

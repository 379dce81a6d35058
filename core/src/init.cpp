// Start-up and shutdown of the process's runtime, and the one global handle the API uses.
#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <poll.h>

#include <dirent.h>

#include <cstring>
#include <iostream>
#include <mutex>
#include <exception>
#include <thread>

#include "log.h"
#include "mpiray/core/api.h"
#include "mpiray/core/bootstrap.h"
#include "mpiray/core/detail/language.h"
#include "runtime.h"

namespace mpiray {
namespace {

std::mutex g_mu;
std::unique_ptr<Runtime> g_runtime;
std::atomic<ClientImpl*> g_client{nullptr};
std::atomic<detail::CoreClient*> g_test_client{nullptr};
std::atomic<uint32_t> g_epoch{0};

// Handles SIGINT/SIGTERM/SIGHUP and the checkpoint signal on its own thread (they are blocked
// everywhere else).
class SignalWatcher {
 public:
  void Start(std::function<void(int)> on_signal, bool with_sigint) {
    sigset_t set;
    sigemptyset(&set);
    if (with_sigint) sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    if (int cs = CheckpointSignal(CurrentEnv())) sigaddset(&set, cs);
    sfd_ = signalfd(-1, &set, SFD_CLOEXEC);
    efd_ = eventfd(0, EFD_CLOEXEC);
    thread_ = std::thread([this, cb = std::move(on_signal)] {
      pollfd p[2] = {{sfd_, POLLIN, 0}, {efd_, POLLIN, 0}};
      while (true) {
        if (poll(p, 2, -1) < 0) {
          if (errno == EINTR) continue;
          return;
        }
        if (p[1].revents) return;
        signalfd_siginfo si{};
        if (read(sfd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
          cb(static_cast<int>(si.ssi_signo));
        }
      }
    });
  }
  void Stop() {
    if (thread_.joinable()) {
      uint64_t one = 1;
      (void)!write(efd_, &one, sizeof one);
      thread_.join();
    }
    if (sfd_ >= 0) close(sfd_);
    if (efd_ >= 0) close(efd_);
    sfd_ = efd_ = -1;
  }

 private:
  int sfd_ = -1;
  int efd_ = -1;
  std::thread thread_;
};

SignalWatcher g_signals;
sigset_t g_saved_mask;
bool g_mask_saved = false;

void SaveMaskAndBlock() {
  if (!g_mask_saved) {
    pthread_sigmask(SIG_SETMASK, nullptr, &g_saved_mask);
    g_mask_saved = true;
  }
  BlockTerminationSignals();
}

void RestoreMask() {
  if (g_mask_saved) {
    pthread_sigmask(SIG_SETMASK, &g_saved_mask, nullptr);
    g_mask_saved = false;
  }
}

// A small process that outlives the head only to remove the session's files if the head dies
// without cleaning up (SIGKILL, crash). It learns of the head's death when a pipe closes; a
// head that ends normally writes kReaperClean first, so only a death is reported.
int StartReaper(const SessionInfo& session) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  pid_t head = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
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
        if (fd > 2 && fd != fds[0] && fd != err && fd != dirfd(d)) close_list.push_back(fd);
      }
      closedir(d);
      for (int fd : close_list) close(fd);
    }
    char c = 0;
    ssize_t n;
    do {
      n = read(fds[0], &c, 1);
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
  close(fds[0]);
  return fds[1];
}

// The driver's exit status for launchers that lose it (mpirun --enable-recovery reports 0
// whatever rank 0 returns; srun reports the worst status of any task): when
// MPIRAY_EXIT_STATUS_FILE names a file, the head writes "running" there at start-up and its
// exit status when the process ends, for a wrapper (scripts/mpirun) to return.
std::string g_status_path;
std::string g_status_tmp;

void WriteStatusFile(const char* text) {
  if (g_status_path.empty()) return;
  int fd = open(g_status_tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  (void)!write(fd, text, strlen(text));
  close(fd);
  rename(g_status_tmp.c_str(), g_status_path.c_str());
}

void RecordExitStatus(int status) {
  char text[16];
  snprintf(text, sizeof text, "%d\n", status & 0xff);
  WriteStatusFile(text);
}

void StartStatusFile() {
  const char* path = getenv("MPIRAY_EXIT_STATUS_FILE");
  if (!path || !*path) return;
  g_status_path = path;
  g_status_tmp = g_status_path + ".tmp";
  WriteStatusFile("running\n");
  static bool registered = false;
  if (!registered) {
    registered = true;
    on_exit([](int status, void*) { RecordExitStatus(status); }, nullptr);  // exit()'s status
  }
}

void AtExitShutdown() { Shutdown(); }

// An uncaught exception in the driver: stop the cluster and remove the session, then abort.
void OnTerminate() {
  if (auto e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      fprintf(stderr, "mpiray: uncaught exception in the driver: %s\n", ex.what());
    } catch (...) {
      fprintf(stderr, "mpiray: uncaught exception in the driver\n");
    }
  }
  RecordExitStatus(128 + SIGABRT);
  if (g_runtime) g_runtime->EmergencyExit(SIGABRT);
  abort();
}

std::mutex g_checkpoint_mu;
std::vector<std::function<void()>> g_checkpoint_callbacks;
std::vector<std::function<void()>> g_shutdown_hooks;

void RunShutdownHooks() {
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard<std::mutex> lk(g_checkpoint_mu);
    hooks.swap(g_shutdown_hooks);
  }
  for (auto& h : hooks) {
    try {
      h();
    } catch (...) {
    }
  }
}

// The job is about to end (SIGTERM from Slurm at the time limit or on preemption, or the
// early-warning signal): run the checkpoint callbacks, then stop the cluster cleanly and exit.
[[noreturn]] void Preempted(int sig) {
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard<std::mutex> lk(g_checkpoint_mu);
    callbacks = g_checkpoint_callbacks;
  }
  fprintf(stderr, "mpiray: %s received: running %zu checkpoint callback(s), then stopping\n",
          strsignal(sig), callbacks.size());
  for (auto& cb : callbacks) {
    try {
      cb();
    } catch (const std::exception& e) {
      fprintf(stderr, "mpiray: a checkpoint callback failed: %s\n", e.what());
    } catch (...) {
      fprintf(stderr, "mpiray: a checkpoint callback failed\n");
    }
  }
  int code = sig == SIGTERM ? 128 + sig : 0;
  RunShutdownHooks();
  RecordExitStatus(code);
  if (g_runtime) g_runtime->Exit(code, /*graceful=*/true);
  fflush(nullptr);
  _exit(code);
}

void InstallRuntime(std::unique_ptr<Runtime> rt, bool handle_sigint = true) {
  bool head = rt->head() != nullptr;
  g_epoch.fetch_add(1);
  g_client.store(rt->client());
  g_runtime = std::move(rt);
  int checkpoint = CheckpointSignal(CurrentEnv());
  g_signals.Start([head, checkpoint](int sig) {
    if (head && (sig == SIGTERM || sig == checkpoint)) Preempted(sig);
    if (!head && sig == checkpoint) return;  // only the driver checkpoints
    if (head) RecordExitStatus(128 + sig);
    if (g_runtime) g_runtime->EmergencyExit(sig);
    _exit(128 + sig);
  }, handle_sigint || !head);  // a Python driver keeps SIGINT for KeyboardInterrupt
  if (head) {
    StartStatusFile();
    static bool registered = false;
    if (!registered) {
      registered = true;
      std::atexit(AtExitShutdown);  // a driver that returns without Shutdown() still cleans up
    }
    std::set_terminate(OnTerminate);
  }
}

[[noreturn]] void WorkerFatal(const std::string& what) {
  dprintf(OutputForwarder::OriginalStderr(), "mpiray worker (pid %d): %s\n", getpid(), what.c_str());
  fflush(nullptr);
  _exit(1);
}

proto::PeerInfo LocalPeer(const EnvMap& env, const UcxFabric& fabric) {
  proto::PeerInfo p;
  p.host = HostKey(env);
  p.pid = getpid();
  p.address = fabric.address();
  p.gpus = DetectGpus(env);
  p.machine = MachineId();
  p.memory = AvailableMemory();
  auto job = env.find("SLURM_JOB_ID");
  if (job != env.end()) p.job = job->second;
  return p;
}

template <class T>
std::string Pack(const T& v) {
  msgpack::sbuffer sb;
  msgpack::pack(sb, v);
  return std::string(sb.data(), sb.size());
}

template <class T>
T Unpack(const std::string& s) {
  msgpack::object_handle oh = msgpack::unpack(s.data(), s.size());
  return oh.get().as<T>();
}

struct BootstrapResult {
  SessionInfo session;
  std::vector<proto::PeerInfo> peers;
  std::string error;
  MSGPACK_DEFINE(session, peers, error);
};

[[noreturn]] void JoinAsWorker(const std::string& dir) {
  EnvMap env = CurrentEnv();
  std::string address;
  Result<SessionInfo> s = Status(StatusCode::kNotFound, "no session");
  auto a = env.find("MPIRAY_JOIN_ADDRESS");
  auto t = env.find("MPIRAY_JOIN_TOKEN");
  if (a != env.end() && t != env.end() && !a->second.empty() && !t->second.empty()) {
    // Worker jobs started by the autoscaler: the session directory may not be visible here.
    SessionInfo info;
    info.dir = dir;
    info.token = t->second;
    address = a->second;
    s = info;
  } else {
    s = ReadSessionForJoin(dir, &address);
  }
  if (!s.ok()) WorkerFatal(s.status().message());
  auto fabric = UcxFabric::Create(UcxFabricOptions{});
  if (!fabric.ok()) WorkerFatal(fabric.status().message());
  JoinRequest req;
  req.token = s->token;
  req.role = "worker";
  req.peer = LocalPeer(env, **fabric);
  auto reply = SendJoinRequest(address, req, 30000);
  if (!reply.ok()) WorkerFatal(reply.status().message());
  if (!reply->ok) WorkerFatal("the head refused to let this worker join: " + reply->error);
  RuntimeSetup setup;
  setup.role = Role::kWorker;
  setup.session = reply->session;
  setup.self = req.peer;
  setup.self.proc = reply->proc;
  setup.self.node = reply->node;
  setup.peers = reply->peers;
  setup.fabric = std::move(fabric).value();
  setup.launcher = "join";
  auto rt = Runtime::Create(std::move(setup));
  if (!rt.ok()) WorkerFatal(rt.status().message());
  Runtime* r = rt->get();
  InstallRuntime(std::move(rt).value());
  r->ServeAsWorker();
}

UcxFabricOptions FabricOptions(const RuntimeConfig& c) {
  UcxFabricOptions o;
  o.spin_us = c.spin_us;
  return o;
}

std::mutex g_lang_mu;
std::map<uint8_t, detail::LanguageRuntime*> g_langs;
std::mutex g_name_mu;
std::string g_output_name;

// After start-up, a driver that wants Ctrl-C as an exception (Python) gets SIGINT back on its
// own thread; every runtime thread keeps it blocked.
void AfterInit(const InitOptions& options) {
  if (options.handle_sigint) return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

}  // namespace

namespace detail {

void RegisterLanguage(uint8_t language, LanguageRuntime* rt) {
  std::lock_guard<std::mutex> lk(g_lang_mu);
  g_langs[language] = rt;
}

LanguageRuntime* FindLanguage(uint8_t language) {
  std::lock_guard<std::mutex> lk(g_lang_mu);
  auto it = g_langs.find(language);
  return it == g_langs.end() ? nullptr : it->second;
}

void SetOutputName(const std::string& name) {
  std::lock_guard<std::mutex> lk(g_name_mu);
  g_output_name = name;
}

std::string OutputName() {
  std::lock_guard<std::mutex> lk(g_name_mu);
  return g_output_name;
}

RuntimeContext CurrentContext() {
  if (!g_runtime) throw Error(StatusCode::kUnavailable, "mpiray is not initialised");
  RuntimeContext c;
  c.job_id = g_runtime->session().name;
  c.session_dir = g_runtime->session().dir;
  c.proc = g_runtime->self();
  c.node = g_runtime->node();
  c.driver = g_runtime->head() != nullptr;
  c.task = WorkerService::CurrentTask();
  c.actor = WorkerService::CurrentActor();
  c.ns = g_runtime->session().config.ns;
  c.gpu_ids = WorkerService::CurrentGpus();
  return c;
}

std::vector<int32_t> CurrentGpuIds() { return WorkerService::CurrentGpus(); }

void StreamEmit(const SerializedValue& value) {
  WorkerService* w = g_runtime ? g_runtime->worker() : nullptr;
  if (!w) throw Error(StatusCode::kInvalidArgument, "a streaming task's items are yielded on a worker");
  ThrowIfError(w->EmitStreamItem(value));
}

void BlockTerminationSignalsForInit() { SaveMaskAndBlock(); }

uint32_t ClientEpoch() noexcept { return g_epoch.load(); }

CoreClient* ClientOrNull() noexcept {
  CoreClient* c = g_client.load();
  return c ? c : g_test_client.load();
}

CoreClient* Client() {
  CoreClient* c = ClientOrNull();
  if (!c) throw Error(StatusCode::kUnavailable, "mpiray is not initialised: call mpiray::Init() first");
  return c;
}

void AddShutdownHook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lk(g_checkpoint_mu);
  g_shutdown_hooks.push_back(std::move(hook));
}

void SetClientForTesting(CoreClient* client) {
  g_client.store(static_cast<ClientImpl*>(nullptr));
  g_test_client.store(client);
}

bool IsJoinLaunch() {
  const char* j = getenv("MPIRAY_JOIN");
  return j && *j;
}

void InitStandalone(const InitOptions& options) {
  std::unique_lock<std::mutex> lk(g_mu);
  if (g_runtime) {
    if (options.ignore_reinit_error) return;
    throw Error(StatusCode::kAlreadyExists, "mpiray::Init called twice in this process");
  }
  SaveMaskAndBlock();
  if (IsJoinLaunch()) {
    lk.unlock();
    JoinAsWorker(getenv("MPIRAY_JOIN"));
  }
  EnvMap env = CurrentEnv();
  RuntimeConfig cfg = ValueOrThrow(ConfigFromEnv(env, options));
  int workers = cfg.num_workers >= 0 ? cfg.num_workers
                                     : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int procs = workers + 1;
  int nodes_on_host = cfg.ranks_per_node > 0 ? (procs + cfg.ranks_per_node - 1) / cfg.ranks_per_node : 1;
  if (cfg.store_capacity == 0) cfg.store_capacity = DefaultStoreCapacity("/dev/shm", nodes_on_host);
  SessionInfo session = ValueOrThrow(CreateSession(env, options, cfg));
  int reaper = StartReaper(session);
  auto fabric = UcxFabric::Create(FabricOptions(cfg));
  if (!fabric.ok()) {
    RemoveSessionFiles(session);
    ThrowIfError(fabric.status());
  }
  RuntimeSetup setup;
  setup.role = Role::kHead;
  setup.session = session;
  setup.self = LocalPeer(env, **fabric);
  setup.self.proc = kHeadProc;
  setup.self.node = 0;
  setup.fabric = std::move(fabric).value();
  setup.launcher = "none (local workers)";
  auto rt = Runtime::Create(std::move(setup));
  if (!rt.ok()) {
    RemoveSessionFiles(session);
    ThrowIfError(rt.status());
  }
  Runtime* r = rt->get();
  r->set_reaper_fd(reaper);
  InstallRuntime(std::move(rt).value(), options.handle_sigint);
  Status st = r->StartListener(env, cfg.ranks_per_node, {});
  if (st.ok() && workers > 0) st = r->SpawnLocalWorkers(workers, options.worker_command, options.join_timeout_ms);
  if (!st.ok()) {
    lk.unlock();
    Shutdown();
    ThrowIfError(st);
  }
  AfterInit(options);
}

void InitWithBootstrap(const InitOptions& options, Bootstrap& b) {
  std::unique_lock<std::mutex> lk(g_mu);
  if (g_runtime) {
    if (options.ignore_reinit_error) return;
    throw Error(StatusCode::kAlreadyExists, "mpiray::Init called twice in this process");
  }
  SaveMaskAndBlock();
  const int rank = b.rank();
  EnvMap env = CurrentEnv();
  auto cfg_or = ConfigFromEnv(env, options);
  // Every rank sees the same environment; each reports a bad setting itself.
  if (!cfg_or.ok()) {
    if (rank != 0) WorkerFatal(cfg_or.status().message());
    ThrowIfError(cfg_or.status());
  }
  RuntimeConfig cfg = *cfg_or;
  SessionInfo session;
  int reaper = -1;
  std::string local_error;
  if (rank == 0) {
    auto s = CreateSession(env, options, cfg);
    if (s.ok()) {
      session = *s;
      reaper = StartReaper(session);
    } else {
      local_error = s.status().message();
    }
  }
  auto fabric_or = UcxFabric::Create(FabricOptions(cfg));
  if (!fabric_or.ok() && local_error.empty()) local_error = fabric_or.status().message();
  proto::PeerInfo me;
  if (fabric_or.ok()) me = LocalPeer(env, **fabric_or);
  me.proc = static_cast<ProcId>(rank);
  auto gathered = b.AllGather(Pack(me));
  if (!gathered.ok()) {
    if (rank != 0) WorkerFatal(gathered.status().message());
    RemoveSessionFiles(session);
    ThrowIfError(gathered.status());
  }
  BootstrapResult result;
  if (rank == 0) {
    NodeAssigner assigner(cfg.ranks_per_node);
    for (const std::string& blob : *gathered) {
      auto p = Unpack<proto::PeerInfo>(blob);
      if (p.address.empty() && local_error.empty()) {
        local_error = "rank " + std::to_string(p.proc) + " could not start its UCX worker";
      }
      p.node = assigner.Assign(p.host);
      result.peers.push_back(std::move(p));
    }
    if (session.config.store_capacity == 0) {
      session.config.store_capacity =
          DefaultStoreCapacity("/dev/shm", assigner.NodesOnHost(result.peers[0].host));
    }
    result.session = session;
    result.error = local_error;
  }
  auto bcast = b.Broadcast(rank == 0 ? Pack(result) : std::string());
  if (!bcast.ok()) {
    if (rank != 0) WorkerFatal(bcast.status().message());
    RemoveSessionFiles(session);
    ThrowIfError(bcast.status());
  }
  result = Unpack<BootstrapResult>(*bcast);
  Status fin = b.Finish(cfg.keep_mpi);
  if (!result.error.empty() || !fin.ok()) {
    std::string why = !result.error.empty() ? result.error : fin.message();
    if (rank != 0) WorkerFatal("start-up failed: " + why);
    RemoveSessionFiles(result.session);
    throw Error(StatusCode::kUnavailable, "mpiray start-up failed: " + why);
  }
  RuntimeSetup setup;
  setup.role = rank == 0 ? Role::kHead : Role::kWorker;
  setup.session = result.session;
  setup.self = result.peers.at(static_cast<size_t>(rank));
  for (const auto& p : result.peers) {
    if (p.proc != static_cast<ProcId>(rank)) setup.peers.push_back(p);
  }
  setup.fabric = std::move(fabric_or).value();
  setup.launcher = b.Describe();
  auto rt = Runtime::Create(std::move(setup));
  if (!rt.ok()) {
    if (rank != 0) WorkerFatal(rt.status().message());
    RemoveSessionFiles(result.session);
    ThrowIfError(rt.status());
  }
  Runtime* r = rt->get();
  // Kept MPI is finalized at the end by every rank (a worker that exits without it makes
  // mpirun report an abnormal termination).
  r->set_finalizer([&b] { b.AtShutdown(); });
  InstallRuntime(std::move(rt).value(), options.handle_sigint);
  if (rank != 0) {
    lk.unlock();
    r->ServeAsWorker();
  }
  r->set_reaper_fd(reaper);
  if (std::string warning = b.LaunchWarning(); !warning.empty()) MPIRAY_LOG(warn, "{}", warning);
  ThrowIfError(r->StartListener(env, cfg.ranks_per_node, result.peers));
  AfterInit(options);
}

}  // namespace detail

bool IsInitialized() { return g_client.load() != nullptr; }

ClusterSnapshot GetClusterSnapshot() { return detail::Client()->Snapshot(); }

void AddCheckpointCallback(std::function<void()> callback) {
  std::lock_guard<std::mutex> lk(g_checkpoint_mu);
  g_checkpoint_callbacks.push_back(std::move(callback));
}

static std::map<std::string, double> SumResources(bool available) {
  std::map<std::string, double> out;
  for (const auto& n : GetClusterSnapshot().nodes) {
    for (const auto& [name, v] : available ? n.available : n.total) out[name] += v;
  }
  return out;
}

std::map<std::string, double> ClusterResources() { return SumResources(false); }
std::map<std::string, double> AvailableResources() { return SumResources(true); }

void Shutdown() {
  RunShutdownHooks();
  std::unique_ptr<Runtime> rt;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g_runtime) return;
    rt = std::move(g_runtime);
  }
  rt->Shutdown();
  g_client.store(nullptr);
  g_signals.Stop();
  rt.reset();
  RestoreMask();
}

}  // namespace mpiray

// Start-up and shutdown of the process's runtime, and the one global the API needs: the
// runtime handle (the runtime, the client the API calls, the process guard with signals,
// reaper and exit status, the language runtimes). Every launch takes one start-up sequence —
// config -> session -> fabric -> peers -> runtime — over a Bootstrap: MPI/srun's, or a
// bootstrap of size 1 without a launcher (the head then starts its own local workers); a
// process joining a running session gets the same from the head's answer instead.
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "log.h"
#include "mpiray/core/api.h"
#include "mpiray/core/bootstrap.h"
#include "mpiray/core/detail/language.h"
#include "process_guard.h"
#include "runtime.h"

namespace mpiray {
namespace {

/// @brief The process's runtime handle: created on first use, never destroyed (signal, exit
/// and terminate handlers use it until the process is gone).
struct RuntimeHandle {
  std::mutex mu;  // start-up and shutdown
  std::unique_ptr<Runtime> runtime;
  std::atomic<ClientImpl*> client{nullptr};
  std::atomic<detail::CoreClient*> test_client{nullptr};
  std::atomic<uint32_t> epoch{0};
  std::atomic<bool> stopping{false};  // the head is stopping: a further SIGINT forces it
  std::atomic<Runtime*> live{nullptr};  // the runtime, also while Shutdown() stops it
  ProcessGuard guard;
  // Language runtimes registered by bindings (Python), and the name worker output shows.
  std::mutex lang_mu;
  std::map<uint8_t, detail::LanguageRuntime*> languages;
  std::string output_name;
};

RuntimeHandle& Handle() {
  static RuntimeHandle* handle = new RuntimeHandle();
  return *handle;
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
  Handle().guard.RecordExitStatus(128 + SIGABRT);
  if (Handle().runtime) Handle().runtime->EmergencyExit(SIGABRT);
  abort();
}

// ------------------------------------------------------------------ signals
//
// Termination signals reach the watcher thread of the process guard. On a worker, SIGINT is
// ignored (launchers and terminals send it to every process; the head coordinates the stop),
// the checkpoint signal too, and SIGTERM/SIGHUP end the worker at once. On the head, the first
// signal starts a stop on a thread of its own (so the watcher goes on listening); any further
// SIGINT or SIGTERM while a stop runs forces it: workers killed, files removed, exit now.

/// @brief The head is stopping (Shutdown, or a signal's stop): SIGINT now forces the stop.
void BeginStop() {
  RuntimeHandle& h = Handle();
  h.stopping.store(true);
  h.guard.RouteSigintToWatcher(true);
}

// The job is about to end (SIGTERM from Slurm at the time limit or on preemption, or the
// early-warning signal): run the checkpoint callbacks, then stop the cluster cleanly and exit.
[[noreturn]] void Preempted(int sig) {
  RuntimeHandle& h = Handle();
  std::vector<std::function<void()>> callbacks = h.guard.CheckpointCallbacks();
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
  h.guard.RunShutdownHooks();
  h.guard.RecordExitStatus(code);
  if (h.runtime) h.runtime->Exit(code, /*graceful=*/true);
  fflush(nullptr);
  _exit(code);
}

// Ctrl-C in a C++ driver (the documented default): stop the cluster as Shutdown() does, then
// exit 130. The driver's own threads stay where they are (a blocked Get never returns).
[[noreturn]] void Interrupted() {
  RuntimeHandle& h = Handle();
  fprintf(stderr, "mpiray: Interrupt received: stopping the cluster (Ctrl-C again to force)\n");
  h.guard.RunShutdownHooks();
  h.guard.RecordExitStatus(128 + SIGINT);
  if (h.runtime) h.runtime->Exit(128 + SIGINT, /*graceful=*/true);
  fflush(nullptr);
  _exit(128 + SIGINT);
}

[[noreturn]] void ForceStop(int sig) {
  RuntimeHandle& h = Handle();
  fprintf(stderr, "mpiray: %s received while stopping: forcing the stop\n", strsignal(sig));
  h.guard.RecordExitStatus(128 + sig);
  if (Runtime* rt = h.live.load()) rt->ForceExit(128 + sig);
  fflush(nullptr);
  _exit(128 + sig);
}

void OnSignal(bool head, int checkpoint, int sig) {
  RuntimeHandle& h = Handle();
  if (!head) {
    if (sig == checkpoint) return;  // only the driver checkpoints
    if (sig == SIGINT) {
      MPIRAY_LOG(info, "SIGINT ignored: the driver stops the job (Ctrl-C reaches it too)");
      return;
    }
    if (h.runtime) h.runtime->EmergencyExit(sig);
    _exit(128 + sig);
  }
  if (h.stopping.load()) {
    // Only Ctrl-C forces: srun and slurmstepd may both deliver one time-limit SIGTERM.
    if (sig == SIGINT) ForceStop(sig);
    return;  // (a stop is under way already)
  }
  if (sig == SIGTERM || sig == checkpoint || sig == SIGINT) {
    BeginStop();
    std::thread([sig] {
      if (sig == SIGINT) Interrupted();
      Preempted(sig);
    }).detach();
    return;
  }
  h.guard.RecordExitStatus(128 + sig);  // SIGHUP: the terminal is gone
  if (h.runtime) h.runtime->EmergencyExit(sig);
  _exit(128 + sig);
}

void InstallRuntime(std::unique_ptr<Runtime> rt, bool handle_sigint = true) {
  RuntimeHandle& h = Handle();
  bool head = rt->head() != nullptr;
  h.epoch.fetch_add(1);
  h.client.store(rt->client());
  h.live.store(rt.get());
  h.runtime = std::move(rt);
  int checkpoint = CheckpointSignal(CurrentEnv());
  // A Python driver keeps SIGINT for KeyboardInterrupt.
  h.guard.WatchSignals([head, checkpoint](int sig) { OnSignal(head, checkpoint, sig); },
                       handle_sigint || !head);
  if (head) {
    h.guard.StartStatusFile(CurrentEnv());
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

/// @brief Fail start-up on `rank`: a worker reports and exits, the head throws (after removing
/// what it made of the session).
[[noreturn]] void StartupFailed(int rank, const Status& st, const SessionInfo* session = nullptr,
                                const std::string& prefix = "") {
  if (rank != 0) WorkerFatal(prefix + st.message());
  if (session) RemoveSessionFiles(*session);
  if (!prefix.empty()) throw Error(StatusCode::kUnavailable, "mpiray " + prefix + st.message());
  ThrowIfError(st);
  throw Error(StatusCode::kInternal, "start-up failed");  // (not reached)
}

proto::PeerInfo LocalPeer(const EnvMap& env, const UcxFabric& fabric, proto::Resources resources) {
  proto::PeerInfo p;
  p.resources = std::move(resources);
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

UcxFabricOptions FabricOptions(const RuntimeConfig& c) {
  UcxFabricOptions o;
  o.spin_us = c.spin_us;
  return o;
}

/// @brief The per-node object store capacity when none is configured: 30% of /dev/shm, shared
/// by the (virtual) nodes the head's host will have with `procs_on_host` processes on it. The
/// one place this default is computed.
uint64_t StoreCapacity(const RuntimeConfig& cfg, int procs_on_host) {
  if (cfg.store_capacity != 0) return cfg.store_capacity;
  int nodes = cfg.ranks_per_node > 0 ? (procs_on_host + cfg.ranks_per_node - 1) / cfg.ranks_per_node : 1;
  return DefaultStoreCapacity("/dev/shm", nodes);
}

/// @brief Local workers the head starts without a launcher (MPIRAY_NUM_WORKERS, else one per core).
int LocalWorkerCount(const RuntimeConfig& cfg) {
  return cfg.num_workers >= 0 ? cfg.num_workers
                              : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// ------------------------------------------------------------------ the start-up sequence

/// @brief What rank 0 decides and every rank receives: the session and every process.
struct BootstrapResult {
  SessionInfo session;
  std::vector<proto::PeerInfo> peers;
  std::string error;
  MSGPACK_DEFINE(session, peers, error);
};

/// @brief Rank 0's decision from every rank's peer info: node ids, the store capacity, the
/// first error.
BootstrapResult Decide(const std::vector<std::string>& gathered, SessionInfo session,
                       int local_workers, std::string error) {
  BootstrapResult result;
  NodeAssigner assigner(session.config.ranks_per_node);
  for (const std::string& blob : gathered) {
    auto p = Unpack<proto::PeerInfo>(blob);
    if (p.address.empty() && error.empty()) {
      error = "rank " + std::to_string(p.proc) + " could not start its UCX worker";
    }
    p.node = assigner.Assign(p.host);
    result.peers.push_back(std::move(p));
  }
  int on_head_host = 0;
  for (const auto& p : result.peers) on_head_host += p.host == result.peers[0].host ? 1 : 0;
  session.config.store_capacity = StoreCapacity(session.config, on_head_host + local_workers);
  result.session = std::move(session);
  result.error = std::move(error);
  return result;
}

/// @brief Exchange peer infos over the bootstrap (one AllGather, one Broadcast) and end it.
BootstrapResult ExchangePeers(Bootstrap& b, const proto::PeerInfo& me, const SessionInfo& session,
                              int local_workers, const std::string& local_error, bool keep_mpi) {
  const int rank = b.rank();
  auto gathered = b.AllGather(Pack(me));
  if (!gathered.ok()) StartupFailed(rank, gathered.status(), &session);
  BootstrapResult result;
  if (rank == 0) result = Decide(*gathered, session, local_workers, local_error);
  auto bcast = b.Broadcast(rank == 0 ? Pack(result) : std::string());
  if (!bcast.ok()) StartupFailed(rank, bcast.status(), &session);
  result = Unpack<BootstrapResult>(*bcast);
  Status fin = b.Finish(keep_mpi);
  if (!result.error.empty() || !fin.ok()) {
    Status why(StatusCode::kUnavailable, !result.error.empty() ? result.error : fin.message());
    StartupFailed(rank, why, &result.session, "start-up failed: ");
  }
  return result;
}

/// @brief Rank 0 after its runtime is installed: the listener, local workers, the warning.
void StartHead(Runtime& r, const InitOptions& options, Bootstrap& b, const EnvMap& env,
               const BootstrapResult& result, int local_workers, int reaper,
               std::unique_lock<std::mutex>& lk) {
  r.set_reaper_fd(reaper);
  if (std::string warning = b.LaunchWarning(); !warning.empty()) MPIRAY_LOG(warn, "{}", warning);
  Status st = r.StartListener(env, result.session.config.ranks_per_node, result.peers);
  if (st.ok() && local_workers > 0) {
    st = r.SpawnLocalWorkers(local_workers, options.worker_command, options.join_timeout_ms);
  }
  if (!st.ok()) {
    lk.unlock();
    Shutdown();
    ThrowIfError(st);
  }
  // A driver that wants Ctrl-C as an exception (Python) gets SIGINT back on its own thread;
  // every runtime thread keeps it blocked.
  if (!options.handle_sigint) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  }
}

/// @brief The start-up sequence over `b`; `local_workers` > 0: the head starts that many.
void Start(const InitOptions& options, Bootstrap& b, int local_workers, std::unique_lock<std::mutex>& lk) {
  const int rank = b.rank();
  EnvMap env = CurrentEnv();
  // Every rank sees the same environment; each reports a bad setting itself.
  auto cfg = ConfigFromEnv(env, options);
  if (!cfg.ok()) StartupFailed(rank, cfg.status());
  auto node_resources = NodeResourcesFromEnv(env);
  if (!node_resources.ok()) StartupFailed(rank, node_resources.status());
  // A standalone run that nothing on another host joins (no autoscaler, no listen address
  // given) talks over loopback only: the join listener and the fabric (UCX_NET_DEVICES=lo);
  // its local workers do the same when they see the loopback address.
  const bool loopback_only = local_workers < 0 && options.autoscale.empty() &&
                             env["MPIRAY_AUTOSCALE"].empty() && env["MPIRAY_LISTEN_ADDR"].empty();
  if (loopback_only) env["MPIRAY_LISTEN_ADDR"] = "127.0.0.1";
  if (local_workers < 0) local_workers = LocalWorkerCount(*cfg);
  SessionInfo session;
  int reaper = -1;
  std::string local_error;
  if (rank == 0) {
    auto s = CreateSession(env, options, *cfg);
    if (s.ok()) {
      session = *s;
      reaper = ProcessGuard::StartReaper(session);
    } else {
      local_error = s.status().message();
    }
  }
  UcxFabricOptions fabric_options = FabricOptions(*cfg);
  if (loopback_only) fabric_options.net_devices = "lo";
  auto fabric = UcxFabric::Create(fabric_options);
  if (!fabric.ok() && local_error.empty()) local_error = fabric.status().message();
  proto::PeerInfo me;
  if (fabric.ok()) me = LocalPeer(env, **fabric, *node_resources);
  me.proc = static_cast<ProcId>(rank);
  BootstrapResult result = ExchangePeers(b, me, session, local_workers, local_error, cfg->keep_mpi);
  RuntimeSetup setup;
  setup.role = rank == 0 ? Role::kHead : Role::kWorker;
  setup.session = result.session;
  setup.self = result.peers.at(static_cast<size_t>(rank));
  for (const auto& p : result.peers) {
    if (p.proc != static_cast<ProcId>(rank)) setup.peers.push_back(p);
  }
  setup.fabric = std::move(fabric).value();
  setup.launcher = b.Describe();
  auto rt = Runtime::Create(std::move(setup));
  if (!rt.ok()) StartupFailed(rank, rt.status(), &result.session);
  Runtime* r = rt->get();
  // Kept MPI is finalized at the end by every rank (a worker that exits without it makes
  // mpirun report an abnormal termination).
  if (local_workers == 0) r->set_finalizer([&b] { b.AtShutdown(); });
  InstallRuntime(std::move(rt).value(), options.handle_sigint);
  if (rank != 0) {
    lk.unlock();
    r->ServeAsWorker();
  }
  StartHead(*r, options, b, env, result, local_workers, reaper, lk);
}

/// @brief A launch without a launcher: one process, rank 0 of 1.
class SingletonBootstrap final : public Bootstrap {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  Result<std::string> Broadcast(const std::string& value) override { return value; }
  Result<std::vector<std::string>> AllGather(const std::string& mine) override {
    return std::vector<std::string>{mine};
  }
  Status Finish(bool) override { return Status::OK(); }
  std::string Describe() const override { return "none (local workers)"; }
};

/// @brief Where a joining worker finds its session: the autoscaler's worker jobs get the head's
/// address and token in the environment (the session directory may not be visible there);
/// local workers read the session directory.
Result<SessionInfo> JoinTarget(const EnvMap& env, const std::string& dir, std::string* address) {
  auto a = env.find("MPIRAY_JOIN_ADDRESS");
  auto t = env.find("MPIRAY_JOIN_TOKEN");
  if (a != env.end() && t != env.end() && !a->second.empty() && !t->second.empty()) {
    SessionInfo info;
    info.dir = dir;
    info.token = t->second;
    *address = a->second;
    return info;
  }
  return ReadSessionForJoin(dir, address);
}

/// @brief Join a running session as a worker: the head's answer gives the session and peers.
[[noreturn]] void JoinAsWorker(const std::string& dir) {
  EnvMap env = CurrentEnv();
  std::string address;
  auto s = JoinTarget(env, dir, &address);
  if (!s.ok()) WorkerFatal(s.status().message());
  UcxFabricOptions fabric_options;
  if (address.rfind("127.", 0) == 0) fabric_options.net_devices = "lo";  // a loopback-only head
  auto fabric = UcxFabric::Create(fabric_options);
  if (!fabric.ok()) WorkerFatal(fabric.status().message());
  auto node_resources = NodeResourcesFromEnv(env);
  if (!node_resources.ok()) WorkerFatal(node_resources.status().message());
  JoinRequest req;
  req.token = s->token;
  req.role = "worker";
  req.peer = LocalPeer(env, **fabric, *node_resources);
  // Started by the head for one actor (actor_processes=dedicated): see Runtime::StartActorProcess.
  auto dedicated = env.find("MPIRAY_ACTOR_PROCESS");
  req.peer.dedicated = dedicated != env.end() && dedicated->second == "1";
  if (req.peer.dedicated) {
    req.peer.node = static_cast<NodeId>(std::strtoul(env["MPIRAY_ACTOR_NODE"].c_str(), nullptr, 10));
  }
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

/// @brief Lock the handle for start-up: false when a runtime exists and that is allowed.
bool BeginInit(const InitOptions& options) {
  if (Handle().runtime) {
    if (options.ignore_reinit_error) return false;
    throw Error(StatusCode::kAlreadyExists, "mpiray::Init called twice in this process");
  }
  Handle().guard.BlockSignals();
  return true;
}

}  // namespace

namespace detail {

void RegisterLanguage(uint8_t language, LanguageRuntime* rt) {
  std::lock_guard<std::mutex> lk(Handle().lang_mu);
  Handle().languages[language] = rt;
}

LanguageRuntime* FindLanguage(uint8_t language) {
  std::lock_guard<std::mutex> lk(Handle().lang_mu);
  auto it = Handle().languages.find(language);
  return it == Handle().languages.end() ? nullptr : it->second;
}

void SetOutputName(const std::string& name) {
  std::lock_guard<std::mutex> lk(Handle().lang_mu);
  Handle().output_name = name;
}

std::string OutputName() {
  std::lock_guard<std::mutex> lk(Handle().lang_mu);
  return Handle().output_name;
}

RuntimeContext CurrentContext() {
  Runtime* rt = Handle().runtime.get();
  if (!rt) throw Error(StatusCode::kUnavailable, "mpiray is not initialised");
  RuntimeContext c;
  c.job_id = rt->session().name;
  c.session_dir = rt->session().dir;
  c.proc = rt->self();
  c.node = rt->node();
  c.driver = rt->head() != nullptr;
  c.task = WorkerService::CurrentTask();
  c.actor = WorkerService::CurrentActor();
  c.ns = rt->session().config.ns;
  c.gpu_ids = WorkerService::CurrentGpus();
  c.incarnation = WorkerService::CurrentIncarnation();
  c.max_retries = WorkerService::CurrentMaxRetries();
  return c;
}

std::vector<int32_t> CurrentGpuIds() { return WorkerService::CurrentGpus(); }

TaskId CurrentTaskId() { return WorkerService::CurrentTask(); }

void StreamEmit(const SerializedValue& value) {
  Runtime* rt = Handle().runtime.get();
  WorkerService* w = rt ? rt->worker() : nullptr;
  if (!w) throw Error(StatusCode::kInvalidArgument, "a streaming task's items are yielded on a worker");
  ThrowIfError(w->EmitStreamItem(value));
}

ObjectId PutTaskItem(const SerializedValue& value) {
  Runtime* rt = Handle().runtime.get();
  WorkerService* w = rt ? rt->worker() : nullptr;
  return w ? ValueOrThrow(w->PutTaskItem(value)) : ObjectId{};
}

void BlockTerminationSignalsForInit() { Handle().guard.BlockSignals(); }

uint32_t ClientEpoch() noexcept { return Handle().epoch.load(); }

CoreClient* ClientOrNull() noexcept {
  CoreClient* c = Handle().client.load();
  return c ? c : Handle().test_client.load();
}

CoreClient* Client() {
  CoreClient* c = ClientOrNull();
  if (!c) throw Error(StatusCode::kUnavailable, "mpiray is not initialised: call mpiray::Init() first");
  return c;
}

void AddShutdownHook(std::function<void()> hook) { Handle().guard.AddShutdownHook(std::move(hook)); }

void RecordExitStatus(int status) { Handle().guard.RecordExitStatus(status); }

void SetClientForTesting(CoreClient* client) {
  Handle().client.store(nullptr);
  Handle().test_client.store(client);
}

bool IsJoinLaunch() {
  const char* j = getenv("MPIRAY_JOIN");
  return j && *j;
}

void InitStandalone(const InitOptions& options) {
  std::unique_lock<std::mutex> lk(Handle().mu);
  if (!BeginInit(options)) return;
  if (IsJoinLaunch()) {
    lk.unlock();
    JoinAsWorker(getenv("MPIRAY_JOIN"));
  }
  static SingletonBootstrap single;  // outlives the runtime (its finalizer is a no-op anyway)
  Start(options, single, /*local_workers=*/-1, lk);
}

void InitWithBootstrap(const InitOptions& options, Bootstrap& b) {
  std::unique_lock<std::mutex> lk(Handle().mu);
  if (!BeginInit(options)) return;
  Start(options, b, /*local_workers=*/0, lk);
}

}  // namespace detail

bool IsInitialized() { return Handle().client.load() != nullptr; }

ClusterSnapshot GetClusterSnapshot() { return detail::Client()->Snapshot(); }

void AddCheckpointCallback(std::function<void()> callback) {
  Handle().guard.AddCheckpointCallback(std::move(callback));
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
  RuntimeHandle& h = Handle();
  bool head = false;
  {
    std::lock_guard<std::mutex> lk(h.mu);
    head = h.runtime && h.runtime->head();
  }
  if (head) BeginStop();  // a Ctrl-C from here on forces the stop
  h.guard.RunShutdownHooks();
  std::unique_ptr<Runtime> rt;
  {
    std::lock_guard<std::mutex> lk(h.mu);
    if (!h.runtime) {
      h.stopping.store(false);
      return;
    }
    rt = std::move(h.runtime);
  }
  rt->Shutdown();
  h.client.store(nullptr);
  h.guard.StopWatching();  // (puts the driver's SIGINT handler back)
  h.live.store(nullptr);
  rt.reset();
  h.guard.RestoreSignals();
  h.stopping.store(false);
}

}  // namespace mpiray

#include "runtime.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "dir_lease.h"
#include "log.h"
#include "mpiray/core/bootstrap.h"
#include <nlohmann/json.hpp>
#include "mpiray/core/detail/language.h"

namespace mpiray {

using proto::Msg;

// ------------------------------------------------------------------ helpers

NodeId NodeAssigner::Assign(const std::string& host) {
  int local = seen_[host]++;
  int group = rpn_ > 0 ? local / rpn_ : 0;
  auto key = std::make_pair(host, group);
  auto it = ids_.find(key);
  if (it == ids_.end()) it = ids_.emplace(key, static_cast<NodeId>(ids_.size())).first;
  return it->second;
}

int NodeAssigner::NodesOnHost(const std::string& host) const {
  int n = 0;
  for (const auto& [key, id] : ids_) n += key.first == host ? 1 : 0;
  return n;
}

std::string MachineId() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string boot;
  f >> boot;
  return std::string(host) + "/" + boot;
}

std::string HostKey(const EnvMap& env) {
  auto it = env.find("SLURMD_NODENAME");
  if (it != env.end() && !it->second.empty()) return it->second;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return host;
}

int CheckpointSignal(const EnvMap& env) {
  auto it = env.find("MPIRAY_CHECKPOINT_SIGNAL");
  std::string v = it == env.end() ? "USR1" : it->second;
  if (v.rfind("SIG", 0) == 0) v = v.substr(3);
  static const std::pair<const char*, int> kNames[] = {
      {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"URG", SIGURG}, {"ALRM", SIGALRM}, {"XCPU", SIGXCPU}};
  for (auto [name, sig] : kNames) {
    if (v == name) return sig;
  }
  if (v == "none" || v == "NONE" || v.empty()) return 0;
  char* end = nullptr;
  long n = std::strtol(v.c_str(), &end, 10);
  return (*end == '\0' && n > 0 && n < 64) ? static_cast<int>(n) : SIGUSR1;
}

void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  if (int cs = CheckpointSignal(CurrentEnv())) sigaddset(&set, cs);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int64_t Runtime::NowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::vector<std::string> detail::DefaultWorkerCommand() {
  std::vector<std::string> cmd;
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find('\0', start);
    if (end == std::string::npos) end = all.size();
    cmd.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  char exe[4096] = {0};
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (!cmd.empty() && len > 0) cmd[0] = std::string(exe, static_cast<size_t>(len));
  return cmd;
}

// ------------------------------------------------------------------ construction

Result<std::unique_ptr<Runtime>> Runtime::Create(RuntimeSetup&& setup) {
  std::unique_ptr<Runtime> rt(new Runtime());
  rt->role_ = setup.role;
  rt->session_ = std::move(setup.session);
  rt->self_ = setup.self;
  rt->fabric_ = std::move(setup.fabric);
  for (const auto& p : setup.peers) {
    if (p.proc == kHeadProc) rt->head_host_ = p.host;
    rt->machines_[p.proc] = p.machine;
  }
  if (rt->role_ == Role::kHead) rt->head_host_ = rt->self_.host;
  MPIRAY_RETURN_IF_ERROR(EnsureSessionDirs(rt->session_));
  rt->StartLogging(setup.launcher);
  MPIRAY_RETURN_IF_ERROR(rt->OpenStore());
  rt->ReapLeftovers();
  rt->MakeServices();
  rt->last_head_ms_ = rt->NowMs();
  rt->started_ms_ = rt->NowMs();
  if (rt->role_ == Role::kWorker) MPIRAY_RETURN_IF_ERROR(rt->StartWorkerOutput());
  rt->RegisterHandlers();
  rt->fabric_->set_self(rt->self_.proc);
  rt->fabric_->set_session_token(rt->session_.token);
  rt->fabric_->Start(rt.get());
  for (const auto& p : setup.peers) {
    if (p.proc != rt->self_.proc) rt->fabric_->AddPeer(p.proc, p.address);
  }
  if (rt->head_) {
    rt->head_->AddProcess(rt->self_, false);
    for (const auto& p : setup.peers) {
      if (p.proc != rt->self_.proc) rt->head_->AddProcess(p, true);
    }
  }
  return rt;
}

void Runtime::StartLogging(const std::string& launcher) {
  const bool head = role_ == Role::kHead;
  logging::LogOptions lo;
  lo.level = session_.config.log_level;
  lo.name = head ? "head" : "worker " + std::to_string(self_.proc);
  lo.file = session_.LogDir() + "/" + (head ? std::string("head") : "worker-" + std::to_string(self_.proc)) + ".log";
  if (!head) {
    UcxFabric* fabric = fabric_.get();
    lo.forward = [fabric](int level, const std::string& line) {
      SendMsg(*fabric, kHeadProc, Msg::kLog, proto::LogLine{level, line});
    };
  }
  logging::Configure(lo);
  MPIRAY_LOG(info, "{} {} on host {} (pid {}), node {}, launcher {}, session {}", head ? "head" : "worker",
             self_.proc, self_.host, self_.pid, self_.node, launcher, session_.dir);
}

void Runtime::ReapLeftovers() {
  // After this process leased its own directories (EnsureSessionDirs, OpenStore): the files
  // of jobs on this host that were killed before they could remove them (dir_lease.h).
  auto parent = [](const std::string& p) {
    auto slash = p.rfind('/');
    return slash == std::string::npos ? std::string(".") : p.substr(0, slash);
  };
  // Spill directories inside the session directory go with it; a MPIRAY_SPILL_DIR is swept.
  const std::string& spill = session_.spill_root;
  bool own_spill_root = !spill.empty() && spill.compare(0, session_.dir.size() + 1, session_.dir + "/") != 0;
  for (const auto& path : ReapStaleSessions(parent(session_.dir), parent(session_.shm_root),
                                            own_spill_root ? parent(spill) : std::string())) {
    MPIRAY_LOG(info, "removed {}: left behind by a job that was killed", path);
  }
}

Status Runtime::OpenStore() {
  const RuntimeConfig& cfg = session_.config;
  StoreOptions so;
  so.root = session_.shm_root;
  so.node = self_.node;
  so.capacity = cfg.store_capacity;
  so.spill_root = session_.spill_root;
  MPIRAY_ASSIGN_OR_RETURN(store_, ShmStore::Open(so));
  std::function<bool(ProcId)> same_machine;
  if (cfg.same_machine_copy) {
    same_machine = [this](ProcId p) {
      std::lock_guard<std::mutex> lk(machines_mu_);
      auto it = machines_.find(p);
      return it != machines_.end() && it->second == self_.machine;
    };
  }
  // A fetched copy is reported to the head (through the link, made right after).
  fetcher_ = std::make_unique<Fetcher>(*fabric_, *store_, cfg.fetch_chunk,
                                       [this](const ObjectId& id) { link_->AddLocation(id, self_.node); },
                                       same_machine);
  return Status::OK();
}

void Runtime::MakeServices() {
  const RuntimeConfig& cfg = session_.config;
  if (role_ == Role::kHead) {
    head_ = std::make_unique<HeadService>(*fabric_, cfg);
    link_ = std::make_unique<LocalHeadLink>(*head_, self_.proc, self_.node);
    if (cfg.actor_processes) {  // Ray's process per actor (where this head can start them)
      head_->SetActorProcessStarter([this](NodeId node, const std::string& host, const std::string& machine) {
        return StartActorProcess(node, host, machine);
      });
    }
  } else {
    link_ = std::make_unique<RemoteHeadLink>(*fabric_, self_.proc);
  }
  ClientDeps deps;
  deps.store = store_.get();
  deps.fetcher = fetcher_.get();
  deps.head = link_.get();
  deps.self = self_.proc;
  deps.node = self_.node;
  deps.config = cfg;
  client_ = std::make_unique<ClientImpl>(deps);
  if (role_ == Role::kWorker) {
    WorkerIdentity wid{self_.proc, self_.node, self_.host, self_.pid};
    worker_ = std::make_unique<WorkerService>(*fabric_, *client_, wid);
    WorkerService* w = worker_.get();
    client_->SetBlockingHook([w](bool blocked) { w->OnBlockChange(blocked); });
    if (self_.dedicated) {  // started for one actor: it ends with the actor
      w->SetActorProcess([this](bool graceful) {
        std::thread([this, graceful] {
          for (uint8_t l : {detail::kLanguagePython}) {
            if (auto* rt = detail::FindLanguage(l)) rt->ActorProcessEnding(graceful);
          }
          WorkerExit(0);
        }).detach();
      });
    }
  }
}

Status Runtime::StartWorkerOutput() {
  // Worker output: kept in logs/worker-N.out and, unless disabled, shown on the driver's
  // console line by line, prefixed with what the worker runs (as Ray does).
  UcxFabric* fabric = fabric_.get();
  int pid = self_.pid;
  OutputForwarder::Sink sink;
  if (session_.config.log_to_driver) {
    sink = [fabric, pid](std::vector<std::string>&& lines) {
      // A line may start with "\x01<name>\x02" (Python tags each line with its task);
      // untagged lines get the name of what the process started last.
      std::string fallback = detail::OutputName();
      proto::WorkerOutput out;
      out.pid = pid;
      auto flush = [&] {
        if (!out.lines.empty()) SendMsg(*fabric, kHeadProc, Msg::kWorkerOutput, out);
        out.lines.clear();
      };
      for (auto& line : lines) {
        std::string name = fallback;
        if (!line.empty() && line[0] == '\x01') {
          auto end = line.find('\x02');
          if (end != std::string::npos) {
            if (end > 1) name = line.substr(1, end - 1);
            line.erase(0, end + 1);
          }
        }
        if (name != out.name) {
          flush();
          out.name = name;
        }
        out.lines.push_back(std::move(line));
      }
      flush();
    };
  }
  return output_.Start(session_.LogDir() + "/worker-" + std::to_string(self_.proc) + ".out", sink);
}

Runtime::~Runtime() {
  if (listener_) listener_->Stop();
  if (fabric_) fabric_->Stop();
}

// ------------------------------------------------------------------ messages

void Runtime::RegisterHandlers() {
  // Every service registers the messages it owns (the handler of kFoo is its OnFoo).
  if (head_) head_->RegisterHandlers(router_);
  if (worker_) worker_->RegisterHandlers(router_);
  link_->RegisterHandlers(router_);
  fetcher_->RegisterHandlers(router_);
  router_.On<proto::IdList>(Msg::kFreeObjects, [this](ProcId, proto::IdList&& l) {
    for (const ObjectId& id : l.ids) store_->Delete(id);
  });
  router_.On<proto::PeerInfo>(Msg::kPeerJoined, [this](ProcId, proto::PeerInfo&& p) { OnPeerJoined(p); });
  router_.On<proto::PeerLeft>(Msg::kPeerLeft, [this](ProcId, proto::PeerLeft&& p) { OnPeerLeft(p.proc); });
  if (head_) {
    router_.On<proto::LogLine>(Msg::kLog, [](ProcId, proto::LogLine&& l) {
      logging::PrintForwarded(l.level, l.text);
    });
    router_.On<proto::WorkerOutput>(Msg::kWorkerOutput,
                                    [](ProcId src, proto::WorkerOutput&& o) { OnWorkerOutput(src, o); });
    router_.On<proto::Empty>(Msg::kByeAck, [this](ProcId src, proto::Empty&&) { OnByeAck(src); });
  } else {
    router_.On<proto::Shutdown>(Msg::kShutdown, [this](ProcId, proto::Shutdown&& s) { OnShutdown(s); });
    // The head's heartbeat: every message from it counts (OnMessage), nothing else to do.
    router_.On<proto::Empty>(Msg::kHeartbeat, [](ProcId, proto::Empty&&) {});
  }
}

void Runtime::OnMessage(ProcId src, Msg type, const char* body, size_t len) {
  if (src == kHeadProc) last_head_ms_ = NowMs();
  router_.Route(src, type, body, len);
}

void Runtime::OnWorkerOutput(ProcId src, const proto::WorkerOutput& o) {
  std::string prefix = "(" + (o.name.empty() ? std::string("worker") : o.name) + " pid=" +
                       std::to_string(o.pid) + ", rank=" + std::to_string(src) + ") ";
  std::string text;
  for (const auto& line : o.lines) text += prefix + line + "\n";
  // One write() for the whole batch: stdio would cut it at its buffer's size, and the
  // driver's own output (Python's print, written by the interpreter, not by stdio) could land
  // in the middle of a line. The driver's pending stdio output goes first.
  fflush(stdout);
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = write(STDOUT_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void Runtime::OnByeAck(ProcId src) {
  {
    std::lock_guard<std::mutex> lk(bye_mu_);
    gone_.insert(src);
    bye_cv_.notify_all();
  }
  if (!shut_) head_->ProcessSaidBye(src);
}

void Runtime::OnPeerJoined(const proto::PeerInfo& p) {
  {
    std::lock_guard<std::mutex> lk(machines_mu_);
    machines_[p.proc] = p.machine;
  }
  fabric_->AddPeer(p.proc, p.address);
}

void Runtime::OnPeerLeft(ProcId gone) {
  fetcher_->OnPeerFailed(gone);
  fabric_->RemovePeer(gone);
}

void Runtime::OnShutdown(const proto::Shutdown& s) {
  MPIRAY_LOG(info, "shutdown requested by the head: {}", s.reason);
  client_->Close("the cluster is shutting down");
  worker_->Stop();
  LeaveSoon(0);
}

uint8_t* Runtime::OnBulkBegin(ProcId src, const proto::BulkHeader& h, size_t len) {
  return fetcher_->OnBulkBegin(src, h, len);
}

void Runtime::OnBulkEnd(ProcId src, const proto::BulkHeader& h, size_t len, bool ok) {
  fetcher_->OnBulkEnd(src, h, len, ok);
}

void Runtime::OnPeerFailed(ProcId proc, const std::string& why) {
  fetcher_->OnPeerFailed(proc);
  if (head_) {
    {
      std::lock_guard<std::mutex> lk(bye_mu_);
      gone_.insert(proc);
      bye_cv_.notify_all();
    }
    // A local worker that will be replaced: its replacement is expected before the death is
    // handled, so that work submitted meanwhile waits for it instead of being infeasible.
    if (!shut_ && session_.config.replace_workers && IsLocalWorker(proc)) head_->ExpectWorkers(1);
    if (!shut_) head_->RemoveProcess(proc, why);  // logs a warning
    ReplaceLocalWorker(proc);
  } else if (proc == kHeadProc) {
    HeadLost("the connection to the head failed (" + why + ")");
  }
}

void Runtime::OnTick() {
  if (head_) {
    head_->OnTick();
    return;
  }
  int64_t now = NowMs();
  if (now - last_beat_ms_ >= 1000) {
    last_beat_ms_ = now;
    SendMsg(*fabric_, kHeadProc, Msg::kHeartbeat, proto::Empty{});
  }
  if (!head_lost_ && now - last_head_ms_ > session_.config.heartbeat_timeout_ms) {
    HeadLost("no message from the head for " + std::to_string(now - last_head_ms_) + " ms");
  }
}

void Runtime::HeadLost(const std::string& why) {
  if (head_lost_.exchange(true)) return;
  MPIRAY_LOG(error, "the head (rank 0) is gone: {}; this worker exits", why);
  // The log line above goes to the head, which is gone: say it on this process's own stderr
  // (the launcher's console) too.
  dprintf(OutputForwarder::OriginalStderr(),
          "mpiray worker %d (pid %d): the head (rank 0) is gone (%s); this worker exits\n",
          static_cast<int>(self_.proc), static_cast<int>(self_.pid), why.c_str());
  client_->Close("the head is gone");
  fetcher_->FailAll("the head is gone");
  worker_->Stop();
  LeaveSoon(1);
}

void Runtime::LeaveSoon(int code) {
  // The main thread leaves its executor loop when its current task ends, which may be never:
  // give it a moment, then leave from here.
  std::thread([this, code] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    WorkerExit(code);
  }).detach();
}

void Runtime::WorkerExit(int code) {
  static std::atomic<bool> once{false};
  if (once.exchange(true)) {
    while (true) pause();  // another thread is already ending the process
  }
  worker_->BeforeExit();
  output_.Stop();  // the last lines go out before the goodbye
  if (!head_lost_) SendMsg(*fabric_, kHeadProc, Msg::kByeAck, proto::Empty{});
  logging::StopForwarding();
  fabric_->Stop();
  CleanupWorkerFiles();
  if (finalizer_) finalizer_();  // MPI_Finalize when MPI was kept (the head does the same)
  fflush(nullptr);
  _exit(code);
}

// ------------------------------------------------------------------ join path (head)

Status Runtime::StartListener(const EnvMap& env, int ranks_per_node,
                              const std::vector<proto::PeerInfo>& bootstrap_peers) {
  {
    std::lock_guard<std::mutex> lk(join_mu_);
    assigner_ = std::make_unique<NodeAssigner>(ranks_per_node);
    assigner_->Assign(self_.host);  // the head is the first process of node 0
    for (const auto& p : bootstrap_peers) {
      if (p.proc != self_.proc) assigner_->Assign(p.host);
      next_proc_ = std::max(next_proc_, p.proc + 1);
    }
  }
  std::string host = DefaultListenHost(env);
  MPIRAY_ASSIGN_OR_RETURN(listener_, JoinListener::Start(host, session_.token,
                                                         [this](const JoinRequest& r) { return OnJoin(r); }));
  std::string tmp = session_.AddressFile() + ".tmp";
  {
    std::ofstream f(tmp);
    f << listener_->address() << "\n";
    if (!f) return IoError("cannot write " + tmp);
  }
  if (rename(tmp.c_str(), session_.AddressFile().c_str()) != 0) {
    return IoError("cannot write " + session_.AddressFile());
  }
  MPIRAY_LOG(info, "listening for joining processes on {}", listener_->address());
  // Prometheus metrics: loopback by default, MPIRAY_METRICS_ADDR=host:port or "off".
  auto m = env.find("MPIRAY_METRICS_ADDR");
  std::string maddr = m == env.end() || m->second.empty() ? "127.0.0.1:0" : m->second;
  if (maddr != "off") {
    auto server = MetricsServer::Start(maddr, [this] { return MetricsText(); });
    if (server.ok()) {
      metrics_ = std::move(server).value();
      std::ofstream(session_.dir + "/metrics.addr") << metrics_->address() << "\n";
      MPIRAY_LOG(info, "metrics at http://{}/metrics", metrics_->address());
    } else {
      MPIRAY_LOG(warn, "no metrics endpoint: {}", server.status().message());
    }
  }
  return Status::OK();
}

std::string Runtime::StatusJson() const {
  using nlohmann::json;
  ClusterStatus st = head_->Status_();
  json j;
  j["session"] = session_.name;
  j["session_dir"] = session_.dir;
  j["uptime_s"] = static_cast<double>(NowMs() - started_ms_) / 1000.0;
  std::map<NodeId, std::string> host_of;
  json procs = json::array();
  for (const auto& p : head_->Peers()) {
    host_of.emplace(p.node, p.host);
    procs.push_back({{"rank", p.proc}, {"node", p.node}, {"host", p.host}, {"pid", p.pid}});
  }
  json nodes = json::array();
  for (const auto& n : st.nodes) {
    auto sb = st.store_bytes.find(n.id);
    nodes.push_back({{"id", n.id},
                     {"host", host_of.count(n.id) ? host_of[n.id] : std::string()},
                     {"workers", n.workers},
                     {"total", n.total},
                     {"available", n.available},
                     {"store_bytes", sb == st.store_bytes.end() ? 0 : sb->second}});
  }
  j["nodes"] = nodes;
  j["processes"] = procs;
  j["tasks"] = {{"queued", st.queued_tasks},
                {"running", st.running_tasks},
                {"finished", st.tasks_finished},
                {"failed", st.tasks_failed}};
  j["actors"] = st.actors;
  j["objects"] = st.objects;
  j["inline_bytes"] = st.inline_bytes;
  j["store_capacity_per_node"] = session_.config.store_capacity;
  return j.dump();
}

std::string Runtime::MetricsText() const {
  ClusterStatus st = head_->Status_();
  std::string out;
  std::string sess = "session=\"" + session_.name + "\"";
  auto metric = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto value = [&](const std::string& name, const std::string& labels, double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.17g", v);
    out += name + "{" + sess + (labels.empty() ? "" : "," + labels) + "} " + buf + "\n";
  };
  // A metric with one unlabelled value.
  auto single = [&](const char* name, const char* type, const char* help, double v) {
    metric(name, type, help);
    value(name, "", v);
  };
  single("mpiray_tasks_queued", "gauge", "Tasks ready to run and waiting for a worker.",
         static_cast<double>(st.queued_tasks));
  single("mpiray_tasks_running", "gauge", "Tasks dispatched to workers.",
         static_cast<double>(st.running_tasks));
  single("mpiray_tasks_finished_total", "counter", "Tasks and actor calls finished.",
         static_cast<double>(st.tasks_finished));
  single("mpiray_tasks_failed_total", "counter", "Tasks and actor calls that ended with an error.",
         static_cast<double>(st.tasks_failed));
  single("mpiray_actor_restarts_total", "counter", "Actor instances started again after a loss.",
         static_cast<double>(st.actor_restarts));
  single("mpiray_object_reconstructions_total", "counter",
         "Tasks run again to rebuild objects whose every copy was lost.",
         static_cast<double>(st.reconstructions));
  single("mpiray_lineage_tasks", "gauge", "Finished tasks whose specs are kept to rebuild their returns.",
         static_cast<double>(st.lineage_tasks));
  single("mpiray_actors_alive", "gauge", "Live actors.", static_cast<double>(st.actors));
  single("mpiray_objects", "gauge", "Objects in the head's directory.", static_cast<double>(st.objects));
  metric("mpiray_object_store_bytes", "gauge", "Shared-memory object bytes per node.");
  for (const auto& n : st.nodes) {
    auto it = st.store_bytes.find(n.id);
    value("mpiray_object_store_bytes", "node=\"" + std::to_string(n.id) + "\"",
          it == st.store_bytes.end() ? 0.0 : static_cast<double>(it->second));
  }
  single("mpiray_object_store_capacity_bytes", "gauge", "Object store capacity of each node.",
         static_cast<double>(session_.config.store_capacity));
  metric("mpiray_workers", "gauge", "Worker processes per node.");
  for (const auto& n : st.nodes) {
    value("mpiray_workers", "node=\"" + std::to_string(n.id) + "\"", static_cast<double>(n.workers.size()));
  }
  // Resources per node and name: the totals, then what is not in use.
  auto resources = [&](const char* name, const char* help, bool available) {
    metric(name, "gauge", help);
    for (const auto& n : st.nodes) {
      for (const auto& [r, v] : available ? n.available : n.total) {
        value(name, "node=\"" + std::to_string(n.id) + "\",resource=\"" + r + "\"", v);
      }
    }
  };
  resources("mpiray_resource_total", "Resources of each node.", false);
  resources("mpiray_resource_available", "Resources not in use on each node.", true);
  return out;
}

std::string Runtime::TimelineJson() const {
  using nlohmann::json;
  json events = json::array();
  for (const auto& e : head_->Events()) {
    events.push_back({{"name", e.name},
                      {"cat", e.kind == 2 ? "actor_call" : e.kind == 1 ? "actor_creation" : "task"},
                      {"ph", "X"},
                      {"ts", e.start_us},
                      {"dur", std::max<int64_t>(1, e.end_us - e.start_us)},
                      {"pid", "node " + std::to_string(e.node)},
                      {"tid", "worker " + std::to_string(e.worker)},
                      {"args", {{"failed", e.failed}}}});
  }
  return json({{"traceEvents", events}, {"displayTimeUnit", "ms"}}).dump();
}

JoinReply Runtime::OnJoin(const JoinRequest& req) {
  JoinReply reply;
  if (req.role == "client") {
    reply.ok = true;
    if (req.command == "status") {
      reply.status = StatusJson();
    } else if (req.command == "timeline") {
      reply.status = TimelineJson();
    } else if (req.command == "stop") {
      MPIRAY_LOG(warn, "stop requested by 'mpiray stop' (pid {})", req.peer.pid);
      reply.status = "{\"stopping\": true}";
      // As a walltime signal: checkpoint callbacks, then a clean stop (after this reply).
      std::thread([] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        kill(getpid(), SIGTERM);
      }).detach();
    } else {
      reply.ok = false;
      reply.error = "unknown command '" + req.command + "' (status, stop, timeline)";
    }
    return reply;
  }
  if (req.role != "worker") {
    reply.ok = false;
    reply.error = "unsupported role '" + req.role + "'";
    return reply;
  }
  if (shut_) {
    reply.error = "the cluster is shutting down";
    return reply;
  }
  proto::PeerInfo peer = req.peer;
  // One of our own local workers? A process started for one actor joins the node it was
  // started for (StartActorProcess); the others can be replaced if they die.
  const bool child = ChildJoined(peer.pid) && peer.machine == self_.machine;
  const bool dedicated = peer.dedicated && child;
  peer.dedicated = dedicated;
  {
    std::lock_guard<std::mutex> lk(join_mu_);
    peer.proc = next_proc_++;
    if (!dedicated) peer.node = assigner_->Assign(peer.host);
  }
  reply.ok = true;
  reply.proc = peer.proc;
  reply.node = peer.node;
  reply.session = session_;
  reply.peers = head_->Peers();
  {
    std::lock_guard<std::mutex> lk(machines_mu_);
    machines_[peer.proc] = peer.machine;
  }
  fabric_->AddPeer(peer.proc, peer.address);
  for (const auto& p : reply.peers) {
    if (p.proc != self_.proc) SendMsg(*fabric_, p.proc, Msg::kPeerJoined, peer);
  }
  if (child && !dedicated) {
    std::lock_guard<std::mutex> lk(children_mu_);
    local_workers_[peer.proc] = peer.pid;
  }
  head_->AddProcess(peer, true);
  MPIRAY_LOG(info, "worker {} joined from host {} (pid {}) as node {}", peer.proc, peer.host,
             peer.pid, peer.node);
  join_cv_.notify_all();
  return reply;
}

// ------------------------------------------------------------------ shutdown

void Runtime::Shutdown() {
  if (shut_.exchange(true)) return;
  MPIRAY_LOG(info, "shutting down");
  std::vector<ProcId> workers = head_->Workers();
  head_->Close("shutdown");
  client_->Close("shutdown");
  for (ProcId w : workers) SendMsg(*fabric_, w, Msg::kShutdown, proto::Shutdown{"shutdown"});
  fabric_->Wake();
  {
    std::unique_lock<std::mutex> lk(bye_mu_);
    bye_cv_.wait_for(lk, std::chrono::seconds(5), [&] {
      for (ProcId w : workers) {
        if (!gone_.count(w)) return false;
      }
      return true;
    });
  }
  if (listener_) listener_->Stop();
  if (metrics_) metrics_->Stop();
  // Local workers: reap them (they exit on their own; kill stragglers).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  {
    std::lock_guard<std::mutex> lk(children_mu_);
    spawner_stop_ = true;
    spawn_cv_.notify_all();
  }
  if (spawner_.joinable()) spawner_.join();  // a replacement being started finishes first
  std::vector<int> children;
  {
    std::lock_guard<std::mutex> lk(children_mu_);
    children = children_;
  }
  for (int pid : children) {
    while (true) {
      int st = 0;
      pid_t r = waitpid(pid, &st, WNOHANG);
      if (r == pid || r < 0) break;
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  {
    std::lock_guard<std::mutex> lk(children_mu_);
    children_.clear();
  }
  fabric_->Stop();
  logging::StopForwarding();
  if (session_.config.keep_session) {
    SessionInfo shm_only = session_;
    shm_only.dir.clear();
    RemoveSessionFiles(shm_only);
  } else {
    RemoveSessionFiles(session_);
  }
  ReleaseReaper();
  if (finalizer_) finalizer_();
}

void Runtime::ReleaseReaper() {
  int fd = reaper_fd_.exchange(-1);
  if (fd < 0) return;
  (void)!write(fd, &kReaperClean, 1);
  close(fd);
}

void Runtime::ForceExit(int code) {
  if (head_) {
    shut_ = true;
    for (ProcId w : head_->Workers()) SendMsg(*fabric_, w, Msg::kShutdown, proto::Shutdown{"the job is ending"});
    fabric_->Wake();
    std::vector<int> children;
    {
      std::lock_guard<std::mutex> lk(children_mu_);
      children = children_;
    }
    for (int pid : children) kill(pid, SIGKILL);
    RemoveSessionFiles(session_);
    ReleaseReaper();
  }
  fflush(nullptr);
  _exit(code);
}

void Runtime::Exit(int code, bool graceful) {
  // The driver's threads are left as they are (blocked calls stay blocked): this thread
  // stops the workers, removes the files and ends the process.
  if (head_) {
    shut_ = true;
    std::vector<ProcId> workers = head_->Workers();
    for (ProcId w : workers) SendMsg(*fabric_, w, Msg::kShutdown, proto::Shutdown{"the job is ending"});
    fabric_->Wake();
    if (graceful) {
      std::unique_lock<std::mutex> lk(bye_mu_);
      bye_cv_.wait_for(lk, std::chrono::seconds(5), [&] {
        for (ProcId w : workers) {
          if (!gone_.count(w)) return false;
        }
        return true;
      });
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    for (int pid : children_) kill(pid, SIGKILL);
    RemoveSessionFiles(session_);
    ReleaseReaper();
  } else {
    if (worker_) worker_->BeforeExit();
    output_.Stop();
    CleanupWorkerFiles();
  }
  fflush(nullptr);
  _exit(code);
}

void Runtime::EmergencyExit(int sig) {
  if (head_) fprintf(stderr, "mpiray: %s received, stopping the cluster\n", strsignal(sig));
  Exit(128 + sig, false);
}

void Runtime::CleanupWorkerFiles() {
  // On the head's host the head (or its reaper) cleans up; elsewhere the workers do.
  if (self_.host != head_host_ && !self_.dedicated) RemoveSessionFiles(session_);
}

void Runtime::ServeAsWorker() {
  worker_->RunMainExecutor();
  WorkerExit(head_lost_ ? 1 : 0);
}

}  // namespace mpiray

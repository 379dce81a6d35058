#include "worker.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "log.h"
#include "worker_actor.h"

namespace mpiray {

using proto::Msg;
using proto::TaskKind;

namespace {

thread_local const proto::TaskSpec* tl_task = nullptr;
thread_local TaskId tl_blocked_for;  // the task a non-executor thread's wait counts for
thread_local ActorId tl_actor;
thread_local bool tl_executor = false;
// Refs nested in return values, held until the TaskDone that registers them is posted (the
// task's own handles die first, and the head must not free the objects in between).
thread_local std::vector<ObjectId> tl_return_holds;
thread_local const std::vector<int32_t>* tl_gpus = nullptr;
thread_local uint32_t tl_stream_items = 0;  // items the running (streaming or dynamic) task has yielded
thread_local int64_t tl_started_us = 0;  // when the current task started (timeline)

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class StoreSink final : public detail::ResultSink {
 public:
  StoreSink(ClientImpl& client, const proto::TaskSpec& spec) : client_(client), spec_(spec) {}
  void Emit(const detail::SerializedValue& v) override {
    uint32_t want = spec_.task_kind() == TaskKind::kActorCreate ? 1 : spec_.num_returns;
    if (out.size() >= want) {
      throw InvalidArgumentError(spec_.function + " returned more than " + std::to_string(want) +
                                 " values");
    }
    ObjectId id = spec_.ReturnId(static_cast<uint32_t>(out.size()));
    if (v.format == detail::PayloadFormat::kError) {  // a language runtime reports a failure
      proto::NewObject err;
      err.id = id;
      err.where = static_cast<uint8_t>(proto::Where::kError);
      err.data = Buffer(v.ToVector());
      err.size = err.data.size();
      out.push_back(std::move(err));
      return;
    }
    for (const ObjectId& n : v.nested) {
      client_.AddLocalRef(n);
      tl_return_holds.push_back(n);
    }
    auto r = client_.StoreValue(id, v);
    if (r.ok()) {
      out.push_back(std::move(r).value());
    } else {
      proto::NewObject err;
      err.id = id;
      err.where = static_cast<uint8_t>(proto::Where::kError);
      err.data = Buffer(detail::MakeErrorPayload(r.status().code(), r.status().message()));
      out.push_back(std::move(err));
    }
  }
  std::vector<proto::NewObject> out;

 private:
  ClientImpl& client_;
  const proto::TaskSpec& spec_;
};

}  // namespace

// ------------------------------------------------------------------ service

namespace {

// The most threads one actor runs calls on (MPIRAY_MAX_ACTOR_THREADS, default 1000, Ray's
// default max_concurrency of async actors): a bigger max_concurrency queues the rest.
int MaxActorThreads() {
  static const int n = [] {
    const char* v = std::getenv("MPIRAY_MAX_ACTOR_THREADS");
    long x = v ? std::strtol(v, nullptr, 10) : 0;
    return x >= 1 ? static_cast<int>(std::min(x, 100000L)) : 1000;
  }();
  return n;
}

}  // namespace

pid_t CurrentTid() {
  static thread_local pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  return tid;
}

bool WorkerService::Actor::AnyRunnable() const {
  for (pid_t t : running) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/task/%d/stat", static_cast<int>(t));
    std::FILE* f = std::fopen(path, "r");
    if (!f) continue;
    char buf[512];
    size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    const char* close = std::strrchr(buf, ')');  // "tid (name) S ...": the state follows the name
    if (close && close[1] == ' ' && close[2] == 'R') return true;
  }
  return false;
}

namespace {
// Stall-watch ticks (1 ms) after which an actor's waiting calls get threads even while its
// running calls compute (a long computation must not hold back max_concurrency).
constexpr int kStallTicks = 10;
}  // namespace

void WorkerService::Watch(const std::shared_ptr<Actor>& a) {
  checks_.Add([this, a] {
    int start = 0;
    bool keep;
    {
      std::lock_guard<std::mutex> lk(a->mu);
      keep = !a->stopping && !a->dead && !a->mailbox.empty();
      if (!keep) {
        a->watched = false;
        a->stalled = 0;
      } else if (a->taken != a->taken_seen || a->busy >= a->max_threads) {
        a->taken_seen = a->taken;  // moving, or no thread could be added anyway
        a->stalled = 0;
      } else if (++a->stalled >= kStallTicks || (a->stalled >= 2 && !a->AnyRunnable())) {
        // No call taken for over a tick while the running calls are all blocked (they wait
        // for something, maybe a later call), or for kStallTicks however busy they are.
        a->stalled = 0;
        start = a->Grow();
      }
    }
    if (start > 0) StartActorThreads(a, start);
    return keep;
  });
}

void WorkerService::StartActorThreads(const std::shared_ptr<Actor>& a, int n) {
  for (int i = 0; i < n; ++i) {
    try {
      std::thread([this, a] { RunActorLoop(a); }).detach();
    } catch (const std::exception& e) {  // the process is out of threads: serve with fewer
      std::lock_guard<std::mutex> lk(a->mu);
      a->threads -= n - i;
      a->max_threads = std::max(1, a->threads);
      a->waking = false;
      MPIRAY_LOG(warn, "actor {} ({}): cannot start another thread ({}); it runs at most {} "
                 "calls at a time", a->id.ToString(), a->name, e.what(), a->max_threads);
      return;
    }
  }
}

namespace {

// The node's devices as this process saw them at start (CUDA_VISIBLE_DEVICES="2,3" from Slurm
// makes device 0 the physical GPU 2); empty: numbered from 0.
const std::vector<std::string>& DeviceNames() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
    std::string s = v ? v : "";
    if (s == "NoDevFiles" || s == "-1") return out;
    size_t start = 0;
    while (!s.empty() && start <= s.size()) {
      size_t comma = s.find(',', start);
      out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return out;
  }();
  return names;
}

std::string DeviceName(int32_t index) {
  const auto& names = DeviceNames();
  return static_cast<size_t>(index) < names.size() ? names[static_cast<size_t>(index)] : std::to_string(index);
}

std::string GpuList(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t d : ids) s += (s.empty() ? "" : ",") + DeviceName(d);
  return s;
}

// CUDA_VISIBLE_DEVICES for work that was given GPUs, put back afterwards (a process runs one
// normal task at a time; an actor with GPUs keeps them set for its lifetime).
class VisibleDevices {
 public:
  explicit VisibleDevices(const std::vector<int32_t>& ids, bool restore = true) : restore_(restore) {
    if (ids.empty()) return;
    active_ = true;
    const char* old = std::getenv("CUDA_VISIBLE_DEVICES");
    had_ = old != nullptr;
    if (old) old_ = old;
    setenv("CUDA_VISIBLE_DEVICES", GpuList(ids).c_str(), 1);
  }
  ~VisibleDevices() {
    if (!active_ || !restore_) return;
    if (had_) {
      setenv("CUDA_VISIBLE_DEVICES", old_.c_str(), 1);
    } else {
      unsetenv("CUDA_VISIBLE_DEVICES");
    }
  }

 private:
  bool active_ = false, restore_ = true, had_ = false;
  std::string old_;
};

}  // namespace

Status WorkerService::EmitStreamItem(const detail::SerializedValue& value) {
  if (!tl_task || tl_task->task_kind() != TaskKind::kNormal) {
    return InvalidArgument("only a task can yield streaming items");
  }
  ObjectId id = tl_task->ReturnId(++tl_stream_items);
  for (const ObjectId& n : value.nested) {
    client_.AddLocalRef(n);
    tl_return_holds.push_back(n);
  }
  MPIRAY_ASSIGN_OR_RETURN(proto::NewObject obj, client_.StoreValue(id, value));
  SendMsg(transport_, kHeadProc, Msg::kStreamItem, proto::StreamItem{tl_task->id, std::move(obj)});
  return Status::OK();
}

Result<ObjectId> WorkerService::PutTaskItem(const detail::SerializedValue& value) {
  if (!tl_task || tl_task->task_kind() != TaskKind::kNormal) return ObjectId{};
  // The same numbering as streaming items (a task is one or the other): after its returns.
  return client_.PutAs(tl_task->ReturnId(tl_task->num_returns + tl_stream_items++), value);
}

std::vector<int32_t> WorkerService::CurrentGpus() {
  std::vector<int32_t> out;
  if (!tl_gpus) return out;
  for (int32_t d : *tl_gpus) {  // the physical ids where the node's list has them
    const std::string name = DeviceName(d);
    char* end = nullptr;
    long v = std::strtol(name.c_str(), &end, 10);
    out.push_back(end && *end == '\0' && !name.empty() ? static_cast<int32_t>(v) : d);
  }
  return out;
}

WorkerService::WorkerService(Transport& transport, ClientImpl& client, const WorkerIdentity& id)
    : transport_(transport), client_(client), id_(id) {}

WorkerService::~WorkerService() { Stop(); }

LanguageRuntime* WorkerService::Lang(uint8_t language) {
  if (language == detail::kLanguageCpp) return &cpp_;
  return detail::FindLanguage(language);
}

TaskId WorkerService::CurrentTask() { return tl_task ? tl_task->id : TaskId(); }
ActorId WorkerService::CurrentActor() { return tl_actor; }
uint32_t WorkerService::CurrentIncarnation() {
  return tl_task && !tl_actor.nil() ? tl_task->incarnation : 0;
}
int32_t WorkerService::CurrentMaxRetries() {
  return tl_task ? tl_task->max_retries : detail::kActorDefaultRetries;
}

void WorkerService::BeforeExit() {
  for (uint8_t l : {detail::kLanguagePython}) {
    if (auto* rt = detail::FindLanguage(l)) rt->BeforeExit();
  }
}

std::string WorkerService::Where(const proto::TaskSpec& spec) const {
  const char* what = spec.task_kind() == TaskKind::kActorCreate ? "actor constructor "
                     : spec.task_kind() == TaskKind::kActorCall ? "actor method "
                                                                : "task ";
  return std::string(what) + spec.function + " failed on worker " + std::to_string(id_.proc) +
         " (host " + id_.host + ", pid " + std::to_string(id_.pid) + ")";
}

void WorkerService::RegisterHandlers(MessageRouter& router) {
  router.On<proto::Execute>(Msg::kExecute, [this](ProcId, proto::Execute&& ex) { OnExecute(std::move(ex)); });
  router.On<proto::TaskSpec>(Msg::kActorCall,
                             [this](ProcId, proto::TaskSpec&& spec) { OnActorCall(std::move(spec)); });
  router.On<proto::KillActor>(Msg::kDestroyActor, [this](ProcId, proto::KillActor&& k) {
    OnDestroyActor(k.actor);
    if (leave_) {
      std::lock_guard<std::mutex> lk(actors_mu_);
      if (actors_.empty()) leave_(k.graceful);  // its one actor is gone: so is the process
    }
  });
  router.On<proto::CancelRunning>(Msg::kCancelRunning,
                                  [this](ProcId, proto::CancelRunning&& c) { OnCancelRunning(c.task, c.force); });
}

void WorkerService::OnExecute(proto::Execute&& ex) {
  if (ex.spec.task_kind() == TaskKind::kActorCreate) {
    auto a = std::make_shared<Actor>();
    a->id = ex.spec.id;
    a->name = ex.spec.name.empty() ? ex.spec.function : ex.spec.name;
    a->language = ex.spec.language;
    a->max_concurrency = std::max(1, ex.spec.max_concurrency);
    a->max_threads = std::min(a->max_concurrency, MaxActorThreads());
    a->incarnation = ex.spec.incarnation;
    a->mailbox.push_back(std::make_unique<proto::Execute>(std::move(ex)));
    a->threads = 1;
    std::vector<proto::TaskSpec> orphans;
    {
      std::lock_guard<std::mutex> lk(actors_mu_);
      destroyed_.erase(a->id);  // a restart may bring it back here
      actors_[a->id] = a;
      auto it = orphan_calls_.find(a->id);
      if (it != orphan_calls_.end()) {
        orphans = std::move(it->second);
        orphan_calls_.erase(it);
      }
    }
    for (auto& c : orphans) EnqueueCall(*a, std::move(c));
    try {
      std::thread([this, a] { RunActorLoop(a); }).detach();
    } catch (const std::exception& e) {  // out of threads: the creation fails, the worker lives
      std::unique_ptr<proto::Execute> create;
      {
        std::lock_guard<std::mutex> lk(a->mu);
        a->threads = 0;
        a->dead = true;
        a->error = std::string("no thread could be started for it: ") + e.what();
        create = std::move(a->mailbox.front());
        a->mailbox.pop_front();
      }
      ReportDone(create->spec,
                 ErrorReturns(create->spec, Status(StatusCode::kTaskError,
                                                   Where(create->spec) + ": " + a->error)),
                 proto::DoneStatus::kOk);
    }
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    queue_.push_back(std::make_unique<proto::Execute>(std::move(ex)));
  }
  cv_.notify_one();  // after the unlock: the woken thread does not block on mu_ at once
}

void WorkerService::EnqueueCall(Actor& a, proto::TaskSpec&& spec) {
  int start = 0;
  bool watch = false, wake = false;
  std::shared_ptr<void> self;
  {
    std::lock_guard<std::mutex> lk(a.mu);
    if (StartsHere(a, spec)) {
      self = a.instance;
    } else {
      if (!QueueCall(a, std::move(spec))) return;
      start = a.Dispatch(&watch, &wake);
    }
  }
  if (wake) a.cv.notify_one();
  if (self) {
    StartHere(a, std::move(spec), self.get());
    return;
  }
  if (watch) Watch(a.shared_from_this());
  if (start > 0) StartActorThreads(a.shared_from_this(), start);
}

bool WorkerService::StartsHere(Actor& a, const proto::TaskSpec& spec) {
  // Only a call that needs no waiting (its arguments are in the message) and that nothing is
  // queued before: its order is kept, and this thread, which receives every message, never
  // blocks.
  if (!a.defers || !a.ready || a.dead || a.stopping || !a.instance || !a.mailbox.empty() ||
      a.idle != a.threads || a.deferred >= a.max_concurrency || spec.incarnation != a.incarnation) {
    return false;
  }
  for (const proto::Arg& arg : spec.args) {
    if (arg.by_ref) return false;
  }
  if (spec.seq == 0) return true;
  if (!a.gated.empty() && a.gated.count(spec.caller)) return false;  // behind its waiting call
  auto next = a.next_seq.try_emplace(spec.caller, 1).first;
  auto early = a.early.find(spec.caller);
  if (spec.seq != next->second || (early != a.early.end() && !early->second.empty())) return false;
  ++next->second;
  return true;
}

void WorkerService::StartHere(Actor& a, proto::TaskSpec&& spec, void* self) {
  auto item = std::make_unique<proto::Execute>();
  item->spec = std::move(spec);
  auto args = ResolveArgs(*item);  // all in the message (StartsHere): it never waits
  int64_t saved = tl_started_us;
  tl_started_us = NowUs();
  bool started = args.ok() && StartDeferred(a, item, *args, self);
  tl_started_us = saved;
  if (started) return;
  int start;
  bool watch = false;
  {  // (an upstream error among its arguments, or the runtime took it back) an actor thread
     // runs or fails it, before anything queued later
    std::lock_guard<std::mutex> lk(a.mu);
    a.mailbox.push_front(std::move(item));
    start = a.Dispatch(&watch);
  }
  if (watch) Watch(a.shared_from_this());
  if (start > 0) StartActorThreads(a.shared_from_this(), start);
}

bool WorkerService::QueueCall(Actor& a, proto::TaskSpec&& spec) {
  if (spec.incarnation != a.incarnation) {
    // Meant for an earlier instance of this actor: the head re-sends or fails it.
    MPIRAY_LOG(debug, "dropping call {} for instance {} of actor {} (this is instance {})",
               spec.id.ToString(), spec.incarnation, a.id.ToString(), a.incarnation);
    return false;
  }
  if (spec.seq == 0) {  // re-sent by the head after a restart: no order to keep
    auto item = std::make_unique<proto::Execute>();
    item->spec = std::move(spec);
    a.mailbox.push_back(std::move(item));
    return true;
  }
  uint64_t& next = a.next_seq.try_emplace(spec.caller, 1).first->second;
  if (spec.seq > next) {  // an earlier call from this caller is still on its way
    a.early[spec.caller].emplace(spec.seq, std::move(spec));
    return false;
  }
  auto gated = a.gated.find(spec.caller);  // an earlier call waits at the gate: behind it
  auto push = [&](proto::TaskSpec&& s) {
    auto item = std::make_unique<proto::Execute>();
    item->spec = std::move(s);
    (gated != a.gated.end() ? gated->second : a.mailbox).push_back(std::move(item));
  };
  ProcId caller = spec.caller;
  push(std::move(spec));
  ++next;
  auto& early = a.early[caller];
  for (auto it = early.begin(); it != early.end() && it->first == next; it = early.erase(it)) {
    push(std::move(it->second));
    ++next;
  }
  return true;
}

void WorkerService::OnActorCall(proto::TaskSpec&& spec) {
  std::shared_ptr<Actor> a;
  {
    std::lock_guard<std::mutex> lk(actors_mu_);
    auto it = actors_.find(spec.actor);
    if (it == actors_.end()) {
      if (destroyed_.count(spec.actor)) {
        return;  // the head has failed (or re-sent) every call to it
      } else {
        orphan_calls_[spec.actor].push_back(std::move(spec));  // its creation is on the way
      }
      return;
    }
    a = it->second;
  }
  EnqueueCall(*a, std::move(spec));
}

void WorkerService::OnDestroyActor(const ActorId& actor) {
  std::shared_ptr<Actor> a;
  {
    std::lock_guard<std::mutex> lk(actors_mu_);
    destroyed_.insert(actor);
    auto it = actors_.find(actor);
    if (it == actors_.end()) return;
    a = it->second;
    actors_.erase(it);
  }
  std::lock_guard<std::mutex> lk(a->mu);
  a->dead = true;
  if (a->error.empty()) a->error = "killed by Kill()";
  a->stopping = true;
  // Calls not started are the head's to fail or re-send (it has done so already).
  a->mailbox.clear();
  a->early.clear();
  a->gated.clear();
  a->cv.notify_all();
}

void WorkerService::RunMainExecutor() { ExecLoop(true); }

void WorkerService::Stop() {
  checks_.Stop();
  StopGate();
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  std::lock_guard<std::mutex> lk(actors_mu_);
  for (auto& [id, a] : actors_) {
    std::lock_guard<std::mutex> alk(a->mu);
    a->stopping = true;
    a->mailbox.clear();
    a->gated.clear();
    a->cv.notify_all();
  }
}

void WorkerService::ExecLoop(bool main) {
  tl_executor = true;
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    if (queue_.empty()) {
      // Helpers started while tasks were blocked retire once they are not needed.
      if (!main && total_ - blocked_ > 1) {
        --total_;
        return;
      }
      cv_.wait(lk);
      continue;
    }
    std::unique_ptr<proto::Execute> ex = std::move(queue_.front());
    queue_.pop_front();
    lk.unlock();
    try {  // nothing may escape an executor thread (it would end the process)
      RunTask(*ex);
    } catch (...) {
      Status st = CurrentExceptionStatus("running the task");
      MPIRAY_LOG(error, "{}", st.message());
      ReportDone(ex->spec, ErrorReturns(ex->spec, Status(st.code(), Where(ex->spec) + ": " + st.message())),
                 proto::DoneStatus::kOk);
    }
    lk.lock();
  }
  if (!main) --total_;
}

void WorkerService::OnBlockChange(bool blocked) {
  const bool executor = tl_executor && tl_task != nullptr;
  TaskId task;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (executor) {
      task = tl_task->id;
    } else if (blocked) {
      // A thread the task started itself waits (Ray releases the task's CPU then too): it
      // counts for the task when this process runs exactly one.
      if (running_.size() != 1) return;
      task = *running_.begin();
      tl_blocked_for = task;
    } else {
      task = tl_blocked_for;
      tl_blocked_for = TaskId();
      if (task.nil()) return;
    }
    if (blocked) {
      if (block_counts_[task]++ > 0) return;  // already blocked (another of its threads)
      ++blocked_;
      if (total_ - blocked_ <= 0 && !stop_) {
        ++total_;
        try {
          std::thread([this] { ExecLoop(false); }).detach();
        } catch (const std::exception& e) {  // out of threads: tasks wait for a blocked one
          --total_;
          MPIRAY_LOG(warn, "cannot start a helper executor thread: {}", e.what());
        }
      }
    } else {
      auto it = block_counts_.find(task);
      if (it == block_counts_.end()) return;  // its task ended meanwhile
      if (--it->second > 0) return;
      block_counts_.erase(it);
      --blocked_;
    }
  }
  SendMsg(transport_, kHeadProc, blocked ? Msg::kTaskBlocked : Msg::kTaskUnblocked,
          proto::TaskRef{task});
}

std::vector<proto::NewObject> WorkerService::ErrorReturns(const proto::TaskSpec& spec,
                                                          const Status& st,
                                                          const std::string& error_detail,
                                                          const Buffer& upstream) {
  std::vector<proto::NewObject> out;
  uint32_t n = spec.task_kind() == TaskKind::kActorCreate ? 1 : spec.num_returns;
  // An argument's own error (the exception it carries too) becomes this call's, as for tasks.
  Buffer payload = upstream.size() ? upstream : Buffer(detail::MakeErrorPayload(st.code(), st.message(), error_detail));
  for (uint32_t i = 0; i < n; ++i) {
    proto::NewObject o;
    o.id = spec.ReturnId(i);
    o.where = static_cast<uint8_t>(proto::Where::kError);
    o.data = payload;
    o.size = payload.size();
    out.push_back(std::move(o));
  }
  return out;
}

Result<detail::ArgList> WorkerService::ResolveArgs(const proto::Execute& ex, Buffer* upstream,
                                                   int64_t timeout_ms) {
  detail::ArgList args;
  args.reserve(ex.spec.args.size());
  std::vector<ObjectId> unresolved;  // actor calls: refs are read here, not by the head
  size_t k = 0;
  for (const proto::Arg& a : ex.spec.args) {
    if (!a.by_ref) {
      args.push_back(a.value);
    } else if (k < ex.resolved.size() &&
               ex.resolved[k].where != static_cast<uint8_t>(proto::Where::kPending)) {
      // A copy that vanished meanwhile (its node died) is asked for again through the head.
      args.push_back(client_.MaterializeOrRelocate(ex.resolved[k++]));
    } else {
      if (k < ex.resolved.size()) ++k;  // being rebuilt: wait for it below
      unresolved.push_back(a.ref);
      args.emplace_back();
    }
  }
  if (!unresolved.empty()) {
    std::vector<Buffer> got;
    if (timeout_ms == 0) {  // kTimeout when one is not ready (other failures: as a wait's, below)
      auto quick = client_.GetAll(unresolved, 0);
      if (quick.ok()) got = std::move(quick).value();
      else if (quick.status().code() == StatusCode::kTimeout) return quick.status();
    }
    if (got.empty()) {
      try {
        got = client_.Get(unresolved, -1);
      } catch (...) {
        return CurrentExceptionStatus("reading arguments");
      }
    }
    size_t j = 0;
    for (size_t i = 0; i < ex.spec.args.size(); ++i) {
      if (ex.spec.args[i].by_ref && args[i].data() == nullptr) args[i] = got[j++];
    }
  }
  for (const Buffer& b : args) {
    if (b.size() >= sizeof(detail::PayloadHeader) &&
        detail::CheckPayload(b) == detail::PayloadFormat::kError) {
      if (upstream) *upstream = b;
      return detail::ErrorFromPayload(b);  // an upstream failure propagates
    }
  }
  return args;
}

std::vector<proto::NewObject> WorkerService::RunFunction(const proto::TaskSpec& spec,
                                                         const detail::ArgList& args, void* self,
                                                         bool* retryable) {
  LanguageRuntime* lang = Lang(spec.language);
  if (!lang) {
    return ErrorReturns(spec, Status(StatusCode::kTaskError,
                                     Where(spec) + ": this worker cannot run language " +
                                         std::to_string(spec.language)));
  }
  StoreSink sink(client_, spec);
  Status st = self ? lang->CallMethod(self, spec.function, args, sink)
                   : lang->CallFunction(spec.function, args, sink);
  std::string detail;
  if (!st.ok()) {
    bool again = lang->TakeRetryable();
    if (retryable) *retryable = again;
    detail = lang->TakeErrorDetail();
  }
  return Returns(spec, std::move(sink.out), std::move(st), detail);
}

std::vector<proto::NewObject> WorkerService::Returns(const proto::TaskSpec& spec,
                                                     std::vector<proto::NewObject>&& out, Status st,
                                                     const std::string& error_detail) {
  uint32_t want = spec.num_returns;
  if (st.ok() && out.size() < want) {
    st = Status(StatusCode::kTaskError, "returned " + std::to_string(out.size()) +
                                            " values, expected " + std::to_string(want));
  }
  if (st.ok()) return std::move(out);
  for (const auto& o : out) {
    if (o.where == static_cast<uint8_t>(proto::Where::kShm)) SendMsg(transport_, transport_.self(), Msg::kFreeObjects, proto::IdList{{o.id}});
  }
  return ErrorReturns(spec, Status(st.code(), Where(spec) + ": " + st.message()), error_detail);
}

void WorkerService::RunTask(proto::Execute& ex) {
  const proto::TaskSpec& spec = ex.spec;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (cancelled_.erase(spec.id)) {
      ReportDone(spec, {}, proto::DoneStatus::kCancelled);
      return;
    }
    running_.insert(spec.id);
  }
  tl_task = &spec;
  tl_gpus = &ex.gpus;
  tl_stream_items = 0;
  tl_started_us = NowUs();
  detail::SetOutputName(spec.name.empty() ? spec.function : spec.name);
  std::vector<proto::NewObject> returns;
  VisibleDevices devices(ex.gpus);
  Buffer upstream;
  auto args = ResolveArgs(ex, &upstream);
  bool retryable = false;
  if (!args.ok()) {
    returns = ErrorReturns(spec, args.status(), {}, upstream);
  } else {
    returns = RunFunction(spec, *args, nullptr, &retryable);
  }
  tl_task = nullptr;
  tl_gpus = nullptr;
  bool cancelled;
  {
    std::lock_guard<std::mutex> lk(mu_);
    cancelled = cancelled_.erase(spec.id) > 0;
    running_.erase(spec.id);
    // Threads it started may still wait: the task no longer counts as blocked (the head
    // ends its lending with the task).
    auto b = block_counts_.find(spec.id);
    if (b != block_counts_.end()) {
      block_counts_.erase(b);
      --blocked_;
    }
  }
  ReportDone(spec, std::move(returns),
             cancelled   ? proto::DoneStatus::kCancelled
             : retryable ? proto::DoneStatus::kRetryable
                         : proto::DoneStatus::kOk);
}

void WorkerService::RunActorLoop(std::shared_ptr<Actor> a) {
  tl_actor = a->id;
  bool busy = false;
  while (true) {
    std::unique_ptr<proto::Execute> item;
    bool watch = false;
    {
      std::unique_lock<std::mutex> lk(a->mu);
      if (busy) a->Done();
      busy = false;
      ++a->idle;
      a->cv.wait(lk, [&] { return a->MayTake() || a->stopping; });
      --a->idle;
      if (a->mailbox.empty()) break;
      item = std::move(a->mailbox.front());
      a->mailbox.pop_front();
      a->Took();
      busy = true;
      a->Dispatch(&watch);  // calls left behind it: watched while this thread is busy
    }
    if (watch) Watch(a);
    // Nothing may escape a worker thread (it would end the process): a failure inside is the
    // call's error.
    try {
      RunActorItem(*a, item);
    } catch (...) {
      Status st = CurrentExceptionStatus("running the call");
      MPIRAY_LOG(error, "actor {}: {}", a->id.ToString(), st.message());
      if (item) {  // (a started call reports itself)
        ReportDone(item->spec, ErrorReturns(item->spec, Status(st.code(), Where(item->spec) + ": " + st.message())),
                   proto::DoneStatus::kOk);
      }
    }
  }
  std::lock_guard<std::mutex> lk(a->mu);
  if (--a->threads == 0) a->instance.reset();  // the last thread out runs the destructor
}

void WorkerService::RunActorItem(Actor& a, std::unique_ptr<proto::Execute>& held) {
  proto::Execute& item = *held;
  const proto::TaskSpec& spec = item.spec;
  tl_task = &spec;
  tl_started_us = NowUs();
  struct Reset {
    ~Reset() {
      tl_task = nullptr;
      tl_gpus = nullptr;
    }
  } reset;
  if (!a.name.empty()) detail::SetOutputName(a.name);
  if (spec.task_kind() == TaskKind::kActorCreate) {
    a.gpus = item.gpus;
    VisibleDevices keep(a.gpus, /*restore=*/false);
  }
  tl_gpus = &a.gpus;
  if (spec.task_kind() == TaskKind::kActorCreate) {
    std::vector<proto::NewObject> returns;
    LanguageRuntime* lang = Lang(spec.language);
    auto args = ResolveArgs(item);
    Status st;
    std::string error_detail;
    if (!args.ok()) {
      st = args.status();
    } else if (!lang) {
      st = Status(StatusCode::kTaskError, "this worker cannot run language " + std::to_string(spec.language));
    } else {
      auto obj = lang->CreateActor(spec.function, *args);
      if (obj.ok()) {
        bool defers = lang->DefersCalls(obj->get());
        std::lock_guard<std::mutex> lk(a.mu);
        a.instance = std::move(obj).value();
        if (defers) {
          a.defers = true;
          a.max_threads = 1;  // starting a call takes no time: one thread keeps their order
        }
      } else {
        st = obj.status();
        error_detail = lang->TakeErrorDetail();
      }
    }
    if (st.ok()) {
      StoreSink sink(client_, spec);
      sink.Emit(detail::Serialize(msgpack::type::nil_t()));
      returns = std::move(sink.out);
      bool watch = false;
      {
        std::lock_guard<std::mutex> lk(a.mu);
        a.ready = true;  // calls queued meanwhile may run side by side now
        a.Dispatch(&watch);  // (this thread is busy: it takes them, or the watch adds threads)
      }
      if (watch) Watch(a.shared_from_this());
    } else {
      std::lock_guard<std::mutex> lk(a.mu);
      a.dead = true;
      a.error = "its constructor failed: " + st.message();
      returns = ErrorReturns(spec, Status(st.code(), Where(spec) + ": " + st.message()),
                             error_detail);
    }
    ReportDone(spec, std::move(returns), proto::DoneStatus::kOk);
    return;
  }
  bool dead;
  bool defers;
  std::string error;
  void* self;
  {
    std::lock_guard<std::mutex> lk(a.mu);
    dead = a.dead;
    defers = a.defers;
    error = a.error;
    self = a.instance.get();
  }
  if (dead || !self) {
    ReportDone(spec,
               ErrorReturns(spec, Status(StatusCode::kActorDied,
                                         "actor " + a.id.ToString() + " is dead: " + error)),
               proto::DoneStatus::kOk);
    return;
  }
  Buffer upstream;
  // An argument not ready yet: the call steps aside (GateIfWaiting) and another caller's call
  // runs meanwhile; if it cannot (the actor is stopping), it waits here.
  auto args = ResolveArgs(item, &upstream, 0);
  if (!args.ok() && args.status().code() == StatusCode::kTimeout) {
    if (GateIfWaiting(a, held)) return;
    args = ResolveArgs(item, &upstream);
  }
  if (defers && args.ok() && StartDeferred(a, held, *args, self)) return;  // it reports itself
  std::vector<proto::NewObject> returns =
      args.ok() ? RunFunction(spec, *args, self) : ErrorReturns(spec, args.status(), {}, upstream);
  ReportDone(spec, std::move(returns), proto::DoneStatus::kOk);
}

// A call of an instance whose runtime defers calls (Python's async actors): it owns its
// Execute and its sink, and reports itself when the runtime finishes it, from whatever thread.
class WorkerService::DeferredActorCall final : public detail::DeferredCall {
 public:
  DeferredActorCall(WorkerService& w, std::shared_ptr<Actor> a, std::unique_ptr<proto::Execute> item)
      : w_(w), actor_(std::move(a)), item_(std::move(item)), sink_(w.client_, item_->spec),
        started_us_(tl_started_us) {}
  ~DeferredActorCall() override {
    if (armed_ && !done_) Finish(Status(StatusCode::kTaskError, "the call ended without a result"), {}, false);
  }
  detail::ResultSink& sink() override { return sink_; }
  const proto::TaskSpec& spec() const { return item_->spec; }
  void Finish(Status st, std::string error_detail, bool) override {
    if (done_ || !armed_) return;
    done_ = true;
    const proto::TaskSpec& spec = item_->spec;
    auto returns = w_.Returns(spec, std::move(sink_.out), std::move(st), error_detail);
    int64_t saved = tl_started_us;
    tl_started_us = started_us_;
    w_.ReportDone(spec, std::move(returns), proto::DoneStatus::kOk);
    tl_started_us = saved;
    std::lock_guard<std::mutex> lk(actor_->mu);
    // Only a thread held back by max_concurrency waits for this (no wake-up otherwise).
    if (actor_->deferred-- == actor_->max_concurrency) actor_->cv.notify_one();
  }
  void SetCurrent(bool on) override {
    if (on) {
      saved_ = {tl_task, tl_actor, tl_gpus};
      tl_task = &item_->spec;
      tl_actor = actor_->id;
      tl_gpus = &actor_->gpus;
    } else {
      tl_task = saved_.task;
      tl_actor = saved_.actor;
      tl_gpus = saved_.gpus;
    }
  }
  // The runtime did not start it: the call goes back to the caller, nothing is reported.
  std::unique_ptr<proto::Execute> TakeBack() {
    armed_ = false;
    return std::move(item_);
  }

 private:
  WorkerService& w_;
  std::shared_ptr<Actor> actor_;
  std::unique_ptr<proto::Execute> item_;
  StoreSink sink_;
  int64_t started_us_;
  bool armed_ = true;
  bool done_ = false;
  struct {
    const proto::TaskSpec* task = nullptr;
    ActorId actor;
    const std::vector<int32_t>* gpus = nullptr;
  } saved_;
};

bool WorkerService::StartDeferred(Actor& a, std::unique_ptr<proto::Execute>& item,
                                  const detail::ArgList& args, void* self) {
  LanguageRuntime* lang = Lang(item->spec.language);
  if (!lang) return false;
  {
    std::lock_guard<std::mutex> lk(a.mu);
    ++a.deferred;  // before it starts: it may finish before StartMethod returns
  }
  auto owned = std::make_unique<DeferredActorCall>(*this, a.shared_from_this(), std::move(item));
  DeferredActorCall* call = owned.get();
  std::unique_ptr<detail::DeferredCall> handed = std::move(owned);
  if (lang->StartMethod(self, call->spec().function, args, handed)) return true;
  item = call->TakeBack();
  std::lock_guard<std::mutex> lk(a.mu);
  --a.deferred;
  return false;
}

void WorkerService::ReportDone(const proto::TaskSpec& spec, std::vector<proto::NewObject>&& returns,
                               proto::DoneStatus status) {
  int64_t end = NowUs();
  int64_t start = tl_started_us ? tl_started_us : end;
  SendWith(transport_, kHeadProc, Msg::kTaskDone, [&](auto& pk) {
    pk.pack_array(8);
    pk.pack(spec.id);
    pk.pack(spec.kind);
    pk.pack(static_cast<uint8_t>(status));
    pk.pack(returns);
    pk.pack(spec.actor);
    pk.pack(spec.caller);
    pk.pack(start);
    pk.pack(end);
  });
  auto holds = std::move(tl_return_holds);
  tl_return_holds.clear();
  for (const ObjectId& id : holds) client_.RemoveLocalRef(id);
}

}  // namespace mpiray

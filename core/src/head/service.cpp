#include "head/service.h"

#include <algorithm>
#include <sched.h>

#include <chrono>
#include <cstdlib>
#include <set>

#include "head/common.h"
#include "log.h"

namespace mpiray {

using proto::Msg;
using proto::TaskKind;

namespace {

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

head::TaskTable::Deps TaskDeps(Transport& t, const RuntimeConfig& c, Scheduler& s,
                               head::ObjectDirectory& o, head::LineageTable& l,
                               const head::PlacementGroups& g, head::GpuAllocator& gpus,
                               const head::Membership& m) {
  head::TaskTable::Deps d;
  d.transport = &t;
  d.config = &c;
  d.sched = &s;
  d.objects = &o;
  d.lineage = &l;
  d.groups = &g;
  d.gpus = &gpus;
  d.members = &m;
  return d;
}

head::ActorDirectory::Deps ActorDeps(Transport& t, Scheduler& s, head::ObjectDirectory& o,
                                     head::TaskTable& tasks, head::GpuAllocator& gpus,
                                     const head::Membership& m) {
  head::ActorDirectory::Deps d;
  d.transport = &t;
  d.sched = &s;
  d.objects = &o;
  d.tasks = &tasks;
  d.gpus = &gpus;
  d.members = &m;
  return d;
}

}  // namespace

HeadService::HeadService(Transport& transport, const RuntimeConfig& config,
                         std::function<int64_t()> now_ms)
    : transport_(transport),
      config_(config),
      now_ms_(now_ms ? std::move(now_ms) : SteadyMs),
      sched_(config.max_inflight_per_worker),
      members_(transport_, config_, sched_, gpus_, now_ms_()),
      objects_(transport_, members_, *this, now_ms_),
      lineage_(objects_),
      groups_(config_, sched_, objects_),
      tasks_(TaskDeps(transport_, config_, sched_, objects_, lineage_, groups_, gpus_, members_)),
      actors_(ActorDeps(transport_, sched_, objects_, tasks_, gpus_, members_)) {
  tasks_.SetEvents(&actors_);
  RegisterHandlers(router_);
}

HeadService::~HeadService() = default;

// ------------------------------------------------------------------ messages

void HeadService::RegisterHandlers(MessageRouter& router) {
  head::HeadRoutes routes(router, *this);
  members_.Register(routes);
  objects_.Register(routes);
  groups_.Register(routes);
  tasks_.Register(routes);
  actors_.Register(routes);
  // Messages that cross owners.
  routes.On<proto::TaskSpec>(Msg::kSubmit,
                             [this](ProcId src, proto::TaskSpec&& spec) { OnSubmit(src, std::move(spec)); });
  routes.On<proto::TaskDone>(Msg::kTaskDone,
                             [this](ProcId src, proto::TaskDone&& done) { OnTaskDone(src, std::move(done)); });
  routes.On<proto::Cancel>(Msg::kCancel, [this](ProcId, proto::Cancel&& c) {
    return CancelLocked(c.id, c.force, c.recursive);
  });
  routes.On<proto::RemovePlacementGroup>(
      Msg::kRemovePlacementGroup,
      [this](ProcId, proto::RemovePlacementGroup&& r) { return RemovePlacementGroupLocked(r.id); });
  // Not through the gate: View() takes the lock itself, piece by piece.
  router.On<proto::ClusterQuery>(Msg::kClusterQuery, [this](ProcId src, proto::ClusterQuery&& q) {
    proto::ClusterView v = View();
    v.req = q.req;
    SendMsg(transport_, src, Msg::kClusterView, v);
  });
}

Status HeadService::Run(ProcId src, head::StatusFn body) {
  std::lock_guard<std::mutex> lk(mu_);
  members_.Touch(src, now_ms_());
  Status st = body();
  Dispatch();
  return st;
}

void HeadService::Handle(ProcId src, Msg type, const char* body, size_t len) {
  router_.Route(src, type, body, len);
}

void HeadService::OnSubmit(ProcId src, proto::TaskSpec&& spec) {
  const uint32_t nret = head::ReturnCount(spec);
  const TaskId tid = spec.id;
  Status st = SubmitLocked(std::move(spec), src);
  if (!st.ok()) {
    // The submitter learns of the error when it reads a return.
    for (uint32_t i = 0; i < nret; ++i) {
      ObjectId rid = ObjectId::ForReturn(tid, i);
      objects_.Create(rid).holders.assign(1, src);
      objects_.SetError(rid, st.code(), st.message());
    }
  }
}

void HeadService::OnTaskDone(ProcId src, proto::TaskDone&& done) {
  if (static_cast<TaskKind>(done.kind) == TaskKind::kActorCall) {
    actors_.OnCallDone(src, std::move(done));
  } else {
    tasks_.OnTaskDone(src, std::move(done));
  }
}

void HeadService::OnTick() {
  std::vector<std::pair<ProcId, int64_t>> silent;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (closed_) return;
    int64_t now = now_ms_();
    if (objects_.AwaitingPuts()) objects_.ExpireAwaitedPuts(now);
    silent = members_.Tick(now);
  }
  for (auto [id, ms] : silent) {
    RemoveProcess(id, "no heartbeat for " + std::to_string(ms) + " ms");
    SendMsg(transport_, id, Msg::kShutdown, proto::Shutdown{"declared dead by the head"});
  }
}

void HeadService::Dispatch() {
  if (closed_) return;
  if (groups_.HasPending()) groups_.PlacePending();
  if (actors_.HasPending()) actors_.PlacePending();
  tasks_.DispatchQueued();
}

// ------------------------------------------------------------------ membership

void HeadService::AddProcess(const proto::PeerInfo& peer, bool is_worker) {
  std::lock_guard<std::mutex> lk(mu_);
  members_.Add(peer, is_worker, now_ms_());
  if (is_worker) Dispatch();
}

void HeadService::ActorProcessFailed(NodeId node, const std::string& why) {
  std::lock_guard<std::mutex> lk(mu_);
  actors_.OnProcessStartFailed(node, why);
}

void HeadService::ProcessSaidBye(ProcId proc) {
  bool dedicated;
  {
    std::lock_guard<std::mutex> lk(mu_);
    const head::ProcInfo* p = members_.Find(proc);
    dedicated = p && p->alive && p->peer.dedicated;
  }
  if (dedicated) RemoveProcess(proc, "its actor ended", /*expected=*/true);
}

void HeadService::RemoveProcess(ProcId proc, const std::string& why, bool expected) {
  std::lock_guard<std::mutex> lk(mu_);
  std::optional<head::Departure> gone = RemoveProcessLocked(proc, why, expected);
  if (!gone || gone->peer.dedicated || gone->node_gone) return;
  // Processes started for actors do not keep a node alive: when only they are left (the
  // node's workers were killed), they go too, and their actors restart elsewhere or die.
  std::vector<ProcId> rest = members_.ProcsOnNode(gone->peer.node);
  for (ProcId p : rest) {
    const head::ProcInfo* info = members_.Find(p);
    if (info && info->alive && !info->peer.dedicated) return;
  }
  for (ProcId p : rest) {
    SendMsg(transport_, p, proto::Msg::kShutdown, proto::Shutdown{"its node is gone"});
    RemoveProcessLocked(p, "its node is gone (" + why + ")", false);
  }
}

std::optional<head::Departure> HeadService::RemoveProcessLocked(ProcId proc, const std::string& why,
                                                                bool expected) {
  std::optional<head::Departure> gone = members_.Remove(proc, why, expected);
  if (!gone) return gone;
  const NodeId node = gone->peer.node;
  if (gone->node_gone) groups_.OnNodeRemoved(node);
  if (gone->worker) {
    tasks_.OnProcessDied(gone->peer);
    actors_.OnProcessDied(proc, why);
  }
  // Handles held by the dead process are gone; so are the copies on its node, if it was the
  // node's last process: objects left without any are made again from their lineage, or lost.
  std::vector<ObjectId> held;
  std::vector<ObjectId> lost;
  objects_.OnProcessDied(proc, node, gone->node_gone, &held, &lost);
  for (const ObjectId& oid : lost) {
    head::ObjectEntry* e = objects_.Find(oid);
    if (!e || e->state != head::ObjectEntry::kReady || !e->locations.empty()) continue;
    std::string cannot = tasks_.Reconstruct(oid, *e);
    if (!cannot.empty()) objects_.MarkLost(oid, cannot);
  }
  for (const ObjectId& id : held) objects_.MaybeFree(id);
  Dispatch();
  return gone;
}

void HeadService::ExpectWorkers(int delta) {
  std::lock_guard<std::mutex> lk(mu_);
  sched_.ExpectWorkers(delta);
}

std::vector<proto::PeerInfo> HeadService::Peers() const {
  std::lock_guard<std::mutex> lk(mu_);
  return members_.Peers();
}

std::vector<ProcId> HeadService::Workers() const {
  std::lock_guard<std::mutex> lk(mu_);
  return members_.Workers();
}

// ------------------------------------------------------------------ driver calls

Status HeadService::Submit(proto::TaskSpec&& spec, ProcId submitter) {
  std::lock_guard<std::mutex> lk(mu_);
  if (closed_) return Unavailable("the runtime is shutting down");
  Status st = SubmitLocked(std::move(spec), submitter);
  Dispatch();
  return st;
}

Status HeadService::SubmitLocked(proto::TaskSpec&& spec, ProcId submitter) {
  switch (spec.task_kind()) {
    case TaskKind::kActorCall:
      return actors_.SubmitCall(std::move(spec), submitter);
    case TaskKind::kActorCreate:
      return actors_.Create(std::move(spec), submitter);
    case TaskKind::kNormal:
      break;
  }
  return tasks_.Submit(std::move(spec), submitter);
}

Status HeadService::Put(proto::NewObject&& obj, ProcId holder) {
  std::lock_guard<std::mutex> lk(mu_);
  objects_.Put(std::move(obj), holder);
  return Status::OK();
}

void HeadService::AddHolder(const ObjectId& id, ProcId proc) {
  std::lock_guard<std::mutex> lk(mu_);
  objects_.AddHolder(id, proc);
}

void HeadService::RemoveHolder(const ObjectId& id, ProcId proc) {
  std::lock_guard<std::mutex> lk(mu_);
  objects_.RemoveHolder(id, proc);
}

void HeadService::AddLocation(const ObjectId& id, NodeId node) {
  std::lock_guard<std::mutex> lk(mu_);
  objects_.AddLocation(id, node);
}

namespace {
// How long the driver's thread looks for its result before it sleeps (MPIRAY_WAIT_SPIN_US,
// default 200): a reply that comes within it skips the sleep and the wake-up, which on a VM
// cost a round trip tens of microseconds (ray.get of an actor call: 7.6k -> 13.4k/s on the
// 2-core VM, docs/performance.md). A thread whose last wait ran out its time does not spin:
// the driver's long waits come in 50 ms slices (Ctrl-C), which stay free of busy polling.
int64_t WaitSpinUs() {
  static const int64_t us = [] {
    const char* v = std::getenv("MPIRAY_WAIT_SPIN_US");
    long x = v ? std::strtol(v, nullptr, 10) : 200;
    return static_cast<int64_t>(std::clamp(x, 0L, 10000L));
  }();
  return us;
}
thread_local bool tl_last_wait_timed_out = false;
}  // namespace

void HeadService::SpinForWaiter(std::unique_lock<std::mutex>& lk, head::Waiter& w, int64_t timeout_ms) {
  int64_t spin_us = WaitSpinUs();
  if (spin_us <= 0 || timeout_ms == 0 || tl_last_wait_timed_out) return;
  if (timeout_ms > 0) spin_us = std::min<int64_t>(spin_us, timeout_ms * 1000);
  lk.unlock();
  auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us);
  while (!w.woken.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < until) {
    sched_yield();
  }
  lk.lock();
}

std::vector<proto::ObjectLoc> HeadService::WaitLocal(const std::vector<ObjectId>& ids,
                                                     size_t num_ready, int64_t timeout_ms,
                                                     std::vector<bool>* ready,
                                                     NodeId requester_node, bool stop_on_error,
                                                     bool locations) {
  std::unique_lock<std::mutex> lk(mu_);
  head::Waiter w;
  w.stop_on_error = stop_on_error;
  size_t have = 0;
  for (const ObjectId& id : ids) {
    const head::ObjectEntry* e = objects_.Find(id);
    if (!e || e->ready()) ++have;
    if (!locations && have >= num_ready) break;  // enough: the rest are not looked at
    if (stop_on_error && (!e || (e->ready() && e->where == head::WhereByte(proto::Where::kError)))) {
      w.error = true;  // unknown (lost) or failed: Get raises it at once
    }
  }
  bool timed_out = false;
  if (have < num_ready && !w.error && timeout_ms != 0 && !closed_) {
    w.needed = num_ready - have;
    std::vector<ObjectId> registered;
    for (const ObjectId& id : ids) {
      const head::ObjectEntry* e = objects_.Find(id);
      if (e && !e->ready()) {
        objects_.AddWaiter(id, &w);
        registered.push_back(id);
      }
    }
    auto done = [&] { return w.ready >= w.needed || w.error || closed_; };
    SpinForWaiter(lk, w, timeout_ms);
    if (timeout_ms < 0) {
      w.cv.wait(lk, done);
    } else {
      w.cv.wait_for(lk, std::chrono::milliseconds(timeout_ms), done);
    }
    timed_out = !done();
    for (const ObjectId& id : registered) objects_.RemoveWaiter(id, &w);
  }
  tl_last_wait_timed_out = timed_out;
  ready->assign(ids.size(), false);
  if (!locations) {
    size_t flagged = 0;
    for (size_t i = 0; i < ids.size() && flagged < num_ready; ++i) {
      const head::ObjectEntry* e = objects_.Find(ids[i]);
      if (!e || e->ready() || closed_) {
        (*ready)[i] = true;
        ++flagged;
      }
    }
    return {};
  }
  std::vector<proto::ObjectLoc> out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const head::ObjectEntry* e = objects_.Find(ids[i]);
    if (!e || e->ready()) {
      out[i] = objects_.LocateOrLost(ids[i], requester_node);
      (*ready)[i] = true;
    } else if (closed_) {
      out[i].id = ids[i];
      out[i].where = head::WhereByte(proto::Where::kError);
      out[i].data = head::ErrorPayload(StatusCode::kUnavailable,
                                       "the runtime is shutting down: " + close_reason_);
      (*ready)[i] = true;
    }
  }
  return out;
}

Status HeadService::Cancel(const ObjectId& id, bool force, bool recursive) {
  std::lock_guard<std::mutex> lk(mu_);
  Status st = CancelLocked(id, force, recursive);
  Dispatch();
  return st;
}

Status HeadService::CancelLocked(const ObjectId& id, bool force, bool recursive) {
  const TaskId tid = id.task_id();
  // The tasks it submitted first (they may be what it waits for), as Ray's recursive cancel.
  if (recursive) {
    for (TaskId k : tasks_.TakeChildren(tid)) {
      Status st = CancelLocked(ObjectId::ForReturn(k, 0), force, true);
      if (!st.ok()) MPIRAY_LOG(debug, "cancelling child task {}: {}", k.ToString(), st.message());
    }
  }
  head::TaskRec* t = tasks_.Find(tid);
  if (!t) return Status::OK();  // finished already (or a put): nothing to do
  switch (t->spec.task_kind()) {
    case TaskKind::kActorCreate:
      return InvalidArgument("an actor creation cannot be cancelled; use kill() on the actor");
    case TaskKind::kActorCall:
      return actors_.CancelCall(tid, force);
    case TaskKind::kNormal:
      break;
  }
  return tasks_.CancelTask(*t, force);
}

void HeadService::CallRetried(const TaskId& task) {
  std::lock_guard<std::mutex> lk(mu_);
  actors_.OnCallRetried(task);
}

Status HeadService::KillActor(const ActorId& actor, bool no_restart) {
  std::lock_guard<std::mutex> lk(mu_);
  Status st = actors_.Kill(actor, no_restart);
  Dispatch();
  return st;
}

bool HeadService::FindNamedActor(const std::string& ns, const std::string& name, ActorId* actor,
                                 Buffer* handle_meta) {
  std::lock_guard<std::mutex> lk(mu_);
  return actors_.FindNamed(ns, name, actor, handle_meta);
}

void HeadService::StreamWant(const ObjectId& id, ProcId caller) {
  std::lock_guard<std::mutex> lk(mu_);
  tasks_.StreamWant(id, caller);
}

std::vector<proto::ObjectLoc> HeadService::Drain(const std::vector<ProcId>& procs, NodeId keep_node) {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<NodeId> leaving;
  for (ProcId p : procs) {
    sched_.SetDraining(p, true);
    NodeId n = members_.NodeOf(p);
    if (std::find(leaving.begin(), leaving.end(), n) == leaving.end()) leaving.push_back(n);
  }
  // A node stays if some process on it does not leave.
  leaving.erase(std::remove_if(leaving.begin(), leaving.end(),
                               [&](NodeId n) {
                                 for (ProcId p : members_.ProcsOnNode(n)) {
                                   if (std::find(procs.begin(), procs.end(), p) == procs.end()) return true;
                                 }
                                 return false;
                               }),
                leaving.end());
  return objects_.Stranded(leaving, keep_node);
}

std::pair<int, int> HeadService::Load(ProcId proc) const {
  std::lock_guard<std::mutex> lk(mu_);
  return sched_.Load(proc);
}

size_t HeadService::PendingActors() const {
  std::lock_guard<std::mutex> lk(mu_);
  return actors_.PendingCount();
}

// ------------------------------------------------------------------ placement groups

Status HeadService::CreatePlacementGroup(proto::PlacementGroupSpec&& spec, ProcId submitter) {
  std::lock_guard<std::mutex> lk(mu_);
  Status st = groups_.Create(std::move(spec), submitter);
  Dispatch();
  return st;
}

Status HeadService::RemovePlacementGroup(TaskId id) {
  std::lock_guard<std::mutex> lk(mu_);
  Status st = RemovePlacementGroupLocked(id);
  Dispatch();
  return st;
}

Status HeadService::RemovePlacementGroupLocked(TaskId id) {
  MPIRAY_ASSIGN_OR_RETURN(head::GroupRec* g, groups_.FindForRemoval(id));
  if (g->state == head::GroupRec::kRemoved) return Status::OK();
  // Its actors die and its tasks that have not started fail (found before its resources go).
  auto uses = [&](uint32_t shape) { return groups_.Uses(shape, *g); };
  std::vector<ActorId> actors = actors_.Using(uses);
  std::vector<TaskId> waiting = tasks_.WaitingUsing(uses);
  groups_.Remove(*g);
  const std::string why = "its placement group " + id.ToString() + " was removed";
  actors_.KillAll(actors, why);
  for (TaskId tid : waiting) {
    if (head::TaskRec* t = tasks_.Find(tid)) {
      tasks_.Fail(*t, head::ErrorPayload(StatusCode::kCancelled,
                                         "task " + t->spec.function + " cannot run: " + why));
    }
  }
  groups_.FailIfUnready(id, *g);
  return Status::OK();
}

std::vector<PlacementGroupInfo> HeadService::PlacementGroups() const {
  std::lock_guard<std::mutex> lk(mu_);
  return groups_.Table();
}

// ------------------------------------------------------------------ views and shutdown

void HeadService::Close(const std::string& why) {
  std::lock_guard<std::mutex> lk(mu_);
  closed_ = true;
  close_reason_ = why;
  tasks_.Close();
  actors_.Close();
  objects_.WakeAllWaiters();
}

StateListing HeadService::ListState(size_t limit) const {
  std::lock_guard<std::mutex> lk(mu_);
  StateListing out;
  tasks_.List(&out, limit);
  actors_.List(&out, limit);
  objects_.List(&out, limit);
  return out;
}

proto::ClusterView HeadService::View() const {
  ClusterStatus st = Status_();
  proto::ClusterView v;
  std::set<ProcId> workers;
  for (auto& n : st.nodes) {
    workers.insert(n.workers.begin(), n.workers.end());
    v.nodes.push_back({n.id, {n.total.begin(), n.total.end()},
                       {n.available.begin(), n.available.end()}, n.workers});
  }
  for (const auto& p : Peers()) {
    auto [running, actors] = Load(p.proc);
    v.processes.push_back({p.proc, p.node, p.pid, p.host, p.job, running, actors,
                           workers.count(p.proc) > 0});
  }
  v.counts = {PendingActors(), st.objects, st.queued_tasks, st.pipelined_tasks,
              st.running_tasks, st.actors, st.actor_restarts, st.reconstructions,
              st.lineage_tasks};
  for (auto& g : PlacementGroups()) {
    proto::ClusterView::Group e;
    e.id = g.id;
    e.name = g.name;
    e.strategy = detail::PlacementStrategyName(g.strategy);
    e.state = g.state;
    e.error = g.error;
    for (auto& b : g.bundles) e.bundles.emplace_back(b.begin(), b.end());
    e.nodes = g.nodes;
    v.groups.push_back(std::move(e));
  }
  return v;
}

ClusterStatus HeadService::Status_() const {
  std::lock_guard<std::mutex> lk(mu_);
  ClusterStatus s;
  for (const auto& v : sched_.Nodes()) {
    ClusterStatus::Node n;
    n.id = v.node;
    for (size_t i = 0; i < v.total.size(); ++i) {
      if (v.total[i] == 0 && i > 1) continue;
      n.total[sched_.names().Name(i)] = static_cast<double>(v.total[i]) / proto::kResourceUnit;
      n.available[sched_.names().Name(i)] = static_cast<double>(v.available[i]) / proto::kResourceUnit;
    }
    n.workers = v.workers;
    s.nodes.push_back(std::move(n));
  }
  tasks_.AddToStatus(&s);
  objects_.AddToStatus(&s);
  actors_.AddToStatus(&s);
  return s;
}

size_t HeadService::NumObjects() const {
  std::lock_guard<std::mutex> lk(mu_);
  return objects_.size();
}

bool HeadService::HasObject(const ObjectId& id) const {
  std::lock_guard<std::mutex> lk(mu_);
  return objects_.Has(id);
}

size_t HeadService::NumLineage() const {
  std::lock_guard<std::mutex> lk(mu_);
  return lineage_.size();
}

std::vector<TaskEvent> HeadService::Events() const {
  std::lock_guard<std::mutex> lk(mu_);
  return tasks_.Events();
}

}  // namespace mpiray

#include "head.h"

#include <algorithm>
#include <chrono>
#include <set>

#include "log.h"
#include "mpiray/core/detail/core_client.h"
#include "mpiray/core/serialization.h"

namespace mpiray {

using proto::Msg;
using proto::TaskKind;
using proto::Where;

struct HeadService::Waiter {
  std::condition_variable cv;
  size_t needed = 0;  // readiness events still needed
  size_t ready = 0;
};

struct HeadService::ObjEntry {
  enum State : uint8_t { kPending = 0, kReady = 1 };
  uint8_t state = kPending;
  uint8_t where = 0;
  bool registered = true;  // false: made by an actor result that beat its registration
  bool lineage = false;    // holds a reference on its task's lineage (it can be rebuilt)
  int32_t pins = 0;        // pending tasks using it (argument or nested in an argument)
  int32_t containers = 0;  // live objects whose value holds this ref
  uint64_t size = 0;
  Buffer data;
  std::vector<NodeId> locations;
  std::vector<ProcId> holders;  // processes holding a handle (once each)
  struct Extra {
    std::vector<ObjectId> contains;
    std::vector<TaskId> dependents;
    std::vector<Waiter*> waiters;
    std::vector<std::pair<ProcId, uint64_t>> remote;  // (process, request) awaiting it
  };
  std::unique_ptr<Extra> extra;
  Extra& X() {
    if (!extra) extra = std::make_unique<Extra>();
    return *extra;
  }
};

struct HeadService::TaskRec {
  proto::TaskSpec spec;
  SchedItem item;               // normal tasks: assigned by the scheduler
  ProcId actor_worker = kNoProc;  // actor creations: placed by PlaceActor, not the scheduler
  ProcId submitter = 0;
  int32_t deps = 0;
  int32_t retries_left = 0;  // -1: forever
  bool cancelled = false;
  bool whole = false;   // actor calls: the spec has the arguments (the call can be re-sent)
  bool resent = false;  // actor calls: re-sent after a restart (may report twice)
};

// How to make a task's returns again: kept while any of them, or any lineage that needs them
// as arguments, is alive.
struct HeadService::Lineage {
  proto::TaskSpec spec;
  // Arguments it keeps pinned because running a task cannot make them again: put objects (a
  // large by-value argument is one, stored for the call and let go by its submitter at once),
  // small results of tasks kept without lineage, refs nested in arguments (a Python function's
  // export is one).
  std::vector<ObjectId> pinned;
  int32_t refs = 0;
  int32_t retries_left = 0;
  uint32_t shape = 0;
};

struct HeadService::PgRec {
  enum State : uint8_t { kPending = 0, kCreated = 1, kRemoved = 2, kInfeasible = 3 };
  proto::PlacementGroupSpec spec;
  State state = kPending;
  std::vector<ResourceRequest> base;   // per bundle: taken from its node
  std::vector<ResourceRequest> group;  // per bundle: the resources named after the group
  std::vector<NodeId> nodes;           // per bundle (kNoNode: not placed)
  std::vector<uint32_t> indices;       // every resource index named after the group
  std::string error;
  bool ready_set = false;
};

struct HeadService::ActorRec {
  enum State : uint8_t { kWaitingDeps = 0, kPending = 1, kPlaced = 2, kDead = 3 };
  ActorId id;
  State state = kWaitingDeps;
  ProcId worker = kNoProc;
  uint32_t shape = 0;
  bool hold = false;
  std::string name;
  std::string ns;
  bool named = false;
  Buffer handle_meta;
  std::string error;
  std::vector<proto::TaskSpec> queued_calls;  // driver calls made before placement
  std::vector<proto::TaskSpec> retry_calls;   // calls re-sent to the next instance
  std::vector<ProcId> location_waiters;
  std::unordered_set<TaskId> calls;  // registered, not done
  // Restarts: the creation spec is kept (its arguments pinned) while the actor may restart.
  bool restartable = false;
  int32_t restarts_left = 0;  // -1: forever
  int32_t max_task_retries = 0;
  uint32_t incarnation = 1;
  uint64_t next_seq = 0;  // the head process's own calls sent to this incarnation
  std::unique_ptr<proto::TaskSpec> creation;
  std::unordered_set<ProcId> subscribers;  // processes that asked where it is
};

namespace {

Buffer ErrorPayload(StatusCode code, const std::string& message) {
  return Buffer(detail::MakeErrorPayload(code, message));
}

// One more try if any are left (-1: forever).
bool TakeRetry(int32_t& left) {
  if (left == 0) return false;
  if (left > 0) --left;
  return true;
}

const char* PgStrategyName(uint8_t s) {
  static const char* names[] = {"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"};
  return s < 4 ? names[s] : "UNKNOWN";
}

void PinArgs(const proto::TaskSpec& spec, const std::function<void(const ObjectId&)>& pin) {
  for (const proto::Arg& a : spec.args) {
    if (a.by_ref) pin(a.ref);
    for (const ObjectId& n : a.nested) pin(n);
  }
}

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

HeadService::HeadService(Transport& transport, const RuntimeConfig& config,
                         std::function<int64_t()> now_ms)
    : transport_(transport),
      config_(config),
      now_ms_(now_ms ? std::move(now_ms) : SteadyMs),
      sched_(config.max_inflight_per_worker) {
  last_heartbeat_ms_ = now_ms_();
}

HeadService::~HeadService() = default;

// ------------------------------------------------------------------ membership

NodeId HeadService::NodeOf(ProcId p) const {
  auto it = procs_.find(p);
  return it == procs_.end() ? kNoNode : it->second.peer.node;
}

void HeadService::AddNodeResources(NodeId node) {
  int workers = 0;
  int gpus = 0;
  uint64_t host_memory = 0;
  std::string host;
  for (ProcId p : node_procs_[node]) {
    const ProcInfo& info = procs_[p];
    if (!info.alive) continue;
    if (info.worker) ++workers;
    gpus = std::max(gpus, info.peer.gpus);
    host_memory = std::max(host_memory, info.peer.memory);
    host = info.peer.host;
  }
  // Virtual nodes share their host's memory.
  std::set<NodeId> host_nodes;
  for (const auto& [id, info] : procs_) {
    if (info.alive && info.peer.host == host) host_nodes.insert(info.peer.node);
  }
  uint64_t memory = static_cast<uint64_t>(host_memory * 0.7) / std::max<size_t>(1, host_nodes.size());
  ResourceVector total(sched_.names().size(), 0);
  auto set = [&](const std::string& name, int64_t v) {
    size_t i = sched_.names().Intern(name);
    if (i >= total.size()) total.resize(i + 1, 0);
    total[i] = v;
  };
  set("CPU", config_.num_cpus >= 0 ? std::llround(config_.num_cpus * proto::kResourceUnit)
                                   : workers * proto::kResourceUnit);
  set("GPU", config_.num_gpus >= 0 ? std::llround(config_.num_gpus * proto::kResourceUnit)
                                   : gpus * proto::kResourceUnit);
  node_gpus_[node] = static_cast<int>(total[1] / proto::kResourceUnit);  // devices 0..n-1
  // As Ray: 70% of the memory available at start-up, in bytes.
  set("memory", static_cast<int64_t>(memory) * proto::kResourceUnit);
  for (const auto& [name, amount] : config_.custom) set(name, amount);
  // As Ray's "node:<ip>": lets a task ask for a particular node.
  set("node:" + std::to_string(node), proto::kResourceUnit);
  sched_.AddNode(node, total);
}

void HeadService::AddProcess(const proto::PeerInfo& peer, bool is_worker) {
  std::lock_guard<std::mutex> lk(mu_);
  ProcInfo& info = procs_[peer.proc];
  info.peer = peer;
  info.alive = true;
  info.worker = is_worker;
  info.last_seen_ms = now_ms_();
  node_procs_[peer.node].push_back(peer.proc);
  if (is_worker) sched_.AddWorker(peer.proc, peer.node);
  // Every node of this host: memory is split among a host's (virtual) nodes.
  std::set<NodeId> host_nodes;
  for (const auto& [id, p] : procs_) {
    if (p.alive && p.peer.host == peer.host) host_nodes.insert(p.peer.node);
  }
  for (NodeId n : host_nodes) AddNodeResources(n);  // the head's node too (it has no CPUs)
  if (is_worker) Dispatch();
}

std::vector<proto::PeerInfo> HeadService::Peers() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<proto::PeerInfo> out;
  for (const auto& [id, p] : procs_) {
    if (p.alive) out.push_back(p.peer);
  }
  return out;
}

std::vector<ProcId> HeadService::Workers() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<ProcId> out;
  for (const auto& [id, p] : procs_) {
    if (p.alive && p.worker) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

ProcId HeadService::ProcOnNode(NodeId node) const {
  auto it = node_procs_.find(node);
  if (it == node_procs_.end()) return kNoProc;
  for (ProcId p : it->second) {
    auto pit = procs_.find(p);
    if (pit != procs_.end() && pit->second.alive) return p;
  }
  return kNoProc;
}

void HeadService::RemoveProcess(ProcId proc, const std::string& why) {
  std::lock_guard<std::mutex> lk(mu_);
  auto pit = procs_.find(proc);
  if (pit == procs_.end() || !pit->second.alive) return;
  ProcInfo& info = pit->second;
  info.alive = false;
  NodeId node = info.peer.node;
  MPIRAY_LOG(warn, "process {} (host {}, pid {}) left the cluster: {}", proc, info.peer.host,
             info.peer.pid, why);
  // Everyone else stops talking to it (fetches from it fail at once instead of waiting).
  for (const auto& [id, p] : procs_) {
    if (p.alive && id != transport_.self()) SendMsg(transport_, id, Msg::kPeerLeft, proto::PeerLeft{proc});
  }
  auto& np = node_procs_[node];
  np.erase(std::remove(np.begin(), np.end(), proc), np.end());
  if (np.empty()) {
    sched_.RemoveNode(node);  // a node whose processes are all gone is gone
    // Bundles reserved there are placed again (elsewhere) when there is room.
    for (auto& [gid, g] : groups_) {
      bool lost = false;
      for (NodeId& n : g->nodes) {
        if (n == node) {
          n = kNoNode;
          lost = true;
        }
      }
      if (lost && g->state == PgRec::kCreated) {
        g->state = PgRec::kPending;
        ++pending_groups_;
        MPIRAY_LOG(warn, "placement group {} lost bundles with node {}; placing them again",
                   gid.ToString(), node);
      }
    }
  }

  if (info.worker) {
    sched_.RemoveWorker(proc);
    if (!np.empty()) AddNodeResources(node);
    std::vector<TaskId> lost;
    for (auto& [tid, t] : tasks_) {
      if (t->item.worker == proc || t->actor_worker == proc) lost.push_back(tid);
    }
    for (TaskId tid : lost) {
      auto it = tasks_.find(tid);
      if (it == tasks_.end()) continue;
      TaskRec& t = *it->second;
      if (t.spec.task_kind() == TaskKind::kActorCreate) {
        auto a = actors_.find(tid);
        if (a != actors_.end()) {
          ActorLost(*a->second, "the worker creating the actor died (" + why + ")");
        } else {
          FailTask(t, ErrorPayload(StatusCode::kActorDied, "the worker creating the actor died"));
        }
        continue;
      }
      --running_;
      t.item.worker = kNoProc;
      t.actor_worker = kNoProc;
      t.item.blocked = false;
      t.item.private_hold = false;
      if (!task_gpus_.empty()) ReleaseGpus(task_gpus_, tid);
      if (!t.cancelled && TakeRetry(t.retries_left)) {
        MPIRAY_LOG(info, "retrying task {} ({}) after worker {} died", tid.ToString(),
                   t.spec.function, proc);
        sched_.Enqueue(&t.item);
      } else {
        FailTask(t, ErrorPayload(StatusCode::kWorkerCrashed,
                                 "worker " + std::to_string(proc) + " (host " + info.peer.host +
                                     ", pid " + std::to_string(info.peer.pid) +
                                     ") died while running task " + t.spec.function +
                                     (t.spec.max_retries > 0 ? "; retries exhausted" : "")));
      }
    }
    std::vector<ActorId> hosted;
    for (auto& [aid, a] : actors_) {
      if (a->worker == proc && a->state == ActorRec::kPlaced) hosted.push_back(aid);
    }
    for (const ActorId& aid : hosted) {
      ActorLost(*actors_[aid], "the worker process hosting the actor died (" + why + ")");
    }
    for (auto& [aid, a] : actors_) a->subscribers.erase(proc);
  }
  // Handles held by the dead process are gone.
  std::vector<ObjectId> held;
  std::vector<ObjectId> lost;
  bool node_gone = np.empty();
  for (auto& [oid, e] : objects_) {
    auto h = std::find(e.holders.begin(), e.holders.end(), proc);
    if (h != e.holders.end()) {
      e.holders.erase(h);
      held.push_back(oid);
    }
    if (node_gone && e.where == static_cast<uint8_t>(Where::kShm) && e.state == ObjEntry::kReady) {
      e.locations.erase(std::remove(e.locations.begin(), e.locations.end(), node),
                        e.locations.end());
      if (e.locations.empty()) lost.push_back(oid);
    }
  }
  // Every copy is gone: make it again from its lineage, or report it lost.
  for (const ObjectId& oid : lost) {
    ObjEntry* e = FindEntry(oid);
    if (!e || e->state != ObjEntry::kReady || !e->locations.empty()) continue;
    std::string why = Reconstruct(oid, *e);
    if (!why.empty()) {
      e->where = static_cast<uint8_t>(Where::kError);
      e->data = ErrorPayload(StatusCode::kObjectLost, "object " + oid.Hex() +
                                                          " was lost (every node holding a copy "
                                                          "died) and cannot be rebuilt: " + why);
    }
  }
  for (const ObjectId& id : held) MaybeFree(id);
  Dispatch();
}

// ------------------------------------------------------------------ objects

HeadService::ObjEntry& HeadService::NewEntry(const ObjectId& id) { return objects_[id]; }

HeadService::ObjEntry* HeadService::FindEntry(const ObjectId& id) {
  auto it = objects_.find(id);
  return it == objects_.end() ? nullptr : &it->second;
}

void HeadService::Pin(const ObjectId& id) {
  if (ObjEntry* e = FindEntry(id)) ++e->pins;
}

void HeadService::Unpin(const ObjectId& id) {
  if (ObjEntry* e = FindEntry(id)) {
    --e->pins;
    MaybeFree(id);
  }
}

void HeadService::MaybeFree(const ObjectId& id) {
  ObjEntry* e = FindEntry(id);
  if (!e || !e->registered || !e->holders.empty() || e->pins > 0 || e->containers > 0) return;
  if (e->state != ObjEntry::kReady) return;  // freed when its task finishes
  FreeEntry(id, *e);
}

void HeadService::FreeEntry(const ObjectId& id, ObjEntry& e) {
  if (e.where == static_cast<uint8_t>(Where::kShm)) {
    for (NodeId node : e.locations) {
      ProcId p = ProcOnNode(node);
      if (p != kNoProc) SendMsg(transport_, p, Msg::kFreeObjects, proto::IdList{{id}});
    }
  }
  std::vector<ObjectId> contains;
  if (e.extra) contains = std::move(e.extra->contains);
  bool lineage = e.lineage;
  objects_.erase(id);
  if (lineage) ReleaseLineage(id.task_id(), /*drop_ref=*/true);
  for (const ObjectId& c : contains) {
    if (ObjEntry* ce = FindEntry(c)) {
      --ce->containers;
      MaybeFree(c);
    }
  }
}

void HeadService::AddHolder(const ObjectId& id, ProcId proc) {
  std::lock_guard<std::mutex> lk(mu_);
  if (ObjEntry* e = FindEntry(id)) {
    if (std::find(e->holders.begin(), e->holders.end(), proc) == e->holders.end()) {
      e->holders.push_back(proc);
    }
  }
}

void HeadService::RemoveHolder(const ObjectId& id, ProcId proc) {
  std::lock_guard<std::mutex> lk(mu_);
  ObjEntry* e = FindEntry(id);
  if (!e) return;
  auto h = std::find(e->holders.begin(), e->holders.end(), proc);
  if (h != e->holders.end()) e->holders.erase(h);
  MaybeFree(id);
}

void HeadService::SetReady(const ObjectId& id, proto::NewObject&& obj) {
  ObjEntry* e = FindEntry(id);
  if (!e || e->state == ObjEntry::kReady) {
    // Nobody wants it (freed, or a late duplicate): drop the stored copy.
    if (obj.where == static_cast<uint8_t>(Where::kShm) && (!e || e->locations.empty() ||
                                                           e->locations[0] != obj.node)) {
      ProcId p = ProcOnNode(obj.node);
      if (p != kNoProc) SendMsg(transport_, p, Msg::kFreeObjects, proto::IdList{{id}});
    }
    return;
  }
  e->state = ObjEntry::kReady;
  e->where = obj.where;
  e->size = obj.size;
  e->data = std::move(obj.data);
  if (obj.where == static_cast<uint8_t>(Where::kShm)) e->locations = {obj.node};
  if (!obj.nested.empty()) {
    auto& contains = e->X().contains;
    for (const ObjectId& n : obj.nested) {
      if (ObjEntry* ne = FindEntry(n)) {
        ++ne->containers;
        contains.push_back(n);
      }
    }
    e = FindEntry(id);  // FindEntry above cannot rehash, but keep the pointer honest
  }
  OnObjectReady(id, *e);
  MaybeFree(id);
}

void HeadService::SetErrorPayload(const ObjectId& id, const Buffer& payload) {
  proto::NewObject obj;
  obj.id = id;
  obj.where = static_cast<uint8_t>(Where::kError);
  obj.data = payload;
  obj.size = payload.size();
  SetReady(id, std::move(obj));
}

void HeadService::SetError(const ObjectId& id, StatusCode code, const std::string& message) {
  SetErrorPayload(id, ErrorPayload(code, message));
}

void HeadService::OnObjectReady(const ObjectId& id, ObjEntry& e) {
  if (!e.extra) return;
  auto waiters = std::move(e.extra->waiters);
  auto remote = std::move(e.extra->remote);
  auto dependents = std::move(e.extra->dependents);
  e.extra->waiters.clear();
  e.extra->remote.clear();
  e.extra->dependents.clear();
  for (Waiter* w : waiters) {
    ++w->ready;
    if (w->ready >= w->needed) w->cv.notify_all();
  }
  for (const auto& [proc, req] : remote) {
    proto::ObjectsReady r;
    r.req = req;
    r.objects.push_back(Locate(id, e, NodeOf(proc)));
    SendMsg(transport_, proc, Msg::kObjectsReady, r);
  }
  for (TaskId tid : dependents) {
    auto it = tasks_.find(tid);
    if (it == tasks_.end()) continue;
    if (--it->second->deps == 0) TaskDepsReady(*it->second);
  }
}

proto::ObjectLoc HeadService::Locate(const ObjectId& id, const ObjEntry& e, NodeId requester) const {
  proto::ObjectLoc l;
  l.id = id;
  l.where = e.where;
  l.size = e.size;
  if (e.state != ObjEntry::kReady) {
    l.where = static_cast<uint8_t>(Where::kPending);  // being rebuilt
    return l;
  }
  if (e.where != static_cast<uint8_t>(Where::kShm)) {
    l.data = e.data;
    return l;
  }
  NodeId chosen = kNoNode;
  for (NodeId n : e.locations) {
    if (n == requester) {
      chosen = n;
      break;
    }
    if (chosen == kNoNode && ProcOnNode(n) != kNoProc) chosen = n;
  }
  if (chosen == kNoNode || ProcOnNode(chosen) == kNoProc) {
    l.where = static_cast<uint8_t>(Where::kError);
    l.data = ErrorPayload(StatusCode::kObjectLost, "object " + id.Hex() + " has no live copy");
    return l;
  }
  l.node = chosen;
  l.source = ProcOnNode(chosen);
  return l;
}

void HeadService::AddLocation(const ObjectId& id, NodeId node) {
  std::lock_guard<std::mutex> lk(mu_);
  ObjEntry* e = FindEntry(id);
  if (!e || e->where != static_cast<uint8_t>(Where::kShm)) {
    // Freed meanwhile: the new copy must go too.
    ProcId p = ProcOnNode(node);
    if (!e && p != kNoProc) SendMsg(transport_, p, Msg::kFreeObjects, proto::IdList{{id}});
    return;
  }
  if (std::find(e->locations.begin(), e->locations.end(), node) == e->locations.end()) {
    e->locations.push_back(node);
  }
}

Status HeadService::Put(proto::NewObject&& obj, ProcId holder) {
  std::lock_guard<std::mutex> lk(mu_);
  ObjectId id = obj.id;
  ObjEntry& e = NewEntry(id);
  e.holders.push_back(holder);
  SetReady(id, std::move(obj));
  return Status::OK();
}

std::vector<proto::ObjectLoc> HeadService::WaitLocal(const std::vector<ObjectId>& ids,
                                                     size_t num_ready, int64_t timeout_ms,
                                                     std::vector<bool>* ready,
                                                     NodeId requester_node) {
  std::unique_lock<std::mutex> lk(mu_);
  Waiter w;
  size_t have = 0;
  for (const ObjectId& id : ids) {
    ObjEntry* e = FindEntry(id);
    if (!e || e->state == ObjEntry::kReady) ++have;
  }
  if (have < num_ready && timeout_ms != 0 && !closed_) {
    w.needed = num_ready - have;
    std::vector<ObjectId> registered;
    for (const ObjectId& id : ids) {
      ObjEntry* e = FindEntry(id);
      if (e && e->state != ObjEntry::kReady) {
        e->X().waiters.push_back(&w);
        registered.push_back(id);
      }
    }
    auto done = [&] { return w.ready >= w.needed || closed_; };
    if (timeout_ms < 0) {
      w.cv.wait(lk, done);
    } else {
      w.cv.wait_for(lk, std::chrono::milliseconds(timeout_ms), done);
    }
    for (const ObjectId& id : registered) {
      ObjEntry* e = FindEntry(id);
      if (e && e->extra) {
        auto& ws = e->extra->waiters;
        ws.erase(std::remove(ws.begin(), ws.end(), &w), ws.end());
      }
    }
  }
  std::vector<proto::ObjectLoc> out(ids.size());
  ready->assign(ids.size(), false);
  for (size_t i = 0; i < ids.size(); ++i) {
    ObjEntry* e = FindEntry(ids[i]);
    if (!e) {
      out[i].id = ids[i];
      out[i].where = static_cast<uint8_t>(Where::kError);
      out[i].data = ErrorPayload(StatusCode::kObjectLost,
                                 "object " + ids[i].Hex() + " is unknown or was already freed");
      (*ready)[i] = true;
    } else if (e->state == ObjEntry::kReady) {
      out[i] = Locate(ids[i], *e, requester_node);
      (*ready)[i] = true;
    } else if (closed_) {
      out[i].id = ids[i];
      out[i].where = static_cast<uint8_t>(Where::kError);
      out[i].data = ErrorPayload(StatusCode::kUnavailable, "the runtime is shutting down: " +
                                                               close_reason_);
      (*ready)[i] = true;
    }
  }
  return out;
}

void HeadService::HandleGet(ProcId src, proto::GetObjects&& req) {
  proto::ObjectsReady reply;
  reply.req = req.req;
  NodeId node = NodeOf(src);
  for (const ObjectId& id : req.ids) {
    ObjEntry* e = FindEntry(id);
    if (!e && id.is_put() && src != id.task_id().submitter()) {
      // A put whose registration is still on its way: its maker sent it to us before it sent
      // the ref to the asker, but on another connection. Wait for it (a while).
      auto maker = procs_.find(id.task_id().submitter());
      if (maker != procs_.end() && maker->second.alive) {
        ObjEntry& placeholder = NewEntry(id);
        placeholder.registered = false;  // not freed while nobody holds it yet
        placeholder.X().remote.emplace_back(src, req.req);
        awaited_puts_.emplace(id, now_ms_());
        continue;
      }
    }
    if (!e) {
      proto::ObjectLoc l;
      l.id = id;
      l.where = static_cast<uint8_t>(Where::kError);
      l.data = ErrorPayload(StatusCode::kObjectLost,
                            "object " + id.Hex() + " is unknown or was already freed");
      reply.objects.push_back(std::move(l));
    } else if (e->state == ObjEntry::kReady) {
      reply.objects.push_back(Locate(id, *e, node));
    } else {
      e->X().remote.emplace_back(src, req.req);
    }
  }
  if (!reply.objects.empty()) SendMsg(transport_, src, Msg::kObjectsReady, reply);
}

bool HeadService::HasObject(const ObjectId& id) const {
  std::lock_guard<std::mutex> lk(mu_);
  return objects_.count(id) != 0;
}

size_t HeadService::NumLineage() const {
  std::lock_guard<std::mutex> lk(mu_);
  return lineage_.size();
}

size_t HeadService::NumObjects() const {
  std::lock_guard<std::mutex> lk(mu_);
  return objects_.size();
}

// ------------------------------------------------------------------ tasks

Status HeadService::Submit(proto::TaskSpec&& spec, ProcId submitter) {
  std::lock_guard<std::mutex> lk(mu_);
  if (closed_) return Unavailable("the runtime is shutting down");
  Status st = spec.task_kind() == TaskKind::kActorCall ? SubmitActorCall(std::move(spec), submitter)
                                                       : SubmitLocked(std::move(spec), submitter);
  return st;
}

Status HeadService::SubmitLocked(proto::TaskSpec&& spec, ProcId submitter) {
  if (!spec.parent.nil() && tasks_.count(spec.parent)) children_[spec.parent].push_back(spec.id);
  if (spec.function.empty()) return InvalidArgument("task has no function name");
  if (spec.num_returns == 0 && spec.task_kind() == TaskKind::kNormal) {
    return InvalidArgument("num_returns must be at least 1");
  }
  MPIRAY_ASSIGN_OR_RETURN(uint32_t shape, sched_.Shape(spec.resources));
  bool is_actor = spec.task_kind() == TaskKind::kActorCreate;
  // With an autoscaler, capacity may still come: the request waits instead of failing.
  if (!config_.autoscale) {
    if (!is_actor || !spec.resources.empty()) {
      // A request for a placement group's resources waits for the group (it may be
      // pending); only a request no node can hold needs the (slower) look at the groups.
      Status feasible = sched_.CheckFeasible(shape);
      if (!feasible.ok()) {
        bool in_group = false;
        for (const auto& [g, rec] : groups_) in_group = in_group || UsesGroup(shape, *rec);
        if (!in_group) return feasible;
      }
    } else if (sched_.num_workers() == 0) {
      return Status(StatusCode::kInfeasible, "there are no worker processes to host the actor");
    }
  }
  for (size_t i = 0; i < spec.args.size(); ++i) {
    const proto::Arg& a = spec.args[i];
    if (a.by_ref && !FindEntry(a.ref)) {
      return Status(StatusCode::kObjectLost, "argument " + std::to_string(i) + " of " +
                                                 spec.function + " refers to object " +
                                                 a.ref.Hex() + ", which is unknown or freed");
    }
  }
  if (is_actor && spec.named) {
    if (spec.name.empty()) return InvalidArgument("an actor name must not be empty");
    auto it = named_.find({spec.ns, spec.name});
    if (it != named_.end()) {
      return Status(StatusCode::kAlreadyExists,
                    "the actor name '" + spec.name + "' is already taken in namespace '" +
                        spec.ns + "'");
    }
  }
  auto rec = std::make_unique<TaskRec>();
  TaskRec& t = *rec;
  t.submitter = submitter;
  t.item.shape = shape;
  t.item.owner = &t;
  t.retries_left = spec.max_retries;
  TaskId tid = spec.id;
  uint32_t nret = is_actor ? 1 : spec.num_returns;
  for (uint32_t i = 0; i < nret; ++i) {
    ObjEntry& e = NewEntry(spec.ReturnId(i));
    e.holders.assign(1, submitter);
  }
  for (const proto::Arg& a : spec.args) {
    if (a.by_ref) {
      Pin(a.ref);
      ObjEntry* e = FindEntry(a.ref);
      if (e->state != ObjEntry::kReady) {
        ++t.deps;
        e->X().dependents.push_back(tid);
      }
    }
    for (const ObjectId& n : a.nested) Pin(n);
  }
  if (is_actor) {
    auto a = std::make_unique<ActorRec>();
    a->id = tid;
    a->shape = shape;
    a->hold = !spec.resources.empty();
    a->name = spec.name;
    a->ns = spec.ns;
    a->named = spec.named;
    a->handle_meta = spec.handle_meta;
    a->max_task_retries = spec.max_task_retries;
    spec.incarnation = 1;
    if (spec.max_restarts != 0) {
      // Its arguments must outlive the constructor: a restart runs it again.
      a->restartable = true;
      a->restarts_left = spec.max_restarts;
      a->creation = std::make_unique<proto::TaskSpec>(spec);
      PinArgs(spec, [this](const ObjectId& id) { Pin(id); });
    }
    if (spec.named) named_[{spec.ns, spec.name}] = tid;
    actors_[tid] = std::move(a);
  }
  t.spec = std::move(spec);
  tasks_[tid] = std::move(rec);
  if (t.deps == 0) TaskDepsReady(t);
  Dispatch();
  return Status::OK();
}

void HeadService::TaskDepsReady(TaskRec& t) {
  std::map<NodeId, uint64_t> bytes;
  for (const proto::Arg& a : t.spec.args) {
    if (!a.by_ref) continue;
    ObjEntry* e = FindEntry(a.ref);
    if (!e) {
      FailTask(t, ErrorPayload(StatusCode::kObjectLost,
                               "argument object " + a.ref.Hex() + " of " + t.spec.function +
                                   " was lost"));
      return;
    }
    if (e->where == static_cast<uint8_t>(Where::kError)) {
      FailTask(t, e->data);  // the upstream error propagates, as in Ray
      return;
    }
    if (e->where == static_cast<uint8_t>(Where::kShm)) {
      for (NodeId n : e->locations) bytes[n] += e->size;
    }
  }
  if (t.spec.task_kind() == TaskKind::kActorCreate) {
    auto it = actors_.find(t.spec.id);
    if (it != actors_.end()) {
      it->second->state = ActorRec::kPending;
      PlaceActor(*it->second);
    }
    return;
  }
  t.item.preferred = kNoNode;
  uint64_t best = 0;
  for (const auto& [n, b] : bytes) {
    if (b > best) {
      best = b;
      t.item.preferred = n;
    }
  }
  const auto strategy = static_cast<proto::Strategy>(t.spec.strategy);
  t.item.spread = strategy == proto::Strategy::kSpread;
  if (strategy == proto::Strategy::kNodeAffinitySoft && sched_.HasNode(t.spec.node)) {
    t.item.preferred = t.spec.node;  // else anywhere, as Ray's soft affinity
  }
  sched_.Enqueue(&t.item);
}

void HeadService::FailTask(TaskRec& t, const Buffer& error_payload) {
  TaskId tid = t.spec.id;
  uint32_t nret = t.spec.task_kind() == TaskKind::kActorCreate ? 1 : t.spec.num_returns;
  if (t.item.queued) sched_.Dequeue(&t.item);
  if (t.item.worker != kNoProc) {
    sched_.Finished(&t.item);
    --running_;
  }
  if (t.actor_worker != kNoProc) {
    t.actor_worker = kNoProc;
    --running_;
  }
  if (t.spec.task_kind() == TaskKind::kActorCreate) {
    auto a = actors_.find(tid);
    if (a != actors_.end() && a->second->state != ActorRec::kDead) {
      ActorDied(*a->second, "the actor could not be created: " +
                                detail::ErrorFromPayload(error_payload).message());
    }
  }
  for (uint32_t i = 0; i < nret; ++i) SetErrorPayload(t.spec.ReturnId(i), error_payload);
  FinishTask(tid);
}

void HeadService::UnpinArgs(const proto::TaskSpec& spec) {
  for (const proto::Arg& a : spec.args) {
    if (a.by_ref) Unpin(a.ref);
    for (const ObjectId& n : a.nested) Unpin(n);
  }
}

int64_t HeadService::GpuAmount(uint32_t shape) const {
  static constexpr uint32_t kGpu = 1;  // ResourceNames interns CPU, GPU, memory first
  for (const auto& [i, amount] : sched_.ShapeRequest(shape)) {
    if (i == kGpu) return amount;
  }
  return 0;
}

std::vector<int32_t> HeadService::AssignGpus(NodeId node, int64_t amount) {
  const int64_t unit = proto::kResourceUnit;
  auto gi = node_gpus_.find(node);
  const int count = gi == node_gpus_.end() ? 0 : gi->second;
  std::vector<int64_t>& used = gpu_used_[node];
  used.resize(static_cast<size_t>(std::max(count, 0)), 0);
  std::vector<int32_t> ids;
  if (used.empty()) return ids;
  // Whole devices for whole requests (the least used first), one shared device for a fraction
  // (the fullest one that still has room, so fractions pack).
  const int64_t per = amount >= unit ? unit : amount;
  const size_t want = amount >= unit ? static_cast<size_t>((amount + unit - 1) / unit) : 1;
  for (size_t k = 0; k < want && ids.size() < used.size(); ++k) {
    int best = -1;
    for (size_t d = 0; d < used.size(); ++d) {
      if (std::find(ids.begin(), ids.end(), static_cast<int32_t>(d)) != ids.end()) continue;
      bool fits = used[d] + per <= unit;
      if (best < 0) {
        best = static_cast<int>(d);
        continue;
      }
      bool best_fits = used[static_cast<size_t>(best)] + per <= unit;
      if (fits != best_fits) {
        if (fits) best = static_cast<int>(d);
      } else if (per < unit ? used[d] > used[static_cast<size_t>(best)]
                            : used[d] < used[static_cast<size_t>(best)]) {
        best = static_cast<int>(d);
      }
    }
    used[static_cast<size_t>(best)] += per;
    ids.push_back(best);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

void HeadService::ReleaseGpus(std::unordered_map<TaskId, GpuGrant>& grants, TaskId id) {
  auto it = grants.find(id);
  if (it == grants.end()) return;
  const int64_t unit = proto::kResourceUnit;
  const int64_t per = it->second.amount >= unit ? unit : it->second.amount;
  auto u = gpu_used_.find(it->second.node);
  if (u != gpu_used_.end()) {
    for (int32_t d : it->second.ids) {
      if (static_cast<size_t>(d) < u->second.size()) u->second[static_cast<size_t>(d)] -= per;
    }
  }
  grants.erase(it);
}

void HeadService::FinishTask(TaskId id) {
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  if (!children_.empty()) children_.erase(id);
  if (!task_gpus_.empty()) ReleaseGpus(task_gpus_, id);
  std::unique_ptr<TaskRec> rec = std::move(it->second);
  tasks_.erase(it);
  if (!stream_waits_.empty()) FinalizeStream(id);  // (it is no longer running)
  UnpinArgs(rec->spec);
}

void HeadService::Dispatch() {
  if (closed_) return;
  if (pending_groups_ > 0) PlacePendingGroups();
  if (!pending_actors_.empty()) PlacePendingActors();
  std::vector<Scheduler::Assignment> out;
  sched_.Schedule(&out);
  for (auto& [item, worker] : out) {
    ++running_;
    SendExecute(*static_cast<TaskRec*>(item->owner), worker);
  }
}

void HeadService::SendExecute(TaskRec& t, ProcId worker) {
  std::vector<proto::ObjectLoc> resolved;
  NodeId node = NodeOf(worker);
  for (const proto::Arg& a : t.spec.args) {
    if (!a.by_ref) continue;
    ObjEntry* e = FindEntry(a.ref);
    if (e) {
      resolved.push_back(Locate(a.ref, *e, node));
    } else {
      proto::ObjectLoc l;
      l.id = a.ref;
      l.where = static_cast<uint8_t>(Where::kError);
      l.data = ErrorPayload(StatusCode::kObjectLost, "argument " + a.ref.Hex() + " was lost");
      resolved.push_back(std::move(l));
    }
  }
  // GPUs: which devices of the node the task (or the actor, for its lifetime) gets.
  static const std::vector<int32_t> kNone;
  const std::vector<int32_t>* gpus = &kNone;
  if (int64_t amount = GpuAmount(t.item.shape); amount > 0) {
    bool actor = t.spec.task_kind() == TaskKind::kActorCreate;
    auto& grants = actor ? actor_gpus_ : task_gpus_;
    ReleaseGpus(grants, t.spec.id);  // a restart or a retry gets fresh ones
    GpuGrant& g = grants[t.spec.id];
    g.node = node;
    g.amount = amount;
    g.ids = AssignGpus(node, amount);
    gpus = &g.ids;
  }
  SendWith(transport_, worker, Msg::kExecute, [&](auto& pk) {
    pk.pack_array(3);
    pk.pack(t.spec);
    pk.pack(resolved);
    pk.pack(*gpus);
  });
}

void HeadService::RecordEvent(ProcId worker, const proto::TaskDone& done, const std::string& name,
                              bool failed) {
  ++finished_;
  if (failed) ++failed_;
  constexpr size_t kMaxEvents = 100000;
  TaskEvent e;
  e.name = name;
  e.worker = worker;
  e.node = NodeOf(worker);
  e.start_us = done.start_us;
  e.end_us = done.end_us;
  e.kind = done.kind;
  e.failed = failed;
  if (events_.size() < kMaxEvents) {
    events_.push_back(std::move(e));
  } else {
    events_[events_next_] = std::move(e);
    events_next_ = (events_next_ + 1) % kMaxEvents;
  }
}

std::vector<TaskEvent> HeadService::Events() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<TaskEvent> out(events_.begin() + static_cast<std::ptrdiff_t>(events_next_), events_.end());
  out.insert(out.end(), events_.begin(), events_.begin() + static_cast<std::ptrdiff_t>(events_next_));
  return out;
}

void HeadService::OnTaskDone(ProcId src, proto::TaskDone&& done) {
  bool failed_result = false;
  for (const auto& r : done.returns) failed_result |= r.where == static_cast<uint8_t>(Where::kError);
  if (static_cast<TaskKind>(done.kind) == TaskKind::kActorCall) {
    auto t0 = tasks_.find(done.task);
    RecordEvent(src, done, t0 != tasks_.end() ? t0->second->spec.function : std::string("actor call"),
                failed_result);
    auto it = call_actor_.find(done.task);
    if (it == call_actor_.end()) {
      bool duplicate = resent_done_.erase(done.task) > 0;
      for (const proto::NewObject& r : done.returns) {
        const ObjEntry* e = FindEntry(r.id);
        duplicate |= e && e->registered && e->state == ObjEntry::kReady;
      }
      if (duplicate) {
        // A call that ran twice (re-sent after a restart, or its instance was killed while it
        // ran): the first result stands.
        for (proto::NewObject& r : done.returns) {
          ObjEntry* e = FindEntry(r.id);
          bool same = e && !e->locations.empty() && e->locations[0] == r.node;
          ProcId p = ProcOnNode(r.node);
          if (r.where == static_cast<uint8_t>(Where::kShm) && !same && p != kNoProc) {
            SendMsg(transport_, p, Msg::kFreeObjects, proto::IdList{{r.id}});
          }
        }
        return;
      }
      // The caller's registration has not arrived yet (it travels on another channel).
      early_done_.insert(done.task);
      for (proto::NewObject& r : done.returns) {
        ObjectId id = r.id;
        if (!FindEntry(id)) NewEntry(id).registered = false;
        SetReady(id, std::move(r));
      }
      return;
    }
    ActorId actor = it->second;
    call_actor_.erase(it);
    auto a = actors_.find(actor);
    if (a != actors_.end()) a->second->calls.erase(done.task);
    auto t = tasks_.find(done.task);  // actor calls keep a slim spec in tasks_ for the pins
    if (t != tasks_.end() && t->second->resent) {
      resent_done_.insert(done.task);  // another run of it may still report
    }
    for (proto::NewObject& r : done.returns) {
      ObjectId id = r.id;
      SetReady(id, std::move(r));
    }
    if (t != tasks_.end()) FinishTask(done.task);
    return;
  }
  auto it = tasks_.find(done.task);
  bool creation = static_cast<TaskKind>(done.kind) == TaskKind::kActorCreate;
  if (it == tasks_.end() ||
      (creation ? it->second->actor_worker : it->second->item.worker) != src) {
    // Late result of a cancelled, failed or re-run task: drop stored copies.
    for (proto::NewObject& r : done.returns) {
      if (r.where == static_cast<uint8_t>(Where::kShm)) {
        ProcId p = ProcOnNode(r.node);
        if (p != kNoProc && !FindEntry(r.id)) {
          SendMsg(transport_, p, Msg::kFreeObjects, proto::IdList{{r.id}});
        }
      }
    }
    return;
  }
  TaskRec& t = *it->second;
  RecordEvent(src, done, t.spec.name.empty() ? t.spec.function : t.spec.name, failed_result);
  if (creation) {
    t.actor_worker = kNoProc;  // its resources stay with the actor (released when it dies)
  } else {
    sched_.Finished(&t.item);
    if (done.end_us > done.start_us) sched_.RecordDuration(t.item.shape, done.end_us - done.start_us);
  }
  --running_;
  bool cancelled = t.cancelled || done.status == static_cast<uint8_t>(proto::DoneStatus::kCancelled);
  bool is_actor = t.spec.task_kind() == TaskKind::kActorCreate;
  if (cancelled) {
    for (proto::NewObject& r : done.returns) {
      if (r.where == static_cast<uint8_t>(Where::kShm)) {
        SendMsg(transport_, src, Msg::kFreeObjects, proto::IdList{{r.id}});
      }
      SetError(r.id, StatusCode::kCancelled, "task " + t.spec.function + " was cancelled");
    }
    // A task cancelled before it started reports no returns at all.
    for (uint32_t i = 0; i < t.spec.num_returns && !is_actor; ++i) {
      SetError(t.spec.ReturnId(i), StatusCode::kCancelled, "task " + t.spec.function + " was cancelled");
    }
  } else {
    bool failed = false;
    bool stored = false;  // a return in a node's store
    std::string error;
    for (proto::NewObject& r : done.returns) {
      stored = stored || r.where == static_cast<uint8_t>(Where::kShm);
      if (r.where == static_cast<uint8_t>(Where::kError)) {
        failed = true;
        error = detail::ErrorFromPayload(r.data).message();
      }
      ObjectId id = r.id;
      SetReady(id, std::move(r));
    }
    if (is_actor) {
      auto a = actors_.find(t.spec.id);
      if (a != actors_.end() && failed) ActorDied(*a->second, "the actor's constructor failed: " + error);
    } else if (!failed && t.retries_left != 0 && stored) {
      // Keep how to make the returns again, in case a node holding them dies (small returns
      // live in the head's directory: nothing to make again).
      if (!task_gpus_.empty()) ReleaseGpus(task_gpus_, done.task);
      auto rec = std::move(it->second);
      tasks_.erase(it);
      if (!stream_waits_.empty()) FinalizeStream(done.task);
      KeepLineage(std::move(rec));  // unpins the arguments (after taking their lineage)
      Dispatch();
      return;
    }
  }
  FinishTask(done.task);
  Dispatch();
}

Status HeadService::Cancel(const ObjectId& id, bool force, bool recursive) {
  std::lock_guard<std::mutex> lk(mu_);
  return CancelLocked(id, force, recursive);
}

Status HeadService::CancelLocked(const ObjectId& id, bool force, bool recursive) {
  const TaskId tid = id.task_id();
  // The tasks it submitted first (they may be what it waits for), as Ray's recursive cancel.
  if (recursive) {
    auto c = children_.find(tid);
    if (c != children_.end()) {
      std::vector<TaskId> kids = std::move(c->second);
      children_.erase(c);
      for (TaskId k : kids) (void)CancelLocked(ObjectId::ForReturn(k, 0), force, true);
    }
  }
  auto it = tasks_.find(tid);
  if (it == tasks_.end()) return Status::OK();  // finished already (or a put): nothing to do
  TaskRec& t = *it->second;
  if (t.spec.task_kind() == TaskKind::kActorCreate) {
    return InvalidArgument("an actor creation cannot be cancelled; use kill() on the actor");
  }
  if (t.spec.task_kind() == TaskKind::kActorCall) {
    // A call not started yet is dropped from the actor's queue; a running one runs on.
    if (force) return InvalidArgument("force=True is not supported for actor calls");
    auto ca = call_actor_.find(tid);
    if (ca == call_actor_.end()) return Status::OK();
    auto a = actors_.find(ca->second);
    if (a == actors_.end()) return Status::OK();
    if (a->second->state == ActorRec::kPlaced) {
      SendMsg(transport_, a->second->worker, Msg::kCancelRunning, proto::CancelRunning{tid, false});
    }
    return Status::OK();
  }
  if (t.cancelled) return Status::OK();
  t.cancelled = true;
  if (t.item.worker != kNoProc) {
    SendMsg(transport_, t.item.worker, Msg::kCancelRunning, proto::CancelRunning{t.spec.id, force});
    return Status::OK();
  }
  FailTask(t, ErrorPayload(StatusCode::kCancelled, "task " + t.spec.function + " was cancelled"));
  Dispatch();
  return Status::OK();
}

// ------------------------------------------------------------------ lineage

void HeadService::KeepLineage(std::unique_ptr<TaskRec> rec) {
  TaskId tid = rec->spec.id;
  auto [it, fresh] = lineage_.try_emplace(tid);
  Lineage& l = it->second;
  l.retries_left = rec->retries_left;
  std::vector<bool> keep_pin;  // per argument: its pin now belongs to the lineage
  if (fresh) {
    l.shape = rec->item.shape;
    // Its arguments may have to be made again too: hold their lineage, or the arguments.
    keep_pin.resize(rec->spec.args.size());
    for (size_t i = 0; i < rec->spec.args.size(); ++i) {
      const proto::Arg& a = rec->spec.args[i];
      for (const ObjectId& n : a.nested) l.pinned.push_back(n);
      if (!a.by_ref) continue;
      auto up = lineage_.find(a.ref.task_id());
      if (up != lineage_.end()) {
        ++up->second.refs;
        continue;
      }
      const ObjEntry* e = FindEntry(a.ref);
      if (a.ref.is_put() || (e && e->where == static_cast<uint8_t>(Where::kInline))) {
        l.pinned.push_back(a.ref);
        keep_pin[i] = true;
      }
    }
    l.spec = std::move(rec->spec);
  }
  for (uint32_t i = 0; i < l.spec.num_returns; ++i) {
    ObjEntry* e = FindEntry(l.spec.ReturnId(i));
    if (e && !e->lineage) {
      e->lineage = true;
      ++l.refs;
    }
  }
  // Only now may the arguments go (their lineage is held above), but for those the lineage
  // pins itself (a rerun's own pins all go). Unpinning frees objects, which only releases
  // other tasks' lineage: `l` stays valid.
  if (fresh) {
    for (size_t i = 0; i < l.spec.args.size(); ++i) {
      if (l.spec.args[i].by_ref && !keep_pin[i]) Unpin(l.spec.args[i].ref);
    }
  } else {
    UnpinArgs(rec->spec);
  }
  if (l.refs == 0) ReleaseLineage(tid, /*drop_ref=*/false);
}

void HeadService::ReleaseLineage(TaskId tid, bool drop_ref) {
  std::vector<TaskId> work{tid};
  bool first = true;
  while (!work.empty()) {
    TaskId id = work.back();
    work.pop_back();
    auto it = lineage_.find(id);
    if (it == lineage_.end()) continue;
    if (!first || drop_ref) --it->second.refs;
    first = false;
    if (it->second.refs > 0) continue;
    for (const proto::Arg& a : it->second.spec.args) {
      if (a.by_ref && lineage_.count(a.ref.task_id())) work.push_back(a.ref.task_id());
    }
    std::vector<ObjectId> pinned = std::move(it->second.pinned);
    lineage_.erase(it);
    for (const ObjectId& p : pinned) Unpin(p);  // may free objects (and release lineage)
  }
}

std::string HeadService::Reconstruct(const ObjectId& id, ObjEntry& e) {
  if (closed_) return "the runtime is shutting down";
  TaskId tid = id.task_id();
  auto reset = [&] {
    e.state = ObjEntry::kPending;
    e.where = 0;
    e.data = Buffer();
    e.locations.clear();
  };
  if (tasks_.count(tid) && lineage_.count(tid)) {  // being made again already
    reset();
    return "";
  }
  if (!e.lineage) {
    return id.is_put() ? "it was stored with put(), so only the copy that died existed"
                       : "it was not made by a task that may be retried (an actor call, or "
                         "max_retries=0)";
  }
  auto it = lineage_.find(tid);
  if (it == lineage_.end()) return "its lineage is gone";
  Lineage& l = it->second;
  if (!TakeRetry(l.retries_left)) return "task " + l.spec.function + " has no retries left";
  MPIRAY_LOG(info, "rebuilding object {} by running task {} ({}) again", id.Hex(), tid.ToString(),
             l.spec.function);
  ++reconstructions_;
  reset();
  auto rec = std::make_unique<TaskRec>();
  TaskRec& t = *rec;
  t.spec = l.spec;
  t.retries_left = l.retries_left;
  t.submitter = transport_.self();
  t.item.shape = l.shape;
  t.item.owner = &t;
  tasks_[tid] = std::move(rec);
  PrepareRerun(t);
  return "";
}

void HeadService::PrepareRerun(TaskRec& t) {
  TaskId tid = t.spec.id;
  std::string missing;
  // Arguments freed since the first run are made again (their lineage is still held).
  for (const proto::Arg& a : t.spec.args) {
    if (!a.by_ref || FindEntry(a.ref) != nullptr) continue;
    auto up = lineage_.find(a.ref.task_id());
    if (up == lineage_.end()) {
      missing = a.ref.Hex();
      break;
    }
    ObjEntry& ne = NewEntry(a.ref);
    ne.state = ObjEntry::kReady;  // Reconstruct resets it to pending
    ne.where = static_cast<uint8_t>(Where::kShm);
    ne.lineage = true;
    ++up->second.refs;
    std::string why = Reconstruct(a.ref, ne);
    if (!why.empty()) {
      objects_.erase(a.ref);
      ReleaseLineage(a.ref.task_id(), /*drop_ref=*/true);
      missing = a.ref.Hex() + " (" + why + ")";
      break;
    }
  }
  PinArgs(t.spec, [this](const ObjectId& id) { Pin(id); });
  if (!missing.empty()) {
    FailTask(t, ErrorPayload(StatusCode::kObjectLost, "argument object " + missing + " of " +
                                                          t.spec.function +
                                                          " is gone and cannot be rebuilt"));
    return;
  }
  for (const proto::Arg& a : t.spec.args) {
    if (!a.by_ref) continue;
    ObjEntry* e = FindEntry(a.ref);
    if (e->state != ObjEntry::kReady) {
      ++t.deps;
      e->X().dependents.push_back(tid);
    }
  }
  if (t.deps == 0) TaskDepsReady(t);
}

// ------------------------------------------------------------------ actors

void HeadService::PlaceActor(ActorRec& a) {
  ProcId w = sched_.PlaceActor(a.shape, a.hold);
  if (w == kNoProc) {
    if (std::find(pending_actors_.begin(), pending_actors_.end(), a.id) == pending_actors_.end()) {
      pending_actors_.push_back(a.id);
    }
    return;
  }
  a.worker = w;
  a.state = ActorRec::kPlaced;
  auto t = tasks_.find(a.id);
  if (t != tasks_.end()) {
    t->second->actor_worker = w;
    t->second->spec.incarnation = a.incarnation;
    ++running_;
    SendExecute(*t->second, w);
  }
  // Calls re-sent after a restart go first (they are older), unordered (seq 0).
  auto retries = std::move(a.retry_calls);
  a.retry_calls.clear();
  for (auto& c : retries) SendCall(a, std::move(c), /*ordered=*/false);
  auto calls = std::move(a.queued_calls);
  a.queued_calls.clear();
  for (auto& c : calls) SendCall(a, std::move(c), /*ordered=*/true);
  auto waiters = std::move(a.location_waiters);
  a.location_waiters.clear();
  for (ProcId p : waiters) a.subscribers.insert(p);
  for (ProcId p : a.subscribers) ReplyLocation(a, p);
}

void HeadService::SendCall(ActorRec& a, proto::TaskSpec&& spec, bool ordered) {
  spec.incarnation = a.incarnation;
  spec.seq = ordered ? ++a.next_seq : 0;
  auto t = tasks_.find(spec.id);
  if (t != tasks_.end()) t->second->spec.incarnation = a.incarnation;
  SendMsg(transport_, a.worker, Msg::kActorCall, spec);
}

void HeadService::PlacePendingActors() {
  auto pending = std::move(pending_actors_);
  pending_actors_.clear();
  for (ActorId id : pending) {
    auto it = actors_.find(id);
    if (it != actors_.end() && it->second->state == ActorRec::kPending) PlaceActor(*it->second);
  }
}

void HeadService::ReplyLocation(ActorRec& a, ProcId to) {
  proto::ActorLocation loc;
  loc.actor = a.id;
  loc.proc = a.worker;
  loc.state = static_cast<uint8_t>(a.state == ActorRec::kDead     ? proto::ActorState::kDead
                                   : a.state == ActorRec::kPlaced ? proto::ActorState::kAlive
                                                                  : proto::ActorState::kPending);
  loc.error = a.error;
  loc.incarnation = a.incarnation;
  loc.restartable = a.restartable;
  loc.retriable_calls = a.max_task_retries != 0;
  SendMsg(transport_, to, Msg::kActorLocation, loc);
}

void HeadService::ActorLost(ActorRec& a, const std::string& why) {
  if (a.state == ActorRec::kDead) return;
  if (a.restarts_left != 0 && !closed_) {
    RestartActor(a, why);
  } else {
    auto t = tasks_.find(a.id);  // a constructor that was running
    if (t != tasks_.end()) {
      ActorDied(a, why);
      FailTask(*t->second, ErrorPayload(StatusCode::kActorDied, "actor " + a.id.ToString() +
                                                                    " is dead: " + why));
      return;
    }
    ActorDied(a, why + (a.restartable ? "; no restarts left" : ""));
  }
}

void HeadService::RestartActor(ActorRec& a, const std::string& why) {
  if (!actor_gpus_.empty()) ReleaseGpus(actor_gpus_, a.id);
  auto ct = tasks_.find(a.id);
  if (ct != tasks_.end()) {
    TaskRec& c = *ct->second;
    if (c.actor_worker == kNoProc && a.state != ActorRec::kPlaced) return;  // not started yet
    if (c.actor_worker != kNoProc) {
      c.actor_worker = kNoProc;
      --running_;
    }
    FinishTask(a.id);  // the constructor run that was lost
  }
  if (a.state == ActorRec::kPlaced) sched_.ReleaseActor(a.worker, a.shape, a.hold);
  pending_actors_.erase(std::remove(pending_actors_.begin(), pending_actors_.end(), a.id),
                        pending_actors_.end());
  TakeRetry(a.restarts_left);
  ++a.incarnation;
  a.next_seq = 0;
  a.worker = kNoProc;
  a.state = ActorRec::kWaitingDeps;
  ++actor_restarts_;
  MPIRAY_LOG(warn, "restarting actor {}{} (instance {}): {}", a.id.ToString(),
             a.name.empty() ? "" : " (" + a.name + ")", a.incarnation, why);
  for (ProcId p : a.subscribers) ReplyLocation(a, p);  // they hold calls until it is back
  // Calls that went to the lost instance and did not finish: re-sent or failed.
  std::vector<TaskId> calls(a.calls.begin(), a.calls.end());
  // Submission order per caller (task ids count up per submitting process).
  std::sort(calls.begin(), calls.end(), [](TaskId x, TaskId y) { return x.value < y.value; });
  for (TaskId tid : calls) {
    auto t = tasks_.find(tid);
    if (t != tasks_.end() && t->second->spec.incarnation != 0 &&
        t->second->spec.incarnation < a.incarnation) {
      CallLost(a, *t->second);
    }
  }
  // Run the constructor again.
  auto rec = std::make_unique<TaskRec>();
  TaskRec& t = *rec;
  t.spec = *a.creation;
  t.spec.incarnation = a.incarnation;
  t.submitter = transport_.self();
  t.item.shape = a.shape;
  t.item.owner = &t;
  tasks_[a.id] = std::move(rec);
  PrepareRerun(t);
}

void HeadService::CallLost(ActorRec& a, TaskRec& t) {
  TaskId tid = t.spec.id;
  if (t.whole && TakeRetry(t.retries_left)) {
    t.resent = true;
    proto::TaskSpec spec = t.spec;
    if (a.state == ActorRec::kPlaced) {
      SendCall(a, std::move(spec), /*ordered=*/false);
    } else {
      t.spec.incarnation = 0;  // held here until the next instance is placed
      a.retry_calls.push_back(std::move(spec));
    }
    return;
  }
  std::string msg = "actor " + a.id.ToString() + (a.name.empty() ? "" : " (" + a.name + ")") +
                    " died while call " + t.spec.function + " was in flight" +
                    (t.whole ? "; retries exhausted" : " (set max_task_retries to retry it)");
  Buffer err = ErrorPayload(StatusCode::kActorDied, msg);
  for (uint32_t i = 0; i < t.spec.num_returns; ++i) SetErrorPayload(t.spec.ReturnId(i), err);
  call_actor_.erase(tid);
  a.calls.erase(tid);
  FinishTask(tid);
}

void HeadService::ActorDied(ActorRec& a, const std::string& why) {
  if (!actor_gpus_.empty()) ReleaseGpus(actor_gpus_, a.id);
  if (a.state == ActorRec::kDead) return;
  bool was_placed = a.state == ActorRec::kPlaced;
  a.state = ActorRec::kDead;
  a.error = why;
  if (a.named) {
    auto it = named_.find({a.ns, a.name});
    if (it != named_.end() && it->second == a.id) named_.erase(it);  // the name is free again
  }
  if (was_placed) sched_.ReleaseActor(a.worker, a.shape, a.hold);
  pending_actors_.erase(std::remove(pending_actors_.begin(), pending_actors_.end(), a.id),
                        pending_actors_.end());
  std::string msg = "actor " + a.id.ToString() + (a.name.empty() ? "" : " (" + a.name + ")") +
                    " is dead: " + why;
  Buffer err = ErrorPayload(StatusCode::kActorDied, msg);
  for (auto* queue : {&a.queued_calls, &a.retry_calls}) {
    for (auto& c : *queue) {
      for (uint32_t i = 0; i < c.num_returns; ++i) SetErrorPayload(c.ReturnId(i), err);
    }
    queue->clear();
  }
  auto calls = std::move(a.calls);
  a.calls.clear();
  for (TaskId tid : calls) {
    call_actor_.erase(tid);
    auto t = tasks_.find(tid);
    if (t == tasks_.end()) continue;
    for (uint32_t i = 0; i < t->second->spec.num_returns; ++i) {
      SetErrorPayload(t->second->spec.ReturnId(i), err);
    }
    FinishTask(tid);
  }
  if (a.creation) {
    UnpinArgs(*a.creation);
    a.creation.reset();
  }
  a.restarts_left = 0;
  auto waiters = std::move(a.location_waiters);
  a.location_waiters.clear();
  for (ProcId p : waiters) a.subscribers.insert(p);
  for (ProcId p : a.subscribers) ReplyLocation(a, p);
}

Status HeadService::SubmitActorCall(proto::TaskSpec&& spec, ProcId submitter) {
  TaskId tid = spec.id;
  if (!spec.parent.nil() && tasks_.count(spec.parent)) children_[spec.parent].push_back(tid);
  bool early = early_done_.erase(tid) > 0;
  for (uint32_t i = 0; i < spec.num_returns; ++i) {
    ObjectId rid = spec.ReturnId(i);
    ObjEntry& e = NewEntry(rid);
    e.registered = true;
    e.holders.assign(1, submitter);
    if (early) MaybeFree(rid);
  }
  if (early) return Status::OK();
  auto ait = actors_.find(spec.actor);
  if (ait == actors_.end()) {
    for (uint32_t i = 0; i < spec.num_returns; ++i) {
      SetError(spec.ReturnId(i), StatusCode::kActorDied,
               "actor " + spec.actor.ToString() + " does not exist");
    }
    return Status::OK();
  }
  ActorRec& a = *ait->second;
  if (a.state == ActorRec::kDead) {
    for (uint32_t i = 0; i < spec.num_returns; ++i) {
      SetError(spec.ReturnId(i), StatusCode::kActorDied,
               "actor " + a.id.ToString() + " is dead: " + a.error);
    }
    return Status::OK();
  }
  PinArgs(spec, [this](const ObjectId& id) { Pin(id); });
  a.calls.insert(tid);
  call_actor_[tid] = a.id;
  bool own = submitter == transport_.self();
  auto rec = std::make_unique<TaskRec>();
  TaskRec& t = *rec;
  t.submitter = submitter;
  t.retries_left =
      spec.max_retries == detail::kActorDefaultRetries ? a.max_task_retries : spec.max_retries;
  // The caller sends the whole call when it knew the actor may restart and the call may be
  // retried (see ClientImpl::WholeCall); our own calls are always whole.
  t.whole = a.restartable && t.retries_left != 0 && (own || spec.incarnation != 0);
  if (t.whole) {
    t.spec = spec;
  } else {
    // Only what completion needs (the argument refs, for the pins).
    t.spec.id = tid;
    t.spec.kind = spec.kind;
    t.spec.num_returns = spec.num_returns;
    t.spec.function = spec.function;
    t.spec.actor = spec.actor;
    t.spec.incarnation = spec.incarnation;
    for (const proto::Arg& arg : spec.args) {
      proto::Arg slim;
      slim.by_ref = arg.by_ref;
      slim.ref = arg.ref;
      slim.nested = arg.nested;
      t.spec.args.push_back(std::move(slim));
    }
  }
  tasks_[tid] = std::move(rec);
  if (own) {
    RouteCall(a, std::move(spec));
  } else if (spec.incarnation != 0 &&
             (spec.incarnation != a.incarnation || a.state != ActorRec::kPlaced)) {
    CallLost(a, t);  // it went to an instance that is gone
  }
  return Status::OK();
}

void HeadService::OnCallRouted(proto::CallRouted&& r) {
  auto it = tasks_.find(r.task);
  auto ait = actors_.find(r.actor);
  if (it == tasks_.end() || ait == actors_.end()) return;  // done already
  TaskRec& t = *it->second;
  ActorRec& a = *ait->second;
  if (!r.args.empty()) t.spec.args = std::move(r.args);
  t.whole = a.restartable && t.retries_left != 0;
  t.spec.incarnation = r.incarnation;
  if (r.incarnation != a.incarnation || a.state != ActorRec::kPlaced) CallLost(a, t);
}

void HeadService::RouteCall(ActorRec& a, proto::TaskSpec&& spec) {
  if (a.state == ActorRec::kPlaced) {
    SendCall(a, std::move(spec), /*ordered=*/true);
  } else {
    a.queued_calls.push_back(std::move(spec));
  }
}

std::vector<proto::ObjectLoc> HeadService::Drain(const std::vector<ProcId>& procs, NodeId keep_node) {
  std::lock_guard<std::mutex> lk(mu_);
  std::set<NodeId> leaving;
  for (ProcId p : procs) {
    sched_.SetDraining(p, true);
    leaving.insert(NodeOf(p));
  }
  // A node stays if some process on it does not leave.
  for (auto it = leaving.begin(); it != leaving.end();) {
    bool others = false;
    for (ProcId p : node_procs_[*it]) others |= std::find(procs.begin(), procs.end(), p) == procs.end();
    it = others ? leaving.erase(it) : std::next(it);
  }
  std::vector<proto::ObjectLoc> stranded;
  for (const auto& [id, e] : objects_) {
    if (e.state != ObjEntry::kReady || e.where != static_cast<uint8_t>(Where::kShm)) continue;
    bool elsewhere = std::any_of(e.locations.begin(), e.locations.end(),
                                 [&](NodeId n) { return !leaving.count(n); });
    if (!elsewhere) stranded.push_back(Locate(id, e, keep_node));
  }
  return stranded;
}

std::pair<int, int> HeadService::Load(ProcId proc) const {
  std::lock_guard<std::mutex> lk(mu_);
  return sched_.Load(proc);
}

size_t HeadService::PendingActors() const {
  std::lock_guard<std::mutex> lk(mu_);
  return pending_actors_.size();
}

bool HeadService::FindNamedActor(const std::string& ns, const std::string& name, ActorId* actor,
                                 Buffer* handle_meta) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = named_.find({ns, name});
  if (it == named_.end()) return false;
  *actor = it->second;
  auto a = actors_.find(it->second);
  if (a != actors_.end()) *handle_meta = a->second->handle_meta;
  return true;
}

Status HeadService::KillActor(const ActorId& actor, bool no_restart) {
  std::lock_guard<std::mutex> lk(mu_);
  return KillActorLocked(actor, no_restart);
}

Status HeadService::KillActorLocked(const ActorId& actor, bool no_restart) {
  auto it = actors_.find(actor);
  if (it == actors_.end()) return InvalidArgument("unknown actor " + actor.ToString());
  ActorRec& a = *it->second;
  ProcId w = a.worker;
  bool placed = a.state == ActorRec::kPlaced;
  if (placed) SendMsg(transport_, w, Msg::kDestroyActor, proto::KillActor{actor, no_restart});
  if (!no_restart && a.restarts_left != 0) {
    if (placed) RestartActor(a, "killed with no_restart=False");
  } else {
    ActorDied(a, "killed by Kill()");
  }
  Dispatch();
  return Status::OK();
}

// ------------------------------------------------------------------ placement groups

namespace {

const char* PgStateName(uint8_t s) {
  static const char* names[] = {"PENDING", "CREATED", "REMOVED", "INFEASIBLE"};
  return s < 4 ? names[s] : "UNKNOWN";
}

}  // namespace

bool HeadService::UsesGroup(uint32_t shape, const PgRec& g) const {
  if (g.state == PgRec::kRemoved || g.state == PgRec::kInfeasible) return false;
  for (const auto& [i, amount] : sched_.ShapeRequest(shape)) {
    if (std::binary_search(g.indices.begin(), g.indices.end(), i)) return true;
  }
  return false;
}

Status HeadService::CreatePlacementGroup(proto::PlacementGroupSpec&& spec, ProcId submitter) {
  std::lock_guard<std::mutex> lk(mu_);
  return CreatePlacementGroupLocked(std::move(spec), submitter);
}

Status HeadService::CreatePlacementGroupLocked(proto::PlacementGroupSpec&& spec, ProcId submitter) {
  if (spec.bundles.empty()) return InvalidArgument("a placement group needs at least one bundle");
  if (spec.strategy > static_cast<uint8_t>(proto::PgStrategy::kStrictSpread)) {
    return InvalidArgument("unknown placement group strategy " + std::to_string(spec.strategy));
  }
  if (groups_.count(spec.id)) return Status(StatusCode::kAlreadyExists, "placement group exists");
  auto g = std::make_unique<PgRec>();
  auto& names = sched_.names();
  for (size_t i = 0; i < spec.bundles.size(); ++i) {
    ResourceRequest base, group;
    for (const auto& [name, amount] : spec.bundles[i]) {
      if (name.empty()) return InvalidArgument("resource names must not be empty");
      if (amount < 0) {
        return InvalidArgument("bundle " + std::to_string(i) + ": resource '" + name +
                               "' must be non-negative");
      }
      if (amount == 0) continue;
      base.emplace_back(static_cast<uint32_t>(names.Intern(name)), amount);
      for (int b : {static_cast<int>(i), -1}) {
        group.emplace_back(static_cast<uint32_t>(names.Intern(proto::PgResourceName(name, b, spec.id))),
                           amount);
      }
    }
    if (base.empty()) {
      return InvalidArgument("bundle " + std::to_string(i) +
                             " is empty: each bundle needs a positive amount of some resource");
    }
    for (int b : {static_cast<int>(i), -1}) {
      group.emplace_back(static_cast<uint32_t>(names.Intern(proto::PgResourceName("bundle", b, spec.id))),
                         proto::kPgBundleAmount);
    }
    std::sort(base.begin(), base.end());
    std::sort(group.begin(), group.end());
    for (const auto& [r, a] : group) g->indices.push_back(r);
    g->base.push_back(std::move(base));
    g->group.push_back(std::move(group));
  }
  std::sort(g->indices.begin(), g->indices.end());
  g->indices.erase(std::unique(g->indices.begin(), g->indices.end()), g->indices.end());
  g->nodes.assign(spec.bundles.size(), kNoNode);
  const ObjectId ready = ObjectId::ForReturn(spec.id, 0);
  NewEntry(ready).holders.assign(1, submitter);
  TaskId id = spec.id;
  g->spec = std::move(spec);
  PgRec& rec = *g;
  groups_[id] = std::move(g);
  std::vector<NodeId> where;
  const auto strategy = static_cast<proto::PgStrategy>(rec.spec.strategy);
  if (!config_.autoscale && !sched_.PlaceBundles(rec.base, strategy, rec.nodes, true, &where)) {
    rec.state = PgRec::kInfeasible;
    std::string msg = "placement group " + (rec.spec.name.empty() ? id.ToString() : "'" + rec.spec.name + "'") +
                      " can never be placed: the cluster's nodes cannot hold its bundles with strategy " +
                      std::string(PgStrategyName(rec.spec.strategy)) + " (";
    for (size_t i = 0; i < rec.base.size(); ++i) {
      msg += (i ? ", " : "") + DescribeRequest(names, rec.base[i]);
    }
    msg += "); the nodes have";
    for (const auto& n : sched_.Nodes()) {
      ResourceVector own = n.total;  // without other groups' bundle resources
      for (size_t i = 0; i < own.size(); ++i) {
        if (names.Name(i).find("_group_") != std::string::npos) own[i] = 0;
      }
      msg += " node " + std::to_string(n.node) + " " + DescribeVector(names, own) + ";";
    }
    rec.error = msg;
    rec.ready_set = true;
    MPIRAY_LOG(warn, "{}", msg);
    SetError(ready, StatusCode::kInfeasible, msg);
    return Status::OK();
  }
  ++pending_groups_;
  Dispatch();
  return Status::OK();
}

void HeadService::PlacePendingGroups() {
  for (auto& [id, gp] : groups_) {
    PgRec& g = *gp;
    if (g.state != PgRec::kPending) continue;
    std::vector<NodeId> where;
    if (!sched_.PlaceBundles(g.base, static_cast<proto::PgStrategy>(g.spec.strategy), g.nodes,
                             false, &where)) {
      continue;  // all or nothing: wait for room
    }
    for (size_t i = 0; i < where.size(); ++i) {
      if (g.nodes[i] == kNoNode) sched_.ReserveBundle(where[i], g.base[i], g.group[i]);
    }
    g.nodes = std::move(where);
    g.state = PgRec::kCreated;
    --pending_groups_;
    if (!g.ready_set) {
      g.ready_set = true;
      proto::NewObject obj;
      obj.id = ObjectId::ForReturn(id, 0);
      obj.where = static_cast<uint8_t>(Where::kInline);
      obj.data = Buffer(detail::Serialize(true).ToVector());
      obj.size = obj.data.size();
      SetReady(obj.id, std::move(obj));
    }
  }
}

Status HeadService::RemovePlacementGroup(TaskId id) {
  std::lock_guard<std::mutex> lk(mu_);
  return RemovePlacementGroupLocked(id);
}

Status HeadService::RemovePlacementGroupLocked(TaskId id) {
  auto it = groups_.find(id);
  if (it == groups_.end()) return InvalidArgument("unknown placement group " + id.ToString());
  PgRec& g = *it->second;
  if (g.state == PgRec::kRemoved) return Status::OK();
  if (g.state == PgRec::kPending) --pending_groups_;
  // Its actors die and its tasks that have not started fail (before its resources go).
  std::vector<ActorId> actors;
  for (const auto& [aid, a] : actors_) {
    if (a->state != ActorRec::kDead && UsesGroup(a->shape, g)) actors.push_back(aid);
  }
  std::vector<TaskId> waiting;
  for (const auto& [tid, t] : tasks_) {
    if (t->spec.task_kind() == TaskKind::kNormal && t->item.worker == kNoProc &&
        UsesGroup(t->item.shape, g)) {
      waiting.push_back(tid);
    }
  }
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (g.nodes[i] != kNoNode) sched_.ReleaseBundle(g.nodes[i], g.base[i], g.group[i]);
  }
  g.state = PgRec::kRemoved;  // after the scans above (UsesGroup ignores removed groups)
  const std::string why = "its placement group " + id.ToString() + " was removed";
  for (const ActorId& aid : actors) {
    auto a = actors_.find(aid);
    if (a == actors_.end()) continue;
    if (a->second->state == ActorRec::kPlaced) {
      SendMsg(transport_, a->second->worker, Msg::kDestroyActor, proto::KillActor{aid, true});
    }
    ActorDied(*a->second, why);
  }
  for (TaskId tid : waiting) {
    auto t = tasks_.find(tid);
    if (t != tasks_.end()) FailTask(*t->second, ErrorPayload(StatusCode::kCancelled, "task " + t->second->spec.function + " cannot run: " + why));
  }
  if (!g.ready_set) {
    g.ready_set = true;
    SetError(ObjectId::ForReturn(id, 0), StatusCode::kCancelled,
             "placement group " + id.ToString() + " was removed before it was ready");
  }
  Dispatch();
  return Status::OK();
}

std::vector<PlacementGroupInfo> HeadService::PlacementGroups() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<PlacementGroupInfo> out;
  for (const auto& [id, g] : groups_) {
    PlacementGroupInfo info;
    info.id = id;
    info.name = g->spec.name;
    info.strategy = g->spec.strategy;
    info.state = PgStateName(g->state);
    info.error = g->error;
    for (const auto& b : g->spec.bundles) {
      std::map<std::string, double> m;
      for (const auto& [name, amount] : b) m[name] = static_cast<double>(amount) / proto::kResourceUnit;
      info.bundles.push_back(std::move(m));
    }
    info.nodes = g->nodes;
    out.push_back(std::move(info));
  }
  return out;
}

// ------------------------------------------------------------------ streaming tasks

void HeadService::StreamWant(const ObjectId& id, ProcId caller) {
  std::lock_guard<std::mutex> lk(mu_);
  StreamWantLocked(id, caller);
}

void HeadService::StreamWantLocked(const ObjectId& id, ProcId caller) {
  if (ObjEntry* e = FindEntry(id)) {  // produced already (held for the submitter) or wanted
    if (std::find(e->holders.begin(), e->holders.end(), caller) == e->holders.end()) {
      e->holders.push_back(caller);
    }
    return;
  }
  ObjEntry& e = NewEntry(id);
  e.holders.assign(1, caller);
  if (tasks_.count(id.task_id())) {
    stream_waits_[id.task_id()].push_back(id.index);
  } else {
    SetError(id, StatusCode::kNotFound, proto::kEndOfStream);  // the task is over
  }
}

void HeadService::OnStreamItem(ProcId src, proto::StreamItem&& item) {
  auto it = tasks_.find(item.task);
  ObjectId id = item.obj.id;
  if (it == tasks_.end() || it->second->item.worker != src) {
    // A late item of a task that was failed or re-run elsewhere: drop its copy.
    if (item.obj.where == static_cast<uint8_t>(Where::kShm) && !FindEntry(id)) {
      SendMsg(transport_, src, Msg::kFreeObjects, proto::IdList{{id}});
    }
    return;
  }
  if (!FindEntry(id)) NewEntry(id).holders.assign(1, it->second->submitter);
  SetReady(id, std::move(item.obj));
}

void HeadService::FinalizeStream(TaskId task) {
  auto w = stream_waits_.find(task);
  if (w == stream_waits_.end()) return;
  std::vector<uint32_t> indices = std::move(w->second);
  stream_waits_.erase(w);
  // Items the task never produced: the end (a failed task's error is its completion object's,
  // which the caller's generator hands out after the last item).
  for (uint32_t i : indices) {
    ObjectId id = ObjectId::ForReturn(task, i);
    ObjEntry* e = FindEntry(id);
    if (e && e->state != ObjEntry::kReady) SetError(id, StatusCode::kNotFound, proto::kEndOfStream);
  }
}

// ------------------------------------------------------------------ messages

void HeadService::Handle(ProcId src, Msg type, const char* body, size_t len) {
  std::lock_guard<std::mutex> lk(mu_);
  auto pit = procs_.find(src);
  if (pit != procs_.end()) pit->second.last_seen_ms = now_ms_();
  switch (type) {
    case Msg::kSubmit: {
      auto spec = DecodeMsg<proto::TaskSpec>(body, len);
      bool call = spec.task_kind() == TaskKind::kActorCall;
      uint32_t nret = spec.task_kind() == TaskKind::kActorCreate ? 1 : spec.num_returns;
      TaskId tid = spec.id;
      Status st = call ? SubmitActorCall(std::move(spec), src) : SubmitLocked(std::move(spec), src);
      if (!st.ok()) {
        // The submitter learns of the error when it reads a return.
        for (uint32_t i = 0; i < nret; ++i) {
          ObjectId rid = ObjectId::ForReturn(tid, i);
          ObjEntry& e = NewEntry(rid);
          e.holders.assign(1, src);
          SetError(rid, st.code(), st.message());
        }
      }
      break;
    }
    case Msg::kAddRef: {
      for (const ObjectId& id : DecodeMsg<proto::IdList>(body, len).ids) {
        if (ObjEntry* e = FindEntry(id)) {
          if (std::find(e->holders.begin(), e->holders.end(), src) == e->holders.end()) {
            e->holders.push_back(src);
          }
        }
      }
      break;
    }
    case Msg::kDelRef: {
      for (const ObjectId& id : DecodeMsg<proto::IdList>(body, len).ids) {
        ObjEntry* e = FindEntry(id);
        if (!e) continue;
        auto h = std::find(e->holders.begin(), e->holders.end(), src);
        if (h != e->holders.end()) e->holders.erase(h);
        MaybeFree(id);
      }
      break;
    }
    case Msg::kPutObject: {
      auto obj = DecodeMsg<proto::NewObject>(body, len);
      ObjectId id = obj.id;
      ObjEntry& e = NewEntry(id);
      e.holders.push_back(src);
      if (!awaited_puts_.empty() && awaited_puts_.erase(id)) e.registered = true;
      SetReady(id, std::move(obj));
      break;
    }
    case Msg::kGetObjects:
      HandleGet(src, DecodeMsg<proto::GetObjects>(body, len));
      break;
    case Msg::kCancel: {
      auto c = DecodeMsg<proto::Cancel>(body, len);
      (void)CancelLocked(c.id, c.force, c.recursive);
      break;
    }
    case Msg::kStreamItem:
      OnStreamItem(src, DecodeMsg<proto::StreamItem>(body, len));
      break;
    case Msg::kStreamWant:
      StreamWantLocked(DecodeMsg<proto::StreamWant>(body, len).id, src);
      break;
    case Msg::kCreatePlacementGroup: {
      auto spec = DecodeMsg<proto::PlacementGroupSpec>(body, len);
      ObjectId ready = ObjectId::ForReturn(spec.id, 0);
      Status st = CreatePlacementGroupLocked(std::move(spec), src);
      if (!st.ok()) {
        if (!FindEntry(ready)) NewEntry(ready).holders.assign(1, src);
        SetError(ready, st.code(), st.message());
      }
      break;
    }
    case Msg::kRemovePlacementGroup: {
      auto r = DecodeMsg<proto::RemovePlacementGroup>(body, len);
      (void)RemovePlacementGroupLocked(r.id);
      break;
    }
    case Msg::kKillActor: {
      auto k = DecodeMsg<proto::KillActor>(body, len);
      (void)KillActorLocked(k.actor, k.no_restart);
      break;
    }
    case Msg::kCallRouted:
      OnCallRouted(DecodeMsg<proto::CallRouted>(body, len));
      break;
    case Msg::kActorLookup: {
      auto l = DecodeMsg<proto::ActorLookup>(body, len);
      auto it = actors_.find(l.actor);
      if (it == actors_.end()) {
        proto::ActorLocation loc;
        loc.actor = l.actor;
        loc.state = static_cast<uint8_t>(proto::ActorState::kDead);
        loc.error = "actor " + l.actor.ToString() + " does not exist";
        SendMsg(transport_, src, Msg::kActorLocation, loc);
      } else if (it->second->state == ActorRec::kPlaced || it->second->state == ActorRec::kDead) {
        it->second->subscribers.insert(src);  // told again if it restarts
        ReplyLocation(*it->second, src);
      } else {
        it->second->location_waiters.push_back(src);
      }
      break;
    }
    case Msg::kGetNamedActor: {
      auto q = DecodeMsg<proto::GetNamedActor>(body, len);
      proto::NamedActor r;
      r.req = q.req;
      auto it = named_.find({q.ns, q.name});
      if (it != named_.end()) {
        r.found = true;
        r.actor = it->second;
        auto a = actors_.find(it->second);
        if (a != actors_.end()) r.handle_meta = a->second->handle_meta;
      }
      SendMsg(transport_, src, Msg::kNamedActor, r);
      break;
    }
    case Msg::kTaskBlocked:
    case Msg::kTaskUnblocked: {
      auto r = DecodeMsg<proto::TaskRef>(body, len);
      auto it = tasks_.find(r.task);
      if (it != tasks_.end() && it->second->item.worker == src) {
        if (type == Msg::kTaskBlocked) {
          sched_.Blocked(&it->second->item);
        } else {
          sched_.Unblocked(&it->second->item);
        }
      }
      break;
    }
    case Msg::kAddLocation: {
      auto a = DecodeMsg<proto::AddLocation>(body, len);
      ObjEntry* e = FindEntry(a.id);
      if (e && e->where == static_cast<uint8_t>(Where::kShm) &&
          std::find(e->locations.begin(), e->locations.end(), a.node) == e->locations.end()) {
        e->locations.push_back(a.node);
      } else if (!e) {
        ProcId p = ProcOnNode(a.node);
        if (p != kNoProc) SendMsg(transport_, p, Msg::kFreeObjects, proto::IdList{{a.id}});
      }
      break;
    }
    case Msg::kTaskDone:
      OnTaskDone(src, DecodeMsg<proto::TaskDone>(body, len));
      break;
    case Msg::kHeartbeat:
      break;
    default:
      MPIRAY_LOG(warn, "head: unexpected message {} from process {}", static_cast<int>(type), src);
      break;
  }
  Dispatch();
}

void HeadService::OnTick() {
  std::vector<std::pair<ProcId, int64_t>> silent;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (closed_) return;
    int64_t now = now_ms_();
    for (auto it = awaited_puts_.begin(); it != awaited_puts_.end();) {
      if (now - it->second < kAwaitPutMs) {
        ++it;
        continue;
      }
      ObjectId id = it->first;
      it = awaited_puts_.erase(it);
      if (ObjEntry* e = FindEntry(id)) {
        e->registered = true;  // freed once the waiters have their error
        SetError(id, StatusCode::kObjectLost, "object " + id.Hex() + " is unknown or was already freed");
      }
    }
    if (now - last_heartbeat_ms_ >= 1000) {
      last_heartbeat_ms_ = now;
      for (const auto& [id, p] : procs_) {
        if (p.alive && id != transport_.self()) SendMsg(transport_, id, Msg::kHeartbeat, proto::Empty{});
      }
    }
    for (const auto& [id, p] : procs_) {
      if (p.alive && id != transport_.self() && now - p.last_seen_ms > config_.heartbeat_timeout_ms) {
        silent.emplace_back(id, now - p.last_seen_ms);
      }
    }
  }
  for (auto [id, ms] : silent) {
    RemoveProcess(id, "no heartbeat for " + std::to_string(ms) + " ms");
    SendMsg(transport_, id, Msg::kShutdown, proto::Shutdown{"declared dead by the head"});
  }
}

void HeadService::Close(const std::string& why) {
  std::lock_guard<std::mutex> lk(mu_);
  closed_ = true;
  close_reason_ = why;
  for (auto& [id, e] : objects_) {
    if (!e.extra) continue;
    for (Waiter* w : e.extra->waiters) {
      w->ready = w->needed;
      w->cv.notify_all();
    }
  }
}

StateListing HeadService::ListState(size_t limit) const {
  std::lock_guard<std::mutex> lk(mu_);
  StateListing out;
  out.total_tasks = tasks_.size() + events_.size();
  for (const auto& [tid, t] : tasks_) {
    if (out.tasks.size() >= limit) break;
    StateListing::Task e;
    e.id = tid.ToString();
    e.name = t->spec.name.empty() ? t->spec.function : t->spec.name;
    e.kind = t->spec.kind;
    ProcId w = t->spec.task_kind() == TaskKind::kActorCreate ? t->actor_worker : t->item.worker;
    if (w != kNoProc) {
      e.state = "RUNNING";
      e.worker = w;
      e.node = NodeOf(w);
    } else {
      e.state = t->deps > 0 ? "PENDING_ARGS_AVAIL" : "PENDING_NODE_ASSIGNMENT";
    }
    out.tasks.push_back(std::move(e));
  }
  // Finished ones, newest first (the timeline's bounded history).
  for (size_t k = 0; k < events_.size() && out.tasks.size() < limit; ++k) {
    size_t i = (events_next_ + events_.size() - 1 - k) % events_.size();
    const TaskEvent& ev = events_[i];
    StateListing::Task e;
    e.name = ev.name;
    e.state = ev.failed ? "FAILED" : "FINISHED";
    e.kind = ev.kind;
    e.worker = ev.worker;
    e.node = ev.node;
    out.tasks.push_back(std::move(e));
  }
  out.total_actors = actors_.size();
  static const char* actor_states[] = {"DEPENDENCIES_UNREADY", "PENDING_CREATION", "ALIVE", "DEAD"};
  for (const auto& [aid, a] : actors_) {
    if (out.actors.size() >= limit) break;
    StateListing::Actor e;
    e.id = aid.ToString();
    e.name = a->name;
    e.named = a->named;
    e.ns = a->ns;
    e.state = actor_states[a->state];
    if (a->state == ActorRec::kPending && a->incarnation > 1) e.state = "RESTARTING";
    e.worker = a->worker;
    e.incarnation = a->incarnation;
    e.error = a->error;
    if (a->worker != kNoProc && a->state == ActorRec::kPlaced) {
      e.node = NodeOf(a->worker);
      auto p = procs_.find(a->worker);
      if (p != procs_.end()) e.pid = p->second.peer.pid;
    }
    out.actors.push_back(std::move(e));
  }
  out.total_objects = objects_.size();
  static const char* wheres[] = {"INLINE", "SHARED_MEMORY", "ERROR", "PENDING"};
  for (const auto& [oid, o] : objects_) {
    if (out.objects.size() >= limit) break;
    StateListing::Object e;
    e.id = oid.Hex();
    e.size = o.size;
    e.where = o.state == ObjEntry::kReady ? wheres[std::min<uint8_t>(o.where, 3)] : "PENDING";
    e.nodes = o.locations;
    e.holders = o.holders;
    e.pins = o.pins;
    out.objects.push_back(std::move(e));
  }
  return out;
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
      n.available[sched_.names().Name(i)] =
          static_cast<double>(v.available[i]) / proto::kResourceUnit;
    }
    n.workers = v.workers;
    s.nodes.push_back(std::move(n));
  }
  s.queued_tasks = sched_.queued();
  s.pipelined_tasks = sched_.Pipelined();
  s.running_tasks = running_;
  s.objects = objects_.size();
  s.tasks_finished = finished_;
  s.tasks_failed = failed_;
  s.actor_restarts = actor_restarts_;
  s.reconstructions = reconstructions_;
  s.lineage_tasks = lineage_.size();
  for (const auto& [id, e] : objects_) {
    if (e.state != ObjEntry::kReady) continue;
    if (e.where == static_cast<uint8_t>(Where::kShm)) {
      for (NodeId n : e.locations) s.store_bytes[n] += e.size;
    } else {
      s.inline_bytes += e.data.size();
    }
  }
  for (const auto& [id, a] : actors_) {
    if (a->state != ActorRec::kDead) ++s.actors;
  }
  return s;
}

}  // namespace mpiray

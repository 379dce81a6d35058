#include "client.h"

#include <chrono>
#include <set>
#include <thread>

#include "log.h"
#include "resources.h"
#include "worker.h"

namespace mpiray {

using proto::Msg;
using proto::Where;

ClientImpl::ClientImpl(const ClientDeps& deps) : d_(deps) {}

TaskId ClientImpl::NextTaskId() {
  // Process-wide, so that ids never repeat across sessions of one process.
  static std::atomic<uint64_t> next{0};
  return TaskId::Make(d_.self, ++next);
}

// ------------------------------------------------------------------ references

void ClientImpl::AddLocalRef(const ObjectId& id) {
  std::lock_guard<std::mutex> lk(ref_mu_);
  if (++refs_[id] != 1) return;
  if (d_.head) {
    d_.head->AddHolder(id, d_.self);
  } else {
    SendMsg(*d_.transport, kHeadProc, Msg::kAddRef, proto::IdList{{id}});
  }
}

void ClientImpl::RemoveLocalRef(const ObjectId& id) {
  std::lock_guard<std::mutex> lk(ref_mu_);
  auto it = refs_.find(id);
  if (it == refs_.end()) return;
  if (--it->second > 0) return;
  refs_.erase(it);
  if (d_.head) {
    d_.head->RemoveHolder(id, d_.self);
  } else {
    SendMsg(*d_.transport, kHeadProc, Msg::kDelRef, proto::IdList{{id}});
  }
}

size_t ClientImpl::NumLocalRefs() const {
  std::lock_guard<std::mutex> lk(ref_mu_);
  return refs_.size();
}

// ------------------------------------------------------------------ storing values

Result<proto::NewObject> ClientImpl::StoreValue(const ObjectId& id,
                                                const detail::SerializedValue& value) {
  proto::NewObject obj;
  obj.id = id;
  obj.size = value.size();
  obj.nested = value.nested;
  if (value.size() <= d_.config.inline_threshold) {
    obj.where = static_cast<uint8_t>(Where::kInline);
    obj.data = Buffer(value.ToVector());
    return obj;
  }
  MPIRAY_ASSIGN_OR_RETURN(WritableObject w, d_.store->Create(id, value.size()));
  try {
    value.WriteTo(w.data);
  } catch (...) {
    d_.store->Abort(w);
    throw;
  }
  MPIRAY_ASSIGN_OR_RETURN(Buffer sealed, d_.store->Seal(w));
  (void)sealed;
  obj.where = static_cast<uint8_t>(Where::kShm);
  obj.node = d_.node;
  return obj;
}

ObjectId ClientImpl::Put(const detail::SerializedValue& value) {
  ObjectId id = ObjectId::ForPut(NextTaskId());
  proto::NewObject obj = ValueOrThrow(StoreValue(id, value));
  {
    std::lock_guard<std::mutex> lk(ref_mu_);
    ++refs_[id];  // registered with the head below, with this process as holder
  }
  if (d_.head) {
    ThrowIfError(d_.head->Put(std::move(obj), d_.self));
  } else {
    SendMsg(*d_.transport, kHeadProc, Msg::kPutObject, obj);
  }
  return id;
}

// ------------------------------------------------------------------ submitting

std::vector<ObjectId> ClientImpl::Submit(detail::TaskRequest&& req) {
  proto::TaskSpec spec;
  spec.id = NextTaskId();
  spec.kind = static_cast<uint8_t>(req.kind);
  spec.language = req.language;
  spec.function = std::move(req.function);
  spec.num_returns = req.kind == detail::TaskKind::kActorCreate ? 1 : req.num_returns;
  spec.max_retries = req.max_retries;
  spec.max_restarts = req.max_restarts;
  spec.max_task_retries = req.max_task_retries;
  spec.name = std::move(req.name);
  spec.max_concurrency = req.max_concurrency;
  spec.ns = std::move(req.ns);
  spec.named = req.named;
  if (!req.handle_meta.empty()) spec.handle_meta = Buffer(std::move(req.handle_meta));
  if (spec.function.empty()) throw InvalidArgumentError("remote call without a function name");
  if (req.kind == detail::TaskKind::kNormal && spec.num_returns == 0) {
    throw InvalidArgumentError("num_returns must be at least 1");
  }
  if (req.max_concurrency < 1) {
    throw InvalidArgumentError("max_concurrency must be at least 1, got " +
                               std::to_string(req.max_concurrency));
  }
  bool actor_default = req.kind == detail::TaskKind::kActorCall &&
                       req.max_retries == detail::kActorDefaultRetries;
  if (req.max_retries < -1 && !actor_default) {
    throw InvalidArgumentError("max_retries must be >= 0 (or -1: retry forever), got " +
                               std::to_string(req.max_retries));
  }
  if (req.max_restarts < -1) {
    throw InvalidArgumentError("max_restarts must be >= 0 (or -1: restart forever), got " +
                               std::to_string(req.max_restarts));
  }
  if (req.max_task_retries < -1) {
    throw InvalidArgumentError("max_task_retries must be >= 0 (or -1: retry forever), got " +
                               std::to_string(req.max_task_retries));
  }
  if (req.kind == detail::TaskKind::kActorCreate) spec.actor = spec.id;
  if (req.kind == detail::TaskKind::kActorCall) {
    spec.actor = req.actor;
    spec.caller = d_.self;  // seq and incarnation are set when the call is sent
  }
  if (req.kind != detail::TaskKind::kActorCall) {
    if (!req.resources_set) {
      if (req.kind == detail::TaskKind::kNormal) spec.resources.emplace_back("CPU", proto::kResourceUnit);
    } else {
      for (const auto& [name, amount] : req.resources) {
        if (name.empty()) throw InvalidArgumentError("resource names must not be empty");
        spec.resources.emplace_back(name, ValueOrThrow(ToFixed(name, amount)));
      }
    }
    if (!req.placement_group.nil()) {
      // Into a placement group: the bundle's own resources instead of the node's (as Ray).
      if (req.bundle_index < -1) {
        throw InvalidArgumentError("placement group bundle index must be >= -1, got " +
                                   std::to_string(req.bundle_index));
      }
      for (auto& [name, amount] : spec.resources) {
        name = proto::PgResourceName(name, req.bundle_index, req.placement_group);
      }
      spec.resources.emplace_back(proto::PgResourceName("bundle", req.bundle_index, req.placement_group),
                                  proto::kPgBundleShare);
    }
  }
  if (req.strategy > static_cast<uint8_t>(proto::Strategy::kNodeAffinitySoft)) {
    throw InvalidArgumentError("unknown scheduling strategy " + std::to_string(req.strategy));
  }
  spec.strategy = req.strategy;
  spec.node = req.node;
  spec.parent = WorkerService::CurrentTask();
  // Large by-value arguments go through the object store, as in Ray.
  std::vector<ObjectId> temp;
  for (auto& a : req.args) {
    proto::Arg arg;
    arg.by_ref = a.by_ref;
    arg.ref = a.ref;
    arg.nested = std::move(a.nested);
    if (!a.by_ref) {
      if (a.value.size() > d_.config.inline_threshold) {
        // a.value is already a complete payload: store it byte for byte.
        ObjectId id = ObjectId::ForPut(NextTaskId());
        WritableObject w = ValueOrThrow(d_.store->Create(id, a.value.size()));
        std::memcpy(w.data, a.value.data(), a.value.size());
        (void)ValueOrThrow(d_.store->Seal(w));
        proto::NewObject obj;
        obj.id = id;
        obj.where = static_cast<uint8_t>(Where::kShm);
        obj.node = d_.node;
        obj.size = a.value.size();
        obj.nested = arg.nested;
        {
          std::lock_guard<std::mutex> lk(ref_mu_);
          ++refs_[id];
        }
        if (d_.head) {
          ThrowIfError(d_.head->Put(std::move(obj), d_.self));
        } else {
          SendMsg(*d_.transport, kHeadProc, Msg::kPutObject, obj);
        }
        temp.push_back(id);
        arg.by_ref = true;
        arg.ref = id;
        arg.nested.clear();
      } else {
        arg.value = Buffer(std::move(a.value));
      }
    }
    spec.args.push_back(std::move(arg));
  }
  std::vector<ObjectId> returns;
  for (uint32_t i = 0; i < spec.num_returns; ++i) returns.push_back(spec.ReturnId(i));
  {
    std::lock_guard<std::mutex> lk(ref_mu_);
    for (const ObjectId& id : returns) ++refs_[id];  // the head registers us as holder
  }
  if (d_.head) {
    Status st = d_.head->Submit(std::move(spec), d_.self);
    if (!st.ok()) {
      std::lock_guard<std::mutex> lk(ref_mu_);
      for (const ObjectId& id : returns) refs_.erase(id);
    }
    for (const ObjectId& id : temp) RemoveLocalRef(id);
    ThrowIfError(st);
  } else {
    bool call = spec.task_kind() == proto::TaskKind::kActorCall;
    if (call) {
      // Register with the head (it tracks the returns), then send straight to the actor. Both
      // under actor_mu_, so that the registration says truly where the call went.
      std::lock_guard<std::mutex> lk(actor_mu_);
      Route& r = routes_[spec.actor];
      bool send_now = r.known && !r.dead;
      // A restartable actor's calls that may be retried travel whole to the head too: it
      // re-sends them to the next instance if this one dies with them.
      proto::TaskSpec reg;
      if (send_now && WholeCall(r, spec)) {
        reg = spec;
      } else {
        reg.id = spec.id;
        reg.kind = spec.kind;
        reg.function = spec.function;
        reg.num_returns = spec.num_returns;
        reg.actor = spec.actor;
        reg.caller = spec.caller;
        reg.max_retries = spec.max_retries;
        for (const proto::Arg& a : spec.args) {
          proto::Arg slim;
          slim.by_ref = a.by_ref;
          slim.ref = a.ref;
          slim.nested = a.nested;
          reg.args.push_back(std::move(slim));
        }
      }
      reg.incarnation = send_now ? r.incarnation : 0;
      SendMsg(*d_.transport, kHeadProc, Msg::kSubmit, reg);
      RouteActorCallLocked(r, std::move(spec));
    } else {
      SendMsg(*d_.transport, kHeadProc, Msg::kSubmit, spec);
    }
    for (const ObjectId& id : temp) RemoveLocalRef(id);
  }
  return returns;
}

void ClientImpl::RouteActorCallLocked(Route& r, proto::TaskSpec&& spec) {
  if (r.known) {
    if (r.dead) return;  // the head fails the returns when the registration arrives
    spec.incarnation = r.incarnation;
    spec.seq = ++r.next_seq;
    SendMsg(*d_.transport, r.proc, Msg::kActorCall, spec);
    return;
  }
  r.buffered.push_back(std::move(spec));
  if (!r.asked) {
    r.asked = true;
    SendMsg(*d_.transport, kHeadProc, Msg::kActorLookup, proto::ActorLookup{r.buffered.back().actor});
  }
}

void ClientImpl::OnActorLocation(const proto::ActorLocation& loc) {
  std::lock_guard<std::mutex> lk(actor_mu_);
  Route& r = routes_[loc.actor];
  if (loc.incarnation < r.incarnation) return;  // older news
  if (loc.incarnation != r.incarnation) {
    r.incarnation = loc.incarnation;
    r.next_seq = 0;  // a new instance counts calls from 1
  }
  r.restartable = loc.restartable;
  r.retriable = loc.retriable_calls;
  auto state = static_cast<proto::ActorState>(loc.state);
  if (state == proto::ActorState::kPending) {
    // Restarting: hold calls until the head says where the new instance is (it will).
    r.known = false;
    r.asked = true;
    return;
  }
  r.known = true;
  r.dead = state == proto::ActorState::kDead;
  r.proc = loc.proc;
  auto buffered = std::move(r.buffered);
  r.buffered.clear();
  if (r.dead) return;
  for (auto& s : buffered) {
    if (r.restartable) {
      // The registration went before we knew where: tell the head (with the arguments, if the
      // call may be retried).
      proto::CallRouted routed{s.id, loc.actor, r.incarnation, {}};
      if (WholeCall(r, s)) routed.args = s.args;
      SendMsg(*d_.transport, kHeadProc, Msg::kCallRouted, routed);
    }
    RouteActorCallLocked(r, std::move(s));
  }
}

bool ClientImpl::WholeCall(const Route& r, const proto::TaskSpec& spec) {
  if (!r.restartable) return false;
  return spec.max_retries == detail::kActorDefaultRetries ? r.retriable : spec.max_retries != 0;
}

void ClientImpl::Cancel(const ObjectId& id, bool force, bool recursive) {
  if (d_.head) {
    ThrowIfError(d_.head->Cancel(id, force, recursive));
  } else {
    SendMsg(*d_.transport, kHeadProc, Msg::kCancel, proto::Cancel{id, force, recursive});
  }
}

void ClientImpl::KillActor(const ActorId& actor, bool no_restart) {
  if (d_.head) {
    ThrowIfError(d_.head->KillActor(actor, no_restart));
  } else {
    SendMsg(*d_.transport, kHeadProc, Msg::kKillActor, proto::KillActor{actor, no_restart});
  }
}

// ------------------------------------------------------------------ getting

std::vector<proto::ObjectLoc> ClientImpl::Locate(const std::vector<ObjectId>& ids,
                                                 size_t num_ready, int64_t timeout_ms,
                                                 std::vector<bool>* ready) {
  if (d_.head) return d_.head->WaitLocal(ids, num_ready, timeout_ms, ready, d_.node);

  PendingGet pg;
  pg.locs.resize(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) pg.positions.emplace(ids[i], i);
  std::unique_lock<std::mutex> lk(get_mu_);
  if (closed_) throw Error(StatusCode::kUnavailable, "the runtime is shutting down: " + close_reason_);
  uint64_t req = ++next_req_;
  gets_[req] = &pg;
  lk.unlock();
  SendMsg(*d_.transport, kHeadProc, Msg::kGetObjects, proto::GetObjects{req, ids});
  lk.lock();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<int64_t>(0, timeout_ms));
  auto done = [&] { return pg.ready >= num_ready || closed_; };
  // Short waits are common (the object is already there); only tell the head we block when
  // the wait is real, so that it can lend our CPU to another task.
  bool told = false;
  if (!pg.cv.wait_for(lk, std::chrono::milliseconds(2), done)) {
    if (blocking_hook_ && timeout_ms != 0) {
      lk.unlock();
      blocking_hook_(true);
      told = true;
      lk.lock();
    }
    if (timeout_ms < 0) {
      pg.cv.wait(lk, done);
    } else {
      pg.cv.wait_until(lk, deadline, done);
    }
  }
  gets_.erase(req);
  bool closed = closed_ && pg.ready < num_ready;
  std::string why = close_reason_;
  lk.unlock();
  if (told) blocking_hook_(false);
  if (closed) throw Error(StatusCode::kUnavailable, "the runtime is shutting down: " + why);
  std::vector<proto::ObjectLoc> out(ids.size());
  ready->assign(ids.size(), false);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (pg.locs[i]) {
      out[i] = std::move(*pg.locs[i]);
      (*ready)[i] = true;
    }
  }
  return out;
}

void ClientImpl::OnObjectsReady(proto::ObjectsReady&& r) {
  std::lock_guard<std::mutex> lk(get_mu_);
  auto it = gets_.find(r.req);
  if (it == gets_.end()) return;  // timed out already
  PendingGet& pg = *it->second;
  for (auto& loc : r.objects) {
    auto range = pg.positions.equal_range(loc.id);
    for (auto p = range.first; p != range.second; ++p) {
      if (!pg.locs[p->second]) {
        pg.locs[p->second] = loc;
        ++pg.ready;
      }
    }
  }
  pg.cv.notify_all();
}

Result<Buffer> ClientImpl::TryMaterialize(const proto::ObjectLoc& loc) {
  if (loc.where != static_cast<uint8_t>(Where::kShm)) return loc.data;
  if (loc.node == d_.node) return d_.store->Map(loc.id);
  return d_.fetcher->Fetch(loc);
}

Buffer ClientImpl::Materialize(const proto::ObjectLoc& loc) {
  auto r = TryMaterialize(loc);
  if (r.ok()) return *r;
  StatusCode code = r.status().code() == StatusCode::kObjectStoreFull ? StatusCode::kObjectStoreFull
                                                                        : StatusCode::kObjectLost;
  return Buffer(detail::MakeErrorPayload(code, r.status().message()));
}

Buffer ClientImpl::MaterializeOrRelocate(const proto::ObjectLoc& first) {
  auto r = TryMaterialize(first);
  if (r.ok() || r.status().code() == StatusCode::kObjectStoreFull) return Materialize(first);
  // The copy we were pointed at is gone (its node died, or it was evicted). Ask the head
  // again: by now it knows, and either points at another copy, rebuilds the object (we wait),
  // or says it is lost. Until it has noticed the death it may repeat itself: back off.
  Status last = r.status();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int64_t pause_ms = 10;
  while (std::chrono::steady_clock::now() < deadline) {
    std::vector<bool> ready;
    auto locs = Locate({first.id}, 1, -1, &ready);
    const proto::ObjectLoc& loc = locs[0];
    if (loc.where != static_cast<uint8_t>(Where::kShm)) return loc.data;  // inline or an error
    auto again = TryMaterialize(loc);
    if (again.ok()) return *again;
    last = again.status();
    if (last.code() == StatusCode::kObjectStoreFull) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
    pause_ms = std::min<int64_t>(pause_ms * 2, 500);
  }
  StatusCode code = last.code() == StatusCode::kObjectStoreFull ? StatusCode::kObjectStoreFull
                                                                : StatusCode::kObjectLost;
  return Buffer(detail::MakeErrorPayload(code, last.message()));
}

std::vector<Buffer> ClientImpl::Get(const std::vector<ObjectId>& ids, int64_t timeout_ms) {
  for (const ObjectId& id : ids) {
    if (id.nil()) throw InvalidArgumentError("Get on an empty (default-constructed) ObjectRef");
  }
  std::vector<bool> ready;
  auto locs = Locate(ids, ids.size(), timeout_ms, &ready);
  size_t missing = 0;
  for (bool r : ready) missing += r ? 0 : 1;
  if (missing) {
    throw GetTimeoutError("Get timed out after " + std::to_string(timeout_ms) + " ms: " +
                          std::to_string(missing) + " of " + std::to_string(ids.size()) +
                          " objects are not ready");
  }
  std::vector<Buffer> out;
  out.reserve(ids.size());
  for (const auto& loc : locs) out.push_back(MaterializeOrRelocate(loc));
  return out;
}

std::vector<bool> ClientImpl::Wait(const std::vector<ObjectId>& ids, size_t num_returns,
                                   int64_t timeout_ms) {
  for (const ObjectId& id : ids) {
    if (id.nil()) throw InvalidArgumentError("Wait on an empty (default-constructed) ObjectRef");
  }
  std::vector<bool> ready;
  (void)Locate(ids, num_returns, timeout_ms, &ready);
  return ready;
}

ObjectId ClientImpl::CreatePlacementGroup(
    const std::string& name, uint8_t strategy,
    const std::vector<std::vector<std::pair<std::string, double>>>& bundles, TaskId* id) {
  proto::PlacementGroupSpec spec;
  spec.id = NextTaskId();
  spec.name = name;
  spec.strategy = strategy;
  for (const auto& b : bundles) {
    proto::Resources r;
    for (const auto& [n, amount] : b) r.emplace_back(n, ValueOrThrow(ToFixed(n, amount)));
    spec.bundles.push_back(std::move(r));
  }
  const ObjectId ready = ObjectId::ForReturn(spec.id, 0);
  *id = spec.id;
  {
    std::lock_guard<std::mutex> lk(ref_mu_);
    ++refs_[ready];
  }
  if (d_.head) {
    Status st = d_.head->CreatePlacementGroup(std::move(spec), d_.self);
    if (!st.ok()) {
      std::lock_guard<std::mutex> lk(ref_mu_);
      refs_.erase(ready);
      ThrowIfError(st);
    }
  } else {
    SendMsg(*d_.transport, kHeadProc, Msg::kCreatePlacementGroup, spec);
  }
  return ready;
}

int ClientImpl::StreamNext(TaskId task, uint32_t index, int64_t timeout_ms, bool want) {
  const ObjectId id = ObjectId::ForReturn(task, index);
  if (want) {
    {
      std::lock_guard<std::mutex> lk(ref_mu_);
      ++refs_[id];
    }
    if (d_.head) {
      d_.head->StreamWant(id, d_.self);
    } else {
      SendMsg(*d_.transport, kHeadProc, Msg::kStreamWant, proto::StreamWant{id});
    }
  }
  std::vector<bool> ready;
  auto locs = Locate({id}, 1, timeout_ms, &ready);
  if (!ready[0]) return -1;
  if (locs[0].where == static_cast<uint8_t>(Where::kError)) {
    Status st = detail::ErrorFromPayload(locs[0].data);
    if (st.code() == StatusCode::kNotFound && st.message() == proto::kEndOfStream) {
      RemoveLocalRef(id);
      return 0;
    }
  }
  return 1;
}

std::vector<uint8_t> ClientImpl::ListState(size_t limit) {
  if (!d_.head) {
    throw Error(StatusCode::kInvalidArgument, "the job's state can only be listed on the driver (rank 0)");
  }
  StateListing listing = d_.head->ListState(limit);
  return detail::Serialize(listing).ToVector();
}

void ClientImpl::StreamRelease(TaskId task, uint32_t from, uint32_t to) {
  proto::IdList ids;
  for (uint32_t i = from; i < to; ++i) ids.ids.push_back(ObjectId::ForReturn(task, i));
  if (ids.ids.empty()) return;
  if (d_.head) {
    for (const ObjectId& id : ids.ids) d_.head->RemoveHolder(id, d_.self);
  } else {
    SendMsg(*d_.transport, kHeadProc, Msg::kDelRef, ids);
  }
}

void ClientImpl::RemovePlacementGroup(TaskId id) {
  if (d_.head) {
    ThrowIfError(d_.head->RemovePlacementGroup(id));
  } else {
    SendMsg(*d_.transport, kHeadProc, Msg::kRemovePlacementGroup, proto::RemovePlacementGroup{id});
  }
}

std::vector<detail::PlacementGroupEntry> ClientImpl::PlacementGroups() {
  if (!d_.head) {
    throw Error(StatusCode::kInvalidArgument,
                "the placement group table is only available on the driver (rank 0)");
  }
  static const char* strategies[] = {"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"};
  std::vector<detail::PlacementGroupEntry> out;
  for (auto& g : d_.head->PlacementGroups()) {
    detail::PlacementGroupEntry e;
    e.id = g.id;
    e.name = g.name;
    e.strategy = g.strategy < 4 ? strategies[g.strategy] : "UNKNOWN";
    e.state = g.state;
    e.error = g.error;
    for (auto& b : g.bundles) e.bundles.emplace_back(b.begin(), b.end());
    e.nodes = g.nodes;
    out.push_back(std::move(e));
  }
  return out;
}

detail::ClusterSnapshot ClientImpl::Snapshot() {
  if (!d_.head) {
    throw Error(StatusCode::kInvalidArgument, "cluster information is only available on the driver (rank 0)");
  }
  ClusterStatus st = d_.head->Status_();
  detail::ClusterSnapshot s;
  for (auto& n : st.nodes) {
    detail::ClusterSnapshot::Node node;
    node.id = n.id;
    node.total.assign(n.total.begin(), n.total.end());
    node.available.assign(n.available.begin(), n.available.end());
    node.workers = n.workers;
    s.nodes.push_back(std::move(node));
  }
  std::set<ProcId> workers;
  for (const auto& n : st.nodes) workers.insert(n.workers.begin(), n.workers.end());
  for (const auto& p : d_.head->Peers()) {
    auto [running, actors] = d_.head->Load(p.proc);
    s.processes.push_back({p.proc, p.node, p.pid, p.host, p.job, running, actors,
                           workers.count(p.proc) > 0});
  }
  s.pending_actors = d_.head->PendingActors();
  s.objects = st.objects;
  s.queued_tasks = st.queued_tasks;
  s.pipelined_tasks = st.pipelined_tasks;
  s.running_tasks = st.running_tasks;
  s.actors = st.actors;
  s.store_used = d_.store->used();
  s.actor_restarts = st.actor_restarts;
  s.reconstructions = st.reconstructions;
  s.lineage_tasks = st.lineage_tasks;
  return s;
}

bool ClientImpl::GetNamedActor(const std::string& ns, const std::string& name, ActorId* actor,
                               Buffer* handle_meta) {
  if (d_.head) return d_.head->FindNamedActor(ns, name, actor, handle_meta);
  std::unique_lock<std::mutex> lk(named_mu_);
  uint64_t req = ++next_named_;
  named_replies_[req];
  lk.unlock();
  SendMsg(*d_.transport, kHeadProc, Msg::kGetNamedActor, proto::GetNamedActor{req, ns, name});
  lk.lock();
  bool ok = named_cv_.wait_for(lk, std::chrono::seconds(60),
                               [&] { return named_replies_[req].has_value() || closed_; });
  auto reply = std::move(named_replies_[req]);
  named_replies_.erase(req);
  if (!ok || !reply) throw Error(StatusCode::kUnavailable, "no answer from the head about actor '" + name + "'");
  if (!reply->found) return false;
  *actor = reply->actor;
  *handle_meta = reply->handle_meta;
  return true;
}

void ClientImpl::OnNamedActor(proto::NamedActor&& r) {
  std::lock_guard<std::mutex> lk(named_mu_);
  auto it = named_replies_.find(r.req);
  if (it == named_replies_.end()) return;
  it->second = std::move(r);
  named_cv_.notify_all();
}

Status ClientImpl::DrainProcesses(const std::vector<ProcId>& procs) {
  if (!d_.head) return InvalidArgument("draining is only possible on the driver");
  // Copy objects that would be lost into this (the driver's) node's store.
  for (const proto::ObjectLoc& loc : d_.head->Drain(procs, d_.node)) {
    if (loc.where != static_cast<uint8_t>(Where::kShm) || loc.node == d_.node) continue;
    auto copy = d_.fetcher->Fetch(loc);
    if (!copy.ok()) return copy.status();
  }
  return Status::OK();
}

double ClientImpl::MeasureFabricGbps(ProcId source, uint64_t bytes) {
  return ValueOrThrow(d_.fetcher->MeasureStream(source, bytes));
}

void ClientImpl::Close(const std::string& why) {
  {
    std::lock_guard<std::mutex> lk(get_mu_);
    closed_ = true;
    close_reason_ = why;
    for (auto& [req, pg] : gets_) pg->cv.notify_all();
  }
  std::lock_guard<std::mutex> lk(named_mu_);
  named_cv_.notify_all();
}

}  // namespace mpiray

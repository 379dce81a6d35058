#include "remote_head_link.h"

#include <pthread.h>

#include <chrono>

#include "mpiray/core/detail/core_client.h"

namespace mpiray {

using proto::Msg;

void RemoteHeadLink::RegisterHandlers(MessageRouter& router) {
  router.On<proto::ObjectsReady>(Msg::kObjectsReady,
                                 [this](ProcId, proto::ObjectsReady&& r) { OnObjectsReady(std::move(r)); });
  router.On<proto::ActorLocation>(Msg::kActorLocation,
                                  [this](ProcId, proto::ActorLocation&& l) { OnActorLocation(l); });
  router.On<proto::NamedActor>(Msg::kNamedActor,
                               [this](ProcId, proto::NamedActor&& r) { OnNamedActor(std::move(r)); });
  router.On<proto::ClusterView>(Msg::kClusterView,
                                [this](ProcId, proto::ClusterView&& v) { OnClusterView(std::move(v)); });
}

// ------------------------------------------------------------------ one-way requests

void RemoteHeadLink::AddHolder(const ObjectId& id) {
  SendMsg(transport_, kHeadProc, Msg::kAddRef, proto::IdList{{id}});
}

void RemoteHeadLink::RemoveHolder(const std::vector<ObjectId>& ids) {
  SendMsg(transport_, kHeadProc, Msg::kDelRef, proto::IdList{ids});
}

Status RemoteHeadLink::Put(proto::NewObject&& obj) {
  SendMsg(transport_, kHeadProc, Msg::kPutObject, obj);
  return Status::OK();
}

Status RemoteHeadLink::Cancel(const ObjectId& id, bool force, bool recursive) {
  SendMsg(transport_, kHeadProc, Msg::kCancel, proto::Cancel{id, force, recursive});
  return Status::OK();
}

void RemoteHeadLink::CallRetried(const TaskId& task) {
  SendMsg(transport_, kHeadProc, Msg::kCallRetried, proto::CallRetried{task});
}

Status RemoteHeadLink::KillActor(const ActorId& actor, bool no_restart) {
  SendMsg(transport_, kHeadProc, Msg::kKillActor, proto::KillActor{actor, no_restart});
  return Status::OK();
}

Status RemoteHeadLink::CreatePlacementGroup(proto::PlacementGroupSpec&& spec) {
  SendMsg(transport_, kHeadProc, Msg::kCreatePlacementGroup, spec);
  return Status::OK();
}

Status RemoteHeadLink::RemovePlacementGroup(TaskId id) {
  SendMsg(transport_, kHeadProc, Msg::kRemovePlacementGroup, proto::RemovePlacementGroup{id});
  return Status::OK();
}

void RemoteHeadLink::StreamWant(const ObjectId& id) {
  SendMsg(transport_, kHeadProc, Msg::kStreamWant, proto::StreamWant{id});
}

void RemoteHeadLink::AddLocation(const ObjectId& id, NodeId node) {
  SendMsg(transport_, kHeadProc, Msg::kAddLocation, proto::AddLocation{id, node});
}

Result<HeadService*> RemoteHeadLink::Driver(const std::string& what) {
  return InvalidArgument(what + " (rank 0)");
}

// ------------------------------------------------------------------ submitting

Status RemoteHeadLink::Submit(proto::TaskSpec&& spec) {
  if (spec.task_kind() == proto::TaskKind::kActorCall) {
    SubmitActorCall(std::move(spec));
  } else {
    SendMsg(transport_, kHeadProc, Msg::kSubmit, spec);
  }
  return Status::OK();
}

void RemoteHeadLink::SubmitActorCall(proto::TaskSpec&& spec) {
  // Register with the head (it tracks the returns), then send straight to the actor. Both
  // under actor_mu_, so that the registration says truly where the call went.
  std::lock_guard<std::mutex> lk(actor_mu_);
  Route& r = routes_[spec.actor];
  bool send_now = r.known && !r.dead;
  // A restartable actor's calls that may be retried travel whole to the head too: it re-sends
  // them to the next instance if this one dies with them.
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
  SendMsg(transport_, kHeadProc, Msg::kSubmit, reg);
  RouteActorCallLocked(r, std::move(spec));
}

void RemoteHeadLink::RouteActorCallLocked(Route& r, proto::TaskSpec&& spec) {
  if (r.known) {
    if (r.dead) return;  // the head fails the returns when the registration arrives
    spec.incarnation = r.incarnation;
    spec.seq = ++r.next_seq;
    SendMsg(transport_, r.proc, Msg::kActorCall, spec);
    return;
  }
  r.buffered.push_back(std::move(spec));
  if (!r.asked) {
    r.asked = true;
    SendMsg(transport_, kHeadProc, Msg::kActorLookup, proto::ActorLookup{r.buffered.back().actor});
  }
}

void RemoteHeadLink::OnActorLocation(const proto::ActorLocation& loc) {
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
      SendMsg(transport_, kHeadProc, Msg::kCallRouted, routed);
    }
    RouteActorCallLocked(r, std::move(s));
  }
}

bool RemoteHeadLink::WholeCall(const Route& r, const proto::TaskSpec& spec) {
  if (!r.restartable) return false;
  return spec.max_retries == detail::kActorDefaultRetries ? r.retriable : spec.max_retries != 0;
}

// ------------------------------------------------------------------ waiting for answers

Result<std::vector<proto::ObjectLoc>> RemoteHeadLink::Locate(const std::vector<ObjectId>& ids,
                                                             size_t num_ready, int64_t timeout_ms,
                                                             std::vector<bool>* ready,
                                                             bool stop_on_error) {
  PendingGet pg;
  pg.stop_on_error = stop_on_error;
  pg.thread = static_cast<uint64_t>(pthread_self());
  pg.locs.resize(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) pg.positions.emplace(ids[i], i);
  uint64_t req = 0;
  {
    std::lock_guard<std::mutex> lk(get_mu_);
    if (closed_) return Unavailable("the runtime is shutting down: " + close_reason_);
    req = ++next_req_;
    gets_[req] = &pg;
    pg.interrupted = !interrupted_.empty() && interrupted_.count(pg.thread) > 0;
  }
  SendMsg(transport_, kHeadProc, Msg::kGetObjects, proto::GetObjects{req, ids});
  MPIRAY_RETURN_IF_ERROR(AwaitGet(pg, req, num_ready, timeout_ms));
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

Status RemoteHeadLink::AwaitGet(PendingGet& pg, uint64_t req, size_t num_ready, int64_t timeout_ms) {
  std::unique_lock<std::mutex> lk(get_mu_);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<int64_t>(0, timeout_ms));
  auto done = [&] { return pg.ready >= num_ready || pg.error || pg.interrupted || closed_; };
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
  bool interrupted = pg.interrupted && pg.ready < num_ready;
  std::string why = close_reason_;
  lk.unlock();
  if (told) blocking_hook_(false);
  if (closed) return Unavailable("the runtime is shutting down: " + why);
  if (interrupted) return Status(StatusCode::kCancelled, "the task was cancelled while it waited");
  return Status::OK();
}

void RemoteHeadLink::InterruptWaits(uint64_t thread, bool on) {
  std::lock_guard<std::mutex> lk(get_mu_);
  if (!on) {
    interrupted_.erase(thread);
    return;
  }
  interrupted_.insert(thread);
  for (auto& [req, pg] : gets_) {
    if (pg->thread == thread) {
      pg->interrupted = true;
      pg->cv.notify_all();
    }
  }
}

void RemoteHeadLink::OnObjectsReady(proto::ObjectsReady&& r) {
  std::lock_guard<std::mutex> lk(get_mu_);
  auto it = gets_.find(r.req);
  if (it == gets_.end()) return;  // timed out already
  PendingGet& pg = *it->second;
  for (auto& loc : r.objects) {
    auto range = pg.positions.equal_range(loc.id);
    for (auto p = range.first; p != range.second; ++p) {
      if (!pg.locs[p->second]) {
        if (pg.stop_on_error && loc.where == static_cast<uint8_t>(proto::Where::kError)) pg.error = true;
        pg.locs[p->second] = loc;
        ++pg.ready;
      }
    }
  }
  pg.cv.notify_all();
}

Result<bool> RemoteHeadLink::FindNamedActor(const std::string& ns, const std::string& name,
                                            ActorId* actor, Buffer* handle_meta) {
  std::unique_lock<std::mutex> lk(named_mu_);
  uint64_t req = ++next_named_;
  named_replies_[req];
  lk.unlock();
  SendMsg(transport_, kHeadProc, Msg::kGetNamedActor, proto::GetNamedActor{req, ns, name});
  lk.lock();
  bool ok = named_cv_.wait_for(lk, std::chrono::seconds(60),
                               [&] { return named_replies_[req].has_value() || closed_; });
  auto reply = std::move(named_replies_[req]);
  named_replies_.erase(req);
  if (!ok || !reply) return Unavailable("no answer from the head about actor '" + name + "'");
  if (!reply->found) return false;
  *actor = reply->actor;
  *handle_meta = reply->handle_meta;
  return true;
}

void RemoteHeadLink::OnNamedActor(proto::NamedActor&& r) {
  std::lock_guard<std::mutex> lk(named_mu_);
  auto it = named_replies_.find(r.req);
  if (it == named_replies_.end()) return;
  it->second = std::move(r);
  named_cv_.notify_all();
}

Result<proto::ClusterView> RemoteHeadLink::QueryCluster() {
  std::unique_lock<std::mutex> lk(named_mu_);
  uint64_t req = ++next_named_;
  views_[req];
  lk.unlock();
  SendMsg(transport_, kHeadProc, Msg::kClusterQuery, proto::ClusterQuery{req});
  lk.lock();
  bool ok = named_cv_.wait_for(lk, std::chrono::seconds(60),
                               [&] { return views_[req].has_value() || closed_; });
  auto reply = std::move(views_[req]);
  views_.erase(req);
  if (!ok || !reply) return Unavailable("no answer from the head about the cluster");
  return std::move(*reply);
}

void RemoteHeadLink::OnClusterView(proto::ClusterView&& v) {
  std::lock_guard<std::mutex> lk(named_mu_);
  auto it = views_.find(v.req);
  if (it == views_.end()) return;
  it->second = std::move(v);
  named_cv_.notify_all();
}

void RemoteHeadLink::Close(const std::string& why) {
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

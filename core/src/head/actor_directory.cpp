#include "head/actor_directory.h"

#include <algorithm>

#include "head/common.h"
#include "log.h"
#include "mpiray/core/detail/core_client.h"

namespace mpiray::head {

using proto::Msg;
using proto::TaskKind;
using proto::Where;

ActorDirectory::ActorDirectory(const Deps& deps) : d_(deps) {}

void ActorDirectory::Register(HeadRoutes& routes) {
  routes.On<proto::CallRouted>(Msg::kCallRouted,
                               [this](ProcId, proto::CallRouted&& r) { OnCallRouted(std::move(r)); });
  routes.On<proto::ActorLookup>(Msg::kActorLookup,
                                [this](ProcId src, proto::ActorLookup&& l) { OnActorLookup(src, l); });
  routes.On<proto::GetNamedActor>(Msg::kGetNamedActor, [this](ProcId src, proto::GetNamedActor&& q) {
    OnGetNamedActor(src, q);
  });
  routes.On<proto::CallRetried>(Msg::kCallRetried,
                                [this](ProcId, proto::CallRetried&& r) { OnCallRetried(r.task); });
  routes.On<proto::KillActor>(Msg::kKillActor,
                              [this](ProcId, proto::KillActor&& k) { return Kill(k.actor, k.no_restart); });
}

// ------------------------------------------------------------------ creation and placement

Status ActorDirectory::Create(proto::TaskSpec&& spec, ProcId submitter) {
  uint32_t shape = 0;
  MPIRAY_RETURN_IF_ERROR(d_.tasks->Admit(spec, &shape));
  if (spec.named) {
    if (spec.name.empty()) return InvalidArgument("an actor name must not be empty");
    if (named_.count({spec.ns, spec.name})) {
      return Status(StatusCode::kAlreadyExists,
                    "the actor name '" + spec.name + "' is already taken in namespace '" + spec.ns + "'");
    }
  }
  const TaskId tid = spec.id;
  const bool scoped = spec.scoped;
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
    ForEachArgRef(spec, [this](const ObjectId& id) { d_.objects->Pin(id); });
  }
  if (spec.named) named_[{spec.ns, spec.name}] = tid;
  actors_[tid] = std::move(a);
  d_.tasks->Insert(std::move(spec), submitter, shape);
  if (scoped) {
    if (ObjectEntry* e = d_.objects->Find(ObjectId::ForReturn(tid, 0))) e->actor_handle = true;
  }
  return Status::OK();
}

void ActorDirectory::OnCreationReady(TaskId actor) {
  if (ActorRec* a = FindActor(actor)) {
    a->state = ActorRec::kPending;
    Place(*a);
  }
}

void ActorDirectory::OnCreationFailed(TaskId actor, const std::string& why) {
  ActorRec* a = FindActor(actor);
  if (a && a->state != ActorRec::kDead) Died(*a, why);
}

void ActorDirectory::Place(ActorRec& a) {
  // The creation task's scheduling strategy: SPREAD, or a soft node affinity (a hard one is a
  // resource of the shape).
  NodeId preferred = kNoNode;
  bool spread = false;
  if (const TaskRec* c = d_.tasks->Find(a.id)) {
    const auto strategy = static_cast<proto::Strategy>(c->spec.strategy);
    spread = strategy == proto::Strategy::kSpread;
    if (strategy == proto::Strategy::kNodeAffinitySoft) preferred = c->spec.node;
  }
  ProcId w = kNoProc;
  if (a.reserved != kNoNode) {
    w = d_.sched->TakeDedicated(a.reserved);  // has its process joined?
    if (w != kNoProc) a.reserved = kNoNode;
  } else {
    NodeId start_on = kNoNode;
    w = d_.sched->PlaceActor(a.shape, a.hold, preferred, spread, static_cast<bool>(start_process_),
                             &start_on);
    if (w == kNoProc && start_on != kNoNode) {
      // Its resources are reserved on `start_on`, which has no idle process of its own for
      // it: one is started there (the actor is placed when it joins).
      if (StartProcess(start_on)) {
        a.reserved = start_on;
      } else {  // it cannot: the actor shares a worker
        d_.sched->ReleaseReserved(start_on, a.shape, a.hold);
        w = d_.sched->PlaceActor(a.shape, a.hold, preferred, spread);
      }
    }
  }
  if (w == kNoProc) {
    if (std::find(pending_.begin(), pending_.end(), a.id) == pending_.end()) pending_.push_back(a.id);
    return;
  }
  a.worker = w;
  a.state = ActorRec::kPlaced;
  if (TaskRec* t = d_.tasks->Find(a.id)) d_.tasks->StartCreation(*t, w, a.incarnation);
  // Calls re-sent after a restart go first (they are older), unordered (seq 0).
  auto retries = std::move(a.retry_calls);
  a.retry_calls.clear();
  for (auto& c : retries) SendCall(a, std::move(c), /*ordered=*/false);
  auto calls = std::move(a.queued_calls);
  a.queued_calls.clear();
  for (auto& c : calls) SendCall(a, std::move(c), /*ordered=*/true);
  NotifySubscribers(a);
}

bool ActorDirectory::StartProcess(NodeId node) {
  const ProcInfo* p = d_.members->Find(d_.members->ProcOnNode(node));
  return p && start_process_(node, p->peer.host, p->peer.machine);
}

void ActorDirectory::OnProcessStartFailed(NodeId node, const std::string& why) {
  ActorRec* waiting = nullptr;
  for (ActorId id : pending_) {
    ActorRec* a = FindActor(id);
    if (a && a->reserved == node) {
      waiting = a;
      break;
    }
  }
  if (!waiting) return;
  MPIRAY_LOG(error, "actor {}: {}", waiting->id.ToString(), why);
  TaskRec* creation = d_.tasks->Find(waiting->id);
  Died(*waiting, why);  // (no restart: a start that failed once fails again)
  if (creation) {
    d_.tasks->Fail(*creation, ErrorPayload(StatusCode::kActorDied,
                                           "actor " + waiting->id.ToString() + " is dead: " + why));
  }
}

void ActorDirectory::PlacePending() {
  auto pending = std::move(pending_);
  pending_.clear();
  for (ActorId id : pending) {
    ActorRec* a = FindActor(id);
    if (a && a->state == ActorRec::kPending) Place(*a);
  }
}

void ActorDirectory::SendCall(ActorRec& a, proto::TaskSpec&& spec, bool ordered) {
  spec.incarnation = a.incarnation;
  spec.seq = ordered ? ++a.next_seq : 0;
  if (TaskRec* t = d_.tasks->Find(spec.id)) t->spec.incarnation = a.incarnation;
  SendMsg(*d_.transport, a.worker, Msg::kActorCall, spec);
}

void ActorDirectory::RouteCall(ActorRec& a, proto::TaskSpec&& spec) {
  if (a.state == ActorRec::kPlaced) {
    SendCall(a, std::move(spec), /*ordered=*/true);
  } else {
    a.queued_calls.push_back(std::move(spec));
  }
}

void ActorDirectory::ReplyLocation(ActorRec& a, ProcId to) {
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
  SendMsg(*d_.transport, to, Msg::kActorLocation, loc);
}

void ActorDirectory::NotifySubscribers(ActorRec& a) {
  auto waiters = std::move(a.location_waiters);
  a.location_waiters.clear();
  for (ProcId p : waiters) a.subscribers.insert(p);
  for (ProcId p : a.subscribers) ReplyLocation(a, p);
}

// ------------------------------------------------------------------ loss, restart, death

void ActorDirectory::Lost(ActorRec& a, const std::string& why) {
  if (a.state == ActorRec::kDead) return;
  if (a.restarts_left != 0 && !closed_) {
    Restart(a, why);
    return;
  }
  if (TaskRec* t = d_.tasks->Find(a.id)) {  // a constructor that was running
    Died(a, why);
    d_.tasks->Fail(*t, ErrorPayload(StatusCode::kActorDied, "actor " + a.id.ToString() + " is dead: " + why));
    return;
  }
  Died(a, why + (a.restartable ? "; no restarts left" : ""));
}

void ActorDirectory::Restart(ActorRec& a, const std::string& why) {
  d_.gpus->Release(GpuAllocator::Holder::kActor, a.id);
  if (TaskRec* c = d_.tasks->Find(a.id)) {
    if (c->actor_worker == kNoProc && a.state != ActorRec::kPlaced) return;  // not started yet
    d_.tasks->StopCreation(*c);
    d_.tasks->Finish(a.id);  // the constructor run that was lost
  }
  if (a.state == ActorRec::kPlaced) d_.sched->ReleaseActor(a.worker, a.shape, a.hold);
  pending_.erase(std::remove(pending_.begin(), pending_.end(), a.id), pending_.end());
  TakeRetry(a.restarts_left);
  ++a.incarnation;
  a.next_seq = 0;
  a.worker = kNoProc;
  a.state = ActorRec::kWaitingDeps;
  ++restarts_;
  MPIRAY_LOG(warn, "restarting actor {}{} (instance {}): {}", a.id.ToString(),
             a.name.empty() ? "" : " (" + a.name + ")", a.incarnation, why);
  for (ProcId p : a.subscribers) ReplyLocation(a, p);  // they hold calls until it is back
  // Calls that went to the lost instance and did not finish: re-sent or failed, in submission
  // order per caller (task ids count up per submitting process).
  std::vector<TaskId> calls(a.calls.begin(), a.calls.end());
  std::sort(calls.begin(), calls.end(), [](TaskId x, TaskId y) { return x.value < y.value; });
  for (TaskId tid : calls) {
    TaskRec* t = d_.tasks->Find(tid);
    if (t && t->spec.incarnation != 0 && t->spec.incarnation < a.incarnation) CallLost(a, *t);
  }
  // Run the constructor again.
  proto::TaskSpec spec = *a.creation;
  spec.incarnation = a.incarnation;
  d_.tasks->Rerun(std::move(spec), 0, a.shape);
}

void ActorDirectory::FailReturns(const proto::TaskSpec& spec, const Buffer& err) {
  for (uint32_t i = 0; i < spec.num_returns; ++i) d_.objects->SetErrorPayload(spec.ReturnId(i), err);
}

void ActorDirectory::OnCallRetried(TaskId call) {
  // One budget per call, as Ray's: its application-error retries (run on the worker) and its
  // re-sends after crashes (CallLost) both take from it.
  TaskRec* t = call_actor_.count(call) ? d_.tasks->Find(call) : nullptr;
  if (t) TakeRetry(t->retries_left);
}

void ActorDirectory::CallLost(ActorRec& a, TaskRec& t) {
  TaskId tid = t.spec.id;
  if (t.whole && TakeRetry(t.retries_left)) {
    t.resent = true;
    proto::TaskSpec spec = t.spec;
    spec.max_retries = t.retries_left;  // what is left for its application-error retries
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
  // As Ray: a call whose retries ran out while its actor restarts finds it unavailable.
  FailReturns(t.spec, ErrorPayload(t.whole ? StatusCode::kActorUnavailable : StatusCode::kActorDied, msg));
  call_actor_.erase(tid);
  a.calls.erase(tid);
  d_.tasks->Finish(tid);
}

void ActorDirectory::Died(ActorRec& a, const std::string& why) {
  d_.gpus->Release(GpuAllocator::Holder::kActor, a.id);
  if (a.state == ActorRec::kDead) return;
  bool was_placed = a.state == ActorRec::kPlaced;
  a.state = ActorRec::kDead;
  a.error = why;
  if (a.named) {
    auto it = named_.find({a.ns, a.name});
    if (it != named_.end() && it->second == a.id) named_.erase(it);  // the name is free again
  }
  if (was_placed) d_.sched->ReleaseActor(a.worker, a.shape, a.hold);
  if (a.reserved != kNoNode) {  // its process was on its way: it stays, idle, for another actor
    d_.sched->ReleaseReserved(a.reserved, a.shape, a.hold);
    a.reserved = kNoNode;
  }
  pending_.erase(std::remove(pending_.begin(), pending_.end(), a.id), pending_.end());
  std::string msg = "actor " + a.id.ToString() + (a.name.empty() ? "" : " (" + a.name + ")") +
                    " is dead: " + why;
  Buffer err = ErrorPayload(StatusCode::kActorDied, msg);
  for (auto* queue : {&a.queued_calls, &a.retry_calls}) {
    for (auto& c : *queue) FailReturns(c, err);
    queue->clear();
  }
  auto calls = std::move(a.calls);
  a.calls.clear();
  for (TaskId tid : calls) {
    call_actor_.erase(tid);
    TaskRec* t = d_.tasks->Find(tid);
    if (!t) continue;
    FailReturns(t->spec, err);
    d_.tasks->Finish(tid);
  }
  if (a.creation) {
    ForEachArgRef(*a.creation, [this](const ObjectId& id) { d_.objects->Unpin(id); });
    a.creation.reset();
  }
  a.restarts_left = 0;
  NotifySubscribers(a);
}

void ActorDirectory::OnProcessDied(ProcId proc, const std::string& why) {
  // Constructors that were running there, then the actors it hosted.
  std::vector<ActorId> creating;
  for (auto& [aid, a] : actors_) {
    TaskRec* t = d_.tasks->Find(aid);
    if (t && t->actor_worker == proc) creating.push_back(aid);
  }
  for (const ActorId& aid : creating) {
    Lost(*actors_[aid], "the worker creating the actor died (" + why + ")");
  }
  std::vector<ActorId> hosted;
  for (auto& [aid, a] : actors_) {
    if (a->worker == proc && a->state == ActorRec::kPlaced) hosted.push_back(aid);
  }
  for (const ActorId& aid : hosted) {
    Lost(*actors_[aid], "the worker process hosting the actor died (" + why + ")");
  }
  for (auto& [aid, a] : actors_) a->subscribers.erase(proc);
}

Status ActorDirectory::Kill(const ActorId& actor, bool no_restart) {
  ActorRec* a = FindActor(actor);
  if (!a) return InvalidArgument("unknown actor " + actor.ToString());
  const bool placed = a->state == ActorRec::kPlaced;
  if (placed) SendMsg(*d_.transport, a->worker, Msg::kDestroyActor, proto::KillActor{actor, no_restart});
  if (!no_restart && a->restarts_left != 0) {
    if (placed) Restart(*a, "killed with no_restart=False");
  } else {
    Died(*a, "killed by Kill()");
  }
  return Status::OK();
}

std::vector<ActorId> ActorDirectory::Using(const std::function<bool(uint32_t)>& uses) const {
  std::vector<ActorId> out;
  for (const auto& [aid, a] : actors_) {
    if (a->state != ActorRec::kDead && uses(a->shape)) out.push_back(aid);
  }
  return out;
}

void ActorDirectory::KillAll(const std::vector<ActorId>& actors, const std::string& why) {
  for (const ActorId& aid : actors) {
    ActorRec* a = FindActor(aid);
    if (!a) continue;
    if (a->state == ActorRec::kPlaced) {
      SendMsg(*d_.transport, a->worker, Msg::kDestroyActor, proto::KillActor{aid, true});
    }
    Died(*a, why);
  }
}

// ------------------------------------------------------------------ calls

std::unique_ptr<TaskRec> ActorDirectory::CallRecord(const ActorRec& a, const proto::TaskSpec& spec,
                                                    ProcId submitter, bool own) {
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
    return rec;
  }
  // Only what completion needs (the argument refs, for the pins).
  t.spec.id = spec.id;
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
  return rec;
}

Status ActorDirectory::SubmitCall(proto::TaskSpec&& spec, ProcId submitter) {
  TaskId tid = spec.id;
  d_.tasks->RecordChild(spec.parent, tid);
  bool early = early_done_.erase(tid) > 0;
  for (uint32_t i = 0; i < spec.num_returns; ++i) {
    ObjectId rid = spec.ReturnId(i);
    ObjectEntry& e = d_.objects->Create(rid);
    e.registered = true;
    e.holders.assign(1, submitter);
    if (early) d_.objects->MaybeFree(rid);
  }
  if (early) return Status::OK();
  ActorRec* a = FindActor(spec.actor);
  if (!a || a->state == ActorRec::kDead) {
    std::string msg = "actor " + spec.actor.ToString() + (a ? " is dead: " + a->error : " does not exist");
    for (uint32_t i = 0; i < spec.num_returns; ++i) d_.objects->SetError(spec.ReturnId(i), StatusCode::kActorDied, msg);
    return Status::OK();
  }
  ForEachArgRef(spec, [this](const ObjectId& id) { d_.objects->Pin(id); });
  a->calls.insert(tid);
  call_actor_[tid] = a->id;
  const bool own = submitter == d_.transport->self();
  TaskRec& t = d_.tasks->AddCall(CallRecord(*a, spec, submitter, own));
  if (own) {
    RouteCall(*a, std::move(spec));
  } else if (spec.incarnation != 0 &&
             (spec.incarnation != a->incarnation || a->state != ActorRec::kPlaced)) {
    CallLost(*a, t);  // it went to an instance that is gone
  }
  return Status::OK();
}

void ActorDirectory::OnCallRouted(proto::CallRouted&& r) {
  TaskRec* t = d_.tasks->Find(r.task);
  ActorRec* a = FindActor(r.actor);
  if (!t || !a) return;  // done already
  if (!r.args.empty()) t->spec.args = std::move(r.args);
  t->whole = a->restartable && t->retries_left != 0;
  t->spec.incarnation = r.incarnation;
  if (r.incarnation != a->incarnation || a->state != ActorRec::kPlaced) CallLost(*a, *t);
}

bool ActorDirectory::DropDuplicateResult(proto::TaskDone& done) {
  bool duplicate = resent_done_.erase(done.task) > 0;
  for (const proto::NewObject& r : done.returns) {
    const ObjectEntry* e = d_.objects->Find(r.id);
    duplicate |= e && e->registered && e->state == ObjectEntry::kReady;
  }
  if (!duplicate) return false;
  // A call that ran twice (re-sent after a restart, or its instance was killed while it ran):
  // the first result stands.
  for (proto::NewObject& r : done.returns) {
    const ObjectEntry* e = d_.objects->Find(r.id);
    bool same = e && !e->locations.empty() && e->locations[0] == r.node;
    if (r.where == WhereByte(Where::kShm) && !same) d_.objects->FreeCopy(r.id, r.node);
  }
  return true;
}

void ActorDirectory::OnCallDone(ProcId src, proto::TaskDone&& done) {
  bool failed_result = false;
  for (const auto& r : done.returns) failed_result |= r.where == WhereByte(Where::kError);
  TaskRec* t = d_.tasks->Find(done.task);
  std::string name = t ? head::DisplayName(t->spec) : std::string("actor call");
  if (t && t->spec.name.empty()) {  // a routed call names its method only: "Class.method"
    auto a = actors_.find(done.actor);
    if (a != actors_.end() && !a->second->name.empty()) name = a->second->name + "." + t->spec.function;
  }
  d_.tasks->RecordEvent(src, done, name, failed_result);
  auto it = call_actor_.find(done.task);
  if (it == call_actor_.end()) {
    if (DropDuplicateResult(done)) return;
    // The caller's registration has not arrived yet (it travels on another channel).
    early_done_.insert(done.task);
    for (proto::NewObject& r : done.returns) {
      ObjectId id = r.id;
      if (!d_.objects->Has(id)) d_.objects->Create(id).registered = false;
      d_.objects->SetReady(id, std::move(r));
    }
    return;
  }
  ActorId actor = it->second;
  call_actor_.erase(it);
  ActorRec* a = FindActor(actor);
  if (a) a->calls.erase(done.task);
  if (t && t->resent) resent_done_.insert(done.task);  // another run of it may still report
  for (proto::NewObject& r : done.returns) {
    ObjectId id = r.id;
    d_.objects->SetReady(id, std::move(r));
  }
  if (t) d_.tasks->Finish(done.task);
  if (a && a->ending && a->calls.empty()) OnHandlesGone(actor);
}

void ActorDirectory::OnHandlesGone(const ActorId& actor) {
  ActorRec* a = FindActor(actor);
  if (!a || a->state == ActorRec::kDead) return;
  MPIRAY_LOG(debug, "actor {} ({}): no handle left, it ends", actor.ToString(), a->name);
  a->ending = true;
  if (!a->calls.empty()) return;  // OnCallDone ends it after the last one
  if (a->state == ActorRec::kPlaced) {
    SendMsg(*d_.transport, a->worker, Msg::kDestroyActor, proto::KillActor{actor, true, /*graceful=*/true});
  }
  Died(*a, "all references to the actor were removed (its handles went out of scope)");
}

Status ActorDirectory::CancelCall(TaskId call, bool force) {
  if (force) return InvalidArgument("force=True is not supported for actor calls");
  auto ca = call_actor_.find(call);
  if (ca == call_actor_.end()) return Status::OK();
  ActorRec* a = FindActor(ca->second);
  if (a && a->state == ActorRec::kPlaced) {
    SendMsg(*d_.transport, a->worker, Msg::kCancelRunning, proto::CancelRunning{call, false});
  }
  return Status::OK();
}

// ------------------------------------------------------------------ lookups and views

void ActorDirectory::OnActorLookup(ProcId src, const proto::ActorLookup& l) {
  ActorRec* a = FindActor(l.actor);
  if (!a) {
    proto::ActorLocation loc;
    loc.actor = l.actor;
    loc.state = static_cast<uint8_t>(proto::ActorState::kDead);
    loc.error = "actor " + l.actor.ToString() + " does not exist";
    SendMsg(*d_.transport, src, Msg::kActorLocation, loc);
  } else if (a->state == ActorRec::kPlaced || a->state == ActorRec::kDead) {
    a->subscribers.insert(src);  // told again if it restarts
    ReplyLocation(*a, src);
  } else {
    a->location_waiters.push_back(src);
  }
}

bool ActorDirectory::FindNamed(const std::string& ns, const std::string& name, ActorId* actor,
                               Buffer* handle_meta) const {
  auto it = named_.find({ns, name});
  if (it == named_.end()) return false;
  *actor = it->second;
  auto a = actors_.find(it->second);
  if (a != actors_.end()) *handle_meta = a->second->handle_meta;
  return true;
}

void ActorDirectory::OnGetNamedActor(ProcId src, const proto::GetNamedActor& q) {
  proto::NamedActor r;
  r.req = q.req;
  r.found = FindNamed(q.ns, q.name, &r.actor, &r.handle_meta);
  SendMsg(*d_.transport, src, Msg::kNamedActor, r);
}

void ActorDirectory::AddToStatus(ClusterStatus* s) const {
  s->actor_restarts = restarts_;
  for (const auto& [id, a] : actors_) {
    if (a->state != ActorRec::kDead) ++s->actors;
  }
}

void ActorDirectory::List(StateListing* out, size_t limit) const {
  out->total_actors = actors_.size();
  static const char* states[] = {"DEPENDENCIES_UNREADY", "PENDING_CREATION", "ALIVE", "DEAD"};
  for (const auto& [aid, a] : actors_) {
    if (out->actors.size() >= limit) break;
    StateListing::Actor e;
    e.id = aid.ToString();
    e.name = a->name;
    e.named = a->named;
    e.ns = a->ns;
    e.state = states[a->state];
    if (a->state == ActorRec::kPending && a->incarnation > 1) e.state = "RESTARTING";
    e.worker = a->worker;
    e.incarnation = a->incarnation;
    e.error = a->error;
    if (a->worker != kNoProc && a->state == ActorRec::kPlaced) {
      e.node = d_.members->NodeOf(a->worker);
      if (const ProcInfo* p = d_.members->Find(a->worker)) e.pid = p->peer.pid;
    }
    out->actors.push_back(std::move(e));
  }
}

}  // namespace mpiray::head

#include "head/task_table.h"

#include <algorithm>
#include <map>

#include "head/common.h"
#include "log.h"
#include "mpiray/core/detail/core_client.h"

namespace mpiray::head {

using proto::Msg;
using proto::TaskKind;
using proto::Where;

TaskTable::TaskTable(const Deps& deps) : d_(deps) {}

void TaskTable::Register(HeadRoutes& routes) {
  routes.On<proto::TaskRef>(Msg::kTaskBlocked,
                            [this](ProcId src, proto::TaskRef&& r) { OnBlocked(src, r.task, true); });
  routes.On<proto::TaskRef>(Msg::kTaskUnblocked,
                            [this](ProcId src, proto::TaskRef&& r) { OnBlocked(src, r.task, false); });
  routes.On<proto::StreamItem>(Msg::kStreamItem, [this](ProcId src, proto::StreamItem&& item) {
    OnStreamItem(src, std::move(item));
  });
  routes.On<proto::StreamWant>(Msg::kStreamWant,
                               [this](ProcId src, proto::StreamWant&& w) { StreamWant(w.id, src); });
}

// ------------------------------------------------------------------ submission

void TaskTable::RecordChild(TaskId parent, TaskId child) {
  if (!parent.nil() && tasks_.count(parent)) children_[parent].push_back(child);
}

std::vector<TaskId> TaskTable::TakeChildren(TaskId parent) {
  auto c = children_.find(parent);
  if (c == children_.end()) return {};
  std::vector<TaskId> kids = std::move(c->second);
  children_.erase(c);
  return kids;
}

Status TaskTable::Admit(const proto::TaskSpec& spec, uint32_t* shape_out) {
  RecordChild(spec.parent, spec.id);
  if (spec.function.empty()) return InvalidArgument("task has no function name");
  if (spec.num_returns == 0 && spec.task_kind() == TaskKind::kNormal) {
    return InvalidArgument("num_returns must be at least 1");
  }
  MPIRAY_ASSIGN_OR_RETURN(uint32_t shape, d_.sched->Shape(spec.resources));
  bool is_actor = spec.task_kind() == TaskKind::kActorCreate;
  // With an autoscaler, capacity may still come: the request waits instead of failing.
  if (!d_.config->autoscale) {
    if (!is_actor || !spec.resources.empty()) {
      // A request for a placement group's resources waits for the group (it may be
      // pending); only a request no node can hold needs the (slower) look at the groups.
      Status feasible = d_.sched->CheckFeasible(shape);
      if (!feasible.ok() && !d_.groups->AnyUses(shape)) return feasible;
    } else if (!d_.sched->HasOrExpectsWorkers()) {
      return Status(StatusCode::kInfeasible, "there are no worker processes to host the actor");
    }
  }
  for (size_t i = 0; i < spec.args.size(); ++i) {
    const proto::Arg& a = spec.args[i];
    if (a.by_ref && !d_.objects->Has(a.ref)) {
      return Status(StatusCode::kObjectLost, "argument " + std::to_string(i) + " of " +
                                                 spec.function + " refers to object " +
                                                 a.ref.Hex() + ", which is unknown or freed");
    }
  }
  *shape_out = shape;
  return Status::OK();
}

void TaskTable::Insert(proto::TaskSpec&& spec, ProcId submitter, uint32_t shape) {
  auto rec = std::make_unique<TaskRec>();
  TaskRec& t = *rec;
  t.submitter = submitter;
  t.item.shape = shape;
  t.item.owner = &t;
  t.retries_left = spec.max_retries;
  TaskId tid = spec.id;
  const uint32_t nret = ReturnCount(spec);
  for (uint32_t i = 0; i < nret; ++i) d_.objects->Create(spec.ReturnId(i)).holders.assign(1, submitter);
  for (const proto::Arg& a : spec.args) {
    if (a.by_ref) {
      d_.objects->Pin(a.ref);
      ObjectEntry* e = d_.objects->Find(a.ref);
      if (e->state != ObjectEntry::kReady) {
        ++t.deps;
        ObjectDirectory::AddDependent(*e, tid);
      }
    }
    for (const ObjectId& n : a.nested) d_.objects->Pin(n);
  }
  t.spec = std::move(spec);
  tasks_[tid] = std::move(rec);
  if (t.deps == 0) DepsReady(t);
}

Status TaskTable::Submit(proto::TaskSpec&& spec, ProcId submitter) {
  uint32_t shape = 0;
  MPIRAY_RETURN_IF_ERROR(Admit(spec, &shape));
  Insert(std::move(spec), submitter, shape);
  return Status::OK();
}

TaskRec& TaskTable::AddCall(std::unique_ptr<TaskRec> rec) {
  TaskRec& t = *rec;
  tasks_[t.spec.id] = std::move(rec);
  return t;
}

// ------------------------------------------------------------------ progress

void TaskTable::OnDependencyReady(TaskId task) {
  auto it = tasks_.find(task);
  if (it == tasks_.end()) return;
  if (--it->second->deps == 0) DepsReady(*it->second);
}

void TaskTable::DepsReady(TaskRec& t) {
  std::map<NodeId, uint64_t> bytes;
  for (const proto::Arg& a : t.spec.args) {
    if (!a.by_ref) continue;
    ObjectEntry* e = d_.objects->Find(a.ref);
    if (!e) {
      Fail(t, ErrorPayload(StatusCode::kObjectLost,
                           "argument object " + a.ref.Hex() + " of " + t.spec.function + " was lost"));
      return;
    }
    if (e->where == WhereByte(Where::kError)) {
      Fail(t, ArgumentErrorPayload(e->data));  // the upstream error propagates, as in Ray
      return;
    }
    if (e->in_store()) {
      for (NodeId n : e->locations) bytes[n] += e->size;
    }
  }
  if (t.spec.task_kind() == TaskKind::kActorCreate) {
    events_->OnCreationReady(t.spec.id);
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
  if (strategy == proto::Strategy::kNodeAffinitySoft && d_.sched->HasNode(t.spec.node)) {
    t.item.preferred = t.spec.node;  // else anywhere, as Ray's soft affinity
  }
  d_.sched->Enqueue(&t.item);
}

void TaskTable::DispatchQueued() {
  std::vector<Scheduler::Assignment> out;
  d_.sched->Schedule(&out);
  for (auto& [item, worker] : out) {
    ++running_;
    SendExecute(*item->owner, worker);
  }
}

void TaskTable::SendExecute(TaskRec& t, ProcId worker) {
  std::vector<proto::ObjectLoc> resolved;
  NodeId node = d_.members->NodeOf(worker);
  for (const proto::Arg& a : t.spec.args) {
    if (!a.by_ref) continue;
    if (const ObjectEntry* e = d_.objects->Find(a.ref)) {
      resolved.push_back(d_.objects->Locate(a.ref, *e, node));
    } else {
      proto::ObjectLoc l;
      l.id = a.ref;
      l.where = WhereByte(Where::kError);
      l.data = ErrorPayload(StatusCode::kObjectLost, "argument " + a.ref.Hex() + " was lost");
      resolved.push_back(std::move(l));
    }
  }
  // GPUs: which devices of the node the task (or the actor, for its lifetime) gets.
  static const std::vector<int32_t> kNone;
  const std::vector<int32_t>* gpus = &kNone;
  if (int64_t amount = GpuAllocator::Amount(d_.sched->ShapeRequest(t.item.shape)); amount > 0) {
    bool actor = t.spec.task_kind() == TaskKind::kActorCreate;
    gpus = &d_.gpus->Grant(actor ? GpuAllocator::Holder::kActor : GpuAllocator::Holder::kTask,
                           t.spec.id, node, amount);
  }
  SendWith(*d_.transport, worker, Msg::kExecute, [&](auto& pk) {
    pk.pack_array(3);
    pk.pack(t.spec);
    pk.pack(resolved);
    pk.pack(*gpus);
  });
}

void TaskTable::StartCreation(TaskRec& t, ProcId worker, uint32_t incarnation) {
  t.actor_worker = worker;
  t.spec.incarnation = incarnation;
  ++running_;
  SendExecute(t, worker);
}

void TaskTable::StopCreation(TaskRec& t) {
  if (t.actor_worker == kNoProc) return;
  t.actor_worker = kNoProc;
  --running_;
}

void TaskTable::Fail(TaskRec& t, const Buffer& error_payload) {
  TaskId tid = t.spec.id;
  const uint32_t nret = ReturnCount(t.spec);
  if (t.item.queued) d_.sched->Dequeue(&t.item);
  if (t.item.worker != kNoProc) {
    d_.sched->Finished(&t.item);
    --running_;
  }
  StopCreation(t);
  if (t.spec.task_kind() == TaskKind::kActorCreate) {
    events_->OnCreationFailed(tid, "the actor could not be created: " +
                                       detail::ErrorFromPayload(error_payload).message());
  }
  for (uint32_t i = 0; i < nret; ++i) d_.objects->SetErrorPayload(t.spec.ReturnId(i), error_payload);
  if (t.spec.task_kind() == TaskKind::kNormal) CompleteItems(t, error_payload);  // (a rerun's)
  Finish(tid);
}

void TaskTable::Finish(TaskId id) {
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  if (!children_.empty()) children_.erase(id);
  d_.gpus->Release(GpuAllocator::Holder::kTask, id);
  std::unique_ptr<TaskRec> rec = std::move(it->second);
  tasks_.erase(it);
  if (!stream_waits_.empty()) FinishStream(id);  // (it is no longer running)
  ForEachArgRef(rec->spec, [this](const ObjectId& ref) { d_.objects->Unpin(ref); });
}

void TaskTable::RecordEvent(ProcId worker, const proto::TaskDone& done, const std::string& name,
                            bool failed) {
  ++finished_;
  if (failed) ++failed_;
  constexpr size_t kMaxEvents = 100000;
  TaskEvent e;
  e.name = name;
  e.id = done.task.ToString();
  e.worker = worker;
  e.node = d_.members->NodeOf(worker);
  e.start_us = done.start_us;
  e.end_us = done.end_us;
  e.kind = done.kind;
  e.failed = failed;
  if (events_ring_.size() < kMaxEvents) {
    events_ring_.push_back(std::move(e));
  } else {
    events_ring_[events_next_] = std::move(e);
    events_next_ = (events_next_ + 1) % kMaxEvents;
  }
}

std::vector<TaskEvent> TaskTable::Events() const {
  std::vector<TaskEvent> out(events_ring_.begin() + static_cast<std::ptrdiff_t>(events_next_),
                             events_ring_.end());
  out.insert(out.end(), events_ring_.begin(), events_ring_.begin() + static_cast<std::ptrdiff_t>(events_next_));
  return out;
}

void TaskTable::DropLateReturns(std::vector<proto::NewObject>& returns) {
  // Late result of a cancelled, failed or re-run task: drop stored copies.
  for (proto::NewObject& r : returns) {
    if (r.where == WhereByte(Where::kShm) && !d_.objects->Has(r.id)) d_.objects->FreeCopy(r.id, r.node);
  }
}

void TaskTable::CancelReturns(TaskRec& t, ProcId src, proto::TaskDone& done) {
  for (proto::NewObject& r : done.returns) {
    if (r.where == WhereByte(Where::kShm)) {
      SendMsg(*d_.transport, src, Msg::kFreeObjects, proto::IdList{{r.id}});
    }
    d_.objects->SetError(r.id, StatusCode::kCancelled, "task " + t.spec.function + " was cancelled");
  }
  // A task cancelled before it started reports no returns at all.
  const bool is_actor = t.spec.task_kind() == TaskKind::kActorCreate;
  for (uint32_t i = 0; i < t.spec.num_returns && !is_actor; ++i) {
    d_.objects->SetError(t.spec.ReturnId(i), StatusCode::kCancelled,
                         "task " + t.spec.function + " was cancelled");
  }
}

void TaskTable::CompleteReturns(TaskRec&, ProcId, proto::TaskDone& done, bool* failed,
                                bool* stored, std::string* error) {
  for (proto::NewObject& r : done.returns) {
    *stored = *stored || r.where == WhereByte(Where::kShm);
    if (r.where == WhereByte(Where::kError)) {
      *failed = true;
      *error = detail::ErrorFromPayload(r.data).message();
    }
    ObjectId id = r.id;
    d_.objects->SetReady(id, std::move(r));
  }
}

bool TaskTable::CompleteItems(TaskRec& t, const Buffer& error_payload) {
  // A num_returns="dynamic" generator's items (registered before its end): one a rerun did
  // not yield again is an error now, not a wait forever: the rerun's own error when it failed,
  // else its generator is not deterministic.
  bool any = false;
  uint32_t k = 0;
  d_.objects->ForEachItem(t.spec, [&](const ObjectId& id, ObjectEntry& e) {
    any = true;
    const uint32_t item = k++;
    if (e.state == ObjectEntry::kReady) return;
    if (error_payload.size() > 0) {
      d_.objects->SetErrorPayload(id, error_payload);
    } else {
      d_.objects->SetError(id, StatusCode::kTaskError,
                           "task " + t.spec.function + " was run again to rebuild its lost generator "
                           "items, and this time its generator ended before item " +
                               std::to_string(item) + " (it is not deterministic)");
    }
  });
  return any;
}

void TaskTable::OnTaskDone(ProcId src, proto::TaskDone&& done) {
  bool failed_result = false;
  for (const auto& r : done.returns) failed_result |= r.where == WhereByte(Where::kError);
  auto it = tasks_.find(done.task);
  const bool creation = static_cast<TaskKind>(done.kind) == TaskKind::kActorCreate;
  if (it == tasks_.end() || (creation ? it->second->actor_worker : it->second->item.worker) != src) {
    DropLateReturns(done.returns);
    return;
  }
  TaskRec& t = *it->second;
  RecordEvent(src, done, t.spec.name.empty() ? t.spec.function : t.spec.name, failed_result);
  if (creation) {
    t.actor_worker = kNoProc;  // its resources stay with the actor (released when it dies)
  } else {
    d_.sched->Finished(&t.item);
    if (done.end_us > done.start_us) d_.sched->RecordDuration(t.item.shape, done.end_us - done.start_us);
  }
  --running_;
  if (t.cancelled || done.status == static_cast<uint8_t>(proto::DoneStatus::kCancelled)) {
    CancelReturns(t, src, done);
    Finish(done.task);
    return;
  }
  if (done.status == static_cast<uint8_t>(proto::DoneStatus::kRetryable) && !creation &&
      RetryAfterError(t)) {
    return;
  }
  bool failed = false;
  bool stored = false;  // a return in a node's store
  std::string error;
  Buffer error_payload;  // (a failed rerun's error is its unrebuilt generator items' too)
  for (const auto& r : done.returns) {
    if (r.where == WhereByte(Where::kError) && error_payload.size() == 0) error_payload = r.data;
  }
  CompleteReturns(t, src, done, &failed, &stored, &error);
  const bool items = !creation && CompleteItems(t, error_payload);
  if (creation) {
    if (failed) events_->OnCreationFailed(t.spec.id, "the actor's constructor failed: " + error);
  } else if (!failed && t.retries_left != 0 && (stored || items)) {
    // Keep how to make the returns again, in case a node holding them dies (small returns
    // live in the head's directory: nothing to make again).
    KeepLineage(it);
    return;
  }
  Finish(done.task);
}

bool TaskTable::RetryAfterError(TaskRec& t) {
  // The one retry budget of a task: worker deaths and retryable application errors take from
  // the same max_retries.
  if (!TakeRetry(t.retries_left)) return false;
  MPIRAY_LOG(info, "retrying task {} ({}) after an application error", t.spec.id.ToString(), t.spec.function);
  // Its returns are inline errors (the worker frees what it stored): they are dropped.
  d_.gpus->Release(GpuAllocator::Holder::kTask, t.spec.id);
  d_.sched->Enqueue(&t.item);
  return true;
}

void TaskTable::KeepLineage(std::unordered_map<TaskId, std::unique_ptr<TaskRec>>::iterator it) {
  TaskId id = it->first;
  d_.gpus->Release(GpuAllocator::Holder::kTask, id);
  std::unique_ptr<TaskRec> rec = std::move(it->second);
  tasks_.erase(it);
  if (!stream_waits_.empty()) FinishStream(id);
  // Unpins the arguments (after taking their lineage).
  d_.lineage->Keep(std::move(rec->spec), rec->retries_left, rec->item.shape);
}

void TaskTable::OnBlocked(ProcId src, TaskId task, bool blocked) {
  auto it = tasks_.find(task);
  if (it == tasks_.end() || it->second->item.worker != src) return;
  if (blocked) {
    d_.sched->Blocked(&it->second->item);
  } else {
    d_.sched->Unblocked(&it->second->item);
  }
}

Status TaskTable::CancelTask(TaskRec& t, bool force) {
  if (t.cancelled) return Status::OK();
  t.cancelled = true;
  if (t.item.worker != kNoProc) {
    SendMsg(*d_.transport, t.item.worker, Msg::kCancelRunning, proto::CancelRunning{t.spec.id, force});
    return Status::OK();
  }
  Fail(t, ErrorPayload(StatusCode::kCancelled, "task " + t.spec.function + " was cancelled"));
  return Status::OK();
}

// ------------------------------------------------------------------ reruns

std::string TaskTable::Reconstruct(const ObjectId& id, ObjectEntry& e) {
  if (closed_) return "the runtime is shutting down";
  TaskId tid = id.task_id();
  auto reset = [&] {
    e.state = ObjectEntry::kPending;
    e.where = 0;
    e.data = Buffer();
    e.locations.clear();
  };
  if (tasks_.count(tid) && d_.lineage->Has(tid)) {  // being made again already
    reset();
    return "";
  }
  if (!e.lineage) {
    return id.is_put() ? "it was stored with put(), so only the copy that died existed"
                       : "it was not made by a task that may be retried (an actor call, or "
                         "max_retries=0)";
  }
  LineageRec* l = d_.lineage->Find(tid);
  if (!l) return "its lineage is gone";
  if (!TakeRetry(l->retries_left)) return "task " + l->spec.function + " has no retries left";
  MPIRAY_LOG(info, "rebuilding object {} by running task {} ({}) again", id.Hex(), tid.ToString(),
             l->spec.function);
  ++reconstructions_;
  reset();
  Rerun(l->spec, l->retries_left, l->shape);
  return "";
}

TaskRec& TaskTable::Rerun(proto::TaskSpec spec, int32_t retries_left, uint32_t shape) {
  auto rec = std::make_unique<TaskRec>();
  TaskRec& t = *rec;
  const TaskId tid = spec.id;
  t.spec = std::move(spec);
  t.retries_left = retries_left;
  t.submitter = d_.transport->self();
  t.item.shape = shape;
  t.item.owner = &t;
  tasks_[tid] = std::move(rec);
  PrepareRerun(t);
  return t;
}

void TaskTable::PrepareRerun(TaskRec& t) {
  TaskId tid = t.spec.id;
  std::string missing;
  // Arguments freed since the first run are made again (their lineage is still held).
  for (const proto::Arg& a : t.spec.args) {
    if (!a.by_ref || d_.objects->Has(a.ref)) continue;
    LineageRec* up = d_.lineage->Find(a.ref.task_id());
    if (!up) {
      missing = a.ref.Hex();
      break;
    }
    ObjectEntry& ne = d_.objects->Create(a.ref);
    ne.state = ObjectEntry::kReady;  // Reconstruct resets it to pending
    ne.where = WhereByte(Where::kShm);
    ne.lineage = true;
    ++up->refs;
    std::string why = Reconstruct(a.ref, ne);
    if (!why.empty()) {
      d_.objects->Erase(a.ref);
      d_.lineage->Release(a.ref.task_id(), /*drop_ref=*/true);
      missing = a.ref.Hex() + " (" + why + ")";
      break;
    }
  }
  ForEachArgRef(t.spec, [this](const ObjectId& ref) { d_.objects->Pin(ref); });
  if (!missing.empty()) {
    Fail(t, ErrorPayload(StatusCode::kObjectLost, "argument object " + missing + " of " +
                                                      t.spec.function + " is gone and cannot be rebuilt"));
    return;
  }
  for (const proto::Arg& a : t.spec.args) {
    if (!a.by_ref) continue;
    ObjectEntry* e = d_.objects->Find(a.ref);
    if (e->state != ObjectEntry::kReady) {
      ++t.deps;
      ObjectDirectory::AddDependent(*e, tid);
    }
  }
  if (t.deps == 0) DepsReady(t);
}

// ------------------------------------------------------------------ streaming

void TaskTable::StreamWant(const ObjectId& id, ProcId caller) {
  if (d_.objects->Has(id)) {  // produced already (held for the submitter) or wanted
    d_.objects->AddHolder(id, caller);
    return;
  }
  d_.objects->Create(id).holders.assign(1, caller);
  if (tasks_.count(id.task_id())) {
    stream_waits_[id.task_id()].push_back(id.index);
  } else {
    d_.objects->SetError(id, StatusCode::kNotFound, proto::kEndOfStream);  // the task is over
  }
}

void TaskTable::OnStreamItem(ProcId src, proto::StreamItem&& item) {
  auto it = tasks_.find(item.task);
  ObjectId id = item.obj.id;
  if (it == tasks_.end() || it->second->item.worker != src) {
    // A late item of a task that was failed or re-run elsewhere: drop its copy.
    if (item.obj.where == WhereByte(Where::kShm) && !d_.objects->Has(id)) {
      SendMsg(*d_.transport, src, Msg::kFreeObjects, proto::IdList{{id}});
    }
    return;
  }
  if (!d_.objects->Has(id)) d_.objects->Create(id).holders.assign(1, it->second->submitter);
  d_.objects->SetReady(id, std::move(item.obj));
}

void TaskTable::FinishStream(TaskId task) {
  auto w = stream_waits_.find(task);
  if (w == stream_waits_.end()) return;
  std::vector<uint32_t> indices = std::move(w->second);
  stream_waits_.erase(w);
  // Items the task never produced: the end (a failed task's error is its completion object's,
  // which the caller's generator hands out after the last item).
  for (uint32_t i : indices) {
    ObjectId id = ObjectId::ForReturn(task, i);
    ObjectEntry* e = d_.objects->Find(id);
    if (e && e->state != ObjectEntry::kReady) d_.objects->SetError(id, StatusCode::kNotFound, proto::kEndOfStream);
  }
}

// ------------------------------------------------------------------ failures

void TaskTable::OnProcessDied(const proto::PeerInfo& peer) {
  const ProcId proc = peer.proc;
  std::vector<TaskId> lost;
  for (auto& [tid, t] : tasks_) {
    if (t->item.worker == proc) lost.push_back(tid);
  }
  for (TaskId tid : lost) {
    auto it = tasks_.find(tid);
    if (it == tasks_.end()) continue;
    TaskRec& t = *it->second;
    --running_;
    t.item.worker = kNoProc;
    t.item.blocked = false;
    t.item.private_hold = false;
    d_.gpus->Release(GpuAllocator::Holder::kTask, tid);
    if (t.cancelled) {  // force=True ended the worker: the task was cancelled, not lost
      Fail(t, ErrorPayload(StatusCode::kCancelled, "task " + t.spec.function + " was cancelled"));
    } else if (TakeRetry(t.retries_left)) {
      MPIRAY_LOG(info, "retrying task {} ({}) after worker {} died", tid.ToString(), t.spec.function, proc);
      d_.sched->Enqueue(&t.item);
    } else {
      Fail(t, ErrorPayload(StatusCode::kWorkerCrashed,
                           "worker " + std::to_string(proc) + " (host " + peer.host + ", pid " +
                               std::to_string(peer.pid) + ") died while running task " +
                               t.spec.function + (t.spec.max_retries > 0 ? "; retries exhausted" : "")));
    }
  }
}

std::vector<TaskId> TaskTable::WaitingUsing(const std::function<bool(uint32_t)>& uses) const {
  std::vector<TaskId> waiting;
  for (const auto& [tid, t] : tasks_) {
    if (t->spec.task_kind() == TaskKind::kNormal && t->item.worker == kNoProc && uses(t->item.shape)) {
      waiting.push_back(tid);
    }
  }
  return waiting;
}

// ------------------------------------------------------------------ views

void TaskTable::AddToStatus(ClusterStatus* s) const {
  s->queued_tasks = d_.sched->queued();
  s->pipelined_tasks = d_.sched->Pipelined();
  s->running_tasks = running_;
  s->tasks_finished = finished_;
  s->tasks_failed = failed_;
  s->reconstructions = reconstructions_;
  s->lineage_tasks = d_.lineage->size();
}

void TaskTable::List(StateListing* out, size_t limit) const {
  out->total_tasks = tasks_.size() + events_ring_.size();
  for (const auto& [tid, t] : tasks_) {
    if (out->tasks.size() >= limit) break;
    StateListing::Task e;
    e.id = tid.ToString();
    e.name = head::DisplayName(t->spec);
    e.kind = t->spec.kind;
    ProcId w = t->spec.task_kind() == TaskKind::kActorCreate ? t->actor_worker : t->item.worker;
    if (w != kNoProc) {
      e.state = "RUNNING";
      e.worker = w;
      e.node = d_.members->NodeOf(w);
    } else {
      e.state = t->deps > 0 ? "PENDING_ARGS_AVAIL" : "PENDING_NODE_ASSIGNMENT";
    }
    out->tasks.push_back(std::move(e));
  }
  // Finished ones, newest first (the timeline's bounded history).
  for (size_t k = 0; k < events_ring_.size() && out->tasks.size() < limit; ++k) {
    size_t i = (events_next_ + events_ring_.size() - 1 - k) % events_ring_.size();
    const TaskEvent& ev = events_ring_[i];
    StateListing::Task e;
    e.id = ev.id;
    e.name = ev.name;
    e.state = ev.failed ? "FAILED" : "FINISHED";
    e.kind = ev.kind;
    e.worker = ev.worker;
    e.node = ev.node;
    out->tasks.push_back(std::move(e));
  }
}

}  // namespace mpiray::head

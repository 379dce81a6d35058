#include "client.h"

#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "log.h"
#include "resources.h"
#include "worker.h"

namespace mpiray {

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
  if (++refs_[id] == 1) d_.head->AddHolder(id);
}

void ClientImpl::RemoveLocalRef(const ObjectId& id) {
  std::lock_guard<std::mutex> lk(ref_mu_);
  int64_t* count = refs_.Find(id);
  if (!count) return;
  if (--*count > 0) return;
  refs_.Erase(id);
  d_.head->RemoveHolder(id);
}

void ClientImpl::CountRef(const ObjectId& id) {
  std::lock_guard<std::mutex> lk(ref_mu_);
  ++refs_[id];
}

void ClientImpl::ForgetRefs(const std::vector<ObjectId>& ids) {
  std::lock_guard<std::mutex> lk(ref_mu_);
  for (const ObjectId& id : ids) refs_.Erase(id);
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
    throw;  // the user's serialization failed: its own exception goes to the caller
  }
  MPIRAY_ASSIGN_OR_RETURN(Buffer sealed, d_.store->Seal(w));
  (void)sealed;
  obj.where = static_cast<uint8_t>(Where::kShm);
  obj.node = d_.node;
  return obj;
}

ObjectId ClientImpl::Put(const detail::SerializedValue& value) {
  return ValueOrThrow(PutAs(ObjectId::ForPut(NextTaskId()), value));
}

Result<ObjectId> ClientImpl::PutAs(const ObjectId& id, const detail::SerializedValue& value) {
  MPIRAY_ASSIGN_OR_RETURN(proto::NewObject obj, StoreValue(id, value));
  CountRef(id);  // registered with the head below, with this process as holder
  MPIRAY_RETURN_IF_ERROR(d_.head->Put(std::move(obj)));
  return id;
}

Result<ObjectId> ClientImpl::PutBytes(const std::vector<uint8_t>& bytes, std::vector<ObjectId> nested) {
  // `bytes` is already a complete payload: store it byte for byte.
  ObjectId id = ObjectId::ForPut(NextTaskId());
  MPIRAY_ASSIGN_OR_RETURN(WritableObject w, d_.store->Create(id, bytes.size()));
  std::memcpy(w.data, bytes.data(), bytes.size());
  MPIRAY_ASSIGN_OR_RETURN(Buffer sealed, d_.store->Seal(w));
  (void)sealed;
  proto::NewObject obj;
  obj.id = id;
  obj.where = static_cast<uint8_t>(Where::kShm);
  obj.node = d_.node;
  obj.size = bytes.size();
  obj.nested = std::move(nested);
  CountRef(id);
  MPIRAY_RETURN_IF_ERROR(d_.head->Put(std::move(obj)));
  return id;
}

// ------------------------------------------------------------------ submitting

Status ValidateTaskRequest(const detail::TaskRequest& req) {
  if (req.function.empty()) return InvalidArgument("remote call without a function name");
  if (req.kind == detail::TaskKind::kNormal && req.num_returns == 0) {
    return InvalidArgument("num_returns must be at least 1");
  }
  if (req.max_concurrency < 1) {
    return InvalidArgument("max_concurrency must be at least 1, got " + std::to_string(req.max_concurrency));
  }
  bool actor_default = req.kind == detail::TaskKind::kActorCall &&
                       req.max_retries == detail::kActorDefaultRetries;
  if (req.max_retries < detail::kRetryForever && !actor_default) {
    return InvalidArgument("max_retries must be >= 0 (or -1: retry forever), got " +
                           std::to_string(req.max_retries));
  }
  if (req.max_restarts < detail::kRetryForever) {
    return InvalidArgument("max_restarts must be >= 0 (or -1: restart forever), got " +
                           std::to_string(req.max_restarts));
  }
  if (req.max_task_retries < detail::kRetryForever) {
    return InvalidArgument("max_task_retries must be >= 0 (or -1: retry forever), got " +
                           std::to_string(req.max_task_retries));
  }
  return Status::OK();
}

Status ClientImpl::SetResources(const detail::TaskRequest& req, proto::TaskSpec* spec) {
  if (req.kind == detail::TaskKind::kActorCall) return Status::OK();  // the actor's own
  if (!req.resources_set) {
    if (req.kind == detail::TaskKind::kNormal) spec->resources.emplace_back("CPU", proto::kResourceUnit);
  } else {
    for (const auto& [name, amount] : req.resources) {
      if (name.empty()) return InvalidArgument("resource names must not be empty");
      MPIRAY_ASSIGN_OR_RETURN(int64_t fixed, ToFixed(name, amount));
      spec->resources.emplace_back(name, fixed);
    }
  }
  if (req.placement_group.nil()) return Status::OK();
  // Into a placement group: the bundle's own resources instead of the node's (as Ray).
  if (req.bundle_index < -1) {
    return InvalidArgument("placement group bundle index must be >= -1, got " + std::to_string(req.bundle_index));
  }
  const size_t own = spec->resources.size();
  for (size_t i = 0; i < own; ++i) {
    const std::string name = spec->resources[i].first;
    const int64_t amount = spec->resources[i].second;
    spec->resources[i].first = proto::PgResourceName(name, req.bundle_index, req.placement_group);
    // Pinned to a bundle, it takes from the group's whole (wildcard) amount too, as in Ray: a
    // later request with index -1 sees only what is left.
    if (req.bundle_index >= 0) {
      spec->resources.emplace_back(proto::PgResourceName(name, -1, req.placement_group), amount);
    }
  }
  spec->resources.emplace_back(proto::PgResourceName("bundle", req.bundle_index, req.placement_group),
                               proto::kPgBundleShare);
  return Status::OK();
}

Result<proto::TaskSpec> ClientImpl::BuildSpec(detail::TaskRequest&& req) {
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
  spec.scoped = req.scoped;
  if (!req.handle_meta.empty()) spec.handle_meta = Buffer(std::move(req.handle_meta));
  if (req.kind == detail::TaskKind::kActorCreate) spec.actor = spec.id;
  if (req.kind == detail::TaskKind::kActorCall) {
    spec.actor = req.actor;
    spec.caller = d_.self;  // seq and incarnation are set when the call is sent
  }
  MPIRAY_RETURN_IF_ERROR(SetResources(req, &spec));
  if (req.strategy > static_cast<uint8_t>(proto::Strategy::kNodeAffinitySoft)) {
    return InvalidArgument("unknown scheduling strategy " + std::to_string(req.strategy));
  }
  spec.strategy = req.strategy;
  spec.node = req.node;
  spec.parent = WorkerService::CurrentTask();
  return spec;
}

Status ClientImpl::SetArgs(std::vector<detail::TaskArgument>&& args, proto::TaskSpec* spec,
                           std::vector<ObjectId>* temp) {
  for (auto& a : args) {
    proto::Arg arg;
    arg.by_ref = a.by_ref;
    arg.ref = a.ref;
    arg.nested = std::move(a.nested);
    if (!a.by_ref && a.value.size() > d_.config.inline_threshold) {
      // Large by-value arguments go through the object store, as in Ray.
      MPIRAY_ASSIGN_OR_RETURN(ObjectId id, PutBytes(a.value, arg.nested));
      temp->push_back(id);
      arg.by_ref = true;
      arg.ref = id;
      arg.nested.clear();
    } else if (!a.by_ref) {
      arg.value = Buffer(std::move(a.value));
    }
    spec->args.push_back(std::move(arg));
  }
  return Status::OK();
}

Result<std::vector<ObjectId>> ClientImpl::SubmitTask(detail::TaskRequest&& req) {
  MPIRAY_RETURN_IF_ERROR(ValidateTaskRequest(req));
  std::vector<detail::TaskArgument> args = std::move(req.args);
  MPIRAY_ASSIGN_OR_RETURN(proto::TaskSpec spec, BuildSpec(std::move(req)));
  std::vector<ObjectId> temp;
  Status st = SetArgs(std::move(args), &spec, &temp);
  std::vector<ObjectId> returns;
  for (uint32_t i = 0; i < spec.num_returns && st.ok(); ++i) returns.push_back(spec.ReturnId(i));
  for (const ObjectId& id : returns) CountRef(id);  // the head registers us as holder
  if (st.ok()) st = d_.head->Submit(std::move(spec));
  if (!st.ok()) ForgetRefs(returns);
  for (const ObjectId& id : temp) RemoveLocalRef(id);
  if (!st.ok()) return st;
  return returns;
}

std::vector<ObjectId> ClientImpl::Submit(detail::TaskRequest&& req) {
  return ValueOrThrow(SubmitTask(std::move(req)));
}

void ClientImpl::Cancel(const ObjectId& id, bool force, bool recursive) {
  ThrowIfError(d_.head->Cancel(id, force, recursive));
}

void ClientImpl::KillActor(const ActorId& actor, bool no_restart) {
  ThrowIfError(d_.head->KillActor(actor, no_restart));
}

// ------------------------------------------------------------------ getting

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
  if (r.ok()) return *r;
  if (r.status().code() == StatusCode::kObjectStoreFull) {
    return Buffer(detail::MakeErrorPayload(StatusCode::kObjectStoreFull, r.status().message()));
  }
  // The copy we were pointed at is gone (its node died, or it was evicted). Ask the head
  // again: by now it knows, and either points at another copy, rebuilds the object (we wait),
  // or says it is lost. Until it has noticed the death it may repeat itself: back off.
  Status last = r.status();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int64_t pause_ms = 10;
  while (std::chrono::steady_clock::now() < deadline) {
    std::vector<bool> ready;
    auto locs = d_.head->Locate({first.id}, 1, -1, &ready);
    if (!locs.ok()) return Buffer(detail::MakeErrorPayload(locs.status().code(), locs.status().message()));
    const proto::ObjectLoc& loc = (*locs)[0];
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

Result<std::vector<Buffer>> ClientImpl::GetAll(const std::vector<ObjectId>& ids, int64_t timeout_ms) {
  for (const ObjectId& id : ids) {
    if (id.nil()) return InvalidArgument("Get on an empty (default-constructed) ObjectRef");
  }
  const bool cache = d_.head->remote();
  std::vector<Buffer> cached;
  if (cache && CachedInline(ids, &cached)) return cached;
  std::vector<bool> ready;
  MPIRAY_ASSIGN_OR_RETURN(auto locs, d_.head->Locate(ids, ids.size(), timeout_ms, &ready,
                                                     /*stop_on_error=*/true));
  if (cache) CacheInline(ids, locs);
  size_t missing = 0;
  for (bool r : ready) missing += r ? 0 : 1;
  for (size_t i = 0; i < locs.size() && missing; ++i) {
    if (ready[i] && locs[i].where == static_cast<uint8_t>(Where::kError)) {
      // One failed while others are pending: Get raises its error now (as Ray). Every slot
      // carries it, so that whoever reads the values in order meets it first.
      return std::vector<Buffer>(ids.size(), locs[i].data);
    }
  }
  if (missing) {
    return Status(StatusCode::kTimeout, "Get timed out after " + std::to_string(timeout_ms) + " ms: " +
                                            std::to_string(missing) + " of " + std::to_string(ids.size()) +
                                            " objects are not ready");
  }
  std::vector<Buffer> out;
  out.reserve(ids.size());
  for (const auto& loc : locs) out.push_back(MaterializeOrRelocate(loc));
  return out;
}

namespace {
constexpr size_t kInlineCacheBytes = 8u << 20;
}  // namespace

bool ClientImpl::CachedInline(const std::vector<ObjectId>& ids, std::vector<Buffer>* out) {
  std::lock_guard<std::mutex> lk(inline_mu_);
  if (inline_.empty()) return false;
  out->clear();
  for (const ObjectId& id : ids) {
    auto it = inline_.find(id);
    if (it == inline_.end()) return false;
    out->push_back(it->second);
  }
  return true;
}

void ClientImpl::CacheInline(const std::vector<ObjectId>& ids, const std::vector<proto::ObjectLoc>& locs) {
  std::lock_guard<std::mutex> lk(inline_mu_);
  for (size_t i = 0; i < locs.size() && i < ids.size(); ++i) {
    const proto::ObjectLoc& loc = locs[i];
    if (loc.where != static_cast<uint8_t>(Where::kInline) || loc.id != ids[i] ||
        loc.data.size() > kInlineCacheBytes / 64 || inline_.count(ids[i])) {
      continue;
    }
    inline_.emplace(ids[i], loc.data);
    inline_order_.push_back(ids[i]);
    inline_bytes_ += loc.data.size() + sizeof(ObjectId);
    while (inline_bytes_ > kInlineCacheBytes && !inline_order_.empty()) {
      auto old = inline_.find(inline_order_.front());
      inline_bytes_ -= old->second.size() + sizeof(ObjectId);
      inline_.erase(old);
      inline_order_.pop_front();
    }
  }
}

std::vector<Buffer> ClientImpl::Get(const std::vector<ObjectId>& ids, int64_t timeout_ms) {
  return ValueOrThrow(GetAll(ids, timeout_ms));
}

std::vector<bool> ClientImpl::Wait(const std::vector<ObjectId>& ids, size_t num_returns,
                                   int64_t timeout_ms) {
  for (const ObjectId& id : ids) {
    if (id.nil()) throw InvalidArgumentError("Wait on an empty (default-constructed) ObjectRef");
  }
  std::vector<bool> ready;
  ThrowIfError(d_.head->WaitReady(ids, num_returns, timeout_ms, &ready));
  return ready;
}

// ------------------------------------------------------------------ placement groups, streams

Result<ObjectId> ClientImpl::CreateGroup(proto::PlacementGroupSpec&& spec) {
  const ObjectId ready = ObjectId::ForReturn(spec.id, 0);
  CountRef(ready);
  Status st = d_.head->CreatePlacementGroup(std::move(spec));
  if (!st.ok()) {
    ForgetRefs({ready});
    return st;
  }
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
  *id = spec.id;
  return ValueOrThrow(CreateGroup(std::move(spec)));
}

void ClientImpl::RemovePlacementGroup(TaskId id) { ThrowIfError(d_.head->RemovePlacementGroup(id)); }

Result<int> ClientImpl::NextStreamItem(TaskId task, uint32_t index, int64_t timeout_ms, bool want) {
  const ObjectId id = ObjectId::ForReturn(task, index);
  if (want) {
    CountRef(id);
    d_.head->StreamWant(id);
  }
  std::vector<bool> ready;
  MPIRAY_ASSIGN_OR_RETURN(auto locs, d_.head->Locate({id}, 1, timeout_ms, &ready));
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

int ClientImpl::StreamNext(TaskId task, uint32_t index, int64_t timeout_ms, bool want) {
  return ValueOrThrow(NextStreamItem(task, index, timeout_ms, want));
}

void ClientImpl::StreamRelease(TaskId task, uint32_t from, uint32_t to) {
  std::vector<ObjectId> ids;
  for (uint32_t i = from; i < to; ++i) ids.push_back(ObjectId::ForReturn(task, i));
  if (!ids.empty()) d_.head->RemoveHolder(ids);
}

// ------------------------------------------------------------------ the driver's views

std::vector<uint8_t> ClientImpl::ListState(size_t limit) {
  HeadService* head = ValueOrThrow(d_.head->Driver("the job's state can only be listed on the driver"));
  StateListing listing = head->ListState(limit);
  return detail::Serialize(listing).ToVector();
}

std::vector<detail::PlacementGroupEntry> ClientImpl::PlacementGroups() {
  proto::ClusterView v = ValueOrThrow(d_.head->QueryCluster());
  std::vector<detail::PlacementGroupEntry> out;
  for (auto& g : v.groups) {
    out.push_back({g.id, std::move(g.name), std::move(g.strategy), std::move(g.state),
                   std::move(g.error), std::move(g.bundles), std::move(g.nodes)});
  }
  return out;
}

// Every process may ask (Ray answers ray.nodes() and friends inside tasks too): the driver
// reads the head in-process, the others ask it (kClusterQuery).
Result<detail::ClusterSnapshot> ClientImpl::BuildSnapshot() {
  MPIRAY_ASSIGN_OR_RETURN(proto::ClusterView v, d_.head->QueryCluster());
  detail::ClusterSnapshot s;
  for (auto& n : v.nodes) {
    s.nodes.push_back({n.id, std::move(n.total), std::move(n.available), std::move(n.workers)});
  }
  for (auto& p : v.processes) {
    s.processes.push_back({p.proc, p.node, p.pid, std::move(p.host), std::move(p.job), p.running,
                           p.actors, p.worker});
  }
  v.counts.resize(9, 0);
  s.pending_actors = v.counts[0];
  s.objects = v.counts[1];
  s.queued_tasks = v.counts[2];
  s.pipelined_tasks = v.counts[3];
  s.running_tasks = v.counts[4];
  s.actors = v.counts[5];
  s.actor_restarts = v.counts[6];
  s.reconstructions = v.counts[7];
  s.lineage_tasks = v.counts[8];
  s.store_used = d_.store->used();  // this process's node's store
  return s;
}

detail::ClusterSnapshot ClientImpl::Snapshot() { return ValueOrThrow(BuildSnapshot()); }

bool ClientImpl::GetNamedActor(const std::string& ns, const std::string& name, ActorId* actor,
                               Buffer* handle_meta) {
  return ValueOrThrow(d_.head->FindNamedActor(ns, name, actor, handle_meta));
}

Status ClientImpl::DrainProcesses(const std::vector<ProcId>& procs) {
  MPIRAY_ASSIGN_OR_RETURN(HeadService * head, d_.head->Driver("draining is only possible on the driver"));
  // Copy objects that would be lost into this (the driver's) node's store.
  for (const proto::ObjectLoc& loc : head->Drain(procs, d_.node)) {
    if (loc.where != static_cast<uint8_t>(Where::kShm) || loc.node == d_.node) continue;
    auto copy = d_.fetcher->Fetch(loc);
    if (!copy.ok()) return copy.status();
  }
  return Status::OK();
}

double ClientImpl::MeasureFabricGbps(ProcId source, uint64_t bytes) {
  return ValueOrThrow(d_.fetcher->MeasureStream(source, bytes));
}

}  // namespace mpiray

#include "head/object_directory.h"

#include <algorithm>

#include "head/views.h"
#include "head/common.h"

namespace mpiray::head {

using proto::Msg;
using proto::Where;

ObjectDirectory::ObjectDirectory(Transport& transport, const Membership& members,
                                 ObjectEvents& events, std::function<int64_t()> now_ms)
    : transport_(transport), members_(members), events_(events), now_ms_(std::move(now_ms)) {}

void ObjectDirectory::Register(HeadRoutes& routes) {
  routes.On<proto::IdList>(Msg::kAddRef, [this](ProcId src, proto::IdList&& l) { OnAddRef(src, l); });
  routes.On<proto::IdList>(Msg::kDelRef, [this](ProcId src, proto::IdList&& l) { OnDelRef(src, l); });
  routes.On<proto::NewObject>(Msg::kPutObject,
                              [this](ProcId src, proto::NewObject&& obj) { Put(std::move(obj), src); });
  routes.On<proto::GetObjects>(Msg::kGetObjects, [this](ProcId src, proto::GetObjects&& req) {
    OnGetObjects(src, std::move(req));
  });
  routes.On<proto::AddLocation>(Msg::kAddLocation,
                                [this](ProcId, proto::AddLocation&& a) { AddLocation(a.id, a.node); });
}

void ObjectDirectory::OnAddRef(ProcId src, const proto::IdList& ids) {
  for (const ObjectId& id : ids.ids) AddHolder(id, src);
}

void ObjectDirectory::OnDelRef(ProcId src, const proto::IdList& ids) {
  for (const ObjectId& id : ids.ids) RemoveHolder(id, src);
}

void ObjectDirectory::Unpin(const ObjectId& id) {
  if (ObjectEntry* e = Find(id)) {
    --e->pins;
    MaybeFree(id);
  }
}

void ObjectDirectory::AddHolder(const ObjectId& id, ProcId proc) {
  if (ObjectEntry* e = Find(id)) {
    if (std::find(e->holders.begin(), e->holders.end(), proc) == e->holders.end()) {
      e->holders.push_back(proc);
    }
  }
}

void ObjectDirectory::RemoveHolder(const ObjectId& id, ProcId proc) {
  ObjectEntry* e = Find(id);
  if (!e) return;
  auto h = std::find(e->holders.begin(), e->holders.end(), proc);
  if (h != e->holders.end()) e->holders.erase(h);
  MaybeFree(id, e);
}

void ObjectDirectory::MaybeFree(const ObjectId& id) { MaybeFree(id, Find(id)); }

void ObjectDirectory::MaybeFree(const ObjectId& id, ObjectEntry* e) {
  if (!e || !e->registered || !e->holders.empty() || e->pins > 0 || e->containers > 0) return;
  if (e->state != ObjectEntry::kReady) return;  // freed when its task finishes
  FreeEntry(id, *e);
}

void ObjectDirectory::FreeCopy(const ObjectId& id, NodeId node) {
  ProcId p = members_.ProcOnNode(node);
  if (p != kNoProc) SendMsg(transport_, p, Msg::kFreeObjects, proto::IdList{{id}});
}

void ObjectDirectory::FreeEntry(const ObjectId& id, ObjectEntry& e) {
  if (e.in_store()) {
    for (NodeId node : e.locations) FreeCopy(id, node);
  }
  std::vector<ObjectId> contains;
  if (e.extra) contains = std::move(e.extra->contains);
  bool lineage = e.lineage;
  bool actor_handle = e.actor_handle;
  objects_.Erase(id);
  if (lineage) events_.OnLineageReleased(id.task_id());
  if (actor_handle) events_.OnActorHandlesGone(id.task_id());
  for (const ObjectId& c : contains) {
    if (ObjectEntry* ce = Find(c)) {
      --ce->containers;
      MaybeFree(c);
    }
  }
}

void ObjectDirectory::SetReady(const ObjectId& id, proto::NewObject&& obj) {
  ObjectEntry* e = Find(id);
  if (!e || e->state == ObjectEntry::kReady) {
    // Nobody wants it (freed, or a late duplicate): drop the stored copy.
    if (obj.where == WhereByte(Where::kShm) &&
        (!e || e->locations.empty() || e->locations[0] != obj.node)) {
      FreeCopy(id, obj.node);
    }
    return;
  }
  e->state = ObjectEntry::kReady;
  e->where = obj.where;
  e->size = obj.size;
  e->data = std::move(obj.data);
  if (obj.where == WhereByte(Where::kShm)) e->locations = {obj.node};
  if (!obj.nested.empty()) {
    auto& contains = e->X().contains;
    for (const ObjectId& n : obj.nested) {
      if (ObjectEntry* ne = Find(n)) {
        ++ne->containers;
        contains.push_back(n);
      }
    }
    e = Find(id);  // Find above cannot rehash, but keep the pointer honest
  }
  OnReady(id, *e);
  MaybeFree(id);
}

void ObjectDirectory::SetErrorPayload(const ObjectId& id, const Buffer& payload) {
  proto::NewObject obj;
  obj.id = id;
  obj.where = WhereByte(Where::kError);
  obj.data = payload;
  obj.size = payload.size();
  SetReady(id, std::move(obj));
}

void ObjectDirectory::SetError(const ObjectId& id, StatusCode code, const std::string& message) {
  SetErrorPayload(id, ErrorPayload(code, message));
}

void ObjectDirectory::OnReady(const ObjectId& id, ObjectEntry& e) {
  if (!e.extra) return;
  auto waiters = std::move(e.extra->waiters);
  auto remote = std::move(e.extra->remote);
  auto dependents = std::move(e.extra->dependents);
  e.extra->waiters.clear();
  e.extra->remote.clear();
  e.extra->dependents.clear();
  for (Waiter* w : waiters) {
    ++w->ready;
    if (w->stop_on_error && e.where == WhereByte(Where::kError)) w->error = true;
    if (w->ready >= w->needed || w->error) {
      w->woken.store(true, std::memory_order_release);
      w->cv.notify_all();
    }
  }
  for (const auto& [proc, req] : remote) {
    proto::ObjectsReady r;
    r.req = req;
    r.objects.push_back(Locate(id, e, members_.NodeOf(proc)));
    SendMsg(transport_, proc, Msg::kObjectsReady, r);
  }
  for (TaskId tid : dependents) events_.OnDependencyReady(tid);
}

proto::ObjectLoc ObjectDirectory::Locate(const ObjectId& id, const ObjectEntry& e,
                                         NodeId requester) const {
  proto::ObjectLoc l;
  l.id = id;
  l.where = e.where;
  l.size = e.size;
  if (e.state != ObjectEntry::kReady) {
    l.where = WhereByte(Where::kPending);  // being rebuilt
    return l;
  }
  if (e.where != WhereByte(Where::kShm)) {
    l.data = e.data;
    return l;
  }
  NodeId chosen = kNoNode;
  for (NodeId n : e.locations) {
    if (n == requester) {
      chosen = n;
      break;
    }
    if (chosen == kNoNode && members_.ProcOnNode(n) != kNoProc) chosen = n;
  }
  if (chosen == kNoNode || members_.ProcOnNode(chosen) == kNoProc) {
    l.where = WhereByte(Where::kError);
    l.data = ErrorPayload(StatusCode::kObjectLost, "object " + id.Hex() + " has no live copy");
    return l;
  }
  l.node = chosen;
  l.source = members_.ProcOnNode(chosen);
  return l;
}

proto::ObjectLoc ObjectDirectory::LocateOrLost(const ObjectId& id, NodeId requester) const {
  if (const ObjectEntry* e = Find(id)) return Locate(id, *e, requester);
  proto::ObjectLoc l;
  l.id = id;
  l.where = WhereByte(Where::kError);
  l.data = ErrorPayload(StatusCode::kObjectLost, "object " + id.Hex() + " is unknown or was already freed");
  return l;
}

void ObjectDirectory::AddLocation(const ObjectId& id, NodeId node) {
  ObjectEntry* e = Find(id);
  if (!e || e->where != WhereByte(Where::kShm)) {
    if (!e) FreeCopy(id, node);  // freed meanwhile: the new copy must go too
    return;
  }
  if (std::find(e->locations.begin(), e->locations.end(), node) == e->locations.end()) {
    e->locations.push_back(node);
  }
}

void ObjectDirectory::Put(proto::NewObject&& obj, ProcId holder) {
  ObjectId id = obj.id;
  ObjectEntry& e = Create(id);
  e.holders.push_back(holder);
  if (!id.is_put()) e.item = true;  // a task's return put by its worker: a generator's item
  if (!awaited_puts_.empty() && awaited_puts_.erase(id)) e.registered = true;
  SetReady(id, std::move(obj));
}

void ObjectDirectory::OnGetObjects(ProcId src, proto::GetObjects&& req) {
  proto::ObjectsReady reply;
  reply.req = req.req;
  NodeId node = members_.NodeOf(src);
  for (const ObjectId& id : req.ids) {
    ObjectEntry* e = Find(id);
    const ProcId maker = id.task_id().submitter();
    if (!e && src != maker && maker != transport_.self() && members_.IsAlive(maker)) {
      // A put, or a return of a call another live process submitted, whose registration is
      // still on its way: its maker sent it to us before it sent the ref to the asker, but on
      // another connection (a worker's actor call goes straight to the actor's process).
      // Wait for it (a while). What the head itself made is registered at once.
      ObjectEntry& placeholder = Create(id);
      placeholder.registered = false;  // not freed while nobody holds it yet
      placeholder.X().remote.emplace_back(src, req.req);
      awaited_puts_.emplace(id, now_ms_());
      continue;
    }
    if (!e) {
      reply.objects.push_back(LocateOrLost(id, node));
    } else if (e->state == ObjectEntry::kReady) {
      reply.objects.push_back(Locate(id, *e, node));
    } else {
      e->X().remote.emplace_back(src, req.req);
    }
  }
  if (!reply.objects.empty()) SendMsg(transport_, src, Msg::kObjectsReady, reply);
}

void ObjectDirectory::ExpireAwaitedPuts(int64_t now_ms) {
  for (auto it = awaited_puts_.begin(); it != awaited_puts_.end();) {
    if (now_ms - it->second < kAwaitPutMs) {
      ++it;
      continue;
    }
    ObjectId id = it->first;
    it = awaited_puts_.erase(it);
    if (ObjectEntry* e = Find(id)) {
      e->registered = true;  // freed once the waiters have their error
      SetError(id, StatusCode::kObjectLost, "object " + id.Hex() + " is unknown or was already freed");
    }
  }
}

void ObjectDirectory::AddWaiter(const ObjectId& id, Waiter* w) {
  if (ObjectEntry* e = Find(id)) e->X().waiters.push_back(w);
}

void ObjectDirectory::RemoveWaiter(const ObjectId& id, Waiter* w) {
  ObjectEntry* e = Find(id);
  if (e && e->extra) {
    auto& ws = e->extra->waiters;
    ws.erase(std::remove(ws.begin(), ws.end(), w), ws.end());
  }
}

void ObjectDirectory::WakeAllWaiters() {
  for (auto& [id, e] : objects_) {
    if (!e.extra) continue;
    for (Waiter* w : e.extra->waiters) {
      w->ready = w->needed;
      w->woken.store(true, std::memory_order_release);
      w->cv.notify_all();
    }
  }
}

void ObjectDirectory::OnProcessDied(ProcId proc, NodeId node, bool node_gone,
                                    std::vector<ObjectId>* held, std::vector<ObjectId>* lost) {
  objects_.Shrink();  // after a burst (1M queued tasks' returns) the walk below stays short
  for (auto& [oid, e] : objects_) {
    auto h = std::find(e.holders.begin(), e.holders.end(), proc);
    if (h != e.holders.end()) {
      e.holders.erase(h);
      held->push_back(oid);
    }
    if (node_gone && e.where == WhereByte(Where::kShm) && e.state == ObjectEntry::kReady) {
      e.locations.erase(std::remove(e.locations.begin(), e.locations.end(), node), e.locations.end());
      if (e.locations.empty()) lost->push_back(oid);
    }
  }
}

void ObjectDirectory::MarkLost(const ObjectId& id, const std::string& why) {
  ObjectEntry* e = Find(id);
  if (!e) return;
  e->where = WhereByte(Where::kError);
  e->data = ErrorPayload(StatusCode::kObjectLost, "object " + id.Hex() +
                                                      " was lost (every node holding a copy "
                                                      "died) and cannot be rebuilt: " + why);
}

std::vector<proto::ObjectLoc> ObjectDirectory::Stranded(const std::vector<NodeId>& leaving,
                                                        NodeId keep_node) const {
  std::vector<proto::ObjectLoc> stranded;
  for (const auto& [id, e] : objects_) {
    if (e.state != ObjectEntry::kReady || e.where != WhereByte(Where::kShm)) continue;
    bool elsewhere = std::any_of(e.locations.begin(), e.locations.end(), [&](NodeId n) {
      return std::find(leaving.begin(), leaving.end(), n) == leaving.end();
    });
    if (!elsewhere) stranded.push_back(Locate(id, e, keep_node));
  }
  return stranded;
}

void ObjectDirectory::AddToStatus(ClusterStatus* s) const {
  s->objects = objects_.size();
  for (const auto& [id, e] : objects_) {
    if (e.state != ObjectEntry::kReady) continue;
    if (e.where == WhereByte(Where::kShm)) {
      for (NodeId n : e.locations) s->store_bytes[n] += e.size;
    } else {
      s->inline_bytes += e.data.size();
    }
  }
}

void ObjectDirectory::List(StateListing* out, size_t limit) const {
  out->total_objects = objects_.size();
  static const char* wheres[] = {"INLINE", "SHARED_MEMORY", "ERROR", "PENDING"};
  for (const auto& [oid, o] : objects_) {
    if (out->objects.size() >= limit) break;
    StateListing::Object e;
    e.id = oid.Hex();
    e.size = o.size;
    e.where = o.state == ObjectEntry::kReady ? wheres[std::min<uint8_t>(o.where, 3)] : "PENDING";
    e.nodes = o.locations;
    e.holders = o.holders;
    e.pins = o.pins;
    out->objects.push_back(std::move(e));
  }
}

}  // namespace mpiray::head

// ObjectDirectory: every object the head knows — its state, where its copies are, who holds a
// handle, what pins it (pending tasks, containing objects), and who waits for it. It announces
// "a dependency is ready" and "an object holding lineage was freed" through ObjectEvents and
// knows nothing of tasks beyond their ids.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fabric.h"
#include "head/membership.h"
#include "head/routes.h"
#include "head/views.h"
#include "id_table.h"
#include "mpiray/core/status.h"
#include "protocol.h"

namespace mpiray::head {

/// @brief A driver thread blocked until some objects are ready (WaitLocal).
struct Waiter {
  std::condition_variable cv;
  std::atomic<bool> woken{false};  // set with each notify: what a spinning waiter looks at
  size_t needed = 0;  // readiness events still needed
  size_t ready = 0;
  bool stop_on_error = false;  // an object that becomes an error ends the wait too
  bool error = false;
};

/// @brief One object as the directory knows it.
struct ObjectEntry {
  enum State : uint8_t { kPending = 0, kReady = 1 };
  uint8_t state = kPending;
  uint8_t where = 0;       // proto::Where
  bool registered = true;  // false: made by an actor result that beat its registration
  bool lineage = false;    // holds a reference on its task's lineage (it can be rebuilt)
  bool actor_handle = false;  // the creation object of a scoped actor (its handles hold it)
  // An item of a num_returns="dynamic" generator: a return of its task beyond the declared
  // ones, registered as a put by the worker; rebuilt, as returns are, by running the task again.
  bool item = false;
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
  std::unique_ptr<Extra> extra;  // only objects that contain refs or are waited for pay for it
  Extra& X() {
    if (!extra) extra = std::make_unique<Extra>();
    return *extra;
  }
  bool ready() const { return state == kReady; }
  bool in_store() const { return where == static_cast<uint8_t>(proto::Where::kShm); }
};

/// @brief What the directory announces (implemented by the HeadService, which passes it on).
class ObjectEvents {
 public:
  virtual ~ObjectEvents() = default;
  /// @brief An object that task `dependent` waits for became ready.
  virtual void OnDependencyReady(TaskId dependent) = 0;
  /// @brief An object holding a reference on `task`'s lineage was freed.
  virtual void OnLineageReleased(TaskId task) = 0;
  /// @brief The creation object of scoped actor `actor` was freed: no handle to it is left.
  virtual void OnActorHandlesGone(TaskId actor) = 0;
};

class ObjectDirectory {
 public:
  /// @param transport frees copies (kFreeObjects) and answers remote waits (kObjectsReady).
  /// @param members where copies can be read (a live process on a node).
  /// @param now_ms the head's clock (how long a put registration has been awaited).
  ObjectDirectory(Transport& transport, const Membership& members, ObjectEvents& events,
                  std::function<int64_t()> now_ms);
  /// @brief Handle kAddRef, kDelRef, kPutObject, kGetObjects and kAddLocation.
  void Register(HeadRoutes& routes);

  // ---- entries ---------------------------------------------------------------------------
  /// @brief The entry of `id`, created (pending, no holder) if absent.
  /// @brief `f(id, entry)` for each item of `spec`'s num_returns="dynamic" generator (the
  /// returns after its declared ones that its worker put: ObjectEntry::item), in order. `f`
  /// may set the entry ready or free it (each item is looked up afresh).
  template <class F>
  void ForEachItem(const proto::TaskSpec& spec, F&& f) {
    for (uint32_t i = spec.num_returns;; ++i) {
      const ObjectId id = spec.ReturnId(i);
      ObjectEntry* e = Find(id);
      if (!e || !e->item) return;
      f(id, *e);
    }
  }
  /// @brief The entry of `id`, made if absent. This is how every object is registered (a put,
  /// a task or actor call's returns): a get that arrived before the registration stops waiting.
  ObjectEntry& Create(const ObjectId& id) {
    if (!awaited_puts_.empty() && awaited_puts_.erase(id)) {
      ObjectEntry& e = objects_[id];
      e.registered = true;
      return e;
    }
    return objects_[id];
  }
  ObjectEntry* Find(const ObjectId& id) { return objects_.Find(id); }
  const ObjectEntry* Find(const ObjectId& id) const { return objects_.Find(id); }
  bool Has(const ObjectId& id) const { return objects_.Contains(id); }
  size_t size() const { return objects_.size(); }
  /// @brief Drop an entry without freeing anything (a rebuild that could not start).
  void Erase(const ObjectId& id) { objects_.Erase(id); }
  /// @brief `dependent` waits for `e` (announced with OnDependencyReady).
  static void AddDependent(ObjectEntry& e, TaskId dependent) { e.X().dependents.push_back(dependent); }

  // ---- reference counting ----------------------------------------------------------------
  void Pin(const ObjectId& id) {
    if (ObjectEntry* e = Find(id)) ++e->pins;
  }
  void Unpin(const ObjectId& id);
  void AddHolder(const ObjectId& id, ProcId proc);
  void RemoveHolder(const ObjectId& id, ProcId proc);
  /// @brief Free `id` if nothing holds, pins or contains it any more (and it is ready).
  void MaybeFree(const ObjectId& id);
  /// @brief The same for an entry already found (`e` may be null).
  void MaybeFree(const ObjectId& id, ObjectEntry* e);

  // ---- values ----------------------------------------------------------------------------
  /// @brief The object's value arrived: wake its waiters and dependents. A value nobody wants
  /// any more (freed, or a late duplicate) has its stored copy dropped.
  void SetReady(const ObjectId& id, proto::NewObject&& obj);
  void SetError(const ObjectId& id, StatusCode code, const std::string& message);
  void SetErrorPayload(const ObjectId& id, const Buffer& payload);
  /// @brief Register a put object held by `holder`; `awaited` marks a registration someone
  /// asked for before it arrived (OnGetObjects).
  void Put(proto::NewObject&& obj, ProcId holder);
  /// @brief A copy of `id` now also lives on `node` (a copy of a freed object is freed).
  void AddLocation(const ObjectId& id, NodeId node);
  /// @brief Where `e` can be read from `requester`'s node (an error when no copy is live).
  proto::ObjectLoc Locate(const ObjectId& id, const ObjectEntry& e, NodeId requester) const;
  /// @brief The location of `id`, or the "unknown or freed" error.
  proto::ObjectLoc LocateOrLost(const ObjectId& id, NodeId requester) const;
  /// @brief Tell `node`'s live process to delete its copy of `id`.
  void FreeCopy(const ObjectId& id, NodeId node);

  // ---- waiting ---------------------------------------------------------------------------
  /// @brief A process asks for `req.ids`: ready ones are answered now, others when ready.
  void OnGetObjects(ProcId src, proto::GetObjects&& req);
  /// @brief Fail the put registrations awaited for kAwaitPutMs (their askers get an error).
  void ExpireAwaitedPuts(int64_t now_ms);
  bool AwaitingPuts() const { return !awaited_puts_.empty(); }
  void AddWaiter(const ObjectId& id, Waiter* w);
  void RemoveWaiter(const ObjectId& id, Waiter* w);
  /// @brief Release every blocked driver thread (shutdown).
  void WakeAllWaiters();

  // ---- failures --------------------------------------------------------------------------
  /// @brief `proc` died (and with it `node`, when `node_gone`): its handles go (`held`: the
  /// objects it held) and so do the node's copies (`lost`: ready objects left without any).
  void OnProcessDied(ProcId proc, NodeId node, bool node_gone, std::vector<ObjectId>* held,
                     std::vector<ObjectId>* lost);
  /// @brief `id` lost its last copy and cannot be rebuilt: readers get ObjectLost with `why`.
  void MarkLost(const ObjectId& id, const std::string& why);
  /// @brief Ready store objects none of whose copies are outside `leaving`, located for
  /// `keep_node` (draining).
  std::vector<proto::ObjectLoc> Stranded(const std::vector<NodeId>& leaving, NodeId keep_node) const;

  // ---- views -----------------------------------------------------------------------------
  void AddToStatus(ClusterStatus* s) const;
  void List(StateListing* out, size_t limit) const;

  /// @brief How long a get waits for an object's registration still on its way (a put, or the
  /// returns of a call another process submitted).
  static constexpr int64_t kAwaitPutMs = 10000;

 private:
  void FreeEntry(const ObjectId& id, ObjectEntry& e);
  void OnReady(const ObjectId& id, ObjectEntry& e);

  void OnAddRef(ProcId src, const proto::IdList& ids);
  void OnDelRef(ProcId src, const proto::IdList& ids);

  Transport& transport_;
  const Membership& members_;
  ObjectEvents& events_;
  std::function<int64_t()> now_ms_;
  IdTable<ObjectEntry> objects_;
  // Gets of objects whose registration has not arrived yet (-> when asked first).
  std::unordered_map<ObjectId, int64_t> awaited_puts_;
};

}  // namespace mpiray::head

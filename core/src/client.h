// ClientImpl: the CoreClient of one process. On the head it calls the HeadService directly; on
// a worker it talks to the head with messages. Holds the process's local reference counts.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "fabric.h"
#include "fetch.h"
#include "head.h"
#include "mpiray/core/detail/core_client.h"
#include "mpiray/core/serialization.h"
#include "session.h"
#include "shm_store.h"

namespace mpiray {

/// @brief What a client needs from its process.
struct ClientDeps {
  Transport* transport = nullptr;
  ShmStore* store = nullptr;
  Fetcher* fetcher = nullptr;
  HeadService* head = nullptr;  // only on the head process
  ProcId self = 0;
  NodeId node = 0;
  RuntimeConfig config;
};

class ClientImpl final : public detail::CoreClient {
 public:
  explicit ClientImpl(const ClientDeps& deps);

  std::vector<ObjectId> Submit(detail::TaskRequest&& request) override;
  ObjectId Put(const detail::SerializedValue& value) override;
  std::vector<Buffer> Get(const std::vector<ObjectId>& ids, int64_t timeout_ms) override;
  std::vector<bool> Wait(const std::vector<ObjectId>& ids, size_t num_returns,
                         int64_t timeout_ms) override;
  void Cancel(const ObjectId& id, bool force, bool recursive) override;
  void KillActor(const ActorId& actor, bool no_restart) override;
  void AddLocalRef(const ObjectId& id) override;
  void RemoveLocalRef(const ObjectId& id) override;
  detail::ClusterSnapshot Snapshot() override;
  ObjectId CreatePlacementGroup(const std::string& name, uint8_t strategy,
                                const std::vector<std::vector<std::pair<std::string, double>>>& bundles,
                                TaskId* id) override;
  void RemovePlacementGroup(TaskId id) override;
  int StreamNext(TaskId task, uint32_t index, int64_t timeout_ms, bool want) override;
  void StreamRelease(TaskId task, uint32_t from, uint32_t to) override;
  std::vector<uint8_t> ListState(size_t limit) override;
  std::vector<detail::PlacementGroupEntry> PlacementGroups() override;
  double MeasureFabricGbps(ProcId source, uint64_t bytes) override;
  Status DrainProcesses(const std::vector<ProcId>& procs) override;
  bool GetNamedActor(const std::string& ns, const std::string& name, ActorId* actor,
                     Buffer* handle_meta) override;
  void OnNamedActor(proto::NamedActor&& r);

  /// @brief Store a value as object `id` (inline or in shared memory).
  Result<proto::NewObject> StoreValue(const ObjectId& id, const detail::SerializedValue& value);
  /// @brief The payload described by `loc` (maps or fetches shared-memory objects); an error
  /// payload if that copy cannot be read.
  Buffer Materialize(const proto::ObjectLoc& loc);
  /// @brief As Materialize, but if that copy is gone, asks the head where the object is now
  /// (another copy, or rebuilt from lineage) and tries again.
  Buffer MaterializeOrRelocate(const proto::ObjectLoc& loc);
  /// @brief Called around a wait that may take long (a worker tells the head it is blocked).
  void SetBlockingHook(std::function<void(bool blocked)> hook) { blocking_hook_ = std::move(hook); }
  /// @brief Fail every wait in progress (the head is gone or we are shutting down).
  void Close(const std::string& why);
  size_t NumLocalRefs() const;

  // Progress-thread entry points (worker processes).
  void OnObjectsReady(proto::ObjectsReady&& r);
  void OnActorLocation(const proto::ActorLocation& loc);

 private:
  struct PendingGet {
    std::unordered_multimap<ObjectId, size_t> positions;
    std::vector<std::optional<proto::ObjectLoc>> locs;
    size_t ready = 0;
    std::condition_variable cv;
  };
  struct Route {
    bool known = false;
    bool dead = false;
    bool asked = false;
    bool restartable = false;  // the actor may restart (calls then report where they went)
    bool retriable = false;    // its calls are retried by default
    ProcId proc = kNoProc;
    uint32_t incarnation = 0;
    uint64_t next_seq = 0;  // calls sent to this incarnation
    std::vector<proto::TaskSpec> buffered;
  };
  TaskId NextTaskId();
  Result<Buffer> TryMaterialize(const proto::ObjectLoc& loc);
  std::vector<proto::ObjectLoc> Locate(const std::vector<ObjectId>& ids, size_t num_ready,
                                       int64_t timeout_ms, std::vector<bool>* ready);
  void RouteActorCallLocked(Route& r, proto::TaskSpec&& spec);
  /// @brief The head gets the whole call (arguments too): it may have to re-send it.
  static bool WholeCall(const Route& r, const proto::TaskSpec& spec);

  ClientDeps d_;
  std::function<void(bool)> blocking_hook_;

  mutable std::mutex ref_mu_;
  std::unordered_map<ObjectId, int64_t> refs_;

  std::mutex get_mu_;
  uint64_t next_req_ = 0;
  std::unordered_map<uint64_t, PendingGet*> gets_;
  bool closed_ = false;
  std::string close_reason_;

  std::mutex named_mu_;
  std::condition_variable named_cv_;
  uint64_t next_named_ = 0;
  std::map<uint64_t, std::optional<proto::NamedActor>> named_replies_;

  std::mutex actor_mu_;
  std::unordered_map<ActorId, Route> routes_;
};

}  // namespace mpiray

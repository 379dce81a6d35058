// ClientImpl: the CoreClient of one process — local reference counts, storing values, building
// task specs, reading objects (mapped, fetched, or located again after a loss). It reaches the
// head through a HeadLink (in-process on the head, messages elsewhere) and never asks which.
// Errors are Status values inside; the CoreClient overrides are the API boundary that throws.
#pragma once

#include <atomic>
#include <functional>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "fetch.h"
#include "head_link.h"
#include "id_table.h"
#include "mpiray/core/detail/core_client.h"
#include "mpiray/core/serialization.h"
#include "session.h"
#include "shm_store.h"

namespace mpiray {

/// @brief What a client needs from its process.
struct ClientDeps {
  ShmStore* store = nullptr;
  Fetcher* fetcher = nullptr;
  HeadLink* head = nullptr;  // in-process on the head, messages elsewhere
  ProcId self = 0;
  NodeId node = 0;
  RuntimeConfig config;
};

class ClientImpl final : public detail::CoreClient {
 public:
  explicit ClientImpl(const ClientDeps& deps);

  // detail::CoreClient (the API boundary: errors become exceptions here)
  std::vector<ObjectId> Submit(detail::TaskRequest&& request) override;
  ObjectId Put(const detail::SerializedValue& value) override;
  /// @brief Put under a given id (a dynamic generator's item: a return id of its task).
  Result<ObjectId> PutAs(const ObjectId& id, const detail::SerializedValue& value);
  std::vector<Buffer> Get(const std::vector<ObjectId>& ids, int64_t timeout_ms) override;
  std::vector<bool> Wait(const std::vector<ObjectId>& ids, size_t num_returns,
                         int64_t timeout_ms) override;
  void Cancel(const ObjectId& id, bool force, bool recursive) override;
  void InterruptWaits(uint64_t thread, bool on) override { d_.head->InterruptWaits(thread, on); }
  void KillActor(const ActorId& actor, bool no_restart) override;
  void CallRetried(const TaskId& task) override { d_.head->CallRetried(task); }
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

  /// @brief Store a value as object `id` (inline or in shared memory).
  Result<proto::NewObject> StoreValue(const ObjectId& id, const detail::SerializedValue& value);
  /// @brief The payload described by `loc` (maps or fetches shared-memory objects); an error
  /// payload if that copy cannot be read.
  Buffer Materialize(const proto::ObjectLoc& loc);
  /// @brief As Materialize, but if that copy is gone, asks the head where the object is now
  /// (another copy, or rebuilt from lineage) and tries again.
  Buffer MaterializeOrRelocate(const proto::ObjectLoc& loc);
  /// @brief Called around a wait that may take long (a worker tells the head it is blocked).
  void SetBlockingHook(std::function<void(bool blocked)> hook) { d_.head->SetBlockingHook(std::move(hook)); }
  /// @brief Fail every wait in progress (the head is gone or we are shutting down).
  void Close(const std::string& why) { d_.head->Close(why); }
  size_t NumLocalRefs() const;
  /// @brief Get without exceptions (kTimeout when `timeout_ms` passes first).
  Result<std::vector<Buffer>> GetAll(const std::vector<ObjectId>& ids, int64_t timeout_ms);

 private:
  TaskId NextTaskId();
  /// @brief Count a reference of this process that the head registers by itself (returns,
  /// puts, placement group ready objects).
  void CountRef(const ObjectId& id);
  void ForgetRefs(const std::vector<ObjectId>& ids);
  Result<std::vector<ObjectId>> SubmitTask(detail::TaskRequest&& req);
  Result<proto::TaskSpec> BuildSpec(detail::TaskRequest&& req);
  Status SetResources(const detail::TaskRequest& req, proto::TaskSpec* spec);
  /// @brief Arguments; a large by-value one goes through the object store as a put (`temp`
  /// lists those, released once the head has the task).
  Status SetArgs(std::vector<detail::TaskArgument>&& args, proto::TaskSpec* spec,
                 std::vector<ObjectId>* temp);
  Result<ObjectId> PutBytes(const std::vector<uint8_t>& bytes, std::vector<ObjectId> nested);
  Result<Buffer> TryMaterialize(const proto::ObjectLoc& loc);
  Result<ObjectId> CreateGroup(proto::PlacementGroupSpec&& spec);
  Result<int> NextStreamItem(TaskId task, uint32_t index, int64_t timeout_ms, bool want);
  Result<detail::ClusterSnapshot> BuildSnapshot();

  // Values of small objects this process read from the head (workers only): objects never
  // change, so an actor called 10,000 times with the same small ref asks the head once.
  // Bounded (kInlineCacheBytes, oldest out first); errors are not kept.
  bool CachedInline(const std::vector<ObjectId>& ids, std::vector<Buffer>* out);
  void CacheInline(const std::vector<ObjectId>& ids, const std::vector<proto::ObjectLoc>& locs);

  ClientDeps d_;
  mutable std::mutex ref_mu_;
  IdTable<int64_t> refs_;  // this process's references, counted
  std::mutex inline_mu_;
  std::unordered_map<ObjectId, Buffer> inline_;
  std::deque<ObjectId> inline_order_;
  size_t inline_bytes_ = 0;
};

/// @brief Check a task request before it becomes a spec (each error names the bad option).
Status ValidateTaskRequest(const detail::TaskRequest& req);

}  // namespace mpiray

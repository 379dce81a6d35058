// RemoteHeadLink: the head link of a worker (or any process but the head): requests are
// messages to the head, answers come back through the router (kObjectsReady, kNamedActor,
// kActorLocation). It also routes this process's actor calls straight to the actor's worker,
// ordered per (caller, actor), registering each with the head.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

#include "fabric.h"
#include "head_link.h"

namespace mpiray {

class RemoteHeadLink final : public HeadLink {
 public:
  RemoteHeadLink(Transport& transport, ProcId self) : transport_(transport), self_(self) {}

  void AddHolder(const ObjectId& id) override;
  bool remote() const override { return true; }
  using HeadLink::RemoveHolder;
  void RemoveHolder(const std::vector<ObjectId>& ids) override;
  Status Put(proto::NewObject&& obj) override;
  Status Submit(proto::TaskSpec&& spec) override;
  Status Cancel(const ObjectId& id, bool force, bool recursive) override;
  Status KillActor(const ActorId& actor, bool no_restart) override;
  void CallRetried(const TaskId& task) override;
  Result<std::vector<proto::ObjectLoc>> Locate(const std::vector<ObjectId>& ids, size_t num_ready,
                                               int64_t timeout_ms, std::vector<bool>* ready,
                                               bool stop_on_error = false) override;
  Status CreatePlacementGroup(proto::PlacementGroupSpec&& spec) override;
  Status RemovePlacementGroup(TaskId id) override;
  void StreamWant(const ObjectId& id) override;
  Result<bool> FindNamedActor(const std::string& ns, const std::string& name, ActorId* actor,
                              Buffer* handle_meta) override;
  Result<proto::ClusterView> QueryCluster() override;
  void AddLocation(const ObjectId& id, NodeId node) override;
  Result<HeadService*> Driver(const std::string& what) override;
  void SetBlockingHook(std::function<void(bool)> hook) override { blocking_hook_ = std::move(hook); }
  void InterruptWaits(uint64_t thread, bool on) override;
  void Close(const std::string& why) override;
  /// @brief Handle kObjectsReady, kActorLocation and kNamedActor.
  void RegisterHandlers(MessageRouter& router) override;

  // The head's answers (progress thread).
  void OnObjectsReady(proto::ObjectsReady&& r);
  void OnActorLocation(const proto::ActorLocation& loc);
  void OnNamedActor(proto::NamedActor&& r);
  void OnClusterView(proto::ClusterView&& v);

 private:
  struct PendingGet {
    std::unordered_multimap<ObjectId, size_t> positions;
    std::vector<std::optional<proto::ObjectLoc>> locs;
    size_t ready = 0;
    bool stop_on_error = false;
    bool error = false;  // a ready one is an error (counts only with stop_on_error)
    uint64_t thread = 0;       // pthread_self() of the waiter
    bool interrupted = false;  // InterruptWaits: its task was cancelled
    std::condition_variable cv;
  };
  /// @brief Where this process sends its calls to one actor.
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
  void SubmitActorCall(proto::TaskSpec&& spec);
  void RouteActorCallLocked(Route& r, proto::TaskSpec&& spec);
  /// @brief The head gets the whole call (arguments too): it may have to re-send it.
  static bool WholeCall(const Route& r, const proto::TaskSpec& spec);
  /// @brief Wait for `pg` (registered as request `req`) until enough is ready.
  Status AwaitGet(PendingGet& pg, uint64_t req, size_t num_ready, int64_t timeout_ms);

  Transport& transport_;
  ProcId self_;
  std::function<void(bool)> blocking_hook_;

  std::mutex get_mu_;
  uint64_t next_req_ = 0;
  std::unordered_map<uint64_t, PendingGet*> gets_;
  bool closed_ = false;
  std::string close_reason_;

  std::mutex named_mu_;
  std::condition_variable named_cv_;
  uint64_t next_named_ = 0;
  std::map<uint64_t, std::optional<proto::NamedActor>> named_replies_;
  std::set<uint64_t> interrupted_;  // threads whose waits end at once (under get_mu_)
  std::map<uint64_t, std::optional<proto::ClusterView>> views_;  // under named_mu_

  std::mutex actor_mu_;
  std::unordered_map<ActorId, Route> routes_;
};

}  // namespace mpiray

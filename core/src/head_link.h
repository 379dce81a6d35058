// HeadLink: how a process's client reaches the head. On the head process the driver calls the
// HeadService in-process (LocalHeadLink); every other process sends messages and waits for the
// answers (RemoteHeadLink, remote_head_link.h). The client (ClientImpl) is written once against
// this interface, without asking which process it runs in.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "head.h"
#include "mpiray/core/status.h"
#include "protocol.h"
#include "router.h"

namespace mpiray {

class HeadLink {
 public:
  virtual ~HeadLink() = default;
  /// @brief Whether the head is another process (every call is a message round trip).
  virtual bool remote() const { return false; }

  /// @brief This process now holds a handle to `id` (its first one).
  virtual void AddHolder(const ObjectId& id) = 0;
  /// @brief This process let go of its last handle to each of `ids`.
  virtual void RemoveHolder(const std::vector<ObjectId>& ids) = 0;
  /// @brief The same for one id (no list to build on the driver's path).
  virtual void RemoveHolder(const ObjectId& id) { RemoveHolder(std::vector<ObjectId>{id}); }
  /// @brief Register a put object this process holds.
  virtual Status Put(proto::NewObject&& obj) = 0;
  /// @brief Register a task, actor creation or actor call (a worker's actor call also goes
  /// straight to the actor). An error the head finds later reaches the returns.
  virtual Status Submit(proto::TaskSpec&& spec) = 0;
  virtual Status Cancel(const ObjectId& id, bool force, bool recursive) = 0;
  virtual Status KillActor(const ActorId& actor, bool no_restart) = 0;
  /// @brief An actor call ran again on its instance after an application error
  /// (retry_exceptions): one try less from the call's retry budget.
  virtual void CallRetried(const TaskId& task) = 0;
  /// @brief Wait until `num_ready` of `ids` are ready (or the timeout, < 0: none); the
  /// locations of the ready ones (`ready[i]`). `stop_on_error`: also stop as soon as a
  /// ready one is an error (Get raises it without waiting for the rest, as Ray).
  virtual Result<std::vector<proto::ObjectLoc>> Locate(const std::vector<ObjectId>& ids,
                                                       size_t num_ready, int64_t timeout_ms,
                                                       std::vector<bool>* ready,
                                                       bool stop_on_error = false) = 0;
  /// @brief ray.wait: as Locate, but only `ready` matters, and of it only the first
  /// `num_ready` ready ids (in order) need be flagged.
  virtual Status WaitReady(const std::vector<ObjectId>& ids, size_t num_ready, int64_t timeout_ms,
                           std::vector<bool>* ready) {
    return Locate(ids, num_ready, timeout_ms, ready).status();
  }
  virtual Status CreatePlacementGroup(proto::PlacementGroupSpec&& spec) = 0;
  virtual Status RemovePlacementGroup(TaskId id) = 0;
  /// @brief This process waits for a streaming task's item `id` (see HeadService::StreamWant).
  virtual void StreamWant(const ObjectId& id) = 0;
  /// @brief A named actor's id and handle metadata: false when there is none.
  virtual Result<bool> FindNamedActor(const std::string& ns, const std::string& name,
                                      ActorId* actor, Buffer* handle_meta) = 0;
  /// @brief The cluster as the head sees it (nodes, processes, counters, placement groups).
  virtual Result<proto::ClusterView> QueryCluster() = 0;
  /// @brief This process's node now has a copy of `id` (fetched).
  virtual void AddLocation(const ObjectId& id, NodeId node) = 0;
  /// @brief The head itself, for what only the driver may do (`what`, e.g. "draining", names
  /// it in the error other processes get).
  virtual Result<HeadService*> Driver(const std::string& what) = 0;
  /// @brief Make the waits of thread `thread` (pthread_self()) return kCancelled (see
  /// CoreClient::InterruptWaits).
  virtual void InterruptWaits(uint64_t thread, bool on) = 0;
  /// @brief Called around a wait that may take long (a worker tells the head it is blocked).
  virtual void SetBlockingHook(std::function<void(bool blocked)> hook) = 0;
  /// @brief Fail every wait in progress (the head is gone, or shutdown).
  virtual void Close(const std::string& why) = 0;
  /// @brief Register the handlers of the head's answers (none in-process).
  virtual void RegisterHandlers(MessageRouter& router) = 0;
};

/// @brief The driver's link: direct calls into the HeadService of this process.
class LocalHeadLink final : public HeadLink {
 public:
  LocalHeadLink(HeadService& head, ProcId self, NodeId node) : head_(head), self_(self), node_(node) {}

  void AddHolder(const ObjectId& id) override { head_.AddHolder(id, self_); }
  void RemoveHolder(const std::vector<ObjectId>& ids) override {
    for (const ObjectId& id : ids) head_.RemoveHolder(id, self_);
  }
  void RemoveHolder(const ObjectId& id) override { head_.RemoveHolder(id, self_); }
  Status Put(proto::NewObject&& obj) override { return head_.Put(std::move(obj), self_); }
  Status Submit(proto::TaskSpec&& spec) override { return head_.Submit(std::move(spec), self_); }
  Status Cancel(const ObjectId& id, bool force, bool recursive) override {
    return head_.Cancel(id, force, recursive);
  }
  void CallRetried(const TaskId& task) override { head_.CallRetried(task); }
  Status KillActor(const ActorId& actor, bool no_restart) override {
    return head_.KillActor(actor, no_restart);
  }
  Result<std::vector<proto::ObjectLoc>> Locate(const std::vector<ObjectId>& ids, size_t num_ready,
                                               int64_t timeout_ms, std::vector<bool>* ready,
                                               bool stop_on_error = false) override {
    return head_.WaitLocal(ids, num_ready, timeout_ms, ready, node_, stop_on_error);
  }
  Status WaitReady(const std::vector<ObjectId>& ids, size_t num_ready, int64_t timeout_ms,
                   std::vector<bool>* ready) override {
    head_.WaitLocal(ids, num_ready, timeout_ms, ready, node_, false, /*locations=*/false);
    return Status::OK();
  }
  Status CreatePlacementGroup(proto::PlacementGroupSpec&& spec) override {
    return head_.CreatePlacementGroup(std::move(spec), self_);
  }
  Status RemovePlacementGroup(TaskId id) override { return head_.RemovePlacementGroup(id); }
  void StreamWant(const ObjectId& id) override { head_.StreamWant(id, self_); }
  Result<bool> FindNamedActor(const std::string& ns, const std::string& name, ActorId* actor,
                              Buffer* handle_meta) override {
    return head_.FindNamedActor(ns, name, actor, handle_meta);
  }
  Result<proto::ClusterView> QueryCluster() override { return head_.View(); }
  void AddLocation(const ObjectId& id, NodeId node) override { head_.AddLocation(id, node); }
  Result<HeadService*> Driver(const std::string&) override { return &head_; }
  void SetBlockingHook(std::function<void(bool)>) override {}  // the driver lends no CPU
  void InterruptWaits(uint64_t, bool) override {}  // the driver runs no task
  void Close(const std::string&) override {}  // HeadService::Close releases the waits
  void RegisterHandlers(MessageRouter&) override {}

 private:
  HeadService& head_;
  ProcId self_;
  NodeId node_;
};

}  // namespace mpiray

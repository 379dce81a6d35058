// WorkerService: runs tasks and hosts actors in a worker process. Normal tasks run on a pool of
// executor threads (the process's main thread plus helpers started when a task blocks in
// Get/Wait); each actor gets its own thread(s) and a mailbox ordered per caller.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "client.h"
#include "fabric.h"
#include "periodic_checks.h"
#include "mpiray/core/detail/language.h"
#include "mpiray/core/detail/registry.h"
#include "protocol.h"
#include "router.h"

namespace mpiray {

using detail::LanguageRuntime;

/// @brief Registry-backed C++ language runtime (exceptions become TaskError statuses).
class CppRuntime final : public LanguageRuntime {
 public:
  Status CallFunction(const std::string& name, const detail::ArgList& args,
                      detail::ResultSink& sink) override;
  Result<std::shared_ptr<void>> CreateActor(const std::string& factory,
                                            const detail::ArgList& args) override;
  Status CallMethod(void* self, const std::string& method, const detail::ArgList& args,
                    detail::ResultSink& sink) override;
};

/// @brief "std::runtime_error: message" for the exception in flight, as a Status.
Status CurrentExceptionStatus(const std::string& where);

struct WorkerIdentity {
  ProcId proc = 0;
  NodeId node = 0;
  std::string host;
  int pid = 0;
};

class WorkerService {
 public:
  WorkerService(Transport& transport, ClientImpl& client, const WorkerIdentity& id);
  ~WorkerService();

  /// @brief The task and actor running on the calling thread (nil if none).
  static TaskId CurrentTask();
  /// @brief The running streaming task yields `value` (its next item, reported at once).
  Status EmitStreamItem(const detail::SerializedValue& value);
  /// @brief detail::PutTaskItem on this worker (nil outside a task).
  Result<ObjectId> PutTaskItem(const detail::SerializedValue& value);
  /// @brief GPU devices given to the running task or actor (empty: none).
  static std::vector<int32_t> CurrentGpus();
  static ActorId CurrentActor();
  /// @brief The instance (1, then one more per restart) of the actor whose call or constructor
  /// the calling thread runs (0 outside actors).
  static uint32_t CurrentIncarnation();
  /// @brief The running call's max_retries (see detail::RuntimeContext).
  static int32_t CurrentMaxRetries();
  /// @brief Flush every language runtime's buffered output (before exit).
  void BeforeExit();
  /// @brief This process was started for one actor (actor_processes=dedicated): when that
  /// actor is destroyed, `leave(graceful)` ends the process (on a thread of its own).
  void SetActorProcess(std::function<void(bool graceful)> leave) { leave_ = std::move(leave); }

  /// @brief Handle kExecute, kActorCall, kDestroyActor and kCancelRunning.
  void RegisterHandlers(MessageRouter& router);

  // Progress-thread entry points.
  void OnExecute(proto::Execute&& ex);
  void OnActorCall(proto::TaskSpec&& spec);
  void OnDestroyActor(const ActorId& actor);
  void OnCancelRunning(const TaskId& task, bool force = false);

  /// @brief Run tasks on the calling thread until Stop().
  void RunMainExecutor();
  /// @brief Make RunMainExecutor return; queued work is dropped.
  void Stop();

  /// @brief Called by the client around long waits on executor threads.
  void OnBlockChange(bool blocked);

 private:
  struct Actor;
  class DeferredActorCall;
  void ExecLoop(bool main);
  void RunTask(proto::Execute& ex);
  void RunActorLoop(std::shared_ptr<Actor> a);
  /// @brief Run (or, for a runtime that defers its calls, start) the constructor or call in
  /// `item`; a started call takes `item` and reports itself when it finishes.
  void RunActorItem(Actor& a, std::unique_ptr<proto::Execute>& item);
  /// @brief Start the call in `item` on an instance whose calls are deferred: true when it was
  /// started (it took `item`).
  bool StartDeferred(Actor& a, std::unique_ptr<proto::Execute>& item, const detail::ArgList& args,
                     void* self);
  /// @brief The returns of a call that ended with `st` and stored `out`: those, or (on a
  /// failure, or too few values) the error's, with what it stored freed.
  std::vector<proto::NewObject> Returns(const proto::TaskSpec& spec, std::vector<proto::NewObject>&& out,
                                        Status st, const std::string& error_detail);
  void ReportDone(const proto::TaskSpec& spec, std::vector<proto::NewObject>&& returns,
                  proto::DoneStatus status);
  std::vector<proto::NewObject> ErrorReturns(const proto::TaskSpec& spec, const Status& st,
                                             const std::string& error_detail = {},
                                             const Buffer& upstream = {});
  /// @brief Run the function (or method on `self`); `*retryable` tells whether a failure may
  /// be retried by the head (application errors the task's options retry).
  std::vector<proto::NewObject> RunFunction(const proto::TaskSpec& spec, const detail::ArgList& args,
                                            void* self, bool* retryable = nullptr);
  /// @brief The arguments' values; an argument that is an error fails it (`*upstream`: that
  /// error's payload).
  /// `timeout_ms` 0: kTimeout at once when an argument is not ready (nothing waited for).
  Result<detail::ArgList> ResolveArgs(const proto::Execute& ex, Buffer* upstream = nullptr,
                                      int64_t timeout_ms = -1);
  // The argument gate (worker_gate.cpp): an actor call whose arguments are not ready steps
  // aside with the later calls of its caller, so that other callers' calls run meanwhile (as
  // in Ray, where a caller sends a call once its arguments are ready); one thread watches
  // them and puts them back at the front of the mailbox when they are.
  /// @brief Whether `item` (an actor call about to run) went to the gate (it took `item`).
  bool GateIfWaiting(Actor& a, std::unique_ptr<proto::Execute>& item);
  void GateLoop();
  /// @brief Stop the gate's thread (Stop()).
  void StopGate();
  std::string Where(const proto::TaskSpec& spec) const;
  LanguageRuntime* Lang(uint8_t language);
  void EnqueueCall(Actor& a, proto::TaskSpec&& spec);
  // A deferring actor's call started on the receiving thread (StartsHere: under a.mu, it
  // qualifies and its sequence number is taken; StartHere: after, without the lock).
  bool StartsHere(Actor& a, const proto::TaskSpec& spec);
  void StartHere(Actor& a, proto::TaskSpec&& spec, void* self);
  /// @brief Put a call into the actor's mailbox in its caller's order (under `a.mu`); false
  /// when nothing can run yet (an earlier call is on its way, or a stale instance).
  bool QueueCall(Actor& a, proto::TaskSpec&& spec);
  /// @brief Start `n` threads reserved by Actor::Dispatch or Grow; a failure to create one lowers
  /// the actor's thread limit instead of ending the process.
  void StartActorThreads(const std::shared_ptr<Actor>& a, int n);
  /// @brief Look at the actor every millisecond while calls wait in its mailbox: when none
  /// was taken for a period, add threads for them (Actor::Grow).
  void Watch(const std::shared_ptr<Actor>& a);

  Transport& transport_;
  ClientImpl& client_;
  WorkerIdentity id_;
  CppRuntime cpp_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<proto::Execute>> queue_;
  std::unordered_set<TaskId> cancelled_;
  std::unordered_set<TaskId> running_;  // normal tasks running now (force cancel)
  // Threads of each running task waiting in get/wait now (its executor and threads it
  // started); the task counts as blocked (its CPU lent) while any is.
  std::unordered_map<TaskId, int> block_counts_;
  int total_ = 1;  // executor threads (the main one included)
  int blocked_ = 0;
  bool stop_ = false;

  std::mutex actors_mu_;
  std::unordered_map<ActorId, std::shared_ptr<Actor>> actors_;
  std::unordered_map<ActorId, std::vector<proto::TaskSpec>> orphan_calls_;
  std::unordered_set<ActorId> destroyed_;
  std::function<void(bool)> leave_;  // set in a process of one actor's own
  PeriodicChecks checks_{std::chrono::milliseconds(1)};  // the actors' stall watch (Watch)

  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  std::vector<std::weak_ptr<Actor>> gated_;  // actors with calls at the gate
  std::thread gate_thread_;
  bool gate_stop_ = false;
};

}  // namespace mpiray

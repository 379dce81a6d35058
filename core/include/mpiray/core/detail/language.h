// Hooks for language bindings (Python): how a worker runs functions of another language, and
// what the current process/task is. C++ functions need none of this.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mpiray/core/detail/core_client.h"
#include "mpiray/core/detail/registry.h"
#include "mpiray/core/ids.h"
#include "mpiray/core/status.h"

namespace mpiray::detail {

struct SerializedValue;

/// @brief An actor call that a language runtime finishes later, on any thread (Python's
/// async actors: the call's coroutine runs on the actor's event loop, and the worker's thread
/// goes on to the next call instead of waiting for it).
class DeferredCall {
 public:
  virtual ~DeferredCall() = default;
  /// @brief Where the call's return values go, as CallMethod's sink (before Finish only).
  virtual ResultSink& sink() = 0;
  /// @brief The call is over: `st` is its status; on failure `error_detail` and `retryable`
  /// are what TakeErrorDetail and TakeRetryable would give. Exactly once; a DeferredCall
  /// destroyed without it fails the call.
  virtual void Finish(Status st, std::string error_detail = {}, bool retryable = false) = 0;
  /// @brief While `on`, the call is the calling thread's current task (CurrentContext: its
  /// task and actor ids, GPUs), for a runtime that starts it on a thread of its own.
  virtual void SetCurrent(bool on) { (void)on; }
};

/// @brief Runs functions, actor constructors and methods of one language in a worker.
class LanguageRuntime {
 public:
  virtual ~LanguageRuntime() = default;
  virtual Status CallFunction(const std::string& name, const ArgList& args, ResultSink& sink) = 0;
  virtual Result<std::shared_ptr<void>> CreateActor(const std::string& factory,
                                                    const ArgList& args) = 0;
  virtual Status CallMethod(void* self, const std::string& method, const ArgList& args,
                            ResultSink& sink) = 0;
  /// @brief Whether calls of actor instance `self` are started with StartMethod (and finish
  /// later) instead of run to their end by CallMethod.
  /// @brief Start method `method` on `self` and return without waiting for it: true when the
  /// runtime took `call` and will finish it (from any thread); false when it did not start it
  /// (the worker then uses CallMethod; `call` is left as it is).
  virtual bool DefersCalls(void* self) { return (void)self, false; }
  virtual bool StartMethod(void* self, const std::string& method, const ArgList& args,
                           std::unique_ptr<DeferredCall>& call) {
    (void)self, (void)method, (void)args, (void)call;
    return false;
  }
  /// @brief The process is about to exit: flush buffered output.
  virtual void BeforeExit() {}
  /// @brief A process of one actor's own ends because its actor was destroyed; `graceful`: the
  /// head ended it cleanly (out of scope), not kill(). The language runs its exit handlers
  /// (Python's atexit) when graceful or when the actor ended itself (exit_actor()).
  virtual void ActorProcessEnding(bool graceful) { (void)graceful; }
  /// @brief After a failed call on this thread: language-specific error detail to ship with
  /// the error (Python: the pickled exception), or "".
  virtual std::string TakeErrorDetail() { return {}; }
  /// @brief After a failed call on this thread: may the head run the task again (an
  /// application error its options retry, e.g. Python's retry_exceptions)? The head decides,
  /// within the task's max_retries.
  virtual bool TakeRetryable() { return false; }
  /// @brief Task `task` (a normal task running in this process, if it still is) was
  /// cancelled: interrupt it (Python: KeyboardInterrupt in the thread running it, as Ray).
  /// Called on the progress thread; must not wait for the task.
  virtual void Interrupt(const TaskId& task) { (void)task; }
};

inline constexpr uint8_t kLanguageCpp = static_cast<uint8_t>(Language::kCpp);
inline constexpr uint8_t kLanguagePython = static_cast<uint8_t>(Language::kPython);

/// @brief Make `rt` run tasks of `language` in this process (not owned; call before Init).
void RegisterLanguage(uint8_t language, LanguageRuntime* rt);
/// @brief The runtime registered for `language`, or null.
LanguageRuntime* FindLanguage(uint8_t language);

/// @brief Where the calling code runs.
struct RuntimeContext {
  std::string job_id;       // the session name
  std::string session_dir;
  ProcId proc = 0;          // the rank (0: the driver)
  NodeId node = 0;
  TaskId task;              // the task or actor call running on this thread (nil on the driver)
  ActorId actor;            // the actor this thread serves (nil outside actors)
  bool driver = false;
  std::string ns;           // the job's default namespace
  std::vector<int32_t> gpu_ids;  // GPU devices given to the running task or actor
  uint32_t incarnation = 0;  // the serving actor's instance (1: first, more: restarted; 0: none)
  // The running call's max_retries: its option (kActorDefaultRetries: none), or for an actor
  // call re-sent after a crash what is left of its budget.
  int32_t max_retries = -2;
};
/// @brief The current context (throws when not initialised).
RuntimeContext CurrentContext();
/// @brief A streaming task yields `value`: stored as its next item and reported at once (only
/// inside a task, on a worker).
void StreamEmit(const SerializedValue& value);
/// @brief An item of the running task's num_returns="dynamic" generator: stored and registered
/// as the task's next return after its declared ones, held by this process (a local ref is
/// counted), so that lineage rebuilds it as it rebuilds returns. Nil where no task runs on this
/// thread (an actor method, the driver): the caller then puts the value as any other.
ObjectId PutTaskItem(const SerializedValue& value);
/// @brief GPU devices given to the running task or actor (cheap; empty: none or not a worker).
std::vector<int32_t> CurrentGpuIds();
/// @brief The task the calling thread runs (nil outside tasks); cheaper than CurrentContext.
TaskId CurrentTaskId();

/// @brief Names the current task for worker output lines ("(name pid=..., rank=...)").
void SetOutputName(const std::string& name);
/// @brief The name last set by SetOutputName ("" if none).
std::string OutputName();

}  // namespace mpiray::detail

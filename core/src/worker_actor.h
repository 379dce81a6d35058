// A worker's state of one actor it hosts (WorkerService::Actor): its instance, mailbox and
// threads. Internal to core/src/worker*.cpp.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "worker.h"

namespace mpiray {

/// @brief The calling thread's kernel id (cached).
pid_t CurrentTid();

struct WorkerService::Actor : std::enable_shared_from_this<WorkerService::Actor> {
  ActorId id;
  std::string name;  // for output lines: the actor's class or given name
  uint8_t language = 0;
  int max_concurrency = 1;
  uint32_t incarnation = 0;  // which instance of a restartable actor this is
  std::shared_ptr<void> instance;
  bool dead = false;
  std::string error;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::unique_ptr<proto::Execute>> mailbox;  // the constructor first, then calls
  std::map<ProcId, uint64_t> next_seq;
  std::map<ProcId, std::map<uint64_t, proto::TaskSpec>> early;
  // Calls waiting for their arguments at the gate, per caller in its order (the first one's
  // arguments are not ready; the later ones wait behind it).
  std::map<ProcId, std::deque<std::unique_ptr<proto::Execute>>> gated;
  int threads = 0;      // threads serving the actor (started on demand, see Dispatch)
  int idle = 0;         // of those, waiting for a call
  int busy = 0;         // of those, running a call (the rest are starting)
  int max_threads = 1;  // min(max_concurrency, MPIRAY_MAX_ACTOR_THREADS)
  // Calls that may run at once now: 1 until the stall watch raises it (Grow), 1 again once
  // the mailbox is empty.
  int allowed = 1;
  bool waking = false;  // a thread was woken or started for the mailbox and has not taken a call
  bool watched = false;  // the worker's stall watch looks at it (WorkerService::Watch)
  uint64_t taken = 0;       // calls taken from the mailbox so far
  uint64_t taken_seen = 0;  // ... when the stall watch last looked
  int stalled = 0;          // stall-watch ticks in a row without a call taken
  std::vector<pid_t> running;  // the threads running its calls (kernel thread ids)
  bool ready = false;   // the constructor succeeded: calls may run side by side
  bool stopping = false;
  // The instance's calls are deferred (LanguageRuntime::DefersCalls): one thread starts them
  // in order, up to max_concurrency of them at once (`deferred`: started, not finished).
  bool defers = false;
  int deferred = 0;
  std::vector<int32_t> gpus;  // GPU devices given to the actor for its lifetime

  /// The calling thread ended its call (under `mu`).
  void Done() {
    --busy;
    auto it = std::find(running.begin(), running.end(), CurrentTid());
    if (it != running.end()) running.erase(it);
  }
  /// Whether a thread running a call is on a CPU or waiting for one (not blocked).
  bool AnyRunnable() const;
  /// Whether a thread may take the mailbox's next call now (under `mu`).
  bool MayTake() const { return !mailbox.empty() && deferred < max_concurrency && busy < allowed; }
  /// The calling thread took a call (under `mu`).
  void Took() {
    running.push_back(CurrentTid());
    ++busy;
    ++taken;
    waking = false;
    if (mailbox.empty()) allowed = 1;
  }
  /// A call waits in the mailbox (call under `mu`): who runs it? Only when the running calls
  /// are below `allowed` (at first: none runs) is a thread woken, or reserved in `threads` to
  /// be started (the return value). Otherwise the serving thread comes back for it: a stream
  /// of short calls runs on one thread, without the GIL hand-offs of many, and `*watch` asks
  /// the stall watch to raise `allowed` (Grow) when the mailbox stops moving (a call blocks,
  /// or waits for a later one). So max_concurrency=100000 costs nothing until calls overlap.
  /// With `wake`, an idle thread is not woken here but `*wake` set: the caller wakes it with
  /// cv.notify_one() after releasing `mu` (woken while the caller still holds it, the thread
  /// would block on the mutex at once: one more sleep and wake-up per call).
  int Dispatch(bool* watch, bool* wake = nullptr) {
    if (!ready || stopping || mailbox.empty() || deferred >= max_concurrency) return 0;
    if (busy >= allowed || waking || threads > busy + idle) {
      // (also with one thread: the watch then only mends a wake-up that was lost)
      if (!watched) watched = *watch = true;
      return 0;
    }
    waking = true;
    if (idle > 0) {
      if (wake != nullptr) {
        *wake = true;
      } else {
        cv.notify_one();
      }
      return 0;
    }
    if (threads >= max_threads) return 0;
    ++threads;
    return 1;
  }
  /// The stall watch saw no call taken for two ticks (under `mu`): every waiting call may run
  /// (up to `max_threads`); idle threads are woken and the rest reserved (the return value).
  int Grow() {
    waking = false;  // (a lost wake-up is mended here too)
    if (!ready || stopping || mailbox.empty() || deferred >= max_concurrency) return 0;
    allowed = std::max(allowed, std::min(max_threads, busy + static_cast<int>(mailbox.size())));
    int want = std::max(1, allowed - busy);
    int wake = std::min(want, idle);
    for (int i = 0; i < wake; ++i) cv.notify_one();
    int start = std::max(0, std::min(want - wake, max_threads - threads));
    threads += start;
    return start;
  }
};

}  // namespace mpiray

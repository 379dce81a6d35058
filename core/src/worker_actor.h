// A worker's state of one actor it hosts (WorkerService::Actor): its instance, mailbox and
// threads. Internal to core/src/worker*.cpp.
#pragma once

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
  int threads = 0;      // threads serving the actor (started on demand, see Dispatch)
  int idle = 0;         // of those, waiting for a call
  int busy = 0;         // of those, running a call (the rest are starting)
  int max_threads = 1;  // min(max_concurrency, MPIRAY_MAX_ACTOR_THREADS)
  bool waking = false;  // a thread was woken or started for the mailbox and has not taken a call
  bool watched = false;  // the worker's stall watch looks at it (WorkerService::Watch)
  uint64_t taken = 0;       // calls taken from the mailbox so far
  uint64_t taken_seen = 0;  // ... when the stall watch last looked
  bool ready = false;   // the constructor succeeded: calls may run side by side
  bool stopping = false;
  // The instance's calls are deferred (LanguageRuntime::DefersCalls): one thread starts them
  // in order, up to max_concurrency of them at once (`deferred`: started, not finished).
  bool defers = false;
  int deferred = 0;
  std::vector<int32_t> gpus;  // GPU devices given to the actor for its lifetime

  /// A call waits in the mailbox (call under `mu`): who runs it? Only when no thread serves
  /// the actor now is one woken, or reserved in `threads` to be started (the return value).
  /// While one serves it, that thread comes back for the call: a stream of short calls runs
  /// on one thread, without the GIL hand-offs of many, and `*watch` asks the stall watch to
  /// add threads (Grow) when the mailbox stops moving (a call blocks, or waits for another).
  /// So max_concurrency=100000 costs nothing until calls really overlap.
  int Dispatch(bool* watch) {
    if (!ready || stopping || mailbox.empty() || deferred >= max_concurrency) return 0;
    if (busy > 0 || waking || threads > busy + idle) {
      // (also with one thread: the watch then only mends a wake-up that was lost)
      if (!watched) watched = *watch = true;
      return 0;
    }
    waking = true;
    if (idle > 0) {
      cv.notify_one();
      return 0;
    }
    if (threads >= max_threads) return 0;
    ++threads;
    return 1;
  }
  /// The stall watch saw no call taken for a period (under `mu`): a thread for each waiting
  /// call up to `max_threads`, idle ones woken and the rest reserved (the return value).
  int Grow() {
    if (!ready || stopping || deferred >= max_concurrency) return 0;
    int want = std::min(static_cast<int>(mailbox.size()), max_threads - busy);
    int wake = std::max(0, std::min(want, idle));
    for (int i = 0; i < wake; ++i) cv.notify_one();
    int start = std::max(0, std::min(want - wake, max_threads - threads));
    threads += start;
    return start;
  }
};

}  // namespace mpiray

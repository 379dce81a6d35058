// Failure detection for one member of a group (internal): whether the other members are alive,
// whether one of them reported a failure, whether the current operation ran out of time. Every
// wait loop of the ucx backend goes through Health::Wait, so a dead member turns every pending
// operation into an error within about a tenth of a second on the same host (and as soon as
// UCX notices across hosts) instead of a hang.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "mpiray/core/status.h"

namespace mpiray::collective::detail {

using Clock = std::chrono::steady_clock;

/// @brief A process, as other processes on its host can recognise it (pid plus start time, so
/// that a reused pid is not mistaken for the member).
struct ProcessIdentity {
  int pid = 0;
  uint64_t start_time = 0;  // /proc/<pid>/stat field 22 (clock ticks since boot)
  std::string host;         // hostname + boot id: equal means "same kernel"
};

/// @brief This process.
ProcessIdentity SelfIdentity();
/// @brief Whether `who` (on this host) still runs: not gone, not a zombie, same start time.
bool ProcessAlive(const ProcessIdentity& who);

/// @brief A member of the group as Health knows it.
struct PeerProcess {
  int rank = 0;
  ProcessIdentity id;
  bool same_host = false;
  std::string where;  // "pid 123 on host x, node 2", for messages
};

/// @brief The pause in a wait loop: spin, then yield the CPU, then sleep (an oversubscribed
/// node must not burn the cores its peers need).
class Backoff {
 public:
  /// @brief `spin`: busy-wait iterations before yielding (see SpinIterations).
  explicit Backoff(uint32_t spin = 512, uint32_t yields = 4096) : spin_(spin), yields_(yields) {}
  /// @brief `sleep` is called once spinning and yielding gave nothing for a while; it should
  /// block for at most about a millisecond (a futex wait, a poll on an event fd).
  void Pause(const std::function<void()>& sleep = nullptr);
  void Reset() { iter_ = 0; }

 private:
  uint32_t spin_;
  uint32_t yields_;
  uint64_t iter_ = 0;
};

/// @brief Yields before a waiter sleeps when `busy` processes share this process's CPUs: 32
/// when they outnumber the CPUs (blocked waiters let the scheduler run exactly the members that
/// have work), 4096 otherwise. MPIRAY_COLLECTIVE_YIELDS overrides.
uint32_t YieldIterations(int busy);

/// @brief How long to spin before yielding when `busy` processes share this process's CPUs:
/// 0 when they outnumber the CPUs (a spinning waiter only delays the peer it waits for, as
/// Open MPI's yield_when_idle), a short spin otherwise. MPIRAY_COLLECTIVE_SPIN overrides.
uint32_t SpinIterations(int busy);

/// @brief Sticky failure state and the checks behind it.
class Health {
 public:
  Health(std::string group, int rank, int64_t timeout_ms, std::vector<PeerProcess> peers);

  /// @brief Hooks of the transports: `poll` reports a failure the transport saw (a peer's abort
  /// message, a dead endpoint); `propagate` tells the other members about ours.
  void SetTransportHooks(std::function<Status()> poll, std::function<void(const Status&)> propagate);

  /// @brief OK, or the failure that broke the group.
  Status broken() const;
  /// @brief Record `st` as the group's failure (first one wins), tell the other members, and
  /// return the recorded one.
  Status Fail(const Status& st);

  /// @brief Wait until `ready()` is true. Fails when the group breaks, a member dies, or the
  /// operation `what` takes longer than the timeout (counted from `start`). `sleep` (if given)
  /// blocks briefly once spinning and yielding found nothing.
  Status Wait(const std::function<bool()>& ready, const char* what, Clock::time_point start,
              const std::function<void()>& sleep = nullptr, uint32_t spin = 512, uint32_t yields = 4096);
  /// @brief The checks of one wait iteration without the predicate (liveness, transports).
  Status Check(const char* what, Clock::time_point start, bool force_liveness);

  const std::string& group() const { return group_; }
  int rank() const { return rank_; }
  /// @brief "pid 123 on host x, node 2" for `rank`.
  std::string Where(int rank) const;

 private:
  std::string group_;
  int rank_;
  int64_t timeout_ms_;
  std::vector<PeerProcess> peers_;
  Clock::time_point last_liveness_{};
  std::function<Status()> poll_;
  std::function<void(const Status&)> propagate_;
  mutable std::mutex mu_;
  Status broken_;
  std::atomic<bool> is_broken_{false};
};

}  // namespace mpiray::collective::detail

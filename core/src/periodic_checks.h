// Checks run every `period` on a thread of their own while any is registered (the worker's
// watch over actor mailboxes that stall).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mpiray {

class PeriodicChecks {
 public:
  explicit PeriodicChecks(std::chrono::microseconds period) : period_(period) {}
  ~PeriodicChecks() { Stop(); }
  PeriodicChecks(const PeriodicChecks&) = delete;
  PeriodicChecks& operator=(const PeriodicChecks&) = delete;

  /// @brief Run `check` every period until it returns false. The thread starts on the first
  /// Add and sleeps without a timeout while nothing is registered. Checks run one at a time,
  /// under the registry's lock: a check must not call Add.
  void Add(std::function<bool()> check);
  /// @brief Ends the thread (checks still registered are dropped); idempotent.
  void Stop();

 private:
  void Loop();

  const std::chrono::microseconds period_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::function<bool()>> checks_;
  std::thread thread_;
  bool stop_ = false;
};

}  // namespace mpiray

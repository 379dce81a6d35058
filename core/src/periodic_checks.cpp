#include "periodic_checks.h"

#include <exception>

#include "log.h"

namespace mpiray {

void PeriodicChecks::Add(std::function<bool()> check) {
  std::lock_guard<std::mutex> lk(mu_);
  if (stop_) return;
  checks_.push_back(std::move(check));
  if (!thread_.joinable()) {
    try {
      thread_ = std::thread([this] { Loop(); });
    } catch (const std::exception& e) {  // out of threads: the checks wait for the next Add
      MPIRAY_LOG(warn, "cannot start the periodic-check thread: {}", e.what());
      return;
    }
  }
  cv_.notify_one();
}

void PeriodicChecks::Stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    checks_.clear();
    cv_.notify_all();
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void PeriodicChecks::Loop() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    if (checks_.empty()) {
      cv_.wait(lk);
      continue;
    }
    cv_.wait_for(lk, period_);
    if (stop_) break;
    for (size_t i = 0; i < checks_.size();) {
      bool keep = false;
      try {
        keep = checks_[i]();
      } catch (const std::exception& e) {  // nothing escapes this thread
        MPIRAY_LOG(error, "a periodic check failed: {}", e.what());
      }
      if (keep) {
        ++i;
      } else {
        checks_[i] = std::move(checks_.back());
        checks_.pop_back();
      }
    }
  }
}

}  // namespace mpiray

// The core benchmark (`mpiray bench core`): prints one JSON object on stdout.
#pragma once

#include <cstdint>

namespace mpiray::bench {

struct CoreOptions {
  int tasks = 100000;           // tasks_async / actor_calls_async workload
  int rtt_iters = 2000;         // round trips for the latency percentiles
  uint64_t big_bytes = 1ull << 30;  // the "1gib" objects
  uint64_t spill_bytes = 1ull << 30;  // spilled and restored in 64 MiB objects (0 skips)
  int queue_tasks = 1000000;    // queued-before-running tasks (0 skips)
  int idle_ms = 2000;           // idle CPU measurement window
  bool verbose = false;
};

/// @brief Initialise mpiray, run every measurement, print JSON, shut down. Returns 0 on success.
int RunCore(const CoreOptions& options);

}  // namespace mpiray::bench

// Standalone core benchmark: same as `mpiray bench core`.
#include <cstdlib>

#include "core_bench.h"

int main() {
  mpiray::bench::CoreOptions o;
  if (const char* q = std::getenv("MPIRAY_BENCH_QUICK"); q && *q == '1') {
    o.tasks = 20000;
    o.big_bytes = 64ull << 20;
    o.spill_bytes = 256ull << 20;
    o.queue_tasks = 100000;
    o.idle_ms = 500;
  }
  return mpiray::bench::RunCore(o);
}

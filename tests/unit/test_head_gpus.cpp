// Unit tests of the head's GPU allocator (core/src/head/gpu_allocator.*), alone.
#include <catch2/catch.hpp>

#include <vector>

#include "head/gpu_allocator.h"
#include "protocol.h"

using mpiray::TaskId;
using mpiray::head::GpuAllocator;
using Holder = GpuAllocator::Holder;

namespace {
constexpr int64_t kUnit = mpiray::proto::kResourceUnit;
}

TEST_CASE("GpuAllocator gives whole devices, the least used first", "[head][gpus]") {
  GpuAllocator g;
  g.SetDevices(0, 4);
  auto a = g.Grant(Holder::kTask, TaskId::Make(0, 1), 0, 2 * kUnit);
  CHECK(a == std::vector<int32_t>{0, 1});
  auto b = g.Grant(Holder::kTask, TaskId::Make(0, 2), 0, kUnit);
  CHECK(b == std::vector<int32_t>{2});
  g.Release(Holder::kTask, TaskId::Make(0, 1));
  auto c = g.Grant(Holder::kActor, TaskId::Make(0, 3), 0, 3 * kUnit);
  CHECK(c == std::vector<int32_t>{0, 1, 3});
}

TEST_CASE("GpuAllocator packs fractions onto the fullest device with room", "[head][gpus]") {
  GpuAllocator g;
  g.SetDevices(0, 2);
  auto a = g.Grant(Holder::kTask, TaskId::Make(0, 1), 0, kUnit / 2);
  auto b = g.Grant(Holder::kTask, TaskId::Make(0, 2), 0, kUnit / 4);
  CHECK(a == b);  // the half-used device still has room: fractions share it
  auto c = g.Grant(Holder::kTask, TaskId::Make(0, 3), 0, kUnit / 2);
  CHECK(c != a);  // no room left on it
}

TEST_CASE("GpuAllocator gives a retried holder fresh devices and forgets released ones",
          "[head][gpus]") {
  GpuAllocator g;
  g.SetDevices(0, 1);
  TaskId t = TaskId::Make(0, 1);
  CHECK(g.Grant(Holder::kTask, t, 0, kUnit) == std::vector<int32_t>{0});
  // A second grant to the same task (a retry) first gives the first one back.
  CHECK(g.Grant(Holder::kTask, t, 0, kUnit) == std::vector<int32_t>{0});
  g.Release(Holder::kTask, t);
  g.Release(Holder::kTask, t);  // twice is harmless
  // Task and actor grants are kept apart: releasing a task's does not touch an actor's.
  CHECK(g.Grant(Holder::kActor, t, 0, kUnit) == std::vector<int32_t>{0});
  g.Release(Holder::kTask, t);
  CHECK(g.Grant(Holder::kTask, TaskId::Make(0, 2), 0, kUnit / 2) == std::vector<int32_t>{0});
}

TEST_CASE("GpuAllocator: no devices, no ids; Amount reads the GPU part of a request",
          "[head][gpus]") {
  GpuAllocator g;
  CHECK(g.Grant(Holder::kTask, TaskId::Make(0, 1), 7, kUnit).empty());
  CHECK(GpuAllocator::Amount({{0, kUnit}, {1, 3 * kUnit / 2}}) == 3 * kUnit / 2);
  CHECK(GpuAllocator::Amount({{0, kUnit}}) == 0);
}

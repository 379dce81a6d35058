// Unit tests of mpiray::Scheduler: shapes, feasibility, placement, leases and actors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "protocol.h"
#include "scheduler.h"

using mpiray::kNoNode;
using mpiray::kNoProc;
using mpiray::NodeId;
using mpiray::ProcId;
using mpiray::ResourceVector;
using mpiray::SchedItem;
using mpiray::Scheduler;
using mpiray::StatusCode;

namespace {

constexpr int64_t kUnit = mpiray::proto::kResourceUnit;

// Totals for a node: CPU, GPU (and memory) in whole units.
ResourceVector Totals(int64_t cpus, int64_t gpus = 0) {
  ResourceVector v(3, 0);
  v[0] = cpus * kUnit;
  v[1] = gpus * kUnit;
  return v;
}

uint32_t ShapeOf(Scheduler& s, const mpiray::proto::Resources& r) {
  auto shape = s.Shape(r);
  REQUIRE(shape.ok());
  return *shape;
}

Scheduler::NodeView NodeOf(const Scheduler& s, NodeId node) {
  for (auto& v : s.Nodes()) {
    if (v.node == node) return v;
  }
  FAIL("node " << node << " not found");
  return {};
}

int64_t AvailableCpu(const Scheduler& s, NodeId node) { return NodeOf(s, node).available[0]; }

// Items live in a deque so that their addresses stay stable.
std::vector<SchedItem*> MakeItems(std::deque<SchedItem>& store, size_t n, uint32_t shape,
                                  NodeId preferred = kNoNode) {
  std::vector<SchedItem*> out;
  for (size_t i = 0; i < n; ++i) {
    store.emplace_back();
    store.back().shape = shape;
    store.back().preferred = preferred;
    out.push_back(&store.back());
  }
  return out;
}

std::vector<Scheduler::Assignment> RunSchedule(Scheduler& s) {
  std::vector<Scheduler::Assignment> out;
  s.Schedule(&out);
  return out;
}

}  // namespace

TEST_CASE("Shape interns equal requests to one id", "[scheduler]") {
  Scheduler s(4);
  uint32_t a = ShapeOf(s, {{"CPU", kUnit}, {"GPU", kUnit}});
  uint32_t b = ShapeOf(s, {{"GPU", kUnit}, {"CPU", kUnit}});  // order does not matter
  uint32_t c = ShapeOf(s, {{"CPU", 2 * kUnit}});
  CHECK(a == b);
  CHECK(a != c);
  // Zero amounts are dropped, so {CPU: 0} is the empty shape.
  uint32_t empty = ShapeOf(s, {});
  CHECK(ShapeOf(s, {{"CPU", 0}}) == empty);
  CHECK(s.ShapeRequest(empty).empty());
  // The request is stored sorted by resource index with its fixed-point amounts.
  const auto& req = s.ShapeRequest(a);
  REQUIRE(req.size() == 2);
  CHECK(req[0] == std::make_pair(uint32_t{0}, kUnit));
  CHECK(req[1] == std::make_pair(uint32_t{1}, kUnit));
  // Custom resource names are interned after the built-in ones.
  CHECK(s.names().Find("licence") == -1);
  uint32_t custom = ShapeOf(s, {{"licence", kUnit / 2}});
  CHECK(s.names().Find("licence") >= 3);
  CHECK(s.ShapeRequest(custom).at(0).second == kUnit / 2);
}

TEST_CASE("Shape rejects negative amounts, duplicate and empty names", "[scheduler]") {
  Scheduler s(4);
  auto neg = s.Shape({{"CPU", -1}});
  REQUIRE_FALSE(neg.ok());
  CHECK(neg.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(neg.status().message(), Catch::Contains("CPU"));

  auto dup = s.Shape({{"GPU", kUnit}, {"GPU", 2 * kUnit}});
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(dup.status().message(), Catch::Contains("GPU") && Catch::Contains("twice"));

  auto unnamed = s.Shape({{"", kUnit}});
  REQUIRE_FALSE(unnamed.ok());
  CHECK(unnamed.status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("CheckFeasible explains an infeasible request", "[scheduler]") {
  Scheduler s(4);
  s.AddNode(0, Totals(2));
  s.AddWorker(1, 0);
  s.AddNode(1, Totals(4));
  s.AddWorker(2, 1);

  CHECK(s.CheckFeasible(ShapeOf(s, {{"CPU", 4 * kUnit}})).ok());  // node 1 can
  CHECK(s.CheckFeasible(ShapeOf(s, {})).ok());

  auto st = s.CheckFeasible(ShapeOf(s, {{"GPU", kUnit}}));
  REQUIRE_FALSE(st.ok());
  CHECK(st.code() == StatusCode::kInfeasible);
  CHECK_THAT(st.message(), Catch::Contains("{GPU: 1}"));
  CHECK_THAT(st.message(), Catch::Contains("node 0 {CPU: 2}"));
  CHECK_THAT(st.message(), Catch::Contains("node 1 {CPU: 4}"));

  auto big = s.CheckFeasible(ShapeOf(s, {{"CPU", 5 * kUnit}}));
  CHECK(big.code() == StatusCode::kInfeasible);
  CHECK_THAT(big.message(), Catch::Contains("{CPU: 5}"));
}

TEST_CASE("CheckFeasible ignores nodes without workers", "[scheduler]") {
  Scheduler s(4);
  s.AddNode(0, Totals(8, 1));  // resources but nobody to run tasks there
  uint32_t gpu = ShapeOf(s, {{"GPU", kUnit}});
  CHECK(s.CheckFeasible(gpu).code() == StatusCode::kInfeasible);
  s.AddWorker(1, 0);
  CHECK(s.CheckFeasible(gpu).ok());
}

TEST_CASE("Schedule prefers idle workers over pipelining", "[scheduler]") {
  Scheduler s(4);
  s.AddNode(0, Totals(2));
  s.AddWorker(1, 0);
  s.AddWorker(2, 0);
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  std::deque<SchedItem> store;
  auto items = MakeItems(store, 8, cpu1);
  for (auto* it : items) s.Enqueue(it);
  auto out = RunSchedule(s);
  // The second item could have been pipelined onto the first worker (backlog 7, limit 4), but
  // an idle worker with room on its node comes first.
  REQUIRE(out.size() >= 2);
  CHECK(out[0].first == items[0]);
  CHECK(out[1].first == items[1]);
  CHECK(out[0].second != out[1].second);
  std::map<ProcId, int> per;
  for (auto& [item, w] : out) {
    CHECK(item->worker == w);
    CHECK_FALSE(item->queued);
    ++per[w];
  }
  CHECK(per.size() == 2);
  for (auto& [w, n] : per) CHECK(n <= 4);
  CHECK(s.queued() == items.size() - out.size());
}

TEST_CASE("Schedule pipelines no more than the per-worker limit", "[scheduler]") {
  Scheduler s(2);
  s.AddNode(0, Totals(1));
  s.AddWorker(7, 0);
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  std::deque<SchedItem> store;
  auto items = MakeItems(store, 5, cpu1);
  for (auto* it : items) s.Enqueue(it);

  auto out = RunSchedule(s);
  REQUIRE(out.size() == 2);  // one running plus one pipelined under the same lease
  CHECK(out[0].second == 7);
  CHECK(out[1].second == 7);
  CHECK(s.queued() == 3);
  CHECK(AvailableCpu(s, 0) == 0);  // the lease holds one CPU, not two
  CHECK(RunSchedule(s).empty());   // full until something finishes

  s.Finished(items[0]);
  CHECK(items[0]->worker == kNoProc);
  CHECK(AvailableCpu(s, 0) == 0);  // items[1] still rides the lease
  auto more = RunSchedule(s);
  REQUIRE(more.size() == 1);
  CHECK(more[0].first == items[2]);
  CHECK(s.queued() == 2);
}

TEST_CASE("Resources are acquired while a task runs and released when it finishes",
          "[scheduler]") {
  Scheduler s(1);  // no pipelining
  s.AddNode(0, Totals(2));
  s.AddWorker(1, 0);
  s.AddWorker(2, 0);
  uint32_t cpu2 = ShapeOf(s, {{"CPU", 2 * kUnit}});
  std::deque<SchedItem> store;
  auto items = MakeItems(store, 2, cpu2);
  s.Enqueue(items[0]);
  s.Enqueue(items[1]);

  auto out = RunSchedule(s);
  REQUIRE(out.size() == 1);  // the node has room for one {CPU: 2} at a time
  CHECK(out[0].first == items[0]);
  CHECK(AvailableCpu(s, 0) == 0);
  CHECK(items[1]->queued);
  CHECK(RunSchedule(s).empty());

  s.Finished(items[0]);
  CHECK(AvailableCpu(s, 0) == 2 * kUnit);
  out = RunSchedule(s);
  REQUIRE(out.size() == 1);
  CHECK(out[0].first == items[1]);
  CHECK(AvailableCpu(s, 0) == 0);
  s.Finished(items[1]);
  CHECK(AvailableCpu(s, 0) == 2 * kUnit);
  CHECK(s.queued() == 0);
}

TEST_CASE("Schedule prefers the node holding the arguments", "[scheduler]") {
  Scheduler s(4);
  s.AddNode(0, Totals(1));
  s.AddWorker(1, 0);
  s.AddNode(1, Totals(1));
  s.AddWorker(2, 1);
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  std::deque<SchedItem> store;

  SECTION("an idle worker on the preferred node is chosen") {
    auto items = MakeItems(store, 1, cpu1, /*preferred=*/1);
    s.Enqueue(items[0]);
    auto out = RunSchedule(s);
    REQUIRE(out.size() == 1);
    CHECK(out[0].second == 2);
    CHECK(AvailableCpu(s, 1) == 0);
    CHECK(AvailableCpu(s, 0) == kUnit);
  }
  SECTION("without a preference the first node is used") {
    auto items = MakeItems(store, 1, cpu1);
    s.Enqueue(items[0]);
    auto out = RunSchedule(s);
    REQUIRE(out.size() == 1);
    CHECK(out[0].second == 1);
  }
  SECTION("a busy preferred node falls back to another node") {
    auto first = MakeItems(store, 1, cpu1, 1);
    s.Enqueue(first[0]);
    REQUIRE(RunSchedule(s).size() == 1);
    auto second = MakeItems(store, 1, cpu1, 1);
    s.Enqueue(second[0]);
    auto out = RunSchedule(s);
    REQUIRE(out.size() == 1);
    CHECK(out[0].second == 1);
  }
}

TEST_CASE("A blocked task gives its lease back and re-acquires it when unblocked",
          "[scheduler]") {
  Scheduler s(1);
  s.AddNode(0, Totals(1));
  s.AddWorker(1, 0);
  s.AddWorker(2, 0);
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  std::deque<SchedItem> store;
  auto items = MakeItems(store, 2, cpu1);
  s.Enqueue(items[0]);
  s.Enqueue(items[1]);

  auto out = RunSchedule(s);
  REQUIRE(out.size() == 1);
  ProcId first_worker = out[0].second;
  CHECK(AvailableCpu(s, 0) == 0);
  CHECK(RunSchedule(s).empty());

  s.Blocked(items[0]);  // e.g. the task calls Get on a nested task's result
  CHECK(items[0]->blocked);
  CHECK(AvailableCpu(s, 0) == kUnit);
  out = RunSchedule(s);
  REQUIRE(out.size() == 1);
  CHECK(out[0].first == items[1]);
  CHECK(out[0].second != first_worker);
  CHECK(AvailableCpu(s, 0) == 0);

  s.Unblocked(items[0]);  // takes its share again (briefly oversubscribing, as Ray does)
  CHECK_FALSE(items[0]->blocked);
  CHECK(AvailableCpu(s, 0) == -kUnit);
  s.Finished(items[1]);
  CHECK(AvailableCpu(s, 0) == 0);
  s.Finished(items[0]);
  CHECK(AvailableCpu(s, 0) == kUnit);
}

TEST_CASE("Dequeue drops a queued item", "[scheduler]") {
  Scheduler s(4);
  s.AddNode(0, Totals(4));
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  std::deque<SchedItem> store;
  auto items = MakeItems(store, 2, cpu1);
  s.Enqueue(items[0]);
  s.Enqueue(items[1]);
  CHECK(s.queued() == 2);
  CHECK(RunSchedule(s).empty());  // no worker yet

  CHECK(s.Dequeue(items[0]));
  CHECK_FALSE(items[0]->queued);
  CHECK(s.queued() == 1);
  CHECK_FALSE(s.Dequeue(items[0]));  // not queued any more
  CHECK(s.queued() == 1);

  s.AddWorker(1, 0);
  auto out = RunSchedule(s);
  REQUIRE(out.size() == 1);
  CHECK(out[0].first == items[1]);
  CHECK(items[0]->worker == kNoProc);
  CHECK(s.queued() == 0);
  CHECK_FALSE(s.Dequeue(items[1]));  // dispatched, not queued
}

TEST_CASE("A dequeued item may be freed at once: Schedule never reads it again", "[scheduler]") {
  // A cancelled task's record (which embeds its SchedItem) is destroyed right after Dequeue.
  Scheduler s(4);
  s.AddNode(0, Totals(1));
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  std::vector<std::unique_ptr<SchedItem>> owned;
  for (int i = 0; i < 3; ++i) {
    owned.push_back(std::make_unique<SchedItem>());
    owned.back()->shape = cpu1;
    s.Enqueue(owned.back().get());
  }
  CHECK(s.Dequeue(owned[1].get()));
  owned[1].reset();  // freed, as the head frees a cancelled task (ASan reports any later read)
  s.AddWorker(1, 0);
  auto out = RunSchedule(s);
  REQUIRE(out.size() == 1);
  CHECK(out[0].first == owned[0].get());
  s.Finished(owned[0].get());
  out = RunSchedule(s);
  REQUIRE(out.size() == 1);
  CHECK(out[0].first == owned[2].get());
  CHECK(s.queued() == 0);
}

TEST_CASE("Expected workers keep requests feasible while a node has none", "[scheduler]") {
  Scheduler s(4);
  s.AddNode(0, Totals(1));
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  CHECK(s.CheckFeasible(cpu1).code() == StatusCode::kInfeasible);  // no worker at all
  s.ExpectWorkers(1);  // a replacement is on its way
  CHECK(s.CheckFeasible(cpu1).ok());
  CHECK(s.HasOrExpectsWorkers());
  s.AddWorker(1, 0);  // it joined: nothing expected any more
  s.RemoveWorker(1);
  CHECK(s.CheckFeasible(cpu1).code() == StatusCode::kInfeasible);
  CHECK_FALSE(s.HasOrExpectsWorkers());
}

TEST_CASE("PlaceActor without hold takes no resources and spreads actors", "[scheduler]") {
  Scheduler s(4);
  s.AddNode(0, Totals(1));
  s.AddWorker(1, 0);
  s.AddWorker(2, 0);
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  ProcId a = s.PlaceActor(cpu1, false);
  ProcId b = s.PlaceActor(cpu1, false);
  CHECK(a != kNoProc);
  CHECK(b != kNoProc);
  CHECK(a != b);  // fewest actors first
  CHECK(AvailableCpu(s, 0) == kUnit);
  // A third one still finds a worker although nothing is free.
  CHECK(s.PlaceActor(cpu1, false) != kNoProc);
}

TEST_CASE("PlaceActor with hold acquires resources for the actor's lifetime", "[scheduler]") {
  Scheduler s(4);
  s.AddNode(0, Totals(1));
  s.AddWorker(1, 0);
  s.AddWorker(2, 0);
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  ProcId a = s.PlaceActor(cpu1, true);
  REQUIRE(a != kNoProc);
  CHECK(AvailableCpu(s, 0) == 0);
  CHECK(s.PlaceActor(cpu1, true) == kNoProc);  // no room right now

  // A normal task cannot get the CPU either.
  std::deque<SchedItem> store;
  auto items = MakeItems(store, 1, cpu1);
  s.Enqueue(items[0]);
  CHECK(RunSchedule(s).empty());

  s.ReleaseActor(a, cpu1, true);
  CHECK(AvailableCpu(s, 0) == kUnit);
  CHECK(RunSchedule(s).size() == 1);
  CHECK(s.PlaceActor(cpu1, true) == kNoProc);  // the task holds it now
  s.Finished(items[0]);
  CHECK(s.PlaceActor(cpu1, true) != kNoProc);
}

TEST_CASE("PlaceActor spreads over nodes, not only over workers, and honours a preferred node",
          "[scheduler]") {
  Scheduler s(4);
  s.AddNode(0, Totals(1));
  s.AddNode(1, Totals(2));
  s.AddNode(2, Totals(1));
  s.AddWorker(1, 0);
  s.AddWorker(2, 1);
  s.AddWorker(3, 1);
  s.AddWorker(4, 2);
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  std::vector<ProcId> placed;
  for (int i = 0; i < 3; ++i) placed.push_back(s.PlaceActor(cpu1, true, kNoNode, /*spread=*/true));
  // One per node: workers 1 (node 0), 2 or 3 (node 1), 4 (node 2).
  CHECK(std::count(placed.begin(), placed.end(), 1) == 1);
  CHECK(std::count(placed.begin(), placed.end(), 4) == 1);
  CHECK((std::count(placed.begin(), placed.end(), 2) + std::count(placed.begin(), placed.end(), 3)) == 1);
  // A preferred node with room wins over emptier ones.
  Scheduler t(4);
  t.AddNode(0, Totals(2));
  t.AddNode(1, Totals(2));
  t.AddWorker(1, 0);
  t.AddWorker(2, 1);
  uint32_t one = ShapeOf(t, {{"CPU", kUnit}});
  CHECK(t.PlaceActor(one, true, 1) == 2);
  CHECK(t.PlaceActor(one, true, 1) == 2);
  CHECK(t.PlaceActor(one, true, 1) == 1);  // node 1 is full: anywhere else (soft)
}

TEST_CASE("An actor's held resources come back when its worker was removed before the release",
          "[scheduler]") {
  // The head removes a dead worker first (membership), then releases each actor it hosted.
  Scheduler s(4);
  s.AddNode(0, Totals(2));
  s.AddWorker(1, 0);
  s.AddWorker(2, 0);
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  ProcId a = s.PlaceActor(cpu1, true);
  ProcId b = s.PlaceActor(cpu1, true);
  REQUIRE(a != kNoProc);
  REQUIRE(b != kNoProc);
  CHECK(AvailableCpu(s, 0) == 0);
  s.RemoveWorker(a);
  s.ReleaseActor(a, cpu1, true);
  CHECK(AvailableCpu(s, 0) == kUnit);
  s.ReleaseActor(a, cpu1, true);  // a second release of that worker gives nothing more
  CHECK(AvailableCpu(s, 0) == kUnit);
  // A replacement worker can host an actor asking for that CPU again.
  s.AddWorker(3, 0);
  CHECK(s.PlaceActor(cpu1, true) == 3);
  CHECK(AvailableCpu(s, 0) == 0);
}

TEST_CASE("Releasing an actor of a removed node does not bring the node back", "[scheduler]") {
  Scheduler s(4);
  s.AddNode(0, Totals(1));
  s.AddWorker(1, 0);
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  REQUIRE(s.PlaceActor(cpu1, true) == 1);
  s.RemoveWorker(1);
  s.RemoveNode(0);
  s.ReleaseActor(1, cpu1, true);
  CHECK(s.PlaceActor(cpu1, true) == kNoProc);
  CHECK_FALSE(s.CheckFeasible(cpu1).ok());
}

TEST_CASE("PlaceActor finds no worker in an empty cluster", "[scheduler]") {
  Scheduler s(4);
  uint32_t none = ShapeOf(s, {});
  CHECK(s.PlaceActor(none, false) == kNoProc);
  s.AddNode(0, Totals(1));
  CHECK(s.PlaceActor(none, false) == kNoProc);
  s.AddWorker(3, 0);
  CHECK(s.PlaceActor(none, false) == 3);
}

TEST_CASE("RemoveWorker releases what the worker held", "[scheduler]") {
  Scheduler s(4);
  s.AddNode(0, Totals(1));
  s.AddWorker(1, 0);
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  std::deque<SchedItem> store;
  auto items = MakeItems(store, 2, cpu1);
  s.Enqueue(items[0]);
  REQUIRE(RunSchedule(s).size() == 1);
  CHECK(AvailableCpu(s, 0) == 0);
  CHECK(s.num_workers() == 1);

  s.RemoveWorker(1);
  CHECK(s.num_workers() == 0);
  CHECK(AvailableCpu(s, 0) == kUnit);
  CHECK(NodeOf(s, 0).workers.empty());

  s.AddWorker(2, 0);
  s.Enqueue(items[1]);
  auto out = RunSchedule(s);
  REQUIRE(out.size() == 1);
  CHECK(out[0].first == items[1]);
  CHECK(out[0].second == 2);
  // Finishing the dead worker's item later must not release anything twice.
  s.Finished(items[0]);
  CHECK(AvailableCpu(s, 0) == 0);
}

TEST_CASE("AddNode on a known node changes totals but keeps what is in use", "[scheduler]") {
  Scheduler s(4);
  s.AddNode(0, Totals(2));
  s.AddWorker(1, 0);
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  std::deque<SchedItem> store;
  auto items = MakeItems(store, 1, cpu1);
  s.Enqueue(items[0]);
  REQUIRE(RunSchedule(s).size() == 1);
  CHECK(AvailableCpu(s, 0) == kUnit);
  s.AddNode(0, Totals(4));
  CHECK(NodeOf(s, 0).total[0] == 4 * kUnit);
  CHECK(AvailableCpu(s, 0) == 3 * kUnit);
}

TEST_CASE("A task unblocked onto another shape's lease holds its own resources", "[scheduler]") {
  Scheduler s(4);
  s.AddNode(0, Totals(3));
  s.AddWorker(1, 0);
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  uint32_t cpu2 = ShapeOf(s, {{"CPU", 2 * kUnit}});
  std::deque<SchedItem> store;
  SchedItem* a = MakeItems(store, 1, cpu1)[0];
  SchedItem* b = MakeItems(store, 1, cpu2)[0];

  s.Enqueue(a);
  REQUIRE(RunSchedule(s).size() == 1);
  CHECK(AvailableCpu(s, 0) == 2 * kUnit);
  s.Blocked(a);
  CHECK(AvailableCpu(s, 0) == 3 * kUnit);
  s.Blocked(a);  // a second report changes nothing
  CHECK(AvailableCpu(s, 0) == 3 * kUnit);

  // The worker only has a blocked task, so it counts as idle and takes another shape.
  s.Enqueue(b);
  auto out = RunSchedule(s);
  REQUIRE(out.size() == 1);
  CHECK(out[0].second == 1);
  CHECK(AvailableCpu(s, 0) == kUnit);

  s.Unblocked(a);
  CHECK(a->private_hold);
  CHECK(AvailableCpu(s, 0) == 0);
  s.Finished(a);
  CHECK_FALSE(a->private_hold);
  CHECK(AvailableCpu(s, 0) == kUnit);
  s.Finished(b);
  CHECK(AvailableCpu(s, 0) == 3 * kUnit);
}

TEST_CASE("A blocked task lends only its CPUs; memory, GPUs and custom resources stay held",
          "[scheduler]") {
  Scheduler s(4);
  ResourceVector totals = Totals(2, 1);
  totals[2] = 1000 * kUnit;  // memory
  s.AddNode(0, totals);
  s.AddWorker(1, 0);
  s.AddWorker(2, 0);
  s.AddWorker(3, 0);
  auto avail = [&](int i) { return NodeOf(s, 0).available[static_cast<size_t>(i)]; };
  uint32_t big = ShapeOf(s, {{"CPU", kUnit}, {"GPU", kUnit}, {"memory", 600 * kUnit}});
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  uint32_t mem = ShapeOf(s, {{"CPU", kUnit}, {"memory", 600 * kUnit}});
  std::deque<SchedItem> store;
  SchedItem* a = MakeItems(store, 1, big)[0];
  s.Enqueue(a);
  REQUIRE(RunSchedule(s).size() == 1);
  CHECK(avail(0) == kUnit);
  CHECK(avail(1) == 0);
  CHECK(avail(2) == 400 * kUnit);

  s.Blocked(a);  // e.g. in get(): its CPU is lent, its GPU and memory are not (as Ray)
  CHECK(a->holds_rest);
  CHECK(avail(0) == 2 * kUnit);
  CHECK(avail(1) == 0);
  CHECK(avail(2) == 400 * kUnit);
  // A second 600-memory task waits; a CPU-only one runs on the lent CPU.
  SchedItem* m = MakeItems(store, 1, mem)[0];
  SchedItem* c = MakeItems(store, 1, cpu1)[0];
  s.Enqueue(m);
  s.Enqueue(c);
  auto out = RunSchedule(s);
  REQUIRE(out.size() == 1);
  CHECK(out[0].first == c);
  CHECK(avail(0) == kUnit);

  s.Unblocked(a);  // takes its CPU again (its own lease: the worker has nothing else)
  CHECK_FALSE(a->holds_rest);
  CHECK(avail(0) == 0);
  CHECK(avail(1) == 0);
  CHECK(avail(2) == 400 * kUnit);
  s.Finished(c);
  s.Finished(a);
  CHECK(avail(0) == 2 * kUnit);
  CHECK(avail(1) == kUnit);
  CHECK(avail(2) == 1000 * kUnit);
  out = RunSchedule(s);  // now the memory task fits
  REQUIRE(out.size() == 1);
  CHECK(out[0].first == m);
  s.Finished(m);
  CHECK(avail(2) == 1000 * kUnit);
}

TEST_CASE("A blocked task's kept resources go back when its worker goes", "[scheduler]") {
  Scheduler s(4);
  ResourceVector totals = Totals(2, 1);
  s.AddNode(0, totals);
  s.AddWorker(1, 0);
  s.AddWorker(2, 0);
  uint32_t gpu = ShapeOf(s, {{"CPU", kUnit}, {"GPU", kUnit}});
  uint32_t cpu2 = ShapeOf(s, {{"CPU", 2 * kUnit}});
  std::deque<SchedItem> store;
  SchedItem* a = MakeItems(store, 1, gpu)[0];
  SchedItem* b = MakeItems(store, 1, cpu2)[0];
  s.Enqueue(a);
  REQUIRE(RunSchedule(s).size() == 1);
  ProcId wa = a->worker;
  s.Blocked(a);
  s.Enqueue(b);  // takes the lent CPU and the free one
  REQUIRE(RunSchedule(s).size() == 1);
  s.Unblocked(a);  // onto its own worker, no lease left there: the CPU again (oversubscribed)
  s.Blocked(a);
  s.Unblocked(a);
  CHECK(NodeOf(s, 0).available[1] == 0);
  s.RemoveWorker(wa);  // the process died with `a` running
  CHECK(NodeOf(s, 0).available[1] == kUnit);
  s.Finished(b);
  CHECK(NodeOf(s, 0).available[0] == 2 * kUnit);
}

TEST_CASE("An item dequeued while queued may be freed before the queue drops its entry",
          "[scheduler]") {
  // The head fails a queued task (cancel, an upstream error) and frees its record at once;
  // Schedule must never read that record again (it crashed on the freed memory).
  Scheduler s(4);
  s.AddNode(0, Totals(1));
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});
  auto gone = std::make_unique<SchedItem>();
  gone->shape = cpu1;
  s.Enqueue(gone.get());
  CHECK(s.Dequeue(gone.get()));
  std::memset(static_cast<void*>(gone.get()), 0x5a, sizeof(SchedItem));  // what reuse looks like
  gone.reset();
  std::deque<SchedItem> store;
  auto items = MakeItems(store, 1, cpu1);
  s.Enqueue(items[0]);
  s.AddWorker(1, 0);
  auto out = RunSchedule(s);
  REQUIRE(out.size() == 1);
  CHECK(out[0].first == items[0]);
  CHECK(s.queued() == 0);
}

TEST_CASE("Dedicated actors: a process of their own, resources reserved while it starts",
          "[scheduler]") {
  Scheduler s(4);
  s.AddNode(0, Totals(2));
  s.AddNode(1, Totals(2));
  s.AddWorker(1, 0);  // shared workers: tasks and shared actors
  s.AddWorker(2, 1);
  uint32_t cpu1 = ShapeOf(s, {{"CPU", kUnit}});

  // No dedicated process yet: the best node is named, the CPU reserved there.
  NodeId start_on = kNoNode;
  CHECK(s.PlaceActor(cpu1, true, /*preferred=*/1, false, /*dedicated=*/true, &start_on) == kNoProc);
  CHECK(start_on == 1);
  CHECK(AvailableCpu(s, 1) == kUnit);
  CHECK(s.TakeDedicated(1) == kNoProc);  // not joined yet

  // Its process joins: it takes the actor (no second acquire), runs no tasks.
  s.AddWorker(3, 1, /*dedicated=*/true);
  CHECK(s.TakeDedicated(1) == 3);
  CHECK(AvailableCpu(s, 1) == kUnit);
  CHECK(s.TakeDedicated(1) == kNoProc);  // one actor per process
  std::deque<SchedItem> store;
  auto items = MakeItems(store, 2, cpu1, 1);
  for (auto* it : items) s.Enqueue(it);
  auto assigned = RunSchedule(s);
  REQUIRE(assigned.size() == 2);
  for (auto& [item, worker] : assigned) CHECK(worker != 3);
  for (auto* it : items) s.Finished(it);

  // A shared actor never lands on a dedicated process, a dedicated one never on a shared one.
  for (int i = 0; i < 4; ++i) CHECK(s.PlaceActor(cpu1, false) != 3);
  s.AddWorker(4, 0, true);
  CHECK(s.PlaceActor(cpu1, false, 0, false, true, &start_on) == 4);

  // When its actor goes, the process is on its way out: the next actor gets a new one.
  s.ReleaseActor(3, cpu1, true);
  CHECK(AvailableCpu(s, 1) == 2 * kUnit);
  start_on = kNoNode;
  CHECK(s.PlaceActor(cpu1, true, 1, false, true, &start_on) == kNoProc);
  CHECK(start_on == 1);
  s.ReleaseReserved(1, cpu1, true);  // (the caller could not start one)
  CHECK(AvailableCpu(s, 1) == 2 * kUnit);

  // Dedicated processes add nothing to where a task may run: a node with only those is full.
  Scheduler t(4);
  t.AddNode(0, Totals(1));
  t.AddWorker(1, 0, true);
  std::deque<SchedItem> more;
  auto task = MakeItems(more, 1, ShapeOf(t, {{"CPU", kUnit}}));
  t.Enqueue(task[0]);
  CHECK(RunSchedule(t).empty());
}

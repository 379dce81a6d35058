// Unit tests of the head's placement groups (core/src/head/placement_groups.*), alone with a
// scheduler and an object directory.
#include <catch2/catch.hpp>

#include "head_fixture.h"

using namespace headtest;
using mpiray::StatusCode;
using mpiray::head::GroupRec;

namespace {

proto::PlacementGroupSpec Group(uint64_t seq, uint8_t strategy, int bundles, int64_t cpus = 1) {
  proto::PlacementGroupSpec s;
  s.id = TaskId::Make(0, seq);
  s.strategy = strategy;
  for (int i = 0; i < bundles; ++i) s.bundles.push_back({{"CPU", cpus * kUnit}});
  return s;
}

uint8_t Strategy(proto::PgStrategy s) { return static_cast<uint8_t>(s); }

}  // namespace

TEST_CASE("PlacementGroups reserves all bundles at once and makes the group's resources",
          "[head][groups]") {
  TaskStack s(2);
  REQUIRE(s.groups.Create(Group(1, Strategy(proto::PgStrategy::kPack), 2), 0).ok());
  CHECK(s.groups.HasPending());
  s.groups.PlacePending();
  CHECK_FALSE(s.groups.HasPending());
  ObjectId ready = ObjectId::ForReturn(TaskId::Make(0, 1), 0);
  CHECK(s.Ready(ready));
  auto table = s.groups.Table();
  REQUIRE(table.size() == 1);
  CHECK(table[0].state == "CREATED");
  CHECK(table[0].nodes == std::vector<NodeId>{0, 0});
  // Work asking for the group's resources uses it; plain CPU work does not.
  auto shape = s.sched.Shape({{proto::PgResourceName("CPU", 0, TaskId::Make(0, 1)), kUnit}});
  REQUIRE(shape.ok());
  CHECK(s.groups.AnyUses(*shape));
  CHECK_FALSE(s.groups.AnyUses(*s.sched.Shape({{"CPU", kUnit}})));
}

TEST_CASE("PlacementGroups reports a group no node can ever hold", "[head][groups]") {
  TaskStack s(2);
  REQUIRE(s.groups.Create(Group(1, Strategy(proto::PgStrategy::kStrictSpread), 2), 0).ok());
  ObjectId ready = ObjectId::ForReturn(TaskId::Make(0, 1), 0);
  REQUIRE(s.Ready(ready));
  auto err = ErrorOf(s.objects.LocateOrLost(ready, 0));
  CHECK(err.code() == StatusCode::kInfeasible);
  CHECK(err.message().find("STRICT_SPREAD") != std::string::npos);
  CHECK(s.groups.Table().at(0).state == "INFEASIBLE");
  CHECK(s.groups.Create(Group(2, 9, 1), 0).code() == StatusCode::kInvalidArgument);
  CHECK(s.groups.Create(Group(3, 0, 0), 0).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("PlacementGroups waits for room, gives it back on removal, re-places lost bundles",
          "[head][groups]") {
  TaskStack s(1);
  REQUIRE(s.groups.Create(Group(1, Strategy(proto::PgStrategy::kPack), 1), 0).ok());
  REQUIRE(s.groups.Create(Group(2, Strategy(proto::PgStrategy::kPack), 1), 0).ok());
  s.groups.PlacePending();
  CHECK(s.groups.Table().at(0).state == "CREATED");
  CHECK(s.groups.Table().at(1).state == "PENDING");  // the node's one CPU is taken

  auto first = s.groups.FindForRemoval(TaskId::Make(0, 1));
  REQUIRE(first.ok());
  s.groups.Remove(**first);
  s.groups.FailIfUnready(TaskId::Make(0, 1), **first);  // it was ready: nothing happens
  s.groups.PlacePending();
  CHECK(s.groups.Table().at(1).state == "CREATED");

  auto second = s.groups.FindForRemoval(TaskId::Make(0, 2));
  REQUIRE(second.ok());
  s.groups.OnNodeRemoved(0);
  CHECK(s.groups.Table().at(1).state == "PENDING");
  CHECK(s.groups.Table().at(1).nodes == std::vector<NodeId>{mpiray::kNoNode});
  CHECK_FALSE(s.groups.FindForRemoval(TaskId::Make(0, 3)).ok());
}

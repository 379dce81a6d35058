// Unit tests of the head's membership table (core/src/head/membership.*), alone: processes,
// nodes, their resources in the scheduler, departures and heartbeats.
#include <catch2/catch.hpp>

#include "head/membership.h"
#include "head_fixture.h"
#include "scheduler.h"
#include "session.h"

using namespace headtest;
using mpiray::kNoNode;
using mpiray::kNoProc;
using mpiray::RuntimeConfig;
using mpiray::Scheduler;
using mpiray::head::GpuAllocator;
using mpiray::head::Membership;

namespace {

struct Fixture {
  RecordingTransport t;
  RuntimeConfig config;
  Scheduler sched{8};
  GpuAllocator gpus;
  Membership members{t, config, sched, gpus, 0};

  double Total(NodeId node, const std::string& resource) {
    for (const auto& n : sched.Nodes()) {
      if (n.node != node) continue;
      int i = sched.names().Find(resource);
      return i < 0 ? 0 : static_cast<double>(n.total[static_cast<size_t>(i)]) / kUnit;
    }
    return -1;
  }
};

}  // namespace

TEST_CASE("Membership gives each node one CPU per worker and splits the host's memory",
          "[head][membership]") {
  Fixture f;
  f.members.Add(Peer(0, 0, "h"), false, 0);
  f.members.Add(Peer(1, 0, "h"), true, 0);
  f.members.Add(Peer(2, 0, "h"), true, 0);
  CHECK(f.Total(0, "CPU") == 2);
  double whole = f.Total(0, "memory");
  CHECK(whole == Approx(0.7 * (1ull << 30)).epsilon(0.01));
  CHECK(f.Total(0, "node:0") == 1);
  // A second (virtual) node of the same host: memory is split between them.
  f.members.Add(Peer(3, 1, "h"), true, 0);
  CHECK(f.Total(1, "CPU") == 1);
  CHECK(f.Total(0, "memory") == Approx(whole / 2).epsilon(0.01));
  CHECK(f.members.Workers() == std::vector<ProcId>{1, 2, 3});
  CHECK(f.members.NodeOf(3) == 1);
  CHECK(f.members.NodeOf(42) == kNoNode);
  CHECK(f.members.ProcOnNode(1) == 3);
}

TEST_CASE("Membership: a node's own resources replace the session's, on that node only",
          "[head][membership]") {
  Fixture f;
  f.config.custom = {{"licence", 2 * kUnit}};
  f.members.Add(Peer(0, 0, "h"), false, 0);
  f.members.Add(Peer(1, 0, "h"), true, 0);
  auto special = Peer(2, 1, "h2");
  special.resources = {{"licence", 5 * kUnit}, {"fpga", kUnit / 2}, {"CPU", 8 * kUnit},
                       {"GPU", 2 * kUnit}, {"memory", int64_t{4} * kUnit << 30}};
  f.members.Add(special, true, 0);
  f.members.Add(Peer(3, 1, "h2"), true, 0);  // a second process of that node, without any
  CHECK(f.Total(0, "licence") == 2);
  CHECK(f.Total(0, "fpga") == 0);
  CHECK(f.Total(0, "CPU") == 1);
  CHECK(f.Total(1, "licence") == 5);
  CHECK(f.Total(1, "fpga") == 0.5);
  CHECK(f.Total(1, "CPU") == 8);  // not one per worker
  CHECK(f.Total(1, "GPU") == 2);
  CHECK(f.Total(1, "memory") == double(4ull << 30));
  using Holder = GpuAllocator::Holder;  // devices 0 and 1 on that node
  CHECK(f.gpus.Grant(Holder::kTask, mpiray::TaskId::Make(0, 1), 1, 2 * kUnit) ==
        std::vector<int32_t>{0, 1});
  // Its process gone, the node falls back to the session's values.
  f.members.Remove(2, "test");
  CHECK(f.Total(1, "licence") == 2);
  CHECK(f.Total(1, "CPU") == 1);
}

TEST_CASE("Membership: a departure tells the others and removes an empty node",
          "[head][membership]") {
  Fixture f;
  f.members.Add(Peer(0, 0), false, 0);
  f.members.Add(Peer(1, 1), true, 0);
  f.members.Add(Peer(2, 1), true, 0);
  f.members.Add(Peer(3, 2), true, 0);

  auto d = f.members.Remove(2, "killed");
  REQUIRE(d.has_value());
  CHECK(d->peer.proc == 2);
  CHECK(d->worker);
  CHECK_FALSE(d->node_gone);
  CHECK(f.Total(1, "CPU") == 1);  // the node lost a worker's CPU
  auto left = f.t.OfType(proto::Msg::kPeerLeft);
  std::vector<ProcId> told;
  for (const auto& p : left) {
    CHECK(p.As<proto::PeerLeft>().proc == 2);
    told.push_back(p.dest);
  }
  std::sort(told.begin(), told.end());
  CHECK(told == std::vector<ProcId>{1, 3});  // not the head itself, not the dead one

  CHECK_FALSE(f.members.Remove(2, "again").has_value());  // already gone
  auto last = f.members.Remove(1, "killed");
  REQUIRE(last.has_value());
  CHECK(last->node_gone);
  CHECK(f.Total(1, "CPU") == -1);  // the node left the scheduler
  CHECK(f.members.ProcOnNode(1) == kNoProc);
  CHECK_FALSE(f.members.IsAlive(1));
  CHECK(f.members.Peers().size() == 2);
}

TEST_CASE("Membership sends heartbeats once a second and reports silent processes",
          "[head][membership]") {
  Fixture f;
  f.config.heartbeat_timeout_ms = 5000;
  f.members.Add(Peer(0, 0), false, 0);
  f.members.Add(Peer(1, 0), true, 0);
  f.members.Add(Peer(2, 0), true, 0);
  CHECK(f.members.Tick(500).empty());
  CHECK(f.t.OfType(proto::Msg::kHeartbeat).empty());
  CHECK(f.members.Tick(1000).empty());
  CHECK(f.t.OfType(proto::Msg::kHeartbeat).size() == 2);
  f.members.Touch(1, 4000);
  auto silent = f.members.Tick(5500);
  REQUIRE(silent.size() == 1);
  CHECK(silent[0].first == 2);
  CHECK(silent[0].second == 5500);
}

// Scheduling scenarios: placement groups, SPREAD and node affinity in a real world. Needs at
// least 3 worker nodes (MPIRAY_RANKS_PER_NODE=1 and 4+ ranks, or 3+ local workers).
#include <mpiray/mpiray.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <cstdio>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "itest_check.h"

namespace {

int PidAfter(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return static_cast<int>(getpid());
}

std::string VisibleDevices() {
  const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
  return v ? v : "(unset)";
}

class Where {
 public:
  static Where* Create() { return new Where(); }
  int Pid() { return static_cast<int>(getpid()); }
};

mpiray::NodeId NodeOfPid(int pid) {
  for (const auto& p : mpiray::GetClusterSnapshot().processes) {
    if (p.pid == pid) return p.node;
  }
  std::fprintf(stderr, "no process with pid %d\n", pid);
  std::exit(1);
}

}  // namespace

MPIRAY_REMOTE(PidAfter, VisibleDevices, Where::Create, &Where::Pid);

void Placement() {
  auto snap = mpiray::GetClusterSnapshot();
  std::set<mpiray::NodeId> worker_nodes;
  for (const auto& p : snap.processes) {
    if (p.worker) worker_nodes.insert(p.node);
  }
  CHECK(worker_nodes.size() >= 3);

  // STRICT_SPREAD: three bundles on three nodes; tasks and actors land in their bundle.
  mpiray::PlacementGroupCreationOptions opts;
  opts.name = "spread3";
  opts.bundles = {{{"CPU", 1}}, {{"CPU", 1}}, {{"CPU", 1}}};
  opts.strategy = mpiray::PlacementStrategy::STRICT_SPREAD;
  auto pg = mpiray::CreatePlacementGroup(opts);
  CHECK(pg.Wait(30));
  CHECK(*mpiray::Get(pg.Ready()) == true);
  auto table = mpiray::GetPlacementGroupTable();
  CHECK(table.size() == 1 && table[0].state == "CREATED" && table[0].name == "spread3");
  CHECK(std::set<uint32_t>(table[0].nodes.begin(), table[0].nodes.end()).size() == 3);
  for (int b = 0; b < 3; ++b) {
    int pid = *mpiray::Get(mpiray::Task(PidAfter).SetPlacementGroup(pg, b).Remote(0));
    CHECK(NodeOfPid(pid) == table[0].nodes[static_cast<size_t>(b)]);
  }
  auto actor = mpiray::Actor(Where::Create).SetPlacementGroup(pg, 2).Remote();
  CHECK(NodeOfPid(*mpiray::Get(actor.Task(&Where::Pid).Remote())) == table[0].nodes[2]);
  // Removal: the actor dies with its group, the CPUs come back.
  mpiray::RemovePlacementGroup(pg);
  CHECK_THROWS(mpiray::ActorDiedError, mpiray::Get(actor.Task(&Where::Pid).Remote(), 30000), "placement group");
  CHECK(mpiray::GetPlacementGroupTable()[0].state == "REMOVED");

  // Impossible: more STRICT_SPREAD bundles than nodes is an error, not a hang.
  mpiray::PlacementGroupCreationOptions too_many;
  too_many.bundles.assign(worker_nodes.size() + 1, {{"CPU", 1}});
  too_many.strategy = mpiray::PlacementStrategy::STRICT_SPREAD;
  auto bad = mpiray::CreatePlacementGroup(too_many);
  CHECK_THROWS(mpiray::Error, bad.Wait(30), "can never be placed");

  // SPREAD tasks reach every node; a hard node affinity runs only there.
  std::vector<mpiray::ObjectRef<int>> spread;
  for (size_t i = 0; i < 2 * worker_nodes.size(); ++i) {
    spread.push_back(mpiray::Task(PidAfter).SetSpread().Remote(200));
  }
  std::set<mpiray::NodeId> reached;
  for (auto& r : spread) reached.insert(NodeOfPid(*mpiray::Get(r)));
  CHECK(reached == worker_nodes);
  mpiray::NodeId target = *worker_nodes.rbegin();
  for (int i = 0; i < 5; ++i) {
    CHECK(NodeOfPid(*mpiray::Get(mpiray::Task(PidAfter).SetNodeAffinity(target).Remote(0))) == target);
    CHECK(NodeOfPid(*mpiray::Get(mpiray::Task(PidAfter).SetNodeAffinity(target, true).Remote(0))) == target);
  }
  // GPUs (declared with MPIRAY_NUM_GPUS=2: no device is touched): the task sees its devices.
  CHECK(*mpiray::Get(mpiray::Task(VisibleDevices).SetResource("GPU", 2).Remote()) == "0,1");
  CHECK(*mpiray::Get(mpiray::Task(VisibleDevices).SetResource("GPU", 0.5).Remote()) == "0");
  CHECK(*mpiray::Get(mpiray::Task(VisibleDevices).Remote()) == "(unset)");
  // Named actors from C++: SetName registers, GetActor finds, a duplicate name is refused.
  auto named = mpiray::Actor(Where::Create).SetName("where-1").Remote();
  int named_pid = *mpiray::Get(named.Task(&Where::Pid).Remote());
  auto found = mpiray::GetActor<Where>("where-1");
  CHECK(found.has_value());
  CHECK(*mpiray::Get(found->Task(&Where::Pid).Remote()) == named_pid);
  CHECK(!mpiray::GetActor<Where>("where-2").has_value());
  CHECK(!mpiray::GetActor<Where>("where-1", "another-namespace").has_value());
  CHECK_THROWS(mpiray::Error, mpiray::Get(mpiray::Actor(Where::Create).SetName("where-1").Remote().Task(&Where::Pid).Remote(), 30000), "already taken");
  named.Kill();
  std::printf("placement OK (%zu worker nodes)\n", worker_nodes.size());
}

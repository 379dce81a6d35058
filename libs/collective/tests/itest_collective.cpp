// Collective groups of C++ actors in a real job (mpirun or local workers): members join through
// the registry actor (Group::Create), run every operation and dtype against locally computed
// references, destroy the group and create it again. Exit status 0 when everything matched.
#include <mpiray/mpiray.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "mpiray/collective/group.h"

using mpiray::collective::DType;
using mpiray::collective::Group;
using mpiray::collective::GroupOptions;
using mpiray::collective::ReduceOp;

namespace {

double Value(int rank, size_t i) { return static_cast<double>((static_cast<size_t>(rank) * 5 + i) % 4 + 1); }

}  // namespace

class CollectiveMember {
 public:
  static CollectiveMember* Create(int rank, int world) { return new CollectiveMember(rank, world); }
  CollectiveMember(int rank, int world) : rank_(rank), world_(world) {}

  int Join(std::string name) {
    GroupOptions o;
    o.name = name;
    o.world_size = world_;
    o.rank = rank_;
    group_ = Group::Create(o);
    return group_->rank();
  }

  int Leave() {
    group_.reset();
    return 0;
  }

  int Pid() { return static_cast<int>(getpid()); }

  // Every operation, checked here; returns the failures.
  std::vector<std::string> Run(int count) {
    std::vector<std::string> bad;
    const size_t n = static_cast<size_t>(count);
    auto expect = [&](bool ok, const std::string& what) {
      if (!ok) bad.push_back("rank " + std::to_string(rank_) + ": " + what);
    };
    std::vector<double> sum(n, 0), prod(n, 1), mn(n, 1e9), mx(n, -1e9);
    for (int r = 0; r < world_; ++r) {
      for (size_t i = 0; i < n; ++i) {
        double v = Value(r, i);
        sum[i] += v, prod[i] *= v, mn[i] = std::min(mn[i], v), mx[i] = std::max(mx[i], v);
      }
    }
    const ReduceOp ops[] = {ReduceOp::kSum, ReduceOp::kProduct, ReduceOp::kMin, ReduceOp::kMax};
    const std::vector<double>* want[] = {&sum, &prod, &mn, &mx};
    for (int k = 0; k < 4; ++k) {
      std::vector<double> d(n);
      std::vector<float> f(n);
      std::vector<int32_t> i32(n);
      std::vector<int64_t> i64(n);
      for (size_t i = 0; i < n; ++i) d[i] = f[i] = i32[i] = i64[i] = static_cast<int64_t>(Value(rank_, i));
      group_->AllReduce(d, ops[k]);
      group_->AllReduce(f, ops[k]);
      group_->AllReduce(i32, ops[k]);
      group_->AllReduce(i64, ops[k]);
      for (size_t i = 0; i < n; ++i) {
        double w = (*want[k])[i];
        expect(d[i] == w && f[i] == w && i32[i] == w && i64[i] == w, "allreduce op " + std::to_string(k));
      }
    }
    std::vector<double> b(n, -1);
    if (rank_ == world_ - 1) {
      for (size_t i = 0; i < n; ++i) b[i] = Value(rank_, i);
    }
    group_->Broadcast(b, world_ - 1);
    for (size_t i = 0; i < n; ++i) expect(b[i] == Value(world_ - 1, i), "broadcast");
    std::vector<int64_t> red(n);
    for (size_t i = 0; i < n; ++i) red[i] = static_cast<int64_t>(Value(rank_, i));
    group_->Reduce(red.data(), n, DType::kInt64, 0, ReduceOp::kSum);
    for (size_t i = 0; i < n; ++i) expect(red[i] == (rank_ == 0 ? sum[i] : Value(rank_, i)), "reduce");
    std::vector<float> mine(n);
    for (size_t i = 0; i < n; ++i) mine[i] = static_cast<float>(Value(rank_, i));
    auto all = group_->AllGather(mine);
    for (int r = 0; r < world_; ++r) {
      for (size_t i = 0; i < n; ++i) expect(all[static_cast<size_t>(r) * n + i] == Value(r, i), "allgather");
    }
    std::vector<double> blocks(n * static_cast<size_t>(world_)), out(n);
    for (size_t i = 0; i < blocks.size(); ++i) blocks[i] = Value(rank_, i);
    group_->ReduceScatter(blocks.data(), out.data(), n, DType::kFloat64, ReduceOp::kSum);
    for (size_t i = 0; i < n; ++i) {
      double w = 0;
      for (int r = 0; r < world_; ++r) w += Value(r, static_cast<size_t>(rank_) * n + i);
      expect(out[i] == w, "reducescatter");
    }
    std::vector<int32_t> msg(n), got(n, -1);
    for (size_t i = 0; i < n; ++i) msg[i] = rank_ * 100000 + static_cast<int32_t>(i);
    int to = (rank_ + 1) % world_, from = (rank_ + world_ - 1) % world_;
    if (rank_ == 0) {
      group_->Send(msg, to);
      group_->Recv(got, from);
    } else {
      group_->Recv(got, from);
      group_->Send(msg, to);
    }
    for (size_t i = 0; i < n; ++i) expect(got[i] == from * 100000 + static_cast<int32_t>(i), "send/recv");
    group_->Barrier();
    return bad;
  }

 private:
  int rank_, world_;
  std::unique_ptr<Group> group_;
};

MPIRAY_REMOTE(CollectiveMember::Create, &CollectiveMember::Join, &CollectiveMember::Leave, &CollectiveMember::Pid,
              &CollectiveMember::Run);

int main(int argc, char** argv) {
  mpiray::Init();
  const int world = argc > 1 ? std::atoi(argv[1]) : 4;
  std::vector<mpiray::ActorHandle<CollectiveMember>> members;
  for (int r = 0; r < world; ++r) members.push_back(mpiray::Actor(CollectiveMember::Create).Remote(r, world));
  int failures = 0;
  for (int round = 0; round < 2; ++round) {  // the second round: the same name again
    std::vector<mpiray::ObjectRef<int>> joins;
    for (auto& m : members) joins.push_back(m.Task(&CollectiveMember::Join).Remote(std::string("cxx")));
    for (int r = 0; r < world; ++r) {
      if (*mpiray::Get(joins[static_cast<size_t>(r)]) != r) ++failures;
    }
    for (int count : {3, 100000}) {
      std::vector<mpiray::ObjectRef<std::vector<std::string>>> runs;
      for (auto& m : members) runs.push_back(m.Task(&CollectiveMember::Run).Remote(count));
      for (auto& ref : runs) {
        for (const auto& b : *mpiray::Get(ref)) {
          std::fprintf(stderr, "FAILED: %s\n", b.c_str());
          ++failures;
        }
      }
    }
    std::vector<mpiray::ObjectRef<int>> leaves;
    for (auto& m : members) leaves.push_back(m.Task(&CollectiveMember::Leave).Remote());
    for (auto& l : leaves) mpiray::Get(l);
  }
  std::printf("collective itest: %d failures\n", failures);
  mpiray::Shutdown();
  return failures == 0 ? 0 : 1;
}

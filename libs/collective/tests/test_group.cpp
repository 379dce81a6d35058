// Groups whose members are threads of this process, joined through an in-memory rendezvous
// (the registry's rules, without the actor). Node keys make "nodes": members with one key share
// memory, the others talk over UCX (TCP between workers of this process), so every algorithm
// of the "ucx" backend runs, on one node and across nodes, against a reference computed here.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "mpiray/collective/group.h"
#include "mpiray/kernels/half.h"
#include "registry.h"

using namespace mpiray;
using namespace mpiray::collective;

namespace {

class MemoryRendezvous final : public Rendezvous {
 public:
  Result<Roster> Join(const GroupOptions& o, const std::string& mine) override {
    std::unique_lock<std::mutex> lk(mu_);
    auto id = reg_.Join(o.name, o.world_size, o.rank, mine);
    if (!id.ok()) return id.status();
    cv_.notify_all();
    Roster r;
    r.incarnation = *id;
    auto blobs = Await(lk, *id, 0);
    if (!blobs.ok()) return blobs.status();
    r.members = std::move(*blobs);
    return r;
  }
  Result<std::vector<std::string>> Exchange(const GroupOptions& o, uint64_t inc, int round,
                                            const std::string& mine) override {
    std::unique_lock<std::mutex> lk(mu_);
    Status st = reg_.Publish(inc, o.rank, round, mine);
    if (!st.ok()) return st;
    cv_.notify_all();
    return Await(lk, inc, round);
  }

 private:
  Result<std::vector<std::string>> Await(std::unique_lock<std::mutex>& lk, uint64_t inc, int round) {
    std::vector<std::string> out;
    bool ok = cv_.wait_for(lk, std::chrono::seconds(30), [&] {
      auto b = reg_.Collect(inc, round, nullptr);
      if (b.ok() && !b->empty()) out = *b;
      return !out.empty();
    });
    if (!ok) return Status(StatusCode::kTimeout, "rendezvous timed out");
    return out;
  }
  std::mutex mu_;
  std::condition_variable cv_;
  collective::detail::Registry reg_;
};

// Catch2's assertions are not thread-safe: member threads throw on a failed expectation and the
// main thread re-raises it.
#define EXPECT(cond, what)                                                                   \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::ostringstream os_;                                                                \
      os_ << __FILE__ << ":" << __LINE__ << ": expected " #cond << ": " << what;             \
      throw std::runtime_error(os_.str());                                                   \
    }                                                                                        \
  } while (0)

// Run fn(group) on `keys.size()` member threads (member r on node keys[r]); rethrows the first
// member's exception.
void RunGroup(const std::vector<std::string>& keys, const std::function<void(Group&)>& fn,
              const std::string& name = "g", int64_t timeout_ms = 60000) {
  MemoryRendezvous rdv;
  const int n = static_cast<int>(keys.size());
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        GroupOptions o;
        o.name = name;
        o.world_size = n;
        o.rank = r;
        o.node_key = keys[static_cast<size_t>(r)];
        o.timeout_ms = timeout_ms;
        auto g = Group::Create(o, rdv);
        fn(*g);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

const std::vector<std::vector<std::string>> kTopologies = {
    {"a", "a", "a", "a"},  // one node of 4
    {"a", "a", "b", "b"},  // two nodes of 2
    {"a", "b", "b", "c"},  // three nodes, uneven
    {"a", "b"},            // two nodes of 1
};

std::string Describe(const std::vector<std::string>& keys) {
  std::string s;
  for (auto& k : keys) s += k;
  return s;
}

// Value of element i on rank r (small integers: exact in every dtype and under every op).
double Value(int r, size_t i) { return static_cast<double>((static_cast<size_t>(r) * 7 + i * 3) % 5 + 1); }

double Apply(ReduceOp op, double a, double b) {
  switch (op) {
    case ReduceOp::kSum: return a + b;
    case ReduceOp::kProduct: return a * b;
    case ReduceOp::kMin: return std::min(a, b);
    case ReduceOp::kMax: return std::max(a, b);
  }
  return 0;
}

// Typed storage of doubles in any dtype.
struct Buf {
  DType dtype;
  std::vector<uint8_t> bytes;
  Buf(DType d, size_t n) : dtype(d), bytes(n * kernels::DTypeSize(d)) {}
  size_t size() const { return bytes.size() / kernels::DTypeSize(dtype); }
  void* data() { return bytes.data(); }
  void Set(size_t i, double v) {
    uint8_t* p = bytes.data() + i * kernels::DTypeSize(dtype);
    switch (dtype) {
      case DType::kFloat16: { uint16_t h = kernels::FloatToFloat16(static_cast<float>(v)); std::memcpy(p, &h, 2); break; }
      case DType::kBFloat16: { uint16_t h = kernels::FloatToBFloat16(static_cast<float>(v)); std::memcpy(p, &h, 2); break; }
      case DType::kFloat32: { float f = static_cast<float>(v); std::memcpy(p, &f, 4); break; }
      case DType::kFloat64: std::memcpy(p, &v, 8); break;
      case DType::kInt32: { int32_t x = static_cast<int32_t>(v); std::memcpy(p, &x, 4); break; }
      case DType::kInt64: { int64_t x = static_cast<int64_t>(v); std::memcpy(p, &x, 8); break; }
      case DType::kUInt8: { uint8_t x = static_cast<uint8_t>(v); *p = x; break; }
    }
  }
  double Get(size_t i) const {
    const uint8_t* p = bytes.data() + i * kernels::DTypeSize(dtype);
    switch (dtype) {
      case DType::kFloat16: { uint16_t h; std::memcpy(&h, p, 2); return kernels::Float16ToFloat(h); }
      case DType::kBFloat16: { uint16_t h; std::memcpy(&h, p, 2); return kernels::BFloat16ToFloat(h); }
      case DType::kFloat32: { float f; std::memcpy(&f, p, 4); return f; }
      case DType::kFloat64: { double d; std::memcpy(&d, p, 8); return d; }
      case DType::kInt32: { int32_t x; std::memcpy(&x, p, 4); return x; }
      case DType::kInt64: { int64_t x; std::memcpy(&x, p, 8); return static_cast<double>(x); }
      case DType::kUInt8: return *p;
    }
    return 0;
  }
};

const DType kDTypes[] = {DType::kFloat16, DType::kBFloat16, DType::kFloat32, DType::kFloat64,
                         DType::kInt32,   DType::kInt64,    DType::kUInt8};
const ReduceOp kOps[] = {ReduceOp::kSum, ReduceOp::kProduct, ReduceOp::kMin, ReduceOp::kMax};

}  // namespace

TEST_CASE("allreduce: every op and dtype on one node and across nodes, small and pipelined", "[collective]") {
  for (const auto& keys : kTopologies) {
    const int n = static_cast<int>(keys.size());
    for (size_t count : {size_t{1}, size_t{1000}, size_t{300000}}) {
      RunGroup(keys, [&](Group& g) {
        for (DType dt : kDTypes) {
          for (ReduceOp op : kOps) {
            Buf b(dt, count);
            for (size_t i = 0; i < count; ++i) b.Set(i, Value(g.rank(), i));
            g.AllReduce(b.data(), count, dt, op);
            for (size_t i = 0; i < count; i += 1 + count / 97) {
              double want = Value(0, i);
              for (int r = 1; r < n; ++r) want = Apply(op, want, Value(r, i));
              if (dt == DType::kUInt8) want = std::fmod(want, 256.0);
              EXPECT(b.Get(i) == want, "topology " << Describe(keys) << " count " << count << " dtype "
                                                   << kernels::DTypeName(dt) << " op " << kernels::ReduceOpName(op)
                                                   << " i " << i << ": got " << b.Get(i) << " want " << want);
            }
          }
        }
      });
    }
  }
}

TEST_CASE("reduce broadcast allgather reducescatter barrier: every root and topology", "[collective]") {
  for (const auto& keys : kTopologies) {
    const int n = static_cast<int>(keys.size());
    RunGroup(keys, [&](Group& g) {
      const int me = g.rank();
      for (size_t count : {size_t{3}, size_t{70000}}) {
        for (int root = 0; root < n; ++root) {
          std::vector<int64_t> v(count), orig(count);
          for (size_t i = 0; i < count; ++i) orig[i] = v[i] = static_cast<int64_t>(Value(me, i));
          g.Reduce(v.data(), count, DType::kInt64, root, ReduceOp::kSum);
          for (size_t i = 0; i < count; i += 1 + count / 31) {
            int64_t want = 0;
            for (int r = 0; r < n; ++r) want += static_cast<int64_t>(Value(r, i));
            EXPECT(v[i] == (me == root ? want : orig[i]), "reduce topology " << Describe(keys) << " root " << root);
          }
          std::vector<double> b(count, -1.0);
          if (me == root) {
            for (size_t i = 0; i < count; ++i) b[i] = Value(root, i) + 0.5;
          }
          g.Broadcast(b, root);
          for (size_t i = 0; i < count; i += 1 + count / 31) {
            EXPECT(b[i] == Value(root, i) + 0.5, "broadcast topology " << Describe(keys) << " root " << root);
          }
        }
        std::vector<float> mine(count);
        for (size_t i = 0; i < count; ++i) mine[i] = static_cast<float>(Value(me, i));
        auto all = g.AllGather(mine);
        for (int r = 0; r < n; ++r) {
          for (size_t i = 0; i < count; i += 1 + count / 31) {
            EXPECT(all[static_cast<size_t>(r) * count + i] == static_cast<float>(Value(r, i)),
                   "allgather topology " << Describe(keys));
          }
        }
        std::vector<int32_t> in(count * static_cast<size_t>(n)), out(count, -1);
        for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int32_t>(Value(me, i));
        g.ReduceScatter(in.data(), out.data(), count, DType::kInt32, ReduceOp::kMax);
        for (size_t i = 0; i < count; i += 1 + count / 31) {
          double want = 0;
          for (int r = 0; r < n; ++r) want = std::max(want, Value(r, static_cast<size_t>(me) * count + i));
          EXPECT(out[i] == want, "reducescatter topology " << Describe(keys));
        }
        g.Barrier();
      }
    });
  }
}

TEST_CASE("send and recv between every pair on a node and across nodes", "[collective]") {
  for (const auto& keys : kTopologies) {
    const int n = static_cast<int>(keys.size());
    RunGroup(keys, [&](Group& g) {
      const int me = g.rank();
      for (size_t count : {size_t{0}, size_t{5}, size_t{200000}}) {
        // Round-robin: in round k, rank r sends to r+k and receives from r-k.
        for (int k = 1; k < n; ++k) {
          int to = (me + k) % n, from = (me - k + n) % n;
          std::vector<int32_t> out(count), in(count, -1);
          for (size_t i = 0; i < count; ++i) out[i] = me * 1000 + static_cast<int32_t>(i % 977);
          if (me < to) {
            g.Send(out, to);
            g.Recv(in, from);
          } else {
            g.Recv(in, from);
            g.Send(out, to);
          }
          for (size_t i = 0; i < count; i += 1 + count / 31) {
            EXPECT(in[i] == from * 1000 + static_cast<int32_t>(i % 977), "send/recv topology " << Describe(keys));
          }
        }
      }
    });
  }
}

TEST_CASE("mismatched calls fail on every member, naming both sides", "[collective]") {
  for (const auto& keys : {kTopologies[0], kTopologies[1]}) {
    std::atomic<int> failures{0};
    RunGroup(keys, [&](Group& g) {
      std::vector<float> v(g.rank() == 1 ? 12 : 10, 1.0f);
      try {
        g.AllReduce(v);
      } catch (const InvalidArgumentError& e) {
        std::string what = e.what();
        EXPECT(what.find("mismatched") != std::string::npos, what);
        EXPECT(what.find("count=12") != std::string::npos, what);
        ++failures;
        // The group is unusable afterwards.
        bool threw = false;
        try {
          g.Barrier();
        } catch (const Error&) {
          threw = true;
        }
        EXPECT(threw, "barrier after a mismatch");
      }
    });
    // Every member fails with the same error: members on other nodes learn it from their leader.
    CHECK(failures.load() == static_cast<int>(keys.size()));
  }
}

TEST_CASE("a member that never calls makes the others time out with a clear error", "[collective]") {
  std::atomic<int> timeouts{0};
  RunGroup({"a", "a", "a"}, [&](Group& g) {
    if (g.rank() == 2) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      return;
    }
    try {
      g.Barrier();
    } catch (const CollectiveError& e) {
      EXPECT(std::string(e.what()).find("waited more than") != std::string::npos, e.what());
      ++timeouts;
    }
  }, "timeout", 300);
  CHECK(timeouts.load() == 2);
}

TEST_CASE("bad options and ranks are refused with clear errors", "[collective]") {
  MemoryRendezvous rdv;
  GroupOptions o;
  o.world_size = 2;
  o.rank = 5;
  CHECK_THROWS_WITH(Group::Create(o, rdv), Catch::Contains("rank must be in [0, 2)"));
  CHECK_THAT(ParseBackend("gloo").status().message(), Catch::Contains("unknown collective backend 'gloo'"));
  o.rank = 0;
  o.world_size = 1;
  o.name = "solo";
  auto g = Group::Create(o, rdv);
  std::vector<float> v{1, 2, 3};
  g->AllReduce(v);
  CHECK(v[2] == 3.0f);
  CHECK_THROWS_AS(g->Broadcast(v, 1), InvalidArgumentError);
  CHECK_THROWS_AS(g->Send(v, 0), InvalidArgumentError);
}

TEST_CASE("registry: incarnations and duplicate ranks and world size disagreement", "[collective]") {
  collective::detail::Registry reg;
  auto a = reg.Join("g", 2, 0, "x");
  REQUIRE(a.ok());
  CHECK(reg.Join("g", 2, 0, "y").status().code() == StatusCode::kInvalidArgument);
  CHECK(reg.Join("g", 3, 1, "y").status().message().find("world_size") != std::string::npos);
  std::vector<int> joined;
  CHECK(reg.Collect(*a, 0, &joined)->empty());
  CHECK(joined == std::vector<int>{0});
  REQUIRE(reg.Join("g", 2, 1, "y").ok());
  CHECK(*reg.Collect(*a, 0, nullptr) == std::vector<std::string>{"x", "y"});
  // The name's group is complete: the next join starts a new incarnation.
  auto b = reg.Join("g", 2, 0, "z");
  REQUIRE(b.ok());
  CHECK(*b != *a);
  reg.Leave(*a, 0);
  reg.Leave(*a, 1);
  CHECK(!reg.Collect(*a, 0, nullptr).ok());
}

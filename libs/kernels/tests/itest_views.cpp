// Kokkos Views through the object store on a real cluster: run under mpirun with
// MPIRAY_RANKS_PER_NODE=2 (tests/CMakeLists.txt), so that Views also cross virtual nodes.
// Puts, task arguments (by value and by reference), returns, zero-copy reads in shared memory
// on every node, layouts, and errors.
#include <Kokkos_Core.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <mpiray/mpiray.h>

#include "mpiray/kernels/view_object.h"

using mpiray::kernels::HostView;

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::fprintf(stderr, "CHECK FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::exit(1);                                                                \
    }                                                                              \
  } while (0)

namespace {

// Is p inside a mapping of a file in the shared-memory store directory?
bool InSharedMemory(const void* p) {
  const char* dir = std::getenv("MPIRAY_SHM_DIR");
  const std::string shm = dir ? dir : "/dev/shm";
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const auto addr = reinterpret_cast<uintptr_t>(p);
  while (std::getline(maps, line)) {
    std::istringstream in(line);
    std::string range, perms, offset, dev, inode, path;
    in >> range >> perms >> offset >> dev >> inode >> path;
    const auto dash = range.find('-');
    const uintptr_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
    const uintptr_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (addr >= lo && addr < hi) return path.rfind(shm, 0) == 0;
  }
  return false;
}

Kokkos::View<double*> Ramp(int64_t n, double scale) {
  Kokkos::View<double*> v("ramp", n);
  Kokkos::parallel_for(n, KOKKOS_LAMBDA(int64_t i) { v(i) = scale * static_cast<double>(i % 1000); });
  Kokkos::fence();
  return v;
}

double ExpectedSum(int64_t n, double scale) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += scale * static_cast<double>(i % 1000);
  return s;
}

}  // namespace

// ---- remote functions (every rank runs this binary) ----

struct SumResult {
  double sum = 0;
  bool zero_copy = false;
  bool in_shm = false;
  bool aligned = false;
  MSGPACK_DEFINE(sum, zero_copy, in_shm, aligned);
};

// Reads its View argument in place.
SumResult SumInPlace(HostView<double*> v) {
  double s = 0;
  const auto view = v.view();
  Kokkos::parallel_reduce(
      "sum", view.extent(0), KOKKOS_LAMBDA(int64_t i, double& acc) { acc += view(i); }, s);
  return {s, v.zero_copy(), InSharedMemory(v.data()), reinterpret_cast<uintptr_t>(v.data()) % 64 == 0};
}

// Takes a managed View (its own copy) and returns a new View.
Kokkos::View<double*> Scaled(Kokkos::View<double*> v, double factor) {
  Kokkos::View<double*> out("scaled", v.extent(0));
  Kokkos::parallel_for(v.extent(0), KOKKOS_LAMBDA(int64_t i) { out(i) = factor * v(i); });
  Kokkos::fence();
  return out;
}

// A 2-D LayoutLeft View made on a worker.
Kokkos::View<float**, Kokkos::LayoutLeft> Grid(int rows, int cols) {
  Kokkos::View<float**, Kokkos::LayoutLeft> g("grid", rows, cols);
  Kokkos::parallel_for(rows, KOKKOS_LAMBDA(int i) {
    for (int j = 0; j < cols; ++j) g(i, j) = static_cast<float>(i * 1000 + j);
  });
  Kokkos::fence();
  return g;
}

MPIRAY_REMOTE(SumInPlace, Scaled, Grid);

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);  // before mpiray::Init: every rank has Kokkos
  mpiray::Init();
  const auto snap = mpiray::GetClusterSnapshot();
  CHECK(snap.nodes.size() >= 2);

  // 1. Put a 16 MB View; the driver reads it in place from its node's shared memory.
  const int64_t n = 2 << 20;
  auto a = Ramp(n, 0.5);
  auto ref = mpiray::Put(a);
  auto h = mpiray::kernels::GetView(ref);
  CHECK(h.zero_copy());
  CHECK(InSharedMemory(h.data()));
  CHECK(reinterpret_cast<uintptr_t>(h.data()) % 64 == 0);
  CHECK(h.extent(0) == static_cast<size_t>(n));
  CHECK(h(12345) == 0.5 * 345);
  // Managed Get: a separate, writable copy.
  auto copy = *mpiray::Get(ref);
  CHECK(copy.data() != h.data());
  copy(0) = -1;
  CHECK(h(0) == 0.0);

  // 2. Tasks on every node read the View in place (other nodes fetch it into their store).
  const double expect = ExpectedSum(n, 0.5);
  std::vector<mpiray::ObjectRef<SumResult>> sums;
  for (const auto& node : snap.nodes) {
    for (int k = 0; k < 2; ++k) sums.push_back(mpiray::Task(SumInPlace).SetNodeAffinity(node.id).Remote(ref));
  }
  for (auto& r : mpiray::Get(sums)) {
    CHECK(std::abs(r->sum - expect) < 1e-6 * expect);
    CHECK(r->zero_copy && r->in_shm && r->aligned);
  }

  // 3. By value: the caller's View is stored as the argument; a View comes back.
  std::vector<mpiray::ObjectRef<Kokkos::View<double*>>> scaled;
  for (const auto& node : snap.nodes) {
    scaled.push_back(mpiray::Task(Scaled).SetNodeAffinity(node.id).Remote(a, 4.0));
  }
  for (auto& r : scaled) {
    auto v = mpiray::kernels::GetView(r);
    CHECK(v.zero_copy() && InSharedMemory(v.data()));
    for (int64_t i : {int64_t{0}, int64_t{999}, n - 1}) CHECK(v(i) == 4.0 * a(i));
    // And chained: the returned View feeds another task without passing through the driver.
    auto again = mpiray::Get(mpiray::Task(SumInPlace).Remote(r));
    CHECK(std::abs(again->sum - 4.0 * expect) < 1e-6 * 4.0 * expect);
  }

  // 4. A LayoutLeft View made on a worker, read back in either layout.
  auto grid = mpiray::Task(Grid).Remote(300, 200);
  auto gl = mpiray::kernels::GetView(grid);  // HostView<float**, LayoutLeft>
  CHECK(gl(299, 199) == 299199.0f);
  Kokkos::View<float**> gr = *mpiray::Get(mpiray::ObjectRef<Kokkos::View<float**>>(grid.ID()));
  CHECK(gr(123, 45) == 123045.0f);

  // 5. Small Views travel inline; a vector of Views; errors name the cause.
  auto small = Ramp(10, 2.0);
  auto s = mpiray::Get(mpiray::Task(SumInPlace).Remote(small));
  CHECK(s->sum == ExpectedSum(10, 2.0));
  std::vector<Kokkos::View<double*>> parts{Ramp(100, 1.0), Ramp(3, 1.0)};
  auto parts_back = *mpiray::Get(mpiray::Put(parts));
  CHECK(parts_back.size() == 2 && parts_back[0](99) == 99.0 && parts_back[1](2) == 2.0);
  bool threw = false;
  try {
    mpiray::Get(mpiray::ObjectRef<Kokkos::View<int32_t*>>(ref.ID()));
  } catch (const mpiray::InvalidArgumentError& e) {
    threw = std::string(e.what()).find("float64, not of int32") != std::string::npos;
  }
  CHECK(threw);

  std::printf("kokkos views OK (%zu nodes)\n", snap.nodes.size());
  mpiray::Shutdown();
  return 0;
}

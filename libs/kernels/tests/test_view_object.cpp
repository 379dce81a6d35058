// Kokkos Views through mpiray's serialization (no cluster needed): what Put and Get do to the
// bytes, the alignment of the data, zero-copy reads as HostView, and type errors.
#include <catch2/catch.hpp>

#include <Kokkos_Core.hpp>

#include <vector>

#include "mpiray/kernels/runtime.h"
#include "mpiray/kernels/view_object.h"

using mpiray::kernels::HostView;

namespace {

// A payload as the store would hold it: page-aligned memory, like a shared-memory object.
mpiray::Buffer StorePayload(const mpiray::detail::SerializedValue& s) {
  const size_t bytes = (s.size() + 4095) / 4096 * 4096;  // aligned_alloc wants a multiple
  auto mem = std::shared_ptr<uint8_t[]>(static_cast<uint8_t*>(std::aligned_alloc(4096, bytes)),
                                        [](uint8_t* p) { std::free(p); });
  s.WriteTo(mem.get());
  return mpiray::Buffer(mem.get(), s.size(), std::shared_ptr<const void>(mem, mem.get()));
}

}  // namespace

TEST_CASE("a View round-trips through the object format", "[kernels][views]") {
  mpiray::kernels::EnsureInitialized();
  Kokkos::View<double**> a("a", 37, 5);
  auto h = Kokkos::create_mirror_view(a);
  for (int i = 0; i < 37; ++i)
    for (int j = 0; j < 5; ++j) h(i, j) = i * 10.0 + j;
  Kokkos::deep_copy(a, h);
  const auto payload = StorePayload(mpiray::detail::Serialize(a));

  // As a new managed View.
  auto b = mpiray::detail::Deserialize<Kokkos::View<double**>>(payload);
  REQUIRE(b.extent(0) == 37);
  REQUIRE(b.extent(1) == 5);
  REQUIRE(b.data() != a.data());
  auto hb = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), b);
  for (int i = 0; i < 37; ++i)
    for (int j = 0; j < 5; ++j) REQUIRE(hb(i, j) == i * 10.0 + j);

  // In place: the View points into the payload, 64-byte aligned.
  auto v = mpiray::detail::Deserialize<HostView<double**>>(payload);
  REQUIRE(v.zero_copy());
  REQUIRE(reinterpret_cast<const uint8_t*>(v.data()) >= payload.data());
  REQUIRE(reinterpret_cast<const uint8_t*>(v.data()) + 37 * 5 * 8 <= payload.data() + payload.size());
  REQUIRE(reinterpret_cast<uintptr_t>(v.data()) % 64 == 0);
  REQUIRE(v(36, 4) == 364.0);
  REQUIRE(v.view().extent(1) == 5);
}

TEST_CASE("Views of every rank, layout and element type keep their values", "[kernels][views]") {
  mpiray::kernels::EnsureInitialized();
  Kokkos::View<float*> f("f", 1000);
  Kokkos::View<int64_t***, Kokkos::LayoutLeft> l("l", 3, 4, 5);
  Kokkos::View<uint8_t*[3]> s("s", 7);
  Kokkos::parallel_for(1000, KOKKOS_LAMBDA(int i) { f(i) = 0.5f * i; });
  Kokkos::parallel_for(3, KOKKOS_LAMBDA(int i) {
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 5; ++k) l(i, j, k) = 100 * i + 10 * j + k - 1000000000000LL;
  });
  Kokkos::parallel_for(7, KOKKOS_LAMBDA(int i) { s(i, 0) = s(i, 1) = s(i, 2) = static_cast<uint8_t>(i * 30); });
  Kokkos::fence();
  auto f2 = mpiray::detail::Deserialize<Kokkos::View<float*>>(StorePayload(mpiray::detail::Serialize(f)));
  auto l2 = mpiray::detail::Deserialize<Kokkos::View<int64_t***, Kokkos::LayoutLeft>>(
      StorePayload(mpiray::detail::Serialize(l)));
  auto l3 = mpiray::detail::Deserialize<Kokkos::View<int64_t***>>(StorePayload(mpiray::detail::Serialize(l)));
  auto s2 = mpiray::detail::Deserialize<HostView<uint8_t*[3]>>(StorePayload(mpiray::detail::Serialize(s)));
  for (int i = 0; i < 1000; ++i) REQUIRE(f2(i) == 0.5f * i);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 5; ++k) {
        REQUIRE(l2(i, j, k) == l(i, j, k));
        REQUIRE(l3(i, j, k) == l(i, j, k));  // LayoutLeft stored, read as LayoutRight: transposed
      }
  for (int i = 0; i < 7; ++i) REQUIRE(s2(i, 2) == static_cast<uint8_t>(i * 30));
  // A strided subview is stored contiguously.
  auto col = Kokkos::subview(l, 1, Kokkos::ALL(), 2);
  auto c2 = mpiray::detail::Deserialize<Kokkos::View<int64_t*>>(StorePayload(mpiray::detail::Serialize(col)));
  REQUIRE(c2.extent(0) == 4);
  for (int j = 0; j < 4; ++j) REQUIRE(c2(j) == l(1, j, 2));
  // Empty Views too.
  Kokkos::View<double*> e("e", 0);
  REQUIRE(mpiray::detail::Deserialize<Kokkos::View<double*>>(StorePayload(mpiray::detail::Serialize(e))).extent(0) == 0);
}

TEST_CASE("a View inside a larger value is read with one copy when misaligned", "[kernels][views]") {
  mpiray::kernels::EnsureInitialized();
  Kokkos::View<double*> a("a", 100), b("b", 3);
  Kokkos::deep_copy(a, 2.5);
  Kokkos::deep_copy(b, -1.0);
  std::vector<Kokkos::View<double*>> both{a, b};
  const auto payload = StorePayload(mpiray::detail::Serialize(both));
  auto back = mpiray::detail::Deserialize<std::vector<HostView<double*>>>(payload);
  REQUIRE(back.size() == 2);
  REQUIRE(back[0](99) == 2.5);
  REQUIRE(back[1](2) == -1.0);
  for (const auto& h : back) REQUIRE(reinterpret_cast<uintptr_t>(h.data()) % alignof(double) == 0);
}

TEST_CASE("reading a View as the wrong type is a clear error", "[kernels][views]") {
  mpiray::kernels::EnsureInitialized();
  Kokkos::View<double**> a("a", 2, 3);
  Kokkos::View<double**, Kokkos::LayoutLeft> left("left", 2, 3);
  const auto p = StorePayload(mpiray::detail::Serialize(a));
  REQUIRE_THROWS_WITH(mpiray::detail::Deserialize<Kokkos::View<float**>>(p), Catch::Contains("float64, not of float32"));
  REQUIRE_THROWS_WITH(mpiray::detail::Deserialize<HostView<double*>>(p), Catch::Contains("rank 2, not 1"));
  REQUIRE_THROWS_WITH(mpiray::detail::Deserialize<Kokkos::View<double*[4]>>(
                          StorePayload(mpiray::detail::Serialize(Kokkos::View<double*[3]>("x", 2)))),
                      Catch::Contains("extent 1 is 3"));
  REQUIRE_THROWS_WITH(mpiray::detail::Deserialize<HostView<double**>>(StorePayload(mpiray::detail::Serialize(left))),
                      Catch::Contains("LayoutLeft"));
  REQUIRE_THROWS_AS(mpiray::detail::Deserialize<Kokkos::View<double*>>(StorePayload(mpiray::detail::Serialize(std::string("no")))),
                    mpiray::Error);
}

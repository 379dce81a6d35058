// A distributed Kokkos computation: the 1-D heat equation u_t = u_xx on [0, 1] (u = 0 at both
// ends), split over actors. Each actor owns a segment as a Kokkos View and steps it with a
// Kokkos kernel; neighbours exchange halo values as small Views through the object store
// (ObjectRefs passed from actor to actor: no round trip through the driver per step). At the end
// the driver reads every segment in place (HostView: zero copy from shared memory) and checks
// the result against the same scheme run serially.
//
//   mpirun -n 5 ./kokkos_heat [points] [steps] [actors]
// (the segment ends need zero values beyond the domain: the halo cells start at 0 and are kept so)
#include <mpiray/kernels/view_object.h>
#include <mpiray/mpiray.h>

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

using Field = Kokkos::View<double*>;
constexpr double kR = 0.25;  // dt / dx^2 (stable below 0.5)

#if KOKKOS_VERSION >= 30700
#define HEAT_SIN Kokkos::sin
#else
#define HEAT_SIN Kokkos::Experimental::sin
#endif

// The initial condition, sin(pi x) on the grid x_i = (i + 1) / (n + 1).
KOKKOS_INLINE_FUNCTION double Initial(int64_t i, int64_t n) {
  return HEAT_SIN(3.14159265358979323846 * static_cast<double>(i + 1) / static_cast<double>(n + 1));
}

// Halo width: each exchange of edges lets an actor take kHalo steps on its own
// (communication-avoiding: one round of actor calls per kHalo time steps).
constexpr int64_t kHalo = 16;

class Segment {
 public:
  // Cells [0, kHalo) and [kHalo + count, count + 2 kHalo) are halos; global cell g of the
  // segment's interior is u(kHalo + g - begin).
  Segment(int64_t begin, int64_t count, int64_t total) : begin_(begin), count_(count), total_(total) {
    u_ = Field("u", count + 2 * kHalo);
    next_ = Field("next", count + 2 * kHalo);
    auto u = u_;
    Kokkos::parallel_for(
        "init", count, KOKKOS_LAMBDA(int64_t i) { u(kHalo + i) = Initial(begin + i, total); });
    Kokkos::fence();
  }
  static Segment* Create(int64_t begin, int64_t count, int64_t total) {
    return new Segment(begin, count, total);
  }

  /// This segment's first and last kHalo values, what its neighbours need.
  Field Edges() const {
    Field e("edges", 2 * kHalo);
    Kokkos::deep_copy(Kokkos::subview(e, std::make_pair(int64_t{0}, kHalo)),
                      Kokkos::subview(u_, std::make_pair(kHalo, 2 * kHalo)));
    Kokkos::deep_copy(Kokkos::subview(e, std::make_pair(kHalo, 2 * kHalo)),
                      Kokkos::subview(u_, std::make_pair(count_, count_ + kHalo)));
    return e;
  }

  /// kHalo explicit steps with the neighbours' edges as halos (an empty View: the domain's
  /// end, where u = 0); returns the new edges.
  Field Step(Field left, Field right) {
    const int64_t n = count_, width = n + 2 * kHalo;
    if (left.extent(0)) {
      Kokkos::deep_copy(Kokkos::subview(u_, std::make_pair(int64_t{0}, kHalo)),
                        Kokkos::subview(left, std::make_pair(kHalo, 2 * kHalo)));
    }
    if (right.extent(0)) {
      Kokkos::deep_copy(Kokkos::subview(u_, std::make_pair(n + kHalo, width)),
                        Kokkos::subview(right, std::make_pair(int64_t{0}, kHalo)));
    }
    // Cells outside the domain hold the boundary value 0 and are never updated.
    const int64_t first = kHalo - begin_, last = kHalo - begin_ + total_;  // domain in u's indices
    for (int64_t s = 1; s <= kHalo; ++s) {
      auto u = u_, next = next_;
      const int64_t lo = s > first ? s : first, hi = width - s < last ? width - s : last;
      Kokkos::parallel_for(
          "step", Kokkos::RangePolicy<>(lo, hi),
          KOKKOS_LAMBDA(int64_t i) { next(i) = u(i) + kR * (u(i - 1) - 2.0 * u(i) + u(i + 1)); });
      Kokkos::fence();
      std::swap(u_, next_);
    }
    return Edges();
  }

  /// The segment's values (interior cells).
  Field Values() const {
    Field out("values", count_);
    Kokkos::deep_copy(out, Kokkos::subview(u_, std::make_pair(kHalo, count_ + kHalo)));
    return out;
  }

 private:
  int64_t begin_, count_, total_;
  Field u_, next_;
};
MPIRAY_REMOTE(Segment::Create, &Segment::Edges, &Segment::Step, &Segment::Values);

// The same scheme on one process, for the check.
std::vector<double> Serial(int64_t n, int steps) {
  Field u("u", n + 2), next("next", n + 2);
  Kokkos::parallel_for("init", n, KOKKOS_LAMBDA(int64_t i) { u(i + 1) = Initial(i, n); });
  for (int s = 0; s < steps; ++s) {
    Kokkos::parallel_for(
        "step", Kokkos::RangePolicy<>(1, n + 1),
        KOKKOS_LAMBDA(int64_t i) { next(i) = u(i) + kR * (u(i - 1) - 2.0 * u(i) + u(i + 1)); });
    std::swap(u, next);
  }
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), u);
  return std::vector<double>(h.data() + 1, h.data() + 1 + n);
}

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);  // every rank, before mpiray::Init
  const int64_t points = argc > 1 ? std::atoll(argv[1]) : 2000;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 32000;  // a multiple of kHalo
  const int actors = argc > 3 ? std::atoi(argv[3]) : 4;
  mpiray::Init();

  std::vector<mpiray::ActorHandle<Segment>> segs;
  for (int a = 0; a < actors; ++a) {
    const int64_t begin = points * a / actors, end = points * (a + 1) / actors;
    segs.push_back(mpiray::Actor(Segment::Create).Remote(begin, end - begin, points));
  }
  std::vector<mpiray::ObjectRef<Field>> edges;
  for (auto& s : segs) edges.push_back(s.Task(&Segment::Edges).Remote());
  const Field none("none", 0);
  if (steps % kHalo != 0 || points < actors * kHalo) {
    std::fprintf(stderr, "steps must be a multiple of %lld and points >= %lld per actor\n",
                 static_cast<long long>(kHalo), static_cast<long long>(kHalo));
    return 2;
  }
  for (int step = 0; step < steps; step += kHalo) {
    std::vector<mpiray::ObjectRef<Field>> next;
    for (int a = 0; a < actors; ++a) {
      auto call = segs[a].Task(&Segment::Step);
      if (a == 0 && a == actors - 1) next.push_back(call.Remote(none, none));
      else if (a == 0) next.push_back(call.Remote(none, edges[a + 1]));
      else if (a == actors - 1) next.push_back(call.Remote(edges[a - 1], none));
      else next.push_back(call.Remote(edges[a - 1], edges[a + 1]));
    }
    edges = std::move(next);
  }

  // Read every segment in place and compare with the serial run.
  const auto expect = Serial(points, steps);
  double max_err = 0, peak = 0;
  int64_t offset = 0;
  for (auto& s : segs) {
    auto values = mpiray::kernels::GetView(s.Task(&Segment::Values).Remote());
    for (size_t i = 0; i < values.extent(0); ++i) {
      max_err = std::fmax(max_err, std::fabs(values(i) - expect[offset + i]));
      peak = std::fmax(peak, values(i));
    }
    offset += static_cast<int64_t>(values.extent(0));
  }
  // The exact solution's peak decays as exp(-pi^2 t), t = steps * kR * dx^2.
  const double dx = 1.0 / static_cast<double>(points + 1);
  const double exact_peak = std::exp(-M_PI * M_PI * steps * kR * dx * dx);
  std::printf("heat: %lld points, %d steps, %d actors: max |distributed - serial| = %.3g, "
              "peak %.6f (exact %.6f)\n",
              static_cast<long long>(points), steps, actors, max_err, peak, exact_peak);
  const bool ok = offset == points && max_err == 0.0 && std::fabs(peak - exact_peak) < 1e-3;
  std::printf("%s\n", ok ? "kokkos heat OK" : "kokkos heat FAILED");
  mpiray::Shutdown();
  return ok ? 0 : 1;
}

// Monte-Carlo estimate of pi: many independent sampling tasks, reduced on the driver.
//   mpirun -n 4 ./monte_carlo_pi [tasks] [samples_per_task]
#include <mpiray/mpiray.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

// Points that fall inside the unit quarter circle, out of `samples`.
int64_t Sample(int64_t samples, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  int64_t inside = 0;
  for (int64_t i = 0; i < samples; ++i) {
    double x = u(rng), y = u(rng);
    inside += (x * x + y * y <= 1.0) ? 1 : 0;
  }
  return inside;
}
MPIRAY_REMOTE(Sample);

int main(int argc, char** argv) {
  int tasks = argc > 1 ? std::atoi(argv[1]) : 64;
  int64_t per_task = argc > 2 ? std::atoll(argv[2]) : 1'000'000;
  mpiray::Init();
  std::vector<mpiray::ObjectRef<int64_t>> parts;
  for (int i = 0; i < tasks; ++i) parts.push_back(mpiray::Task(Sample).Remote(per_task, static_cast<uint64_t>(i)));
  int64_t inside = 0;
  for (auto& p : mpiray::Get(parts)) inside += *p;
  double pi = 4.0 * static_cast<double>(inside) / static_cast<double>(tasks * per_task);
  std::printf("pi ~= %.6f from %lld samples (error %.2e)\n", pi,
              static_cast<long long>(tasks * per_task), std::fabs(pi - M_PI));
  mpiray::Shutdown();
  return std::fabs(pi - M_PI) < 0.01 ? 0 : 1;
}

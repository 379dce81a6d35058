// Parallel merge sort with nested tasks: each task splits its input, sorts the halves in two
// child tasks, waits for them and merges. There are far more tasks than workers; a task that
// waits for its children lends its worker to other tasks, so this cannot deadlock.
//   mpirun -n 4 ./merge_sort [n]
#include <mpiray/mpiray.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

std::vector<int> Sort(std::vector<int> v);

std::vector<int> Sort(std::vector<int> v) {
  if (v.size() <= 4096) {
    std::sort(v.begin(), v.end());
    return v;
  }
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  auto left = mpiray::Task(Sort).Remote(std::vector<int>(v.begin(), mid));
  auto right = mpiray::Task(Sort).Remote(std::vector<int>(mid, v.end()));
  auto l = mpiray::Get(left);
  auto r = mpiray::Get(right);
  std::vector<int> out(v.size());
  std::merge(l->begin(), l->end(), r->begin(), r->end(), out.begin());
  return out;
}
MPIRAY_REMOTE(Sort);

int main(int argc, char** argv) {
  size_t n = argc > 1 ? static_cast<size_t>(std::atoll(argv[1])) : 1'000'000;
  mpiray::Init();
  std::mt19937 rng(42);
  std::vector<int> data(n);
  for (auto& x : data) x = static_cast<int>(rng());
  auto sorted = mpiray::Get(mpiray::Task(Sort).Remote(data));
  std::sort(data.begin(), data.end());
  bool ok = *sorted == data;
  std::printf("sorted %zu integers with nested tasks: %s\n", n, ok ? "OK" : "WRONG");
  mpiray::Shutdown();
  return ok ? 0 : 1;
}

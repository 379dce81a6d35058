// An application outside the mpiray tree, built against an installed mpiray (tests/install):
// with find_package(mpiray) (CMakeLists.txt) and with pkg-config (Makefile). Run as
//   ./app                          (no launcher: the driver starts MPIRAY_NUM_WORKERS local workers)
//   scripts/mpirun -n 3 ./app      (rank 0 is the driver, ranks 1-2 are workers)
#include <mpiray/mpiray.h>

#include <unistd.h>

#include <cstdio>
#include <set>

int Square(int x) { return x * x; }
int Pid(int) { return static_cast<int>(getpid()); }

class Counter {
 public:
  explicit Counter(int start) : value_(start) {}
  static Counter* Create(int start) { return new Counter(start); }
  int Add(int x) { return value_ += x; }

 private:
  int value_;
};

MPIRAY_REMOTE(Square, Pid, Counter::Create, &Counter::Add);

int main() {
  mpiray::Init();  // ranks >= 1 serve as workers and never return
  int sum = 0;
  std::vector<mpiray::ObjectRef<int>> squares;
  for (int i = 0; i < 10; ++i) squares.push_back(mpiray::Task(Square).Remote(i));
  for (auto& v : mpiray::Get(squares)) sum += *v;
  auto counter = mpiray::Actor(Counter::Create).Remote(0);
  counter.Task(&Counter::Add).Remote(5);
  int value = *mpiray::Get(counter.Task(&Counter::Add).Remote(1));
  std::set<int> pids;
  for (int i = 0; i < 20; ++i) pids.insert(*mpiray::Get(mpiray::Task(Pid).Remote(i)));
  bool remote = pids.count(static_cast<int>(getpid())) == 0;
  double cpus = mpiray::ClusterResources()["CPU"];
  std::printf("external app: sum=%d counter=%d worker_pids=%zu remote=%d cpus=%g\n", sum, value,
              pids.size(), remote ? 1 : 0, cpus);
  mpiray::Shutdown();
  return sum == 285 && value == 6 && remote ? 0 : 1;
}

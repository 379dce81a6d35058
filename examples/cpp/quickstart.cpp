// Quickstart: tasks, a small DAG, an actor and a large object, on however many processes the
// program was launched with:
//   mpirun -n 4 ./quickstart      (rank 0 is the driver, ranks 1-3 are workers)
//   ./quickstart                  (starts one local worker per core)
#include <mpiray/mpiray.h>

#include <cstdio>
#include <numeric>
#include <vector>

int Square(int x) { return x * x; }
int Add(int a, int b) { return a + b; }

std::vector<double> Ramp(int n) {
  std::vector<double> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0.0);
  return v;
}
double Sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

class Counter {
 public:
  explicit Counter(int start) : value_(start) {}
  static Counter* Create(int start) { return new Counter(start); }
  int Add(int x) { return value_ += x; }
  int Value() const { return value_; }

 private:
  int value_;
};

MPIRAY_REMOTE(Square, Add, Ramp, Sum, Counter::Create, &Counter::Add, &Counter::Value);

int main() {
  mpiray::Init();

  // 1. Tasks: ten squares in parallel.
  std::vector<mpiray::ObjectRef<int>> squares;
  for (int i = 0; i < 10; ++i) squares.push_back(mpiray::Task(Square).Remote(i));
  int total = 0;
  for (auto& v : mpiray::Get(squares)) total += *v;
  std::printf("sum of squares 0..9      = %d\n", total);

  // 2. A DAG: ObjectRefs as arguments; Add runs once both squares exist.
  auto a = mpiray::Task(Square).Remote(3);
  auto b = mpiray::Task(Square).Remote(4);
  int c = *mpiray::Get(mpiray::Task(Add).Remote(a, b));
  std::printf("3^2 + 4^2                = %d\n", c);

  // 3. An actor: calls from one caller run in order.
  auto counter = mpiray::Actor(Counter::Create).Remote(10);
  for (int i = 0; i < 5; ++i) counter.Task(&Counter::Add).Remote(1);
  int value = *mpiray::Get(counter.Task(&Counter::Value).Remote());
  std::printf("counter after 5 adds     = %d\n", value);

  // 4. A large object (32 MB) produced by one task, consumed by another via shared memory.
  auto ramp = mpiray::Task(Ramp).Remote(4'000'000);
  double s = *mpiray::Get(mpiray::Task(Sum).Remote(ramp));
  std::printf("sum of 0..3999999        = %.0f\n", s);

  bool ok = total == 285 && c == 25 && value == 15 && s == 3999999.0 * 4000000.0 / 2;
  std::printf("%s\n", ok ? "quickstart OK" : "quickstart FAILED");
  mpiray::Shutdown();
  return ok ? 0 : 1;
}

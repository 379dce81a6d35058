// Integration scenarios, each run by CTest in a real world (mpirun, or standalone with local
// workers): `mpiray_itest <scenario>`. A scenario exits 0 when every check holds; the wrapper
// run-checked.sh then verifies that no process, shared-memory file or session directory is left.
#include <mpiray/mpiray.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "itest_check.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------------ remote functions

int Square(int x) { return x * x; }
int Add(int a, int b) { return a + b; }
int Identity(int x) { return x; }
int Throw(int x) {
  if (x > 0) throw std::runtime_error("boom " + std::to_string(x));
  return x;
}
int SleepMs(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
int Pid() { return static_cast<int>(getpid()); }
std::vector<uint8_t> Bytes(int n, int seed) {
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>((i * 31 + seed) & 0xff);
  return v;
}
uint64_t Checksum(const std::vector<uint8_t>& v) {
  uint64_t s = 0;
  for (uint8_t b : v) s = s * 1099511628211ull + b;
  return s;
}
mpiray::Blob BigBlob(int n) {
  std::vector<uint8_t> v(static_cast<size_t>(n), 7);
  return mpiray::Blob(std::move(v));
}
// Returns a ref created inside the task (nested ref in a return value).
std::vector<mpiray::ObjectRef<int>> MakeRefs(int n) {
  std::vector<mpiray::ObjectRef<int>> out;
  for (int i = 0; i < n; ++i) out.push_back(mpiray::Put(i * 10));
  return out;
}
int SumRefs(std::vector<mpiray::ObjectRef<int>> refs) {
  int s = 0;
  for (auto& v : mpiray::Get(refs)) s += *v;
  return s;
}
// Recursive merge sort with nested tasks: far more tasks than workers.
std::vector<int> MergeSort(std::vector<int> v);
std::vector<int> MergeSort(std::vector<int> v) {
  if (v.size() <= 64) {
    std::sort(v.begin(), v.end());
    return v;
  }
  size_t mid = v.size() / 2;
  auto left = mpiray::Task(MergeSort).Remote(std::vector<int>(v.begin(), v.begin() + mid));
  auto right = mpiray::Task(MergeSort).Remote(std::vector<int>(v.begin() + mid, v.end()));
  auto l = mpiray::Get(left);
  auto r = mpiray::Get(right);
  std::vector<int> out(v.size());
  std::merge(l->begin(), l->end(), r->begin(), r->end(), out.begin());
  return out;
}
// A worker calling Init again must get a clear error.
std::string InitAgain() {
  try {
    mpiray::Init();
  } catch (const mpiray::Error& e) {
    return e.what();
  }
  return "no error";
}
// Dies (SIGKILL) the first time it runs in this session, succeeds when retried.
int DieOnce(std::string marker) {
  std::ifstream probe(marker);
  if (!probe) {
    std::ofstream(marker) << "1";
    kill(getpid(), SIGKILL);
  }
  return 42;
}
int DieAlways() {
  kill(getpid(), SIGKILL);
  return 0;
}
// Holds a custom resource: records when it ran, to check there is no overlap.
std::pair<int64_t, int64_t> Interval(int ms) {
  auto now = [] {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  int64_t a = now();
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return {a, now()};
}

int PrintLines(int n) {
  for (int i = 0; i < n; ++i) std::printf("worker line %d\n", i);
  std::fflush(stdout);
  return n;
}

class Counter {
 public:
  explicit Counter(int start) : value_(start) {}
  static Counter* Create(int start) { return new Counter(start); }
  static Counter* CreateFailing(int) { throw std::runtime_error("constructor refused"); }
  int Add(int x) { return value_ += x; }
  int Value() const { return value_; }
  std::vector<int> Log(int x) {
    log_.push_back(x);
    return log_;
  }
  int Slow(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
  }

 private:
  int value_;
  std::vector<int> log_;
};

// A task that uses an actor handle it was given.
int BumpFromTask(mpiray::ActorHandle<Counter> c, int n) {
  mpiray::ObjectRef<int> last;
  for (int i = 0; i < n; ++i) last = c.Task(&Counter::Add).Remote(1);
  return *mpiray::Get(last);
}

MPIRAY_REMOTE(Square, Add, Identity, Throw, SleepMs, Pid, Bytes, Checksum, BigBlob, MakeRefs,
              SumRefs, MergeSort, InitAgain, DieOnce, DieAlways, Interval, Counter::Create,
              Counter::CreateFailing, &Counter::Add, &Counter::Value, &Counter::Log, &Counter::Slow,
              BumpFromTask, PrintLines);

int Unregistered(int x) { return x; }

// ------------------------------------------------------------------ scenarios

void Tasks() {
  std::vector<mpiray::ObjectRef<int>> refs;
  for (int i = 0; i < 1000; ++i) refs.push_back(mpiray::Task(Square).Remote(i));
  auto vals = mpiray::Get(refs);
  for (int i = 0; i < 1000; ++i) CHECK(*vals[static_cast<size_t>(i)] == i * i);
  // A chain of 200 dependent tasks (each waits for the previous one).
  auto acc = mpiray::Task(Identity).Remote(0);
  for (int i = 1; i <= 200; ++i) acc = mpiray::Task(Add).Remote(acc, 1);
  CHECK(*mpiray::Get(acc) == 200);
  // Values and refs mixed, a ref used twice.
  auto five = mpiray::Put(5);
  CHECK(*mpiray::Get(mpiray::Task(Add).Remote(five, five)) == 10);
  CHECK(*mpiray::Get(mpiray::Task(Add).Remote(five, 7)) == 12);
  // Work spreads over the workers.
  std::vector<mpiray::ObjectRef<int>> pids;
  for (int i = 0; i < 200; ++i) pids.push_back(mpiray::Task(Pid).Remote());
  std::vector<int> distinct;
  for (auto& p : mpiray::Get(pids)) distinct.push_back(*p);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  CHECK(distinct.size() >= 2);
  CHECK(std::find(distinct.begin(), distinct.end(), getpid()) == distinct.end());
  std::printf("tasks OK (%zu workers used)\n", distinct.size());
}

void Actors() {
  auto c = mpiray::Actor(Counter::Create).Remote(100);
  // 2000 calls from one caller run in order.
  mpiray::ObjectRef<std::vector<int>> log;
  for (int i = 0; i < 2000; ++i) log = c.Task(&Counter::Log).Remote(i);
  auto seq = mpiray::Get(log);
  CHECK(seq->size() == 2000);
  for (int i = 0; i < 2000; ++i) CHECK((*seq)[static_cast<size_t>(i)] == i);
  // Several actors, handles passed to tasks (calls from workers).
  auto d = mpiray::Actor(Counter::Create).Remote(0);
  auto r1 = mpiray::Task(BumpFromTask).Remote(d, 50);
  auto r2 = mpiray::Task(BumpFromTask).Remote(d, 50);
  int a = *mpiray::Get(r1), b = *mpiray::Get(r2);
  CHECK(std::max(a, b) == 100);
  CHECK(*mpiray::Get(d.Task(&Counter::Value).Remote()) == 100);
  // A ref from one actor as the argument of another actor's call.
  auto v = c.Task(&Counter::Add).Remote(1);
  CHECK(*mpiray::Get(d.Task(&Counter::Add).Remote(v)) == 201);
  // Kill: later calls fail with ActorDiedError.
  d.Kill();
  CHECK_THROWS(mpiray::ActorDiedError, mpiray::Get(d.Task(&Counter::Value).Remote()), "dead");
  // A constructor that throws: calls fail naming the cause.
  auto bad = mpiray::Actor(Counter::CreateFailing).Remote(1);
  CHECK_THROWS(mpiray::ActorDiedError, mpiray::Get(bad.Task(&Counter::Value).Remote()),
               "constructor refused");
  std::printf("actors OK\n");
}

void Objects() {
  // Small and large puts.
  auto small = mpiray::Put(std::string("hello"));
  CHECK(*mpiray::Get(small) == "hello");
  auto big_vec = Bytes(8 << 20, 3);
  auto big = mpiray::Put(big_vec);
  CHECK(Checksum(*mpiray::Get(big)) == Checksum(big_vec));
  // A large object produced by a task, read by another task and by the driver.
  auto produced = mpiray::Task(Bytes).Remote(16 << 20, 9);
  CHECK(*mpiray::Get(mpiray::Task(Checksum).Remote(produced)) == Checksum(Bytes(16 << 20, 9)));
  CHECK(Checksum(*mpiray::Get(produced)) == Checksum(Bytes(16 << 20, 9)));
  // Blobs from the store are zero-copy: two gets map the same memory.
  auto blob = mpiray::Task(BigBlob).Remote(4 << 20);
  auto g1 = mpiray::Get(blob);
  auto g2 = mpiray::Get(blob);
  CHECK(g1->size() == (4u << 20));
  CHECK(g1->data() == g2->data());
  CHECK(g1->data()[12345] == 7);
  // Nested refs: a task returns refs it created; they stay alive inside the list.
  auto list = mpiray::Task(MakeRefs).Remote(5);
  auto refs = mpiray::Get(list);
  int total = 0;
  for (auto& v : mpiray::Get(*refs)) total += *v;
  CHECK(total == 100);
  CHECK(*mpiray::Get(mpiray::Task(SumRefs).Remote(*refs)) == 100);
  // Reference counting: dropping every handle frees the objects and the store bytes.
  {
    std::vector<mpiray::ObjectRef<std::vector<uint8_t>>> many;
    for (int i = 0; i < 10; ++i) many.push_back(mpiray::Put(Bytes(1 << 20, i)));
    CHECK(mpiray::GetClusterSnapshot().store_used >= (10u << 20));
  }
  small = {};
  big = {};
  produced = {};
  blob = {};
  list = {};
  refs.reset();
  g1.reset();
  g2.reset();
  auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline && (mpiray::GetClusterSnapshot().objects > 0 ||
                                     mpiray::GetClusterSnapshot().store_used > 0)) {
    std::this_thread::sleep_for(10ms);
  }
  auto snap = mpiray::GetClusterSnapshot();
  std::printf("objects left %zu, head store bytes %llu\n", snap.objects,
              static_cast<unsigned long long>(snap.store_used));
  CHECK(snap.objects == 0);
  CHECK(snap.store_used == 0);
  std::printf("objects OK\n");
}

void CrossNode() {
  // Run with MPIRAY_RANKS_PER_NODE so that workers sit on other nodes than the driver.
  auto snap = mpiray::GetClusterSnapshot();
  CHECK(snap.nodes.size() >= 2);
  // Objects made on other nodes are fetched over the fabric, then cached.
  for (int i = 0; i < 6; ++i) {
    auto r = mpiray::Task(Bytes).Remote(24 << 20, i);
    CHECK(Checksum(*mpiray::Get(r)) == Checksum(Bytes(24 << 20, i)));
  }
  // A driver put read by tasks on every node.
  auto data = Bytes(12 << 20, 77);
  auto put = mpiray::Put(data);
  std::vector<mpiray::ObjectRef<uint64_t>> sums;
  for (int i = 0; i < 12; ++i) sums.push_back(mpiray::Task(Checksum).Remote(put));
  for (auto& s : mpiray::Get(sums)) CHECK(*s == Checksum(data));
  std::printf("cross-node OK (%zu nodes)\n", snap.nodes.size());
}

void Errors() {
  // A task that throws: TaskError with the remote message and where it ran.
  auto bad = mpiray::Task(Throw).Remote(3);
  CHECK_THROWS(mpiray::TaskError, mpiray::Get(bad), "boom 3");
  CHECK_THROWS(mpiray::TaskError, mpiray::Get(bad), "failed on worker");
  // The error propagates to dependent tasks without running them.
  CHECK_THROWS(mpiray::TaskError, mpiray::Get(mpiray::Task(Add).Remote(bad, 1)), "boom 3");
  // Unregistered function: refused at Task().
  CHECK_THROWS(mpiray::InvalidArgumentError, mpiray::Task(Unregistered), "MPIRAY_REMOTE");
  // Timeout.
  auto slow = mpiray::Task(SleepMs).Remote(3000);
  CHECK_THROWS(mpiray::GetTimeoutError, mpiray::Get(slow, 100), "timed out");
  // Bad resources: negative, unknown (infeasible), too many CPUs.
  CHECK_THROWS(mpiray::InvalidArgumentError, mpiray::Task(Square).SetResource("CPU", -1).Remote(1),
               "non-negative");
  CHECK_THROWS(mpiray::InfeasibleError,
               mpiray::Task(Square).SetResource("unicorn", 1).Remote(1), "unicorn");
  CHECK_THROWS(mpiray::InfeasibleError, mpiray::Task(Square).SetResource("CPU", 1000).Remote(1),
               "no node can ever satisfy");
  CHECK_THROWS(mpiray::InfeasibleError, mpiray::Task(Square).SetResource("GPU", 1).Remote(1),
               "GPU");
  // Get on an empty ref; on a ref whose object was never created.
  CHECK_THROWS(mpiray::InvalidArgumentError, mpiray::Get(mpiray::ObjectRef<int>()), "empty");
  mpiray::ObjectId bogus;
  bogus.task = 0xdead00000001ull;
  CHECK_THROWS(mpiray::ObjectLostError, mpiray::Get(mpiray::ObjectRef<int>(bogus)), "unknown");
  // Wrong type on read.
  auto s = mpiray::Put(std::string("text"));
  bool mismatch = false;
  try {
    (void)mpiray::Get(mpiray::ObjectRef<std::vector<double>>(s.ID()));
  } catch (const mpiray::Error&) {
    mismatch = true;
  }
  CHECK(mismatch);
  // Init twice on the driver, and from inside a task.
  CHECK_THROWS(mpiray::Error, mpiray::Init(), "twice");
  std::string inner = *mpiray::Get(mpiray::Task(InitAgain).Remote());
  CHECK(inner.find("twice") != std::string::npos);
  // An object larger than the store (MPIRAY_OBJECT_STORE_MEMORY is 64M in this test).
  CHECK_THROWS(mpiray::ObjectStoreFullError, mpiray::Put(Bytes(100 << 20, 1)), "larger than");
  CHECK_THROWS(mpiray::ObjectStoreFullError, mpiray::Get(mpiray::Task(Bytes).Remote(100 << 20, 1)),
               "larger than");
  // The cluster still works afterwards.
  CHECK(*mpiray::Get(mpiray::Task(Square).Remote(9)) == 81);
  std::printf("errors OK\n");
}

// Spilling: several hundred MB of objects through 64 MB stores (MPIRAY_OBJECT_STORE_MEMORY),
// on two virtual nodes. Everything reads back, on the node that holds it and from the other
// one, and freeing the objects removes their spill files.
void Spill() {
  namespace fs = std::filesystem;
  const char* spill_dir = std::getenv("MPIRAY_SPILL_DIR");
  CHECK(spill_dir != nullptr);
  auto spill_files = [&] {
    size_t n = 0;
    for (const auto& node_dir : fs::directory_iterator(spill_dir)) {
      for (const auto& f : fs::directory_iterator(node_dir.path())) {
        n += f.path().filename().string()[0] == '.' ? 0 : 1;
      }
    }
    return n;
  };
  auto snap = mpiray::GetClusterSnapshot();
  CHECK(snap.nodes.size() >= 2);
  const int nodes = static_cast<int>(snap.nodes.size());
  struct Held {
    mpiray::ObjectRef<std::vector<uint8_t>> ref;
    uint64_t sum;
    int node;
  };
  std::vector<Held> held;
  uint64_t total = 0;
  auto size_of = [](int i) { return (8 + 4 * (i % 7)) << 20; };  // 8 to 32 MB
  // Puts by the driver (node 0) ...
  for (int i = 0; i < 10; ++i) {
    auto v = Bytes(size_of(i), i);
    held.push_back({mpiray::Put(v), Checksum(v), 0});
    total += v.size();
  }
  // ... and task returns made on every node.
  for (int i = 0; i < 16; ++i) {
    int node = i % nodes;
    auto ref = mpiray::Task(Bytes)
                   .SetResource("node:" + std::to_string(node), 0.001)
                   .Remote(size_of(i + 3), 100 + i);
    held.push_back({ref, Checksum(Bytes(size_of(i + 3), 100 + i)), node});
    total += static_cast<uint64_t>(size_of(i + 3));
  }
  std::vector<mpiray::ObjectRef<std::vector<uint8_t>>> all;
  for (auto& h : held) all.push_back(h.ref);
  CHECK(mpiray::Wait(all, static_cast<int>(all.size()), 120000).unready.empty());
  size_t on_disk = spill_files();
  std::printf("%.0f MB in %zu objects, %zu spilled\n", static_cast<double>(total) / 1e6,
              held.size(), on_disk);
  CHECK(total > 400u << 20);
  CHECK(on_disk >= held.size() / 2);  // 64 MB per node hold a few objects each

  // Read on another node than the holder (a task there): fetched from the holder's memory or
  // its spill file.
  std::vector<mpiray::ObjectRef<uint64_t>> sums;
  for (auto& h : held) {
    int other = (h.node + 1) % nodes;
    sums.push_back(
        mpiray::Task(Checksum).SetResource("node:" + std::to_string(other), 0.001).Remote(h.ref));
  }
  for (size_t i = 0; i < held.size(); ++i) CHECK(*mpiray::Get(sums[i], 120000) == held[i].sum);
  // Read by the driver, oldest first (the most likely to be on disk), twice.
  for (int round = 0; round < 2; ++round) {
    for (auto& h : held) CHECK(Checksum(*mpiray::Get(h.ref, 120000)) == h.sum);
  }
  // Freeing the objects removes them from memory and disk.
  held.clear();
  all.clear();
  sums.clear();
  auto deadline = Clock::now() + 30s;
  auto settled = [&] {
    auto s = mpiray::GetClusterSnapshot();
    return s.objects == 0 && s.store_used == 0 && spill_files() == 0;
  };
  while (Clock::now() < deadline && !settled()) std::this_thread::sleep_for(10ms);
  CHECK(mpiray::GetClusterSnapshot().objects == 0);
  CHECK(mpiray::GetClusterSnapshot().store_used == 0);
  CHECK(spill_files() == 0);
  std::printf("spill OK (%zu nodes)\n", static_cast<size_t>(nodes));
}

void WaitAndCancel() {
  std::vector<mpiray::ObjectRef<int>> refs;
  refs.push_back(mpiray::Task(SleepMs).Remote(10));
  refs.push_back(mpiray::Task(SleepMs).Remote(4000));
  auto r = mpiray::Wait(refs, 1, 3000);
  CHECK(r.ready.size() == 1);
  CHECK(r.unready.size() == 1);
  CHECK(r.ready[0] == refs[0]);
  auto none = mpiray::Wait(std::vector<mpiray::ObjectRef<int>>{refs[1]}, 1, 50);
  CHECK(none.ready.empty());
  // Cancel queued tasks: fill the workers, queue more, cancel those.
  auto workers = mpiray::GetClusterSnapshot().nodes;
  std::vector<mpiray::ObjectRef<int>> busy;
  for (int i = 0; i < 8; ++i) busy.push_back(mpiray::Task(SleepMs).Remote(300));
  auto victim = mpiray::Task(SleepMs).Remote(5000);
  mpiray::Cancel(victim);
  CHECK_THROWS(mpiray::TaskCancelledError, mpiray::Get(victim, 20000), "cancelled");
  // Cancel a running task: its result becomes TaskCancelledError.
  auto running = mpiray::Task(SleepMs).Remote(500);
  std::this_thread::sleep_for(100ms);
  mpiray::Cancel(running);
  CHECK_THROWS(mpiray::TaskCancelledError, mpiray::Get(running, 20000), "cancelled");
  for (auto& b : mpiray::Get(busy)) CHECK(*b == 300);
  std::printf("wait/cancel OK\n");
}

void Nested() {
  std::vector<int> v(20000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int>((i * 7919) % 10007);
  auto sorted = mpiray::Get(mpiray::Task(MergeSort).Remote(v));
  std::sort(v.begin(), v.end());
  CHECK(*sorted == v);
  std::printf("nested OK\n");
}

void Resources() {
  auto total = mpiray::ClusterResources();
  CHECK(total["CPU"] >= 2);
  CHECK(total["memory"] > 64.0 * (1 << 20));  // bytes, 70% of the available memory
  CHECK(total["slot"] >= 1);  // MPIRAY_RESOURCES=slot=1 in this test: one per node
  // Tasks needing the only "slot" of each node never overlap on a node; with one node per
  // world here, they never overlap at all.
  auto snap = mpiray::GetClusterSnapshot();
  std::vector<mpiray::ObjectRef<std::pair<int64_t, int64_t>>> iv;
  for (int i = 0; i < 6; ++i) iv.push_back(mpiray::Task(Interval).SetResource("slot", 1).Remote(50));
  std::vector<std::pair<int64_t, int64_t>> spans;
  for (auto& s : mpiray::Get(iv)) spans.push_back(*s);
  std::sort(spans.begin(), spans.end());
  if (snap.nodes.size() == 1) {
    for (size_t i = 1; i < spans.size(); ++i) CHECK(spans[i].first >= spans[i - 1].second);
  }
  // Fractional CPUs, and the available resources come back after the work.
  std::vector<mpiray::ObjectRef<int>> halves;
  for (int i = 0; i < 8; ++i) halves.push_back(mpiray::Task(SleepMs).SetResource("CPU", 0.5).Remote(20));
  for (auto& h : mpiray::Get(halves)) CHECK(*h == 20);
  auto deadline = Clock::now() + 5s;
  while (Clock::now() < deadline && mpiray::AvailableResources()["CPU"] != total["CPU"]) {
    std::this_thread::sleep_for(5ms);
  }
  CHECK(mpiray::AvailableResources()["CPU"] == total["CPU"]);
  CHECK(mpiray::AvailableResources()["slot"] == total["slot"]);
  std::printf("resources OK\n");
}

void WorkerDeath() {
  // Needs a launcher that survives a dead rank (mpirun --enable-recovery, or standalone).
  std::string marker = std::string(std::getenv("MPIRAY_SESSION_ROOT") ? std::getenv("MPIRAY_SESSION_ROOT") : "/tmp") +
                       "/dieonce-" + std::to_string(getpid());
  // The task SIGKILLs its worker as it starts: the time to its result is the recovery time.
  auto t0 = std::chrono::steady_clock::now();
  auto r = mpiray::Task(DieOnce).SetMaxRetries(2).Remote(marker);
  CHECK(*mpiray::Get(r, 60000) == 42);
  double recovery_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::remove(marker.c_str());
  auto dead = mpiray::Task(DieAlways).SetMaxRetries(0).Remote();
  CHECK_THROWS(mpiray::WorkerCrashedError, mpiray::Get(dead, 60000), "died");
  // The rest of the cluster still runs tasks.
  std::vector<mpiray::ObjectRef<int>> refs;
  for (int i = 0; i < 50; ++i) refs.push_back(mpiray::Task(Square).Remote(i));
  for (int i = 0; i < 50; ++i) CHECK(*mpiray::Get(refs[static_cast<size_t>(i)]) == i * i);
  std::printf("worker death OK (%zu workers left; kill -> retried task done in %.3f s)\n",
              mpiray::GetClusterSnapshot().nodes.size(), recovery_s);
}

// The session directory: private, with the token, the head's address and one log per process.
void Session() {
  namespace fs = std::filesystem;
  const char* root = std::getenv("MPIRAY_SESSION_ROOT");
  CHECK(root != nullptr);
  fs::path dir;
  for (const auto& e : fs::directory_iterator(root)) {
    if (e.path().filename().string().rfind("mpiray-", 0) == 0) dir = e.path();
  }
  CHECK(!dir.empty());
  CHECK((fs::status(dir).permissions() & fs::perms::all) == fs::perms::owner_all);
  CHECK((fs::status(dir / "token").permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write));
  CHECK(fs::file_size(dir / "token") > 32);
  CHECK(fs::exists(dir / "head.addr"));
  // Make every worker run something so that each has logged, then look for the files.
  std::vector<mpiray::ObjectRef<int>> refs;
  for (int i = 0; i < 100; ++i) refs.push_back(mpiray::Task(Square).Remote(i));
  mpiray::Get(refs);
  size_t workers = mpiray::GetClusterSnapshot().processes.size() - 1;
  CHECK(fs::exists(dir / "logs" / "head.log"));
  size_t worker_logs = 0, worker_outputs = 0;
  for (const auto& e : fs::directory_iterator(dir / "logs")) {
    std::string n = e.path().filename().string();
    if (n.rfind("worker-", 0) != 0) continue;
    worker_logs += e.path().extension() == ".log" ? 1 : 0;     // the runtime's log
    worker_outputs += e.path().extension() == ".out" ? 1 : 0;  // the worker's stdout/stderr
  }
  CHECK(worker_logs == workers);
  CHECK(worker_outputs == workers);
  std::ifstream head_log(dir / "logs" / "head.log");
  std::string text((std::istreambuf_iterator<char>(head_log)), std::istreambuf_iterator<char>());
  CHECK(text.find("listening for joining processes") != std::string::npos);
  std::printf("session OK (%zu worker logs)\n", worker_logs);
}

void Output() {
  CHECK(*mpiray::Get(mpiray::Task(PrintLines).Remote(5)) == 5);
  std::printf("output OK\n");
}

// Walltime/preemption: save progress when asked, resume from it when the job comes back.
void Checkpoint() {
  const char* path = std::getenv("MPIRAY_TEST_CHECKPOINT");
  CHECK(path != nullptr);
  std::ifstream saved(path);
  int progress = 0;
  if (saved >> progress) {
    std::printf("resumed from checkpoint %d\n", progress);
    CHECK(*mpiray::Get(mpiray::Task(Add).Remote(progress, 1)) == progress + 1);
    std::printf("finished after resume\n");
    return;
  }
  auto step = std::make_shared<std::atomic<int>>(0);
  std::string file = path;
  mpiray::AddCheckpointCallback([step, file] {
    // The cluster still works here: the callback may read remote state.
    int value = *mpiray::Get(mpiray::Task(Add).Remote(step->load(), 1000));
    std::ofstream(file) << value;
    std::printf("checkpoint saved %d\n", value);
    std::fflush(stdout);
  });
  for (int i = 0; i < 5; ++i) *step = *mpiray::Get(mpiray::Task(Add).Remote(step->load(), 1));
  auto busy = mpiray::Task(SleepMs).Remote(60000);
  std::printf("READY\n");
  std::fflush(stdout);
  (void)mpiray::Get(busy);
  std::printf("not interrupted\n");
}

void Sleepy() {
  // For the Ctrl-C test: announce readiness, then run long tasks until killed.
  std::vector<mpiray::ObjectRef<int>> refs;
  for (int i = 0; i < 4; ++i) refs.push_back(mpiray::Task(SleepMs).Remote(60000));
  auto big = mpiray::Put(Bytes(8 << 20, 1));
  std::printf("READY\n");
  std::fflush(stdout);
  (void)mpiray::Get(refs);
  std::printf("Get returned: not interrupted\n");
}

void SleepyWait() {
  // Ctrl-C while the driver is in Wait: the documented default ends the job (exit 130).
  std::vector<mpiray::ObjectRef<int>> refs;
  for (int i = 0; i < 2; ++i) refs.push_back(mpiray::Task(SleepMs).Remote(60000));
  std::printf("READY\n");
  std::fflush(stdout);
  (void)mpiray::Wait(refs, 2);
  std::printf("Wait returned: not interrupted\n");
}

void Uncaught() {
  auto big = mpiray::Put(Bytes(8 << 20, 1));
  (void)mpiray::Get(mpiray::Task(Square).Remote(2));
  throw std::runtime_error("the driver fails on purpose");
}

// For the head-death tests: busy and idle workers, objects in shared memory (on the workers'
// nodes too), then wait for the test to SIGKILL this process.
void HeadKilled() {
  std::vector<mpiray::ObjectRef<int>> warm;
  for (int i = 0; i < 40; ++i) warm.push_back(mpiray::Task(Square).Remote(i));
  for (int i = 0; i < 40; ++i) CHECK(*mpiray::Get(warm[static_cast<size_t>(i)]) == i * i);
  auto big = mpiray::Put(Bytes(8 << 20, 1));
  std::vector<mpiray::ObjectRef<mpiray::Blob>> blobs;
  for (int i = 0; i < 3; ++i) blobs.push_back(mpiray::Task(BigBlob).Remote(4 << 20));
  for (auto& b : blobs) CHECK(mpiray::Get(b)->size() == (4u << 20));
  std::vector<mpiray::ObjectRef<int>> busy;
  for (int i = 0; i < 2; ++i) busy.push_back(mpiray::Task(SleepMs).Remote(120000));
  std::this_thread::sleep_for(200ms);  // the sleeps have started
  std::printf("READY head_pid=%d\n", static_cast<int>(getpid()));
  std::fflush(stdout);
  (void)mpiray::Get(busy);
  std::printf("the head was never killed\n");
  std::exit(1);
}

// The driver's exit status: std::exit after Init (atexit stops the cluster).
void Exit3() {
  CHECK(*mpiray::Get(mpiray::Task(Square).Remote(3)) == 9);
  auto big = mpiray::Put(Bytes(8 << 20, 1));
  std::printf("exiting with 3\n");
  std::exit(3);
}

void NoShutdown() {
  auto big = mpiray::Put(Bytes(8 << 20, 1));
  CHECK(*mpiray::Get(mpiray::Task(Square).Remote(3)) == 9);
  std::printf("returning without Shutdown\n");
  std::exit(0);  // atexit must still stop the cluster
}

// Fault-tolerance scenarios (itest_ft.cpp).
void ActorRestart();
void Lineage();
// Scheduling scenarios (itest_sched.cpp).
void Placement();

int main(int argc, char** argv) {
  std::map<std::string, std::function<void()>> scenarios = {
      {"actor_restart", ActorRestart}, {"lineage", Lineage}, {"placement", Placement},
      {"tasks", Tasks},       {"actors", Actors},           {"objects", Objects},
      {"crossnode", CrossNode}, {"errors", Errors},         {"wait_cancel", WaitAndCancel},
      {"nested", Nested},     {"resources", Resources},     {"worker_death", WorkerDeath},
      {"sleepy", Sleepy},     {"sleepy_wait", SleepyWait},     {"uncaught", Uncaught},       {"no_shutdown", NoShutdown},
      {"session", Session},   {"output", Output},           {"checkpoint", Checkpoint},
      {"spill", Spill},       {"head_killed", HeadKilled},  {"exit3", Exit3},
  };
  // Rank 1 dies before start-up: under mpirun --enable-recovery the others must give up with
  // a clear message instead of waiting inside MPI forever.
  if (argc >= 2 && std::string(argv[1]) == "rank1_dies_before_init") {
    const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
    if (!rank) rank = std::getenv("SLURM_PROCID");
    if (rank && std::string(rank) == "1") std::_Exit(1);
    mpiray::Init();
    std::printf("start-up completed without rank 1\n");
    return 0;
  }
  // The driver's exit status: main returns 3 without Shutdown (atexit stops the cluster).
  if (argc >= 2 && std::string(argv[1]) == "return3") {
    mpiray::Init();
    CHECK(*mpiray::Get(mpiray::Task(Square).Remote(4)) == 16);
    auto big = mpiray::Put(Bytes(8 << 20, 1));
    std::printf("returning 3 from main\n");
    return 3;
  }
  if (argc < 2 || !scenarios.count(argv[1])) {
    std::fprintf(stderr, "usage: %s <scenario>\n", argv[0]);
    return 2;
  }
  mpiray::Init();
  scenarios[argv[1]]();
  mpiray::Shutdown();
  return 0;
}

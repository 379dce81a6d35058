// Fault-tolerance scenarios: actors restarted after their worker is SIGKILLed, objects rebuilt
// from lineage after every copy died. They need a launcher that survives a dead rank
// (`mpirun --enable-recovery`, or standalone) and enough workers for the deaths they cause.
#include <mpiray/mpiray.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "itest_check.h"
#include "itest_scratch.h"

namespace {

using itest::AppendPid;
using itest::ReadPids;
using itest::RemoveScratch;
using itest::Scratch;

// Kill a worker process and wait until it is gone.
void KillProcess(int pid) {
  CHECK(pid > 0 && pid != getpid());
  CHECK(kill(pid, SIGKILL) == 0);
  for (int i = 0; i < 500 && kill(pid, 0) == 0; ++i) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string s;
    std::getline(stat, s);
    if (s.find(") Z ") != std::string::npos) break;  // a zombie: dead, not yet reaped
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Until the head notices, a same-machine reader could still map the dead node's files.
  auto known = [pid] {
    for (const auto& p : mpiray::GetClusterSnapshot().processes) {
      if (p.pid == pid) return true;
    }
    return false;
  };
  for (int i = 0; i < 1000 && known(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(!known());
}

std::vector<uint8_t> Pattern(int n, int seed) {
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>((i * 13 + seed) & 0xff);
  return v;
}

}  // namespace

// ------------------------------------------------------------------ remote code

class Phoenix {
 public:
  Phoenix(int start, std::string log) : value_(start) { AppendPid(log); }
  static Phoenix* Create(int start, std::string log) { return new Phoenix(start, std::move(log)); }
  int Add(int x) { return value_ += x; }
  int Pid() { return static_cast<int>(getpid()); }
  // SIGKILLs its own process the first time (the marker file remembers), then answers.
  int DieOnce(std::string marker) {
    if (!std::ifstream(marker)) {
      std::ofstream(marker) << "1";
      kill(getpid(), SIGKILL);
    }
    return value_;
  }
  int Die() {
    kill(getpid(), SIGKILL);
    return 0;
  }

 private:
  int value_;
};

// An actor that calls another one (so calls come from a worker, not the driver).
class Relay {
 public:
  explicit Relay(mpiray::ActorHandle<Phoenix> target) : target_(target) {}
  static Relay* Create(mpiray::ActorHandle<Phoenix> target) { return new Relay(target); }
  int Bump(int n) {
    mpiray::ObjectRef<int> last;
    for (int i = 0; i < n; ++i) last = target_.Task(&Phoenix::Add).Remote(1);
    return *mpiray::Get(last);
  }

 private:
  mpiray::ActorHandle<Phoenix> target_;
};

std::vector<uint8_t> Produce(int n, int seed, std::string log) {
  AppendPid(log);
  return Pattern(n, seed);
}
std::vector<uint8_t> Transform(std::vector<uint8_t> in, std::string log) {
  AppendPid(log);
  for (auto& b : in) b = static_cast<uint8_t>(b + 1);
  return in;
}
uint64_t Sum(std::vector<uint8_t> in) {
  uint64_t s = 0;
  for (uint8_t b : in) s += b;
  return s;
}
mpiray::ObjectRef<std::vector<uint8_t>> PutInWorker(int n, std::string log) {
  AppendPid(log);
  return mpiray::Put(Pattern(n, 3));
}
int Tiny(int x) { return x + 1; }

MPIRAY_REMOTE(Phoenix::Create, &Phoenix::Add, &Phoenix::Pid, &Phoenix::DieOnce, &Phoenix::Die,
              Relay::Create, &Relay::Bump, Produce, Transform, Sum, PutInWorker, Tiny);

// ------------------------------------------------------------------ scenarios

void ActorRestart() {
  using mpiray::ActorDiedError;
  // 1. Restarted with its calls: the call that killed it and the one queued behind it are
  //    re-sent to the new instance (max_task_retries=-1), in order.
  std::string ctor_log = Scratch("ctor");
  auto p = mpiray::Actor(Phoenix::Create).SetMaxRestarts(1).SetMaxTaskRetries(-1).Remote(10, ctor_log);
  CHECK(*mpiray::Get(p.Task(&Phoenix::Add).Remote(1)) == 11);
  int pid1 = *mpiray::Get(p.Task(&Phoenix::Pid).Remote());
  auto t0 = std::chrono::steady_clock::now();
  auto r1 = p.Task(&Phoenix::DieOnce).Remote(Scratch("marker1"));
  auto r2 = p.Task(&Phoenix::Add).Remote(5);
  CHECK(*mpiray::Get(r1, 60000) == 10);  // the constructor ran again: state starts over
  double recovery_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(*mpiray::Get(r2, 60000) == 15);
  CHECK(*mpiray::Get(p.Task(&Phoenix::Pid).Remote()) != pid1);
  CHECK(ReadPids(ctor_log).size() == 2);
  // 2. A call that may not be retried fails; with no restarts left the actor is dead.
  CHECK_THROWS(ActorDiedError, mpiray::Get(p.Task(&Phoenix::Die).SetMaxRetries(0).Remote(), 60000),
               "no restarts left");
  CHECK_THROWS(ActorDiedError, mpiray::Get(p.Task(&Phoenix::Add).Remote(1), 60000), "dead");
  CHECK(ReadPids(ctor_log).size() == 2);

  // 3. Calls from another actor keep working across a restart.
  auto q = mpiray::Actor(Phoenix::Create).SetMaxRestarts(1).Remote(100, Scratch("ctor-q"));
  auto relay = mpiray::Actor(Relay::Create).Remote(q);
  CHECK(*mpiray::Get(relay.Task(&Relay::Bump).Remote(5)) == 105);
  CHECK_THROWS(ActorDiedError, mpiray::Get(q.Task(&Phoenix::DieOnce).Remote(Scratch("marker2")), 60000),
               "in flight");  // max_task_retries=0 (the default): the call fails...
  CHECK(*mpiray::Get(relay.Task(&Relay::Bump).Remote(3), 60000) == 103);  // ...the actor is back

  // 4. Kill(no_restart=false) restarts it while restarts are left; then it is gone.
  auto k = mpiray::Actor(Phoenix::Create).SetMaxRestarts(1).Remote(10, Scratch("ctor-k"));
  CHECK(*mpiray::Get(k.Task(&Phoenix::Add).Remote(3)) == 13);
  k.Kill(/*no_restart=*/false);
  CHECK(*mpiray::Get(k.Task(&Phoenix::Add).Remote(1), 60000) == 11);
  k.Kill(/*no_restart=*/false);
  CHECK_THROWS(ActorDiedError, mpiray::Get(k.Task(&Phoenix::Add).Remote(1), 60000), "dead");

  // 5. Without max_restarts, a dead worker means a dead actor.
  auto once = mpiray::Actor(Phoenix::Create).Remote(0, Scratch("ctor-once"));
  CHECK_THROWS(ActorDiedError, mpiray::Get(once.Task(&Phoenix::Die).Remote(), 60000), "");
  CHECK_THROWS(ActorDiedError, mpiray::Get(once.Task(&Phoenix::Add).Remote(1), 60000), "dead");
  auto snap = mpiray::GetClusterSnapshot();
  CHECK(snap.actor_restarts == 3);
  RemoveScratch();
  std::printf("actor restart OK (kill -> retried call done in %.3f s)\n", recovery_s);
}

void Lineage() {
  constexpr int kSize = 1 << 20;  // stored in shared memory (not inline)
  // A. The only copy dies with its node: the task runs again.
  std::string log_a = Scratch("a");
  auto a = mpiray::Task(Produce).Remote(kSize, 5, log_a);
  CHECK(mpiray::Wait(std::vector<mpiray::ObjectRef<std::vector<uint8_t>>>{a}, 1, 60000).ready.size() == 1);
  auto t0 = std::chrono::steady_clock::now();
  KillProcess(ReadPids(log_a).at(0));
  CHECK(*mpiray::Get(a, 60000) == Pattern(kSize, 5));
  double rebuild_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(ReadPids(log_a).size() == 2);

  // B. A chain whose first link was freed: both run again.
  std::string log_b1 = Scratch("b1"), log_b2 = Scratch("b2");
  auto b1 = mpiray::Task(Produce).Remote(kSize, 7, log_b1);
  auto b2 = mpiray::Task(Transform).Remote(b1, log_b2);
  b1 = {};  // only b2 keeps b1's lineage now
  CHECK(mpiray::Wait(std::vector<mpiray::ObjectRef<std::vector<uint8_t>>>{b2}, 1, 60000).ready.size() == 1);
  KillProcess(ReadPids(log_b2).at(0));
  auto expect_b = Pattern(kSize, 7);
  for (auto& x : expect_b) x = static_cast<uint8_t>(x + 1);
  CHECK(*mpiray::Get(b2, 60000) == expect_b);
  CHECK(ReadPids(log_b2).size() == 2);
  CHECK(ReadPids(log_b1).size() == 2);

  // C. A task whose argument's only copy died before it ran gets the rebuilt argument.
  std::string log_c = Scratch("c");
  auto c = mpiray::Task(Produce).Remote(kSize, 9, log_c);
  CHECK(mpiray::Wait(std::vector<mpiray::ObjectRef<std::vector<uint8_t>>>{c}, 1, 60000).ready.size() == 1);
  KillProcess(ReadPids(log_c).at(0));
  auto sum = mpiray::Task(Sum).Remote(c);
  uint64_t expect_sum = 0;
  for (uint8_t x : Pattern(kSize, 9)) expect_sum += x;
  CHECK(*mpiray::Get(sum, 60000) == expect_sum);

  // D. A put object has no lineage: losing it is an error, never a hang.
  std::string log_d = Scratch("d");
  auto inner = *mpiray::Get(mpiray::Task(PutInWorker).Remote(kSize, log_d));
  CHECK(mpiray::Wait(std::vector<mpiray::ObjectRef<std::vector<uint8_t>>>{inner}, 1, 60000).ready.size() == 1);
  KillProcess(ReadPids(log_d).at(0));
  CHECK_THROWS(mpiray::ObjectLostError, mpiray::Get(inner, 60000), "put()");

  // E. Lineage is released with the objects that need it.
  {
    // Small results live in the head: no lineage for them.
    std::vector<mpiray::ObjectRef<int>> refs;
    for (int i = 0; i < 500; ++i) refs.push_back(mpiray::Task(Tiny).Remote(i));
    for (int i = 0; i < 500; ++i) CHECK(*mpiray::Get(refs[static_cast<size_t>(i)]) == i + 1);
    const size_t before = mpiray::GetClusterSnapshot().lineage_tasks;
    std::vector<mpiray::ObjectRef<std::vector<uint8_t>>> stored;
    std::string log_e = Scratch("e");
    for (int i = 0; i < 50; ++i) stored.push_back(mpiray::Task(Produce).Remote(kSize, i, log_e));
    auto chained = mpiray::Task(Transform).Remote(mpiray::Task(Produce).Remote(kSize, 1, log_e),
                                                  Scratch("e2"));
    for (auto& r : stored) (void)mpiray::Get(r);
    (void)mpiray::Get(chained);
    CHECK(mpiray::GetClusterSnapshot().lineage_tasks == before + 52);
  }
  a = {};
  b2 = {};
  c = {};
  sum = {};
  CHECK(mpiray::GetClusterSnapshot().lineage_tasks == 0);
  auto snap = mpiray::GetClusterSnapshot();
  CHECK(snap.reconstructions >= 4);
  RemoveScratch();
  std::printf("lineage OK (kill -> object rebuilt in %.3f s)\n", rebuild_s);
}

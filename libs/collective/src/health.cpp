#include "health.h"

#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MPIRAY_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define MPIRAY_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define MPIRAY_CPU_RELAX() ((void)0)
#endif

namespace mpiray::collective::detail {

namespace {

// Fields 3 (state) and 22 (starttime) of /proc/<pid>/stat; false when the process is gone.
bool ReadStat(int pid, char* state, uint64_t* start_time) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = std::fopen(path, "re");
  if (!f) return false;
  char buf[1024];
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (!p) return false;
  p += 2;  // ") "
  *state = *p;
  // p points at field 3; skip to field 22.
  for (int field = 3; field < 22 && *p; ++p) {
    if (*p == ' ') ++field;
  }
  *start_time = std::strtoull(p, nullptr, 10);
  return true;
}

std::string HostKey() {
  char name[256] = {0};
  gethostname(name, sizeof name - 1);
  std::string boot;
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::getline(f, boot);
  return std::string(name) + "/" + boot;
}

constexpr auto kLivenessInterval = std::chrono::milliseconds(100);

}  // namespace

ProcessIdentity SelfIdentity() {
  ProcessIdentity id;
  id.pid = static_cast<int>(getpid());
  char state = 0;
  ReadStat(id.pid, &state, &id.start_time);
  static const std::string host = HostKey();
  id.host = host;
  return id;
}

bool ProcessAlive(const ProcessIdentity& who) {
  char state = 0;
  uint64_t start = 0;
  if (!ReadStat(who.pid, &state, &start)) return false;
  if (state == 'Z' || state == 'X' || state == 'x') return false;
  return start == who.start_time;
}

namespace {

int Cpus() {
  static const int cpus = [] {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
    return static_cast<int>(std::thread::hardware_concurrency());
  }();
  return cpus;
}

int64_t EnvCount(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : -1;
}

}  // namespace

uint32_t SpinIterations(int busy) {
  static const int64_t forced = EnvCount("MPIRAY_COLLECTIVE_SPIN");
  if (forced >= 0) return static_cast<uint32_t>(forced);
  return busy > Cpus() ? 0 : 512;
}

uint32_t YieldIterations(int busy) {
  static const int64_t forced = EnvCount("MPIRAY_COLLECTIVE_YIELDS");
  if (forced >= 0) return static_cast<uint32_t>(forced);
  return busy > Cpus() ? 32 : 4096;
}

void Backoff::Pause(const std::function<void()>& sleep) {
  ++iter_;
  if (iter_ <= spin_) {
    MPIRAY_CPU_RELAX();
  } else if (iter_ <= uint64_t{spin_} + yields_ || !sleep) {
    sched_yield();
  } else {
    sleep();
  }
}

Health::Health(std::string group, int rank, int64_t timeout_ms, std::vector<PeerProcess> peers)
    : group_(std::move(group)), rank_(rank), timeout_ms_(timeout_ms), peers_(std::move(peers)) {}

void Health::SetTransportHooks(std::function<Status()> poll, std::function<void(const Status&)> propagate) {
  poll_ = std::move(poll);
  propagate_ = std::move(propagate);
}

Status Health::broken() const {
  if (!is_broken_.load(std::memory_order_acquire)) return Status::OK();
  std::lock_guard<std::mutex> lk(mu_);
  return broken_;
}

Status Health::Fail(const Status& st) {
  bool first = false;
  Status recorded;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (broken_.ok()) {
      broken_ = st;
      first = true;
      is_broken_.store(true, std::memory_order_release);
    }
    recorded = broken_;
  }
  if (first && propagate_) propagate_(recorded);
  return recorded;
}

std::string Health::Where(int rank) const {
  for (const auto& p : peers_) {
    if (p.rank == rank) return p.where;
  }
  return "unknown process";
}

Status Health::Check(const char* what, Clock::time_point start, bool force_liveness) {
  if (is_broken_.load(std::memory_order_acquire)) return broken();
  if (poll_) {
    Status st = poll_();
    if (!st.ok()) return Fail(st);
  }
  auto now = Clock::now();
  if (force_liveness || now - last_liveness_ >= kLivenessInterval) {
    last_liveness_ = now;
    for (const auto& p : peers_) {
      if (p.same_host && !ProcessAlive(p.id)) {
        return Fail(Status(StatusCode::kUnavailable,
                           "collective group '" + group_ + "': member rank " + std::to_string(p.rank) +
                               " (" + p.where + ") died; pending and later operations of the group "
                               "fail. Destroy the group (destroy_collective_group) and create it again."));
      }
    }
  }
  if (timeout_ms_ > 0 &&
      now - start > std::chrono::milliseconds(timeout_ms_)) {
    return Fail(Status(StatusCode::kTimeout,
                       "collective group '" + group_ + "': " + what + " on rank " +
                           std::to_string(rank_) + " waited more than " + std::to_string(timeout_ms_) +
                           " ms for the other members (did every member call it?)"));
  }
  return Status::OK();
}

Status Health::Wait(const std::function<bool()>& ready, const char* what, Clock::time_point start,
                    const std::function<void()>& sleep, uint32_t spin, uint32_t yields) {
  Backoff backoff(spin, yields);
  auto last_check = start;
  for (uint64_t i = 0;; ++i) {
    if (ready()) return Status::OK();
    if (is_broken_.load(std::memory_order_relaxed)) return broken();
    if ((i & 15) == 15) {
      auto now = Clock::now();
      if (now - last_check > std::chrono::milliseconds(20)) {
        last_check = now;
        Status st = Check(what, start, false);
        if (!st.ok()) return st;
      }
    }
    backoff.Pause(sleep);
  }
}

}  // namespace mpiray::collective::detail

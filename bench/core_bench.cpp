// Core benchmark: prints one JSON object. Run it as the driver of a world, e.g.
//   MPIRAY_RANKS_PER_NODE=2 scripts/mpirun -n 4 build/apps/mpiray bench core
// (2 virtual nodes of 2 ranks, so cross-node gets really cross the fabric).
#include "core_bench.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mpiray/mpiray.h"
#include "shm_store.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

void Noop() {}

class Sink {
 public:
  static Sink* Create() { return new Sink(); }
  void Call() {}
};

// Produces a large object on whichever node it runs.
mpiray::Blob MakeBlob(int64_t bytes) {
  std::vector<uint8_t> v(static_cast<size_t>(bytes), 3);
  return mpiray::Blob(std::move(v));
}

// Blocks until `path` exists: keeps a million queued tasks from starting.
int Gate(std::string path) {
  while (!std::filesystem::exists(path)) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return 1;
}
int Queued(int gate) { return gate; }

}  // namespace

MPIRAY_REMOTE(Noop, Sink::Create, &Sink::Call, MakeBlob, Gate, Queued);

namespace mpiray::bench {
namespace {

// A line of /proc/self/status in MB: "VmRSS:" (all resident pages, the store's shared pages
// this process maps included) or "RssAnon:" (its own memory only).
double StatusMb(const char* key = "VmRSS:") {
  std::ifstream f("/proc/self/status");
  std::string line;
  size_t n = std::strlen(key);
  while (std::getline(f, line)) {
    if (line.compare(0, n, key) == 0) return std::stod(line.substr(n)) / 1024.0;
  }
  return 0;
}
double RssMb() { return StatusMb(); }

double CpuSeconds(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto close = all.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(all.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double Gbps(uint64_t bytes, double s) { return static_cast<double>(bytes) / s / 1e9; }

struct Json {
  std::vector<std::pair<std::string, std::string>> kv;
  void Num(const std::string& k, double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.6g", v);
    kv.emplace_back(k, buf);
  }
  void Str(const std::string& k, const std::string& v) { kv.emplace_back(k, "\"" + v + "\""); }
  std::string Dump() const {
    std::string s = "{\n";
    for (size_t i = 0; i < kv.size(); ++i) {
      s += "  \"" + kv[i].first + "\": " + kv[i].second + (i + 1 < kv.size() ? ",\n" : "\n");
    }
    return s + "}\n";
  }
};

// Spilling against plain file I/O of the same bytes in the same directory. A private node
// store (capacity twice the data, so spilled objects' warm files stay pooled for their restore,
// as a warm buffer serves the file read) is filled with 64 MiB objects, spilled
// (spill_gbps) and restored by Map (restore_gbps); then the same bytes are written to files
// with write() and no fsync (file_write_gbps) and read back with read() into a warm buffer
// (file_read_gbps). Both reads come from the page cache their writes filled; dirty pages are
// flushed (syncfs) before each write phase. Best of three rounds each.
void SpillBench(uint64_t total, Json& out) {
  const uint64_t obj = std::min<uint64_t>(64ull << 20, total);
  const uint64_t n = std::max<uint64_t>(1, total / obj);
  total = n * obj;
  std::string base;
  for (const char* var : {"MPIRAY_SPILL_DIR", "MPIRAY_SESSION_ROOT", "TMPDIR"}) {
    if (const char* v = std::getenv(var); v && *v && base.empty()) base = v;
  }
  if (base.empty()) base = "/tmp";
  const std::string tag = "mpiray-bench-spill-" + std::to_string(getpid());
  const char* shm = std::getenv("MPIRAY_SHM_DIR");
  StoreOptions so;
  so.root = std::string(shm && *shm ? shm : "/dev/shm") + "/" + tag;
  so.capacity = 2 * (total + n * 4096);
  so.spill_root = base + "/" + tag;
  auto store_or = ShmStore::Open(so);
  if (!store_or.ok()) {
    std::fprintf(stderr, "spill bench skipped: %s\n", store_or.status().message().c_str());
    return;
  }
  auto store = std::move(store_or).value();
  const std::string dir = store->spill_dir();
  std::filesystem::create_directories(dir);
  auto flush = [&] {
    int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
      syncfs(fd);
      close(fd);
    }
  };
  std::vector<uint8_t> buf(obj, 7);
  auto file_io = [&](bool write) {
    auto t = Clock::now();
    for (uint64_t i = 0; i < n; ++i) {
      std::string path = dir + "/file-" + std::to_string(i);
      int fd = write ? open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600)
                     : open(path.c_str(), O_RDONLY);
      if (fd < 0) return -1.0;
      uint64_t done = 0;
      while (done < obj) {
        ssize_t r = write ? ::write(fd, buf.data() + done, obj - done)
                          : ::read(fd, buf.data() + done, obj - done);
        if (r <= 0) break;
        done += static_cast<uint64_t>(r);
      }
      close(fd);
      if (done != obj) return -1.0;
    }
    return Seconds(t, Clock::now());
  };
  double spill_s = 1e30, restore_s = 1e30, write_s = 1e30, read_s = 1e30;
  bool ok = true;
  for (int round = 0; ok && round < 3; ++round) {
    std::vector<ObjectId> ids;
    for (uint64_t i = 0; ok && i < n; ++i) {
      ObjectId id = ObjectId::ForPut(TaskId::Make(0xbe, round * n + i + 1));
      auto w = store->Create(id, obj);
      ok = w.ok();
      if (!ok) break;
      std::memset(w->data, static_cast<int>(i + 1), obj);
      ok = store->Seal(*w).ok();
      ids.push_back(id);
    }
    flush();
    auto t0 = Clock::now();
    auto freed = ok ? store->Spill(UINT64_MAX) : Result<uint64_t>(uint64_t{0});
    spill_s = std::min(spill_s, Seconds(t0, Clock::now()));
    ok = ok && freed.ok() && *freed >= total && store->used() == 0;
    t0 = Clock::now();
    for (size_t i = 0; ok && i < ids.size(); ++i) {
      auto m = store->Map(ids[i]);
      ok = m.ok() && m->size() == obj && m->data()[obj / 2] == static_cast<uint8_t>(i + 1);
    }
    restore_s = std::min(restore_s, Seconds(t0, Clock::now()));
    ok = ok && store->stats().spilled_now == 0;
    for (const ObjectId& id : ids) store->Delete(id);  // their warm files stay pooled
    flush();
    double w = file_io(true);
    double r = file_io(false);
    ok = ok && w > 0 && r > 0;
    write_s = std::min(write_s, w);
    read_s = std::min(read_s, r);
    for (uint64_t i = 0; i < n; ++i) std::remove((dir + "/file-" + std::to_string(i)).c_str());
  }
  store->RemoveAll();
  if (!ok) {
    std::fprintf(stderr, "spill bench failed (spill directory %s)\n", dir.c_str());
    return;
  }
  out.Num("spill_bytes", static_cast<double>(total));
  out.Num("spill_gbps", Gbps(total, spill_s));
  out.Num("restore_gbps", Gbps(total, restore_s));
  out.Num("file_write_gbps", Gbps(total, write_s));
  out.Num("file_read_gbps", Gbps(total, read_s));
  out.Str("spill_dir", base);
}

}  // namespace

int RunCore(const CoreOptions& o) {
  Json out;
  auto log = [&](const char* what) {
    if (o.verbose) std::fprintf(stderr, "[bench] %s\n", what);
  };
  mpiray::Init();
  auto snap = mpiray::GetClusterSnapshot();
  out.Num("processes", static_cast<double>(snap.processes.size()));
  out.Num("nodes", static_cast<double>(snap.nodes.size()));
  out.Num("host_cores", static_cast<double>(std::thread::hardware_concurrency()));

  // Warm up every worker.
  {
    std::vector<ObjectRef<void>> w;
    for (int i = 0; i < 1000; ++i) w.push_back(mpiray::Task(Noop).Remote());
    mpiray::Get(w);
  }

  log("tasks_async");
  {
    const int n = o.tasks;
    std::vector<ObjectRef<void>> refs;
    refs.reserve(static_cast<size_t>(n));
    auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) refs.push_back(mpiray::Task(Noop).Remote());
    mpiray::Get(refs);
    out.Num("tasks_async_per_s", n / Seconds(t0, Clock::now()));
  }

  log("task_rtt");
  {
    std::vector<double> us;
    for (int i = 0; i < o.rtt_iters; ++i) {
      auto t0 = Clock::now();
      mpiray::Get(mpiray::Task(Noop).Remote());
      us.push_back(Seconds(t0, Clock::now()) * 1e6);
    }
    std::sort(us.begin(), us.end());
    out.Num("task_rtt_p50_us", us[us.size() / 2]);
    out.Num("task_rtt_p99_us", us[us.size() * 99 / 100]);
    out.Num("tasks_sync_per_s", 1e6 / (std::accumulate(us.begin(), us.end(), 0.0) / us.size()));
  }

  log("actor_calls_async");
  {
    auto actor = mpiray::Actor(Sink::Create).Remote();
    mpiray::Get(actor.Task(&Sink::Call).Remote());
    const int n = o.tasks;
    std::vector<ObjectRef<void>> refs;
    refs.reserve(static_cast<size_t>(n));
    auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) refs.push_back(actor.Task(&Sink::Call).Remote());
    mpiray::Get(refs);
    out.Num("actor_calls_async_per_s", n / Seconds(t0, Clock::now()));
    std::vector<double> us;
    for (int i = 0; i < o.rtt_iters; ++i) {
      auto t1 = Clock::now();
      mpiray::Get(actor.Task(&Sink::Call).Remote());
      us.push_back(Seconds(t1, Clock::now()) * 1e6);
    }
    std::sort(us.begin(), us.end());
    out.Num("actor_call_rtt_p50_us", us[us.size() / 2]);
    actor.Kill();
  }

  const uint64_t big = o.big_bytes;
  log("memcpy");
  {
    std::vector<uint8_t> a(big, 1), b(big, 2);
    auto t0 = Clock::now();
    std::memcpy(b.data(), a.data(), big);
    out.Num("memcpy_gbps_1gib", Gbps(big, Seconds(t0, Clock::now())));
  }

  log("put");
  {
    // Repeated puts, as Ray's put benchmark does: the first one faults fresh pages in (reported
    // as put_cold), later ones reuse the store's recycled memory (steady state).
    Blob blob(std::vector<uint8_t>(big, 5));
    double best = 0, cold = 0;
    ObjectRef<Blob> ref;
    for (int rep = 0; rep < 3; ++rep) {
      ref = ObjectRef<Blob>();
      auto t0 = Clock::now();
      ref = mpiray::Put(blob);
      double g = Gbps(big, Seconds(t0, Clock::now()));
      if (rep == 0) cold = g;
      best = std::max(best, g);
    }
    out.Num("put_gbps_1gib", best);
    out.Num("put_cold_gbps_1gib", cold);
    auto t1 = Clock::now();
    auto got = mpiray::Get(ref);
    double get_s = Seconds(t1, Clock::now());
    out.Num("get_same_node_gbps_1gib", Gbps(big, get_s));
    // Reading every byte of the zero-copy view once, for comparison with memcpy.
    auto t2 = Clock::now();
    uint64_t sum = 0;
    const auto* words = reinterpret_cast<const uint64_t*>(got->data());
    for (size_t i = 0; i < got->size() / 8; ++i) sum += words[i];
    double read_s = Seconds(t2, Clock::now());
    out.Num("get_same_node_read_gbps_1gib", Gbps(big, get_s + read_s));
    if (sum == 42) std::fprintf(stderr, " ");
  }

  if (o.spill_bytes > 0) {
    log("spill");
    SpillBench(o.spill_bytes, out);
  }

  log("cross-node get and fabric");
  {
    // A worker on another node than the head makes the object; the driver then gets it.
    snap = mpiray::GetClusterSnapshot();
    ProcId remote = kNoProc;
    NodeId remote_node = 0;
    for (const auto& p : snap.processes) {
      if (p.node != 0) {
        remote = p.proc;
        remote_node = p.node;
        break;
      }
    }
    if (remote != kNoProc) {
      double best_get = 0;
      std::string pin = "node:" + std::to_string(remote_node);
      for (int rep = 0; rep < 2; ++rep) {
        auto obj = mpiray::Task(MakeBlob).SetResource(pin, 0.001).Remote(static_cast<int64_t>(big));
        mpiray::Wait(std::vector<ObjectRef<Blob>>{obj}, 1, -1);
        auto t0 = Clock::now();
        auto got = mpiray::Get(obj);
        best_get = std::max(best_get, Gbps(big, Seconds(t0, Clock::now())));
      }
      out.Num("get_cross_node_gbps_1gib", best_get);
      double fabric = 0;
      for (int rep = 0; rep < 2; ++rep) {
        fabric = std::max(fabric, detail::Client()->MeasureFabricGbps(remote, big));
      }
      out.Num("fabric_gbps_1gib", fabric);
      out.Num("cross_node_source_node", remote_node);
    }
  }

  if (o.queue_tasks > 0) {
    log("queue 1M");
    std::string gate_file = "/tmp/mpiray-bench-gate-" + std::to_string(getpid());
    std::filesystem::remove(gate_file);
    auto gate = mpiray::Task(Gate).Remote(gate_file);
    double rss0 = RssMb();
    std::vector<ObjectRef<int>> refs;
    refs.reserve(static_cast<size_t>(o.queue_tasks));
    auto t0 = Clock::now();
    for (int i = 0; i < o.queue_tasks; ++i) refs.push_back(mpiray::Task(Queued).Remote(gate));
    double submit_s = Seconds(t0, Clock::now());
    double rss1 = RssMb();
    out.Num("queue_1m_tasks", o.queue_tasks);
    out.Num("queue_1m_submit_per_s", o.queue_tasks / submit_s);
    out.Num("queue_1m_head_rss_mb", rss1);
    out.Num("queue_1m_head_rss_growth_mb", rss1 - rss0);
    // The head's own memory: VmRSS also counts store pages it still maps (a writer keeps its
    // mapping of a recycled object file, up to 2 GiB: the 1 GiB put above).
    out.Num("queue_1m_head_rss_anon_mb", StatusMb("RssAnon:"));
    std::ofstream(gate_file) << "go";
    auto t1 = Clock::now();
    auto vals = mpiray::Get(refs);
    out.Num("queue_1m_drain_per_s", o.queue_tasks / Seconds(t1, Clock::now()));
    std::filesystem::remove(gate_file);
    size_t bad = 0;
    for (auto& v : vals) bad += *v == 1 ? 0 : 1;
    out.Num("queue_1m_wrong_results", static_cast<double>(bad));
  }

  log("idle cpu");
  {
    snap = mpiray::GetClusterSnapshot();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let spinning settle
    std::vector<int> pids;
    for (const auto& p : snap.processes) pids.push_back(p.pid);
    double c0 = 0;
    for (int pid : pids) c0 += CpuSeconds(pid);
    auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(o.idle_ms));
    double c1 = 0;
    for (int pid : pids) c1 += CpuSeconds(pid);
    out.Num("idle_cpu_s_per_s", (c1 - c0) / Seconds(t0, Clock::now()));
  }

  auto t0 = Clock::now();
  mpiray::Shutdown();
  out.Num("shutdown_s", Seconds(t0, Clock::now()));
  std::fputs(out.Dump().c_str(), stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace mpiray::bench

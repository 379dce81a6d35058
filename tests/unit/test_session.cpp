// Unit tests of session.h (configuration from the environment, byte and resource parsing,
// node assignment, GPU detection, session files) and of NodeAssigner / HostKey (runtime.h).
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime.h"
#include "session.h"

using mpiray::ConfigFromEnv;
using mpiray::EnvMap;
using mpiray::InitOptions;
using mpiray::RuntimeConfig;
using mpiray::StatusCode;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kUnit = mpiray::proto::kResourceUnit;

RuntimeConfig ConfigOk(const EnvMap& env, const InitOptions& o = {}) {
  auto c = ConfigFromEnv(env, o);
  INFO(c.status().ToString());
  REQUIRE(c.ok());
  return *c;
}

// The error for `env`: must be InvalidArgument and name `variable`.
void CheckBad(const std::string& variable, const std::string& value) {
  auto c = ConfigFromEnv({{variable, value}}, InitOptions{});
  INFO(variable << "=" << value);
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(c.status().message(), Catch::Contains(variable));
}

// A fresh private directory, removed (with everything in it) at scope exit.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& base = "/tmp") {
    std::string tmpl = base + "/mpiray-unit-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    REQUIRE(mkdtemp(buf.data()) != nullptr);
    path = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

mode_t ModeOf(const std::string& p) {
  struct stat st {};
  REQUIRE(stat(p.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

}  // namespace

TEST_CASE("ConfigFromEnv defaults without environment", "[session]") {
  RuntimeConfig c = ConfigOk({});
  RuntimeConfig d;
  CHECK(c.num_workers == -1);
  CHECK(c.num_cpus == d.num_cpus);
  CHECK(c.num_gpus == d.num_gpus);
  CHECK(c.custom.empty());
  CHECK(c.store_capacity == 0);
  CHECK(c.ranks_per_node == 0);
  CHECK(c.log_level == "info");
  CHECK(c.inline_threshold == d.inline_threshold);
  CHECK(c.max_inflight_per_worker == d.max_inflight_per_worker);
  CHECK(c.spin_us == d.spin_us);
  CHECK(c.heartbeat_timeout_ms == d.heartbeat_timeout_ms);
  CHECK(c.fetch_chunk == d.fetch_chunk);
  CHECK_FALSE(c.keep_session);
  CHECK_FALSE(c.keep_mpi);
}

TEST_CASE("ConfigFromEnv reads every MPIRAY_ variable", "[session]") {
  EnvMap env = {
      {"MPIRAY_NUM_WORKERS", "3"},
      {"MPIRAY_NUM_CPUS", "2.5"},
      {"MPIRAY_NUM_GPUS", "1"},
      {"MPIRAY_RESOURCES", "licence=2,fpga=0.5"},
      {"MPIRAY_OBJECT_STORE_MEMORY", "64M"},
      {"MPIRAY_RANKS_PER_NODE", "4"},
      {"MPIRAY_LOG_LEVEL", "debug"},
      {"MPIRAY_INLINE_THRESHOLD", "1K"},
      {"MPIRAY_MAX_TASKS_IN_FLIGHT", "8"},
      {"MPIRAY_SPIN_US", "0"},
      {"MPIRAY_HEARTBEAT_TIMEOUT_MS", "2500"},
      {"MPIRAY_FETCH_CHUNK", "1M"},
      {"MPIRAY_KEEP_SESSION", "yes"},
  };
  RuntimeConfig c = ConfigOk(env);
  CHECK(c.num_workers == 3);
  CHECK(c.num_cpus == 2.5);
  CHECK(c.num_gpus == 1.0);
  CHECK(c.custom == mpiray::proto::Resources{{"licence", 2 * kUnit}, {"fpga", kUnit / 2}});
  CHECK(c.store_capacity == 64ull << 20);
  CHECK(c.ranks_per_node == 4);
  CHECK(c.log_level == "debug");
  CHECK(c.inline_threshold == 1024);
  CHECK(c.max_inflight_per_worker == 8);
  CHECK(c.spin_us == 0);
  CHECK(c.heartbeat_timeout_ms == 2500);
  CHECK(c.fetch_chunk == 1ull << 20);
  CHECK(c.keep_session);

  // Empty values count as unset; negative spin is clamped to 0.
  RuntimeConfig e = ConfigOk({{"MPIRAY_NUM_WORKERS", ""}, {"MPIRAY_SPIN_US", "-5"}});
  CHECK(e.num_workers == -1);
  CHECK(e.spin_us == 0);
  CHECK_FALSE(ConfigOk({{"MPIRAY_KEEP_SESSION", "0"}}).keep_session);
}

TEST_CASE("ConfigFromEnv: explicit options override the environment", "[session]") {
  EnvMap env = {
      {"MPIRAY_NUM_WORKERS", "3"},        {"MPIRAY_NUM_CPUS", "2"},
      {"MPIRAY_NUM_GPUS", "1"},           {"MPIRAY_RESOURCES", "licence=2,fpga=1"},
      {"MPIRAY_OBJECT_STORE_MEMORY", "1G"}, {"MPIRAY_RANKS_PER_NODE", "4"},
      {"MPIRAY_LOG_LEVEL", "debug"},
  };
  InitOptions o;
  o.num_workers = 5;
  o.num_cpus = 8;
  o.num_gpus = 0;
  o.resources = {{"licence", 7}};
  o.object_store_memory = 1 << 20;
  o.ranks_per_node = 2;
  o.log_level = "error";
  o.keep_session = true;
  o.keep_mpi = true;
  RuntimeConfig c = ConfigOk(env, o);
  CHECK(c.num_workers == 5);
  CHECK(c.num_cpus == 8.0);
  CHECK(c.num_gpus == 0.0);
  // The option replaces the env's licence and keeps the env's other resources.
  REQUIRE(c.custom.size() == 2);
  CHECK(c.custom[0] == std::make_pair(std::string("fpga"), kUnit));
  CHECK(c.custom[1] == std::make_pair(std::string("licence"), 7 * kUnit));
  CHECK(c.store_capacity == 1u << 20);
  CHECK(c.ranks_per_node == 2);
  CHECK(c.log_level == "error");
  CHECK(c.keep_session);
  CHECK(c.keep_mpi);
}

TEST_CASE("NodeResourcesFromEnv: this node's own resources, memory in bytes", "[session]") {
  using mpiray::NodeResourcesFromEnv;
  const int64_t unit = mpiray::proto::kResourceUnit;
  auto none = NodeResourcesFromEnv({});
  REQUIRE(none.ok());
  CHECK(none->empty());
  auto r = NodeResourcesFromEnv({{"MPIRAY_NODE_RESOURCES", "licence=2,fpga=0.5,,CPU=4,memory=2G"}});
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  mpiray::proto::Resources want = {
      {"licence", 2 * unit}, {"fpga", unit / 2}, {"CPU", 4 * unit}, {"memory", (int64_t{2} << 30) * unit}};
  CHECK(*r == want);
  for (const char* bad : {"licence", "=1", "licence=x", "licence=-1", "memory=lots", "memory=-1G"}) {
    auto b = NodeResourcesFromEnv({{"MPIRAY_NODE_RESOURCES", bad}});
    INFO(bad);
    REQUIRE_FALSE(b.ok());
    CHECK(b.status().code() == StatusCode::kInvalidArgument);
    CHECK_THAT(b.status().message(), Catch::Contains("MPIRAY_NODE_RESOURCES"));
  }
}

TEST_CASE("ConfigFromEnv: bad values are InvalidArgument naming the variable", "[session]") {
  CheckBad("MPIRAY_NUM_WORKERS", "many");
  CheckBad("MPIRAY_NUM_WORKERS", "-1");
  CheckBad("MPIRAY_NUM_WORKERS", "3x");
  CheckBad("MPIRAY_NUM_CPUS", "two");
  CheckBad("MPIRAY_NUM_CPUS", "inf");
  CheckBad("MPIRAY_NUM_GPUS", "1.5.2");
  CheckBad("MPIRAY_RESOURCES", "licence");
  CheckBad("MPIRAY_RESOURCES", "licence=x");
  CheckBad("MPIRAY_RESOURCES", "licence=-1");
  CheckBad("MPIRAY_OBJECT_STORE_MEMORY", "lots");
  CheckBad("MPIRAY_OBJECT_STORE_MEMORY", "-1G");
  CheckBad("MPIRAY_RANKS_PER_NODE", "0");
  CheckBad("MPIRAY_RANKS_PER_NODE", "x");
  CheckBad("MPIRAY_INLINE_THRESHOLD", "12Q");
  CheckBad("MPIRAY_MAX_TASKS_IN_FLIGHT", "0");
  CheckBad("MPIRAY_SPIN_US", "fast");
  CheckBad("MPIRAY_HEARTBEAT_TIMEOUT_MS", "50");
  CheckBad("MPIRAY_FETCH_CHUNK", "1K");
  CheckBad("MPIRAY_FETCH_CHUNK", "big");
}

TEST_CASE("ConfigFromEnv: a bad MPIRAY_LOG_LEVEL names the variable",
          "[session]") {
  // The header promises "Errors name the bad variable"; the log-level error does not.
  CheckBad("MPIRAY_LOG_LEVEL", "verbose");
}

TEST_CASE("ConfigFromEnv: a negative MPIRAY_NUM_CPUS / MPIRAY_NUM_GPUS is rejected",
          "[session]") {
  // Negative counts are silently taken as "derive the default" instead of being refused.
  SECTION("MPIRAY_NUM_CPUS") { CheckBad("MPIRAY_NUM_CPUS", "-2"); }
  SECTION("MPIRAY_NUM_GPUS") { CheckBad("MPIRAY_NUM_GPUS", "-2"); }
}

TEST_CASE("ConfigFromEnv: bad options are InvalidArgument", "[session]") {
  SECTION("negative custom resource") {
    InitOptions o;
    o.resources = {{"licence", -1}};
    auto c = ConfigFromEnv({}, o);
    CHECK(c.status().code() == StatusCode::kInvalidArgument);
    CHECK_THAT(c.status().message(), Catch::Contains("licence"));
  }
  SECTION("CPU given as a custom resource") {
    InitOptions o;
    o.resources = {{"CPU", 2}};
    auto c = ConfigFromEnv({}, o);
    CHECK(c.status().code() == StatusCode::kInvalidArgument);
    CHECK_THAT(c.status().message(), Catch::Contains("num_cpus"));
  }
  SECTION("zero object store") {
    InitOptions o;
    o.object_store_memory = 0;
    CHECK(ConfigFromEnv({}, o).status().code() == StatusCode::kInvalidArgument);
  }
  SECTION("unknown log level") {
    InitOptions o;
    o.log_level = "loud";
    auto c = ConfigFromEnv({}, o);
    CHECK(c.status().code() == StatusCode::kInvalidArgument);
    CHECK_THAT(c.status().message(), Catch::Contains("loud"));
  }
}

TEST_CASE("ParseBytes understands suffixes", "[session]") {
  using mpiray::ParseBytes;
  CHECK(*ParseBytes("x", "1024") == 1024u);
  CHECK(*ParseBytes("x", "64K") == 64u * 1024);
  CHECK(*ParseBytes("x", "64k") == 64u * 1024);
  CHECK(*ParseBytes("x", "64KB") == 64u * 1024);
  CHECK(*ParseBytes("x", "2G") == 2ull << 30);
  CHECK(*ParseBytes("x", "1.5M") == 3u << 19);
  CHECK(*ParseBytes("x", "1T") == 1ull << 40);
  CHECK(*ParseBytes("x", "10B") == 10u);
  CHECK(*ParseBytes("x", "0") == 0u);

  for (const char* bad : {"", "K", "abc", "12Q", "-1", "1..5M", "1 G"}) {
    auto r = ParseBytes("MY_SETTING", bad);
    INFO("input '" << bad << "'");
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kInvalidArgument);
    CHECK_THAT(r.status().message(), Catch::Contains("MY_SETTING"));
  }
}

TEST_CASE("ParseResourceList parses name=amount lists", "[session]") {
  using mpiray::ParseResourceList;
  auto r = ParseResourceList("R", "a=1,b=2.5,,c=0");
  REQUIRE(r.ok());
  CHECK(*r == mpiray::proto::Resources{{"a", kUnit}, {"b", 5 * kUnit / 2}, {"c", 0}});
  CHECK(ParseResourceList("R", "")->empty());
  for (const char* bad : {"a", "=1", "a=", "a=x", "a=-2", "a=1,b"}) {
    auto e = ParseResourceList("R", bad);
    INFO("input '" << bad << "'");
    REQUIRE_FALSE(e.ok());
    CHECK(e.status().code() == StatusCode::kInvalidArgument);
  }
}

TEST_CASE("AssignNodes groups ranks by host or into virtual nodes", "[session]") {
  using mpiray::AssignNodes;
  using V = std::vector<mpiray::NodeId>;
  CHECK(AssignNodes({}, 0).empty());
  // By host: node ids in order of first appearance.
  CHECK(AssignNodes({0, 0, 1, 1, 0}, 0) == V{0, 0, 1, 1, 0});
  CHECK(AssignNodes({5, 3, 5, 3}, 0) == V{0, 1, 0, 1});
  // Virtual nodes of two ranks per host.
  CHECK(AssignNodes({0, 0, 0, 0, 0}, 2) == V{0, 0, 1, 1, 2});
  CHECK(AssignNodes({0, 1, 0, 1, 0, 1}, 2) == V{0, 1, 0, 1, 2, 3});
  CHECK(AssignNodes({0, 0, 0}, 1) == V{0, 1, 2});
}

TEST_CASE("DetectGpus reads CUDA_VISIBLE_DEVICES, then SLURM_GPUS_ON_NODE", "[session]") {
  using mpiray::DetectGpus;
  CHECK(DetectGpus({}) == 0);
  CHECK(DetectGpus({{"CUDA_VISIBLE_DEVICES", "0"}}) == 1);
  CHECK(DetectGpus({{"CUDA_VISIBLE_DEVICES", "0,1,3"}}) == 3);
  CHECK(DetectGpus({{"CUDA_VISIBLE_DEVICES", "-1"}}) == 0);
  CHECK(DetectGpus({{"CUDA_VISIBLE_DEVICES", "NoDevFiles"}}) == 0);
  CHECK(DetectGpus({{"CUDA_VISIBLE_DEVICES", ""}, {"SLURM_GPUS_ON_NODE", "4"}}) == 4);
  CHECK(DetectGpus({{"SLURM_GPUS_ON_NODE", "2"}}) == 2);
  CHECK(DetectGpus({{"SLURM_GPUS_ON_NODE", "x"}}) == 0);
  CHECK(DetectGpus({{"CUDA_VISIBLE_DEVICES", "1,2"}, {"SLURM_GPUS_ON_NODE", "8"}}) == 2);
  // Neither set: the NVIDIA driver's device directories are counted (none here: 0).
  std::string proc = "/tmp/mpiray-test-nvidia-" + std::to_string(getpid());
  std::filesystem::create_directories(proc + "/0000:17:00.0");
  std::filesystem::create_directories(proc + "/0000:65:00.0");
  CHECK(DetectGpus({}, proc) == 2);
  CHECK(DetectGpus({{"CUDA_VISIBLE_DEVICES", "0"}}, proc) == 1);
  CHECK(DetectGpus({}, proc + "/absent") == 0);
  std::filesystem::remove_all(proc);
}

TEST_CASE("CreateSession makes a private directory and token file", "[session]") {
  TempDir root;
  InitOptions o;
  o.session_root = root.str();
  EnvMap env = {{"SLURM_JOB_ID", "4242"}, {"MPIRAY_SHM_DIR", root.str()}};
  auto s = mpiray::CreateSession(env, o, RuntimeConfig{});
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  CHECK(s->name.rfind("j4242-", 0) == 0);
  CHECK(s->dir == root.str() + "/mpiray-" + s->name);
  CHECK(s->shm_root == root.str() + "/mpiray-" + s->name);
  CHECK(s->token.size() == 64);
  CHECK(s->token.find_first_not_of("0123456789abcdef") == std::string::npos);

  REQUIRE(fs::is_directory(s->dir));
  CHECK(ModeOf(s->dir) == 0700);
  CHECK(fs::is_directory(s->LogDir()));
  REQUIRE(fs::is_regular_file(s->TokenFile()));
  CHECK(ModeOf(s->TokenFile()) == 0600);
  std::ifstream f(s->TokenFile());
  std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CHECK(content == s->token + "\n");

  // A second session gets its own name and token.
  auto s2 = mpiray::CreateSession(env, o, RuntimeConfig{});
  REQUIRE(s2.ok());
  CHECK(s2->name != s->name);
  CHECK(s2->token != s->token);

  // The joining side reads the token back.
  {
    std::ofstream addr(s->AddressFile());
    addr << "127.0.0.1:5555\n";
  }
  std::string head;
  auto joined = mpiray::ReadSessionForJoin(s->dir, &head);
  REQUIRE(joined.ok());
  CHECK(joined->token == s->token);
  CHECK(head == "127.0.0.1:5555");
  CHECK(mpiray::ReadSessionForJoin(root.str() + "/missing", &head).status().code() ==
        StatusCode::kUnauthenticated);
}

TEST_CASE("CreateSession picks the spill root: MPIRAY_SPILL_DIR, the option, or the session",
          "[session][spill]") {
  TempDir root;
  InitOptions o;
  o.session_root = root.str();
  auto plain = mpiray::CreateSession({}, o, RuntimeConfig{});
  REQUIRE(plain.ok());
  CHECK(plain->spill_root == plain->dir + "/spill");  // node n spills to <dir>/spill-n<n>

  auto env = mpiray::CreateSession({{"MPIRAY_SPILL_DIR", "/scratch/me"}}, o, RuntimeConfig{});
  REQUIRE(env.ok());
  CHECK(env->spill_root == "/scratch/me/mpiray-" + env->name);

  o.spill_dir = "/local/nvme";  // the option wins
  auto opt = mpiray::CreateSession({{"MPIRAY_SPILL_DIR", "/scratch/me"}}, o, RuntimeConfig{});
  REQUIRE(opt.ok());
  CHECK(opt->spill_root == "/local/nvme/mpiray-" + opt->name);
  // Nothing is created until a node spills.
  CHECK_FALSE(fs::exists("/local/nvme"));
}

TEST_CASE("CreateSession fails in a missing root", "[session]") {
  TempDir root;
  InitOptions o;
  o.session_root = root.str() + "/does/not/exist";
  auto s = mpiray::CreateSession({}, o, RuntimeConfig{});
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().code() == StatusCode::kIoError);
  CHECK_THAT(s.status().message(), Catch::Contains("does/not/exist"));
}

TEST_CASE("RemoveSessionFiles removes the session and its node stores only", "[session]") {
  TempDir root;
  InitOptions o;
  o.session_root = root.str();
  auto s = mpiray::CreateSession({{"MPIRAY_SHM_DIR", root.str()}}, o, RuntimeConfig{});
  REQUIRE(s.ok());
  // Node stores of this session, and a directory of another session that must survive.
  fs::create_directories(s->shm_root + "-n0");
  fs::create_directories(s->shm_root + "-n12/sub");
  std::ofstream(s->shm_root + "-n0/object") << "bytes";
  std::string other = root.str() + "/mpiray-other-n0";
  fs::create_directories(other);

  mpiray::RemoveSessionFiles(*s);
  CHECK_FALSE(fs::exists(s->dir));
  CHECK_FALSE(fs::exists(s->shm_root + "-n0"));
  CHECK_FALSE(fs::exists(s->shm_root + "-n12"));
  CHECK(fs::exists(other));
  CHECK(fs::exists(root.path));
}

TEST_CASE("RemoveSessionFiles removes the spill directories of this host's nodes",
          "[session][spill]") {
  TempDir root;
  TempDir spill;
  InitOptions o;
  o.session_root = root.str();
  o.spill_dir = spill.str();
  auto s = mpiray::CreateSession({{"MPIRAY_SHM_DIR", root.str()}}, o, RuntimeConfig{});
  REQUIRE(s.ok());
  // Nodes 0 and 3 have their stores on this host; node 5's spill directory belongs to another
  // host sharing the spill file system and must survive.
  for (int n : {0, 3}) {
    fs::create_directories(s->shm_root + "-n" + std::to_string(n));
    fs::create_directories(s->spill_root + "-n" + std::to_string(n));
    std::ofstream(s->spill_root + "-n" + std::to_string(n) + "/object") << "bytes";
  }
  fs::create_directories(s->spill_root + "-n5");
  mpiray::RemoveSessionFiles(*s);
  CHECK_FALSE(fs::exists(s->spill_root + "-n0"));
  CHECK_FALSE(fs::exists(s->spill_root + "-n3"));
  CHECK(fs::exists(s->spill_root + "-n5"));
  CHECK(fs::exists(spill.path));

  // The default spill directories live in the session directory, and go with it (also when
  // the session directory is kept for its logs).
  InitOptions d;
  d.session_root = root.str();
  auto k = mpiray::CreateSession({{"MPIRAY_SHM_DIR", root.str()}}, d, RuntimeConfig{});
  REQUIRE(k.ok());
  fs::create_directories(k->shm_root + "-n0");
  fs::create_directories(k->spill_root + "-n0");
  mpiray::SessionInfo keep = *k;
  keep.dir.clear();
  mpiray::RemoveSessionFiles(keep);
  CHECK_FALSE(fs::exists(k->spill_root + "-n0"));
  CHECK(fs::exists(k->LogDir()));
  mpiray::RemoveSessionFiles(*k);
  CHECK_FALSE(fs::exists(k->dir));
}

TEST_CASE("NodeAssigner numbers hosts and virtual nodes", "[session]") {
  SECTION("by host") {
    mpiray::NodeAssigner a(0);
    CHECK(a.Assign("alpha") == 0);
    CHECK(a.Assign("beta") == 1);
    CHECK(a.Assign("alpha") == 0);
    CHECK(a.Assign("gamma") == 2);
    CHECK(a.NodesOnHost("alpha") == 1);
    CHECK(a.NodesOnHost("delta") == 0);
  }
  SECTION("ranks_per_node virtual nodes") {
    mpiray::NodeAssigner a(2);
    CHECK(a.Assign("alpha") == 0);
    CHECK(a.Assign("alpha") == 0);
    CHECK(a.Assign("beta") == 1);
    CHECK(a.Assign("alpha") == 2);
    CHECK(a.Assign("beta") == 1);
    CHECK(a.Assign("beta") == 3);
    CHECK(a.NodesOnHost("alpha") == 2);
    CHECK(a.NodesOnHost("beta") == 2);
  }
}

TEST_CASE("HostKey prefers SLURMD_NODENAME over the hostname", "[session]") {
  CHECK(mpiray::HostKey({{"SLURMD_NODENAME", "node017"}}) == "node017");
  char host[256] = {0};
  REQUIRE(gethostname(host, sizeof host - 1) == 0);
  CHECK(mpiray::HostKey({}) == std::string(host));
  CHECK(mpiray::HostKey({{"SLURMD_NODENAME", ""}}) == std::string(host));
}

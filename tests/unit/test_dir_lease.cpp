// Unit tests of dir_lease.h: leases on session and store directories, and the removal of the
// directories a killed job left behind (a child process that holds them is SIGKILLed).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "dir_lease.h"

namespace fs = std::filesystem;
using mpiray::IsSessionDirName;
using mpiray::LeaseDir;
using mpiray::ReapStaleSessions;
using mpiray::ReleaseDirLeases;

namespace {

struct Roots {
  fs::path base;
  fs::path sessions;
  fs::path shm;
  fs::path spill;
  Roots() {
    char tmpl[] = "/tmp/mpiray-lease-test-XXXXXX";
    base = mkdtemp(tmpl);
    sessions = base / "sessions";
    shm = base / "shm";
    spill = base / "spill";
    fs::create_directories(spill);
    fs::create_directories(sessions);
    fs::create_directories(shm);
  }
  ~Roots() {
    std::error_code ec;
    fs::remove_all(base, ec);
  }
};

void Touch(const fs::path& p) { std::ofstream(p) << "x"; }

// A directory as a job makes it: created, leased, then its marker written.
fs::path MakeJobDir(const fs::path& root, const std::string& name, const char* marker) {
  fs::path d = root / name;
  fs::create_directories(d);
  LeaseDir(d.string());
  if (marker) Touch(d / marker);
  return d;
}

// A child process makes and leases `dirs` (with their markers), reports it and waits; the
// caller SIGKILLs it.
pid_t HolderProcess(const std::vector<std::pair<fs::path, const char*>>& dirs) {
  int p[2];
  REQUIRE(pipe(p) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    for (const auto& [d, marker] : dirs) MakeJobDir(d.parent_path(), d.filename().string(), marker);
    char c = 1;
    (void)!write(p[1], &c, 1);
    for (;;) pause();
  }
  close(p[1]);
  char c = 0;
  REQUIRE(read(p[0], &c, 1) == 1);
  close(p[0]);
  return pid;
}

void KillAndWait(pid_t pid) {
  kill(pid, SIGKILL);
  int st = 0;
  waitpid(pid, &st, 0);
}

bool Contains(const std::vector<std::string>& v, const fs::path& p) {
  return std::find(v.begin(), v.end(), p.string()) != v.end();
}

}  // namespace

TEST_CASE("IsSessionDirName matches only the names mpiray makes", "[dir_lease]") {
  CHECK(IsSessionDirName("mpiray-0a1b2c3d", false));
  CHECK(IsSessionDirName("mpiray-j1234-0a1b2c3d", false));
  CHECK(IsSessionDirName("mpiray-0a1b2c3d-n0", true));
  CHECK(IsSessionDirName("mpiray-j7-0a1b2c3d-n12", true));
  CHECK_FALSE(IsSessionDirName("mpiray-0a1b2c3d-n0", false));
  CHECK_FALSE(IsSessionDirName("mpiray-0a1b2c3d", true));
  CHECK_FALSE(IsSessionDirName("mpiray-serve-0", false));
  CHECK_FALSE(IsSessionDirName("mpiray-0A1B2C3D", false));
  CHECK_FALSE(IsSessionDirName("mpiray-0a1b2c3", false));
  CHECK_FALSE(IsSessionDirName("mpiray-jx-0a1b2c3d", false));
  CHECK_FALSE(IsSessionDirName("mpiray-0a1b2c3d-n", true));
  CHECK_FALSE(IsSessionDirName("ray-0a1b2c3d", false));
}

TEST_CASE("ReapStaleSessions removes what a SIGKILLed job left and keeps live jobs' files",
          "[dir_lease]") {
  Roots r;
  fs::path dead_session = r.sessions / "mpiray-j5-deadbeef";
  fs::path dead_store = r.shm / "mpiray-j5-deadbeef-n0";
  fs::path live_session = r.sessions / "mpiray-0badcafe";
  fs::path live_store = r.shm / "mpiray-0badcafe-n1";
  fs::path dead_spill = r.spill / "mpiray-j5-deadbeef-n0";
  pid_t dead = HolderProcess({{dead_session, "token"}, {dead_store, ".ctl"}, {dead_spill, ".leased"}});
  pid_t live = HolderProcess({{live_session, "token"}, {live_store, ".ctl"}});
  Touch(dead_store / "object");
  fs::path other = r.sessions / "mpiray-serve-0";  // not a session name: never touched
  fs::create_directories(other);

  // While both holders live, nothing is removed.
  CHECK(ReapStaleSessions(r.sessions.string(), r.shm.string(), r.spill.string()).empty());
  KillAndWait(dead);
  auto removed = ReapStaleSessions(r.sessions.string(), r.shm.string(), r.spill.string());
  CHECK(removed.size() == 3);
  CHECK(Contains(removed, dead_spill));
  CHECK(Contains(removed, dead_session));
  CHECK(Contains(removed, dead_store));
  CHECK_FALSE(fs::exists(dead_session));
  CHECK_FALSE(fs::exists(dead_store));
  CHECK(fs::exists(live_session));
  CHECK(fs::exists(live_store));
  CHECK(fs::exists(other));
  KillAndWait(live);
  CHECK(ReapStaleSessions(r.sessions.string(), r.shm.string()).size() == 2);
  CHECK_FALSE(fs::exists(live_session));
}

TEST_CASE("ReapStaleSessions: directories being created, kept sessions and our own stay",
          "[dir_lease]") {
  Roots r;
  // No marker yet and young: maybe its creator has not leased it yet.
  fs::path young = r.sessions / "mpiray-11111111";
  fs::create_directories(young);
  // No marker but older than the grace period: a creator that died at once.
  fs::path stale = r.shm / "mpiray-22222222-n0";
  fs::create_directories(stale);
  // Kept on purpose (MPIRAY_KEEP_SESSION).
  fs::path kept = r.sessions / "mpiray-33333333";
  fs::create_directories(kept);
  Touch(kept / "token");
  Touch(kept / "kept");
  // Leased by this process.
  fs::path mine = MakeJobDir(r.sessions, "mpiray-44444444", "token");
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  Touch(young / "partial");  // refresh its mtime: created just now
  auto removed = ReapStaleSessions(r.sessions.string(), r.shm.string(), "", /*grace_s=*/1);
  CHECK(removed == std::vector<std::string>{stale.string()});
  CHECK(fs::exists(young));
  CHECK(fs::exists(kept));
  CHECK(fs::exists(mine));
  ReleaseDirLeases(mine.string());
  CHECK(Contains(ReapStaleSessions(r.sessions.string(), r.shm.string(), "", 1), mine));
}

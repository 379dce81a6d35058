// Unit tests of periodic_checks.h (the worker's stall watch over actor mailboxes) and of
// session.h's RemoveTree (shutdown's removal of a store directory).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "periodic_checks.h"
#include "session.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

template <class F>
bool WaitUntil(F&& done, std::chrono::milliseconds limit = 5000ms) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

}  // namespace

TEST_CASE("PeriodicChecks runs a check every period until it returns false") {
  mpiray::PeriodicChecks checks(1ms);
  std::atomic<int> ran{0};
  checks.Add([&] { return ++ran < 5; });  // dropped after its fifth run
  REQUIRE(WaitUntil([&] { return ran.load() >= 5; }));
  std::this_thread::sleep_for(30ms);
  CHECK(ran.load() == 5);  // not run again once it said false
  std::atomic<int> other{0};
  checks.Add([&] { return ++other < 3; });  // the thread, idle meanwhile, wakes for a new one
  REQUIRE(WaitUntil([&] { return other.load() >= 3; }));
}

TEST_CASE("PeriodicChecks stops its thread and ignores checks added after Stop") {
  std::atomic<int> ran{0};
  {
    mpiray::PeriodicChecks checks(1ms);
    checks.Add([&] {
      ++ran;
      return true;  // forever, until Stop
    });
    REQUIRE(WaitUntil([&] { return ran.load() >= 3; }));
    checks.Stop();
    int at_stop = ran.load();
    std::this_thread::sleep_for(20ms);
    CHECK(ran.load() == at_stop);
    checks.Add([&] {
      ran += 100;
      return true;
    });
    std::this_thread::sleep_for(20ms);
    CHECK(ran.load() == at_stop);
    checks.Stop();  // idempotent
  }  // the destructor after Stop: nothing left to join
}

TEST_CASE("PeriodicChecks survives a check that throws (it is dropped)") {
  mpiray::PeriodicChecks checks(1ms);
  std::atomic<int> after{0};
  checks.Add([]() -> bool { throw std::runtime_error("boom"); });
  checks.Add([&] { return ++after < 3; });
  REQUIRE(WaitUntil([&] { return after.load() >= 3; }));
}

TEST_CASE("RemoveTree removes nested files, big ones held open until a thread closes them") {
  fs::path root = fs::temp_directory_path() / ("mpiray-removetree-" + std::to_string(::getpid()));
  fs::create_directories(root / ".pool");
  {
    std::ofstream(root / "small") << "x";
  }
  for (const char* name : {"big", ".pool/big2"}) {
    int fd = ::open((root / name).c_str(), O_CREAT | O_WRONLY, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, 20 << 20) == 0);  // 20 MiB: above the held-open threshold
    ::close(fd);
  }
  mpiray::RemoveTree(root.string());
  CHECK_FALSE(fs::exists(root));
  mpiray::RemoveTree(root.string());  // a missing directory is no error
  mpiray::RemoveTree("");
}

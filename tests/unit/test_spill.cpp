// Unit tests of object spilling in mpiray::ShmStore: a store in a private /dev/shm directory
// whose spill directory is on disk under /tmp.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "shm_store.h"

using mpiray::Buffer;
using mpiray::ObjectId;
using mpiray::ShmStore;
using mpiray::StatusCode;
using mpiray::StoreOptions;
using mpiray::TaskId;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kPage = 4096;  // each object file has a one-page header

// A fresh directory under `base`, removed with everything in it at scope exit.
struct Dir {
  fs::path path;
  explicit Dir(const std::string& base) {
    std::string tmpl = base + "/mpiray-spill-unit-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    REQUIRE(mkdtemp(buf.data()) != nullptr);
    path = buf.data();
  }
  ~Dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// A store root in /dev/shm and a spill root on disk.
struct Roots {
  Dir shm{"/dev/shm"};
  Dir disk{"/tmp"};
  std::string store() const { return (shm.path / "store").string(); }
  std::string spill() const { return (disk.path / "spill").string(); }
};

std::unique_ptr<ShmStore> Open(const std::string& root, const std::string& spill_root,
                               uint64_t capacity, mpiray::NodeId node = 0,
                               int64_t full_wait_ms = 50) {
  StoreOptions o;
  o.root = root;
  o.node = node;
  o.capacity = capacity;
  o.spill_root = spill_root;
  o.full_wait_ms = full_wait_ms;  // how long a full store waits for readers to let go
  auto s = ShmStore::Open(o);
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return std::move(s).value();
}

ObjectId Id(uint64_t n) { return ObjectId::ForPut(TaskId::Make(7, n)); }

// The byte at `i` of object `seed`: different for every object and offset.
uint8_t Pattern(uint64_t seed, size_t i) {
  uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ull ^ (i * 0xBF58476D1CE4E5B9ull);
  return static_cast<uint8_t>(x >> 29);
}

// Create, fill and seal an object; every view is dropped (nothing pins it).
void Put(ShmStore& s, uint64_t n, uint64_t size) {
  auto w = s.Create(Id(n), size);
  INFO(w.status().ToString());
  REQUIRE(w.ok());
  for (size_t i = 0; i < size; ++i) w->data[i] = Pattern(n, i);
  auto b = s.Seal(*w);
  REQUIRE(b.ok());
}

bool Holds(const Buffer& b, uint64_t n, uint64_t size) {
  if (b.size() != size) return false;
  for (size_t i = 0; i < size; ++i) {
    if (b.data()[i] != Pattern(n, i)) return false;
  }
  return true;
}

bool Exists(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0;
}

// Spill files (not the temporary ones being written).
size_t SpillFiles(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    if (it->path().filename().string()[0] != '.') ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("Spill: a full store spills the least recently used object and Map restores it",
          "[spill]") {
  Roots r;
  const uint64_t size = 100 * 1024;
  auto s = Open(r.store(), r.spill(), 2 * (size + kPage) + 1024);  // room for two objects
  CHECK(s->spill_dir() == r.spill() + "-n0");
  CHECK_FALSE(Exists(s->spill_dir()));  // made on first use

  Put(*s, 1, size);
  Put(*s, 2, size);
  CHECK(s->stats().spills == 0);
  // Object 1 was used more recently than object 2: 2 is the one to go.
  REQUIRE(s->Map(Id(1)).ok());
  Put(*s, 3, size);
  CHECK(s->IsSpilled(Id(2)));
  CHECK_FALSE(s->IsSpilled(Id(1)));
  CHECK_FALSE(s->IsSpilled(Id(3)));
  CHECK(Exists(s->spill_dir() + "/" + Id(2).Hex()));
  CHECK_FALSE(Exists(s->dir() + "/" + Id(2).Hex()));
  CHECK(s->Contains(Id(2)));  // still held by this node
  CHECK(s->used() <= s->capacity());
  CHECK(s->stats().spills == 1);
  CHECK(s->stats().spilled_total == size);
  CHECK(s->stats().spilled_now == size);

  // Map brings it back into memory (spilling the least recently used of the others).
  auto back = s->Map(Id(2));
  REQUIRE(back.ok());
  CHECK(Holds(*back, 2, size));
  CHECK_FALSE(s->IsSpilled(Id(2)));
  CHECK(Exists(s->dir() + "/" + Id(2).Hex()));
  CHECK(s->stats().restores == 1);
  CHECK(s->stats().restored_total == size);
  CHECK(s->IsSpilled(Id(1)));  // mapped before 3 was created
  CHECK(s->used() <= s->capacity());
  back = Buffer();

  // Every object reads back with its own bytes, whichever way round.
  for (uint64_t n : {1, 3, 2, 1}) {
    auto m = s->Map(Id(n));
    REQUIRE(m.ok());
    CHECK(Holds(*m, n, size));
  }
  CHECK(SpillFiles(s->spill_dir()) == 1);
  CHECK(s->stats().spilled_now == size);
}

TEST_CASE("Spill: two instances of one node see each other's spilled objects", "[spill]") {
  Roots r;
  const uint64_t size = 64 * 1024;
  const uint64_t cap = 3 * (size + kPage);
  auto a = Open(r.store(), r.spill(), cap);
  auto b = Open(r.store(), r.spill(), cap);
  for (uint64_t n = 1; n <= 6; ++n) Put(*a, n, size);
  // Three did not fit: a spilled the oldest ones.
  for (uint64_t n = 1; n <= 3; ++n) CHECK(b->IsSpilled(Id(n)));
  CHECK(b->stats().spills == 3);
  CHECK(b->used() == 3 * (size + kPage));

  // b restores what a spilled; a then finds it in memory.
  auto m = b->Map(Id(1));
  REQUIRE(m.ok());
  CHECK(Holds(*m, 1, size));
  CHECK_FALSE(a->IsSpilled(Id(1)));
  auto again = a->Map(Id(1));
  REQUIRE(again.ok());
  CHECK(Holds(*again, 1, size));

  // Another node of the machine reads a spilled object from the spill file, without moving it.
  auto other = Open(r.store(), r.spill(), cap, 1);
  auto far = other->MapFrom(0, Id(2));
  REQUIRE(far.ok());
  CHECK(Holds(*far, 2, size));
  CHECK(a->IsSpilled(Id(2)));
  CHECK(other->used() == 0);
  auto missing = other->MapFrom(0, Id(99));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == StatusCode::kObjectLost);
}

TEST_CASE("Spill: another process spills, this one restores", "[spill]") {
  Roots r;
  const uint64_t size = 48 * 1024;
  const uint64_t cap = 2 * (size + kPage);
  auto mine = Open(r.store(), r.spill(), cap);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child is another process of the node: it fills the store and exits.
    StoreOptions o;
    o.root = r.store();
    o.capacity = cap;
    o.spill_root = r.spill();
    auto s = ShmStore::Open(o);
    if (!s.ok()) _exit(2);
    for (uint64_t n = 1; n <= 5; ++n) {
      auto w = (*s)->Create(Id(n), size);
      if (!w.ok()) _exit(3);
      for (size_t i = 0; i < size; ++i) w->data[i] = Pattern(n, i);
      if (!(*s)->Seal(*w).ok()) _exit(4);
    }
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  CHECK(mine->stats().spills == 3);
  for (uint64_t n = 1; n <= 5; ++n) {
    auto m = mine->Map(Id(n));
    REQUIRE(m.ok());
    CHECK(Holds(*m, n, size));
  }
  CHECK(mine->used() <= cap);
}

TEST_CASE("Spill: Delete removes the spill file", "[spill]") {
  Roots r;
  const uint64_t size = 64 * 1024;
  auto s = Open(r.store(), r.spill(), 2 * (size + kPage));
  Put(*s, 1, size);
  Put(*s, 2, size);
  Put(*s, 3, size);
  REQUIRE(s->IsSpilled(Id(1)));
  std::string file = s->spill_dir() + "/" + Id(1).Hex();
  REQUIRE(Exists(file));
  s->Delete(Id(1));
  CHECK_FALSE(Exists(file));
  CHECK_FALSE(s->Contains(Id(1)));
  CHECK(s->Map(Id(1)).status().code() == StatusCode::kObjectLost);
  CHECK(s->stats().spilled_now == 0);
  CHECK(SpillFiles(s->spill_dir()) == 0);
  s->Delete(Id(2));
  s->Delete(Id(3));
  CHECK(s->used() == 0);
}

TEST_CASE("Spill: pinned objects stay in memory; a store full of them creates new objects on disk",
          "[spill]") {
  Roots r;
  const uint64_t size = 64 * 1024;
  auto s = Open(r.store(), r.spill(), 2 * (size + kPage));
  Put(*s, 1, size);
  Put(*s, 2, size);
  auto pin1 = s->Map(Id(1));  // the older one, but a reader holds it
  REQUIRE(pin1.ok());
  Put(*s, 3, size);
  CHECK_FALSE(s->IsSpilled(Id(1)));
  CHECK(s->IsSpilled(Id(2)));
  auto pin3 = s->Map(Id(3));
  REQUIRE(pin3.ok());

  // Both objects in memory are in use, nothing can be spilled: the new object is written
  // straight into the spill directory (as Ray's fallback allocation), memory is not touched.
  const uint64_t used = s->used();
  const uint64_t on_disk = s->stats().spilled_now;
  auto w = s->Create(Id(4), size);
  INFO(w.status().ToString());
  REQUIRE(w.ok());
  CHECK(w->on_disk);
  CHECK(s->used() == used);
  for (size_t i = 0; i < size; ++i) w->data[i] = Pattern(4, i);
  CHECK_FALSE(s->Contains(Id(4)));  // not published before Seal
  auto four = s->Seal(*w);
  REQUIRE(four.ok());
  CHECK(Holds(*four, 4, size));
  CHECK(s->IsSpilled(Id(4)));
  CHECK(s->Contains(Id(4)));
  CHECK(s->stats().spilled_now == on_disk + size);
  CHECK(SpillFiles(s->spill_dir()) == 2);  // objects 2 and 4
  four = Buffer();
  w->mapping.reset();  // the writer is done with it (as after Seal in the client)
  CHECK(Holds(*pin1, 1, size));
  CHECK(Holds(*pin3, 3, size));

  // A spilled object still reads back: mapped from its spill file, as memory is full.
  auto two = s->Map(Id(2));
  REQUIRE(two.ok());
  CHECK(Holds(*two, 2, size));
  CHECK(s->IsSpilled(Id(2)));
  CHECK(s->stats().restores == 1);
  two = Buffer();

  // Once a reader lets go, the object created on disk comes back into memory when read.
  pin1 = Buffer();
  auto back = s->Map(Id(4));
  REQUIRE(back.ok());
  CHECK(Holds(*back, 4, size));
  CHECK_FALSE(s->IsSpilled(Id(4)));
  CHECK(s->IsSpilled(Id(1)));
  back = Buffer();
  s->Delete(Id(4));
  CHECK_FALSE(s->Contains(Id(4)));

  // An object created on disk and aborted leaves nothing.
  pin3 = Buffer();
  auto pin2 = s->Map(Id(2));
  auto pin3b = s->Map(Id(3));
  REQUIRE(pin2.ok());
  REQUIRE(pin3b.ok());
  auto w5 = s->Create(Id(5), size);
  REQUIRE(w5.ok());
  s->Abort(*w5);
  CHECK_FALSE(s->Contains(Id(5)));
  CHECK(SpillFiles(s->spill_dir()) == 1);  // object 1
}

TEST_CASE("Spill: a store full of objects in use waits for a reader to let go", "[spill]") {
  Roots r;
  const uint64_t size = 64 * 1024;
  auto s = Open(r.store(), r.spill(), 2 * (size + kPage), 0, 10000);
  Put(*s, 1, size);
  Put(*s, 2, size);
  auto pin1 = s->Map(Id(1));
  auto pin2 = s->Map(Id(2));
  REQUIRE(pin1.ok());
  REQUIRE(pin2.ok());
  std::atomic<bool> released{false};
  std::thread reader([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    released = true;
    pin2 = Buffer();
  });
  auto w = s->Create(Id(3), size);  // waits, then spills object 2
  reader.join();
  INFO(w.status().ToString());
  REQUIRE(w.ok());
  CHECK(released.load());
  CHECK(s->IsSpilled(Id(2)));
  CHECK_FALSE(s->IsSpilled(Id(1)));
  s->Abort(*w);
}

TEST_CASE("Spill: an unusable spill directory gives ObjectStoreFull naming the cause",
          "[spill]") {
  Roots r;
  // The spill root lies below a regular file.
  std::string file = (r.disk.path / "not-a-dir").string();
  std::ofstream(file) << "x";
  const uint64_t size = 64 * 1024;
  auto s = Open(r.store(), file + "/spill", 2 * (size + kPage));
  Put(*s, 1, size);
  Put(*s, 2, size);
  const uint64_t used = s->used();
  auto w = s->Create(Id(3), size);
  REQUIRE_FALSE(w.ok());
  CHECK(w.status().code() == StatusCode::kObjectStoreFull);
  CHECK_THAT(w.status().message(), Catch::Contains("is full"));
  CHECK_THAT(w.status().message(), Catch::Contains(file));
  CHECK_THAT(w.status().message(), Catch::Contains("Not a directory"));
  // Nothing was lost or leaked.
  CHECK(s->used() == used);
  for (uint64_t n : {1, 2}) {
    CHECK_FALSE(s->IsSpilled(Id(n)));
    auto m = s->Map(Id(n));
    REQUIRE(m.ok());
    CHECK(Holds(*m, n, size));
  }
  CHECK(s->stats().spills == 0);
}

TEST_CASE("Spill: Spill() empties memory of unpinned objects; RemoveAll leaves nothing",
          "[spill]") {
  Roots r;
  const uint64_t size = 32 * 1024;
  auto s = Open(r.store(), r.spill(), 1 << 20);
  for (uint64_t n = 1; n <= 4; ++n) Put(*s, n, size);
  auto pinned = s->Map(Id(4));
  REQUIRE(pinned.ok());
  auto freed = s->Spill(UINT64_MAX);
  REQUIRE(freed.ok());
  CHECK(*freed == 3 * (size + kPage));
  CHECK(s->used() == size + kPage);
  for (uint64_t n = 1; n <= 3; ++n) CHECK(s->IsSpilled(Id(n)));
  CHECK_FALSE(s->IsSpilled(Id(4)));
  CHECK(SpillFiles(s->spill_dir()) == 3);

  // Objects of the same size come back into the warm files the spill left in the pool.
  auto m = s->Map(Id(1));
  REQUIRE(m.ok());
  CHECK(Holds(*m, 1, size));

  s->RemoveAll();
  CHECK_FALSE(Exists(s->dir()));
  CHECK_FALSE(Exists(s->spill_dir()));
  CHECK(fs::is_empty(r.disk.path));
}

TEST_CASE("Spill: concurrent writers and readers of one node keep every byte", "[spill]") {
  Roots r;
  const uint64_t cap = 2 << 20;
  constexpr int kThreads = 3;
  constexpr int kObjects = 24;
  std::vector<std::unique_ptr<ShmStore>> stores;
  for (int t = 0; t < kThreads; ++t) stores.push_back(Open(r.store(), r.spill(), cap));
  std::atomic<int> bad{0};
  std::mutex mu;
  std::string first_error;
  auto fail = [&](const std::string& what) {
    std::lock_guard<std::mutex> lk(mu);
    if (bad++ == 0) first_error = what;
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      ShmStore& s = *stores[static_cast<size_t>(t)];
      std::vector<std::pair<uint64_t, uint64_t>> mine;  // (n, size)
      for (int i = 0; i < kObjects; ++i) {
        uint64_t n = static_cast<uint64_t>(t * 1000 + i);
        uint64_t size = 64 * 1024 + rng() % (96 * 1024);
        auto w = s.Create(Id(n), size);
        if (!w.ok()) {
          fail("Create: " + w.status().ToString());
          continue;
        }
        for (size_t k = 0; k < size; ++k) w->data[k] = Pattern(n, k);
        if (!s.Seal(*w).ok()) fail("Seal");
        mine.emplace_back(n, size);
        // Read back an earlier object, possibly spilled by another thread.
        auto [pn, psize] = mine[rng() % mine.size()];
        auto m = s.Map(Id(pn));
        if (!m.ok()) fail("Map: " + m.status().ToString());
        if (m.ok() && !Holds(*m, pn, psize)) fail("Map: wrong bytes");
      }
      for (auto [n, size] : mine) {
        auto m = s.Map(Id(n));
        if (!m.ok()) fail("final Map: " + m.status().ToString());
        if (m.ok() && !Holds(*m, n, size)) fail("final Map: wrong bytes");
      }
      // Delete half, so deletes race with the other threads' spills and restores.
      for (size_t i = 0; i < mine.size(); i += 2) s.Delete(Id(mine[i].first));
    });
  }
  for (auto& th : threads) th.join();
  INFO(first_error);
  REQUIRE(bad.load() == 0);
  ShmStore& s = *stores[0];
  CHECK(s.stats().spills > 0);
  CHECK(s.stats().restores > 0);
  CHECK(s.used() <= cap);
  // What is left is exactly the undeleted half, in memory or on disk.
  size_t left = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kObjects; ++i) {
      uint64_t n = static_cast<uint64_t>(t * 1000 + i);
      CHECK(s.Contains(Id(n)) == (i % 2 == 1));
      left += s.Contains(Id(n)) ? 1 : 0;
    }
  }
  CHECK(left == kThreads * kObjects / 2);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 1; i < kObjects; i += 2) s.Delete(Id(static_cast<uint64_t>(t * 1000 + i)));
  }
  CHECK(s.used() == 0);
  CHECK(s.stats().spilled_now == 0);
  CHECK(SpillFiles(s.spill_dir()) == 0);
}

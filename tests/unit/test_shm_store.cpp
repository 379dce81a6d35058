// Unit tests of mpiray::ShmStore in a private directory under /dev/shm.
#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
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

// A fresh directory in /dev/shm, removed with everything in it at scope exit.
struct ShmDir {
  fs::path path;
  ShmDir() {
    std::string tmpl = "/dev/shm/mpiray-unit-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    REQUIRE(mkdtemp(buf.data()) != nullptr);
    path = buf.data();
  }
  ~ShmDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string root() const { return (path / "store").string(); }
};

std::unique_ptr<ShmStore> OpenStore(const std::string& root, uint64_t capacity,
                                    mpiray::NodeId node = 0) {
  StoreOptions o;
  o.root = root;
  o.node = node;
  o.capacity = capacity;
  auto s = ShmStore::Open(o);
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return std::move(s).value();
}

ObjectId Id(uint64_t n) { return ObjectId::ForPut(TaskId::Make(1, n)); }

// Create, fill with `fill` and seal an object of `size` bytes.
Buffer PutObject(ShmStore& s, const ObjectId& id, uint64_t size, uint8_t fill) {
  auto w = s.Create(id, size);
  INFO(w.status().ToString());
  REQUIRE(w.ok());
  REQUIRE(w->size == size);
  std::memset(w->data, fill, size);
  auto b = s.Seal(*w);
  REQUIRE(b.ok());
  return *b;
}

bool AllBytes(const Buffer& b, uint8_t v) {
  for (size_t i = 0; i < b.size(); ++i) {
    if (b.data()[i] != v) return false;
  }
  return true;
}

// Published and in-progress object files (not the control file or the recycling pool).
size_t FilesIn(const std::string& dir) {
  size_t n = 0;
  for (auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name != ".ctl" && name != ".pool") ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("ShmStore Create/Seal/Map round trip", "[shm_store]") {
  ShmDir d;
  auto s = OpenStore(d.root(), 1 << 20);
  CHECK(s->dir() == ShmStore::NodeDir(d.root(), 0));
  CHECK(s->dir() == d.root() + "-n0");
  CHECK(s->capacity() == 1u << 20);
  CHECK(s->used() == 0);
  CHECK(s->pooled() == 0);
  struct stat st {};
  REQUIRE(stat(s->dir().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);

  ObjectId id = Id(1);
  CHECK_FALSE(s->Contains(id));
  {
    auto w = s->Create(id, 4096);
    REQUIRE(w.ok());
    CHECK(w->size == 4096);
    CHECK_FALSE(s->Contains(id));  // not published before Seal
    for (size_t i = 0; i < 4096; ++i) w->data[i] = static_cast<uint8_t>(i * 7);
    auto sealed = s->Seal(*w);
    REQUIRE(sealed.ok());
    CHECK(sealed->size() == 4096);
    CHECK(sealed->data() == w->data);  // the view is the written memory itself
  }
  CHECK(s->Contains(id));
  CHECK(fs::exists(s->dir() + "/" + id.Hex()));

  // Every view is gone: Map maps the file again.
  auto m = s->Map(id);
  REQUIRE(m.ok());
  REQUIRE(m->size() == 4096);
  bool same = true;
  for (size_t i = 0; i < 4096; ++i) same = same && m->data()[i] == static_cast<uint8_t>(i * 7);
  CHECK(same);

  auto missing = s->Map(Id(2));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == StatusCode::kObjectLost);
}

TEST_CASE("ShmStore maps one object once: readers share the same bytes", "[shm_store]") {
  ShmDir d;
  auto s = OpenStore(d.root(), 1 << 20);
  ObjectId id = Id(1);
  Buffer sealed = PutObject(*s, id, 8192, 0xab);
  auto a = s->Map(id);
  auto b = s->Map(id);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->data() == sealed.data());
  CHECK(a->data() == b->data());
  CHECK(AllBytes(*a, 0xab));

  // With every view gone, a new Map maps the file again (still the same bytes), and a Map
  // while that view lives shares it.
  sealed = Buffer();
  a = Buffer();
  b = Buffer();
  auto c = s->Map(id);
  REQUIRE(c.ok());
  CHECK(AllBytes(*c, 0xab));
  auto e = s->Map(id);
  REQUIRE(e.ok());
  CHECK(e->data() == c->data());
}

TEST_CASE("ShmStore accounts for capacity", "[shm_store]") {
  ShmDir d;
  auto s = OpenStore(d.root(), 1 << 20);
  PutObject(*s, Id(1), 16 * 1024, 1);
  const uint64_t one = s->used();  // what a 16 KiB object costs (its file)
  CHECK(one >= 16 * 1024);
  PutObject(*s, Id(2), 16 * 1024, 2);
  CHECK(s->used() == 2 * one);
  PutObject(*s, Id(3), 64 * 1024, 3);
  CHECK(s->used() >= 2 * one + 64 * 1024);

  s->Delete(Id(3));
  CHECK(s->used() == 2 * one);
  CHECK_FALSE(s->Contains(Id(3)));
  CHECK(s->Map(Id(3)).status().code() == StatusCode::kObjectLost);
  s->Delete(Id(3));  // deleting twice releases nothing more
  CHECK(s->used() == 2 * one);
  s->Delete(Id(1));
  s->Delete(Id(2));
  CHECK(s->used() == 0);
  CHECK(FilesIn(s->dir()) == 0);
  CHECK(s->used() + s->pooled() <= s->capacity());
}

TEST_CASE("ShmStore recycles a deleted object's file for a new object", "[shm_store]") {
  ShmDir d;
  auto s = OpenStore(d.root(), 1 << 20);
  PutObject(*s, Id(1), 64 * 1024, 1);
  const uint64_t cost = s->used();
  s->Delete(Id(1));
  CHECK(s->used() == 0);
  CHECK(s->pooled() == cost);  // kept warm

  Buffer b = PutObject(*s, Id(2), 64 * 1024, 2);
  CHECK(s->pooled() == 0);  // reused
  CHECK(s->used() == cost);
  CHECK(AllBytes(b, 2));
  auto m = s->Map(Id(2));
  REQUIRE(m.ok());
  CHECK(AllBytes(*m, 2));
}

// Pages of [p, p + len) resident in memory (-1: the range is not mapped).
long ResidentPages(const uint8_t* p, size_t len) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((len + page - 1) / page);
  if (mincore(const_cast<uint8_t*>(p), len, vec.data()) != 0) return -1;
  long n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n;
}

TEST_CASE("ShmStore writes a recycled file it wrote before through its kept mapping", "[shm_store]") {
  // Mapping a large file's pages and unmapping them again costs about as much as writing
  // them: a writer keeps its mapping, and gets it back with the file.
  ShmDir d;
  auto s = OpenStore(d.root(), 64 << 20);
  const uint64_t size = 4 << 20;
  Buffer a = PutObject(*s, Id(1), size, 1);
  const uint8_t* first = a.data();
  a = Buffer();
  s->Delete(Id(1));
  REQUIRE(s->pooled() > 0);
  auto w = s->Create(Id(2), size);
  REQUIRE(w.ok());
  CHECK(w->data == first);
  CHECK(s->pooled() == 0);
  std::memset(w->data, 2, size);
  REQUIRE(s->Seal(*w).ok());
  w->mapping.reset();
  auto m = s->Map(Id(2));
  REQUIRE(m.ok());
  CHECK(AllBytes(*m, 2));
  // A file of another size is mapped anew (and truncated to its size).
  m = Buffer();
  s->Delete(Id(2));
  Buffer c = PutObject(*s, Id(3), size + (64 << 10), 3);
  CHECK(AllBytes(c, 3));
  CHECK(AllBytes(*s->Map(Id(3)), 3));
}

TEST_CASE("ShmStore frees an evicted file's pages although its writer keeps them mapped", "[shm_store]") {
  ShmDir d;
  auto s = OpenStore(d.root(), 12 << 20);
  const uint64_t size = 4 << 20;
  Buffer a = PutObject(*s, Id(1), size, 1);
  const uint8_t* kept = a.data();
  a = Buffer();
  s->Delete(Id(1));
  REQUIRE(s->pooled() > 0);
  CHECK(ResidentPages(kept, size) == static_cast<long>(size / sysconf(_SC_PAGESIZE)));  // still mapped here
  // Too big to reuse the pooled file, and too big to fit next to it: the pool file goes.
  Buffer b = PutObject(*s, Id(2), 10 << 20, 2);
  CHECK(s->pooled() == 0);
  CHECK(ResidentPages(kept, size) <= 0);  // its pages are gone (or the mapping was dropped)
  CHECK(AllBytes(b, 2));
}

TEST_CASE("ShmStore never recycles a file that a reader still maps", "[shm_store]") {
  ShmDir d;
  auto s = OpenStore(d.root(), 1 << 20);
  PutObject(*s, Id(1), 16 * 1024, 0x5a);
  auto view = s->Map(Id(1));
  REQUIRE(view.ok());
  s->Delete(Id(1));
  CHECK_FALSE(s->Contains(Id(1)));
  // A new object of the same size must not take the file the reader still sees.
  Buffer other = PutObject(*s, Id(2), 16 * 1024, 0x77);
  CHECK(other.data() != view->data());
  CHECK(AllBytes(*view, 0x5a));
  CHECK(AllBytes(other, 0x77));
  // Once the reader is gone, the file can be reused.
  view = Buffer();
  s->Delete(Id(2));
  other = Buffer();
  PutObject(*s, Id(3), 16 * 1024, 0x33);
  CHECK(AllBytes(*s->Map(Id(3)), 0x33));
}

TEST_CASE("ShmStore reports ObjectStoreFull", "[shm_store]") {
  ShmDir d;
  auto s = OpenStore(d.root(), 64 * 1024);

  SECTION("an object larger than the store") {
    auto w = s->Create(Id(1), 128 * 1024);
    REQUIRE_FALSE(w.ok());
    CHECK(w.status().code() == StatusCode::kObjectStoreFull);
    CHECK_THAT(w.status().message(), Catch::Contains("larger than the object store"));
    CHECK(s->used() == 0);
  }
  SECTION("a full store") {
    PutObject(*s, Id(1), 40 * 1024, 1);
    uint64_t used = s->used();
    auto w = s->Create(Id(2), 40 * 1024);
    REQUIRE_FALSE(w.ok());
    CHECK(w.status().code() == StatusCode::kObjectStoreFull);
    CHECK_THAT(w.status().message(), Catch::Contains("full"));
    CHECK(s->used() == used);
    CHECK(FilesIn(s->dir()) == 1);  // the failed create leaves nothing behind
    // After freeing space it fits.
    s->Delete(Id(1));
    auto again = s->Create(Id(2), 40 * 1024);
    REQUIRE(again.ok());
    s->Abort(*again);
    CHECK(s->used() == 0);
  }
}

TEST_CASE("ShmStore evicts recycled files when a new object needs the room", "[shm_store]") {
  ShmDir d;
  auto s = OpenStore(d.root(), 256 * 1024);
  PutObject(*s, Id(1), 60 * 1024, 1);
  s->Delete(Id(1));
  REQUIRE(s->pooled() > 0);
  // Too big to reuse the pooled file, and too big to fit next to it.
  Buffer b = PutObject(*s, Id(2), 200 * 1024, 2);
  CHECK(s->pooled() == 0);
  CHECK(s->used() >= 200 * 1024);
  CHECK(s->used() + s->pooled() <= s->capacity());
  CHECK(AllBytes(b, 2));
}

TEST_CASE("ShmStore Abort releases the reservation", "[shm_store]") {
  ShmDir d;
  auto s = OpenStore(d.root(), 64 * 1024);
  auto w = s->Create(Id(1), 40 * 1024);
  REQUIRE(w.ok());
  CHECK(s->used() >= 40 * 1024);
  CHECK(s->Create(Id(2), 40 * 1024).status().code() == StatusCode::kObjectStoreFull);
  s->Abort(*w);
  CHECK(s->used() == 0);
  CHECK_FALSE(s->Contains(Id(1)));
  CHECK(FilesIn(s->dir()) == 0);  // the temporary file is gone
  s->Abort(*w);                    // a second abort is a no-op
  CHECK(s->used() == 0);
  auto w2 = s->Create(Id(2), 40 * 1024);
  REQUIRE(w2.ok());
  s->Abort(*w2);
  CHECK(s->used() == 0);
}

TEST_CASE("ShmStore instances of one node share accounting and objects", "[shm_store]") {
  ShmDir d;
  auto a = OpenStore(d.root(), 64 * 1024);
  auto b = OpenStore(d.root(), 999);  // joins the existing store: the creator's capacity wins
  CHECK(b->capacity() == 64 * 1024);
  CHECK(a->dir() == b->dir());

  PutObject(*a, Id(1), 40 * 1024, 0x11);
  CHECK(b->used() == a->used());
  CHECK(b->used() >= 40 * 1024);
  CHECK(b->Contains(Id(1)));
  auto m = b->Map(Id(1));
  REQUIRE(m.ok());
  CHECK(AllBytes(*m, 0x11));
  CHECK(b->Create(Id(2), 32 * 1024).status().code() == StatusCode::kObjectStoreFull);

  m = Buffer();
  b->Delete(Id(1));
  CHECK(a->used() == 0);
  CHECK_FALSE(a->Contains(Id(1)));
  CHECK(a->pooled() == b->pooled());

  // Another node is a separate store.
  auto other = OpenStore(d.root(), 8 * 1024, 3);
  CHECK(other->dir() == d.root() + "-n3");
  CHECK(other->used() == 0);
  CHECK(other->capacity() == 8 * 1024);
}

TEST_CASE("ShmStore sealing an object twice keeps the first copy", "[shm_store]") {
  ShmDir d;
  auto s = OpenStore(d.root(), 1 << 20);
  Buffer first = PutObject(*s, Id(1), 4096, 1);
  const uint64_t one = s->used();
  // A second copy of the same object (e.g. a fetch racing another) is dropped on Seal.
  auto w2 = s->Create(Id(1), 4096);
  REQUIRE(w2.ok());
  std::memset(w2->data, 2, 4096);
  CHECK(s->used() == 2 * one);
  auto b2 = s->Seal(*w2);
  REQUIRE(b2.ok());
  CHECK(AllBytes(*b2, 1));
  CHECK(b2->data() == first.data());
  CHECK(s->used() == one);
  CHECK(FilesIn(s->dir()) == 1);
}

TEST_CASE("ShmStore RemoveAll removes the node directory", "[shm_store]") {
  ShmDir d;
  auto s = OpenStore(d.root(), 1 << 20);
  PutObject(*s, Id(1), 4096, 1);
  PutObject(*s, Id(2), 4096, 2);
  s->Delete(Id(2));  // one file in the pool as well
  REQUIRE(fs::exists(s->dir()));
  s->RemoveAll();
  CHECK_FALSE(fs::exists(s->dir()));
  CHECK_FALSE(s->Contains(Id(1)));
}

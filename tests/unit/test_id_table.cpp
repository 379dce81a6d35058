// Unit tests of mpiray::IdTable: the same answers as std::unordered_map under random inserts and
// erases (probe runs that wrap, backward-shift deletion), stable value addresses, iteration.
#include <catch2/catch.hpp>

#include <random>
#include <set>
#include <string>
#include <unordered_map>

#include "id_table.h"

using mpiray::IdTable;
using mpiray::ObjectId;
using mpiray::TaskId;

namespace {

ObjectId Id(uint32_t proc, uint64_t seq, uint32_t index = 0) {
  return ObjectId::ForReturn(TaskId::Make(proc, seq), index);
}

}  // namespace

TEST_CASE("IdTable agrees with std::unordered_map under random inserts and erases", "[id_table]") {
  IdTable<int64_t> t;
  std::unordered_map<ObjectId, int64_t> ref;
  std::mt19937_64 rng(7);
  // Few distinct keys and many operations: long probe runs, erases in the middle of them.
  for (int op = 0; op < 200000; ++op) {
    const ObjectId id = Id(1 + rng() % 3, rng() % 4000, rng() % 2);
    switch (rng() % 3) {
      case 0:
        ++t[id];
        ++ref[id];
        break;
      case 1:
        REQUIRE(t.Erase(id) == (ref.erase(id) == 1));
        break;
      default: {
        const int64_t* v = t.Find(id);
        auto it = ref.find(id);
        REQUIRE((v != nullptr) == (it != ref.end()));
        if (v) REQUIRE(*v == it->second);
      }
    }
    REQUIRE(t.size() == ref.size());
  }
  size_t seen = 0;
  for (const auto& [id, v] : t) {
    REQUIRE(ref.at(id) == v);
    ++seen;
  }
  REQUIRE(seen == ref.size());
}

TEST_CASE("IdTable keeps a value's address while other entries come and go", "[id_table]") {
  IdTable<std::string> t;
  std::string* kept = &t[Id(1, 1)];
  *kept = "kept";
  for (uint64_t s = 2; s < 50000; ++s) t[Id(1, s)] = "x";  // many grows of the index
  for (uint64_t s = 2; s < 50000; s += 2) REQUIRE(t.Erase(Id(1, s)));
  REQUIRE(t.Find(Id(1, 1)) == kept);
  REQUIRE(*kept == "kept");
  REQUIRE(t.size() == 1 + 24999);
  REQUIRE_FALSE(t.Erase(Id(1, 2)));  // already gone
  REQUIRE(t.Find(Id(1, 3)) != nullptr);
  REQUIRE(t.Find(Id(1, 4)) == nullptr);
}

TEST_CASE("IdTable's iteration costs what is alive, not the most there ever were", "[id_table]") {
  IdTable<int> t;
  for (uint64_t s = 1; s <= 100000; ++s) t[Id(3, s)] = static_cast<int>(s);
  REQUIRE(t.bucket_count() >= 200000);
  for (uint64_t s = 1; s <= 100000; ++s) {
    if (s % 1000 != 0) REQUIRE(t.Erase(Id(3, s)));
  }
  REQUIRE(t.size() == 100);
  const size_t before = t.bucket_count();
  t.Shrink();
  REQUIRE(t.bucket_count() <= 8 * 100 + 64);
  REQUIRE(t.bucket_count() < before);
  std::set<int> seen;
  for (const auto& [id, v] : t) {
    REQUIRE(id == Id(3, static_cast<uint64_t>(v)));
    seen.insert(v);
  }
  REQUIRE(seen.size() == 100);
  REQUIRE(*seen.begin() == 1000);
  for (uint64_t s = 1000; s <= 100000; s += 1000) REQUIRE(*t.Find(Id(3, s)) == static_cast<int>(s));
}

TEST_CASE("An empty IdTable finds and erases nothing", "[id_table]") {
  IdTable<int> t;
  REQUIRE(t.Find(Id(1, 1)) == nullptr);
  REQUIRE_FALSE(t.Erase(Id(1, 1)));
  REQUIRE(t.begin() == t.end());
  t[Id(1, 1)] = 3;
  REQUIRE(t.Erase(Id(1, 1)));
  REQUIRE(t.empty());
  REQUIRE(t.Find(Id(1, 1)) == nullptr);
}

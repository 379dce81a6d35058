// Unit tests of the head's lineage table (core/src/head/lineage.*) over an object directory:
// what a kept spec holds, and how freeing returns releases the chain.
#include <catch2/catch.hpp>

#include "head_fixture.h"

using namespace headtest;
using mpiray::head::LineageTable;
using mpiray::head::ObjectDirectory;

namespace {

struct Fixture {
  RecordingTransport t;
  mpiray::RuntimeConfig config;
  mpiray::Scheduler sched{8};
  mpiray::head::GpuAllocator gpus;
  mpiray::head::Membership members{t, config, sched, gpus, 0};
  RecordingObjectEvents events;
  ObjectDirectory objects{t, members, events, [] { return int64_t{0}; }};
  LineageTable lineage{objects};

  Fixture() {
    members.Add(Peer(0, 0), false, 0);
    members.Add(Peer(1, 0), true, 0);
    events.on_lineage = [this](TaskId task) { lineage.Release(task, true); };
  }
  // A finished task's return, in the store, held by the driver; its argument pins taken as
  // the task table takes them while it runs.
  proto::TaskSpec Finished(uint64_t seq, std::vector<proto::Arg> args) {
    auto spec = Task(seq, "f" + std::to_string(seq), 3);
    spec.args = std::move(args);
    ObjectId ret = spec.ReturnId(0);
    objects.Create(ret).holders = {0};
    objects.SetReady(ret, InStore(ret, 0));
    for (const auto& a : spec.args) {
      if (a.by_ref) objects.Pin(a.ref);
      for (const auto& n : a.nested) objects.Pin(n);
    }
    return spec;
  }
};

}  // namespace

TEST_CASE("LineageTable keeps a spec while a return needs it and pins put arguments",
          "[head][lineage]") {
  Fixture f;
  ObjectId put = ObjectId::ForPut(TaskId::Make(0, 100));
  f.objects.Put(Inline(put, Payload(1)), 0);
  auto a = f.Finished(1, {ByRef(put)});
  ObjectId ra = a.ReturnId(0);
  f.lineage.Keep(std::move(a), 3, 0);
  REQUIRE(f.lineage.Has(TaskId::Make(0, 1)));
  CHECK(f.objects.Find(ra)->lineage);
  // The put's last handle goes: the lineage still pins it (a rerun needs it).
  f.objects.RemoveHolder(put, 0);
  CHECK(f.objects.Has(put));
  // The return goes: the lineage goes, and with it the put.
  f.objects.RemoveHolder(ra, 0);
  CHECK_FALSE(f.lineage.Has(TaskId::Make(0, 1)));
  CHECK_FALSE(f.objects.Has(put));
  CHECK(f.lineage.size() == 0);
}

TEST_CASE("LineageTable holds the lineage of arguments made by kept tasks", "[head][lineage]") {
  Fixture f;
  auto a = f.Finished(1, {});
  ObjectId ra = a.ReturnId(0);
  f.lineage.Keep(std::move(a), 3, 0);
  auto b = f.Finished(2, {ByRef(ra)});
  ObjectId rb = b.ReturnId(0);
  f.lineage.Keep(std::move(b), 3, 0);
  CHECK(f.lineage.Find(TaskId::Make(0, 1))->refs == 2);  // its return and b's lineage
  f.objects.RemoveHolder(ra, 0);
  CHECK_FALSE(f.objects.Has(ra));                   // b's lineage does not pin the object...
  CHECK(f.lineage.Has(TaskId::Make(0, 1)));         // ...only how to make it again
  f.objects.RemoveHolder(rb, 0);
  CHECK(f.lineage.size() == 0);  // the whole chain went
}

TEST_CASE("LineageTable: a rerun's arguments let go, its kept spec stays", "[head][lineage]") {
  Fixture f;
  ObjectId put = ObjectId::ForPut(TaskId::Make(0, 100));
  f.objects.Put(Inline(put, Payload(1)), 0);
  auto first = f.Finished(1, {ByRef(put)});
  proto::TaskSpec again = first;
  f.lineage.Keep(std::move(first), 2, 0);
  // The rerun pinned its arguments too; keeping it again releases them but keeps the spec.
  f.objects.Pin(put);
  f.lineage.Keep(std::move(again), 1, 0);
  CHECK(f.lineage.Find(TaskId::Make(0, 1))->retries_left == 1);
  CHECK(f.objects.Find(put)->pins == 1);  // only the lineage's own pin is left
}

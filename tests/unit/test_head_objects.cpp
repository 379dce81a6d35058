// Unit tests of the head's object directory (core/src/head/object_directory.*), alone: holders,
// pins and containers, readiness and its announcements, remote waits, process deaths.
#include <catch2/catch.hpp>

#include "head/membership.h"
#include "head/object_directory.h"
#include "head_fixture.h"
#include "scheduler.h"
#include "session.h"

using namespace headtest;
using mpiray::RuntimeConfig;
using mpiray::Scheduler;
using mpiray::StatusCode;
using mpiray::head::GpuAllocator;
using mpiray::head::Membership;
using mpiray::head::ObjectDirectory;
using mpiray::head::ObjectEntry;

namespace {

struct Fixture {
  RecordingTransport t;
  RuntimeConfig config;
  Scheduler sched{8};
  GpuAllocator gpus;
  Membership members{t, config, sched, gpus, 0};
  RecordingObjectEvents events;
  int64_t now = 0;
  ObjectDirectory objects{t, members, events, [this] { return now; }};

  Fixture() {
    members.Add(Peer(0, 0), false, 0);
    members.Add(Peer(1, 0), true, 0);
    members.Add(Peer(2, 1), true, 0);
    t.posted.clear();
  }
  ObjectId Ret(uint64_t task, uint32_t i = 0) { return ObjectId::ForReturn(TaskId::Make(0, task), i); }
};

}  // namespace

TEST_CASE("ObjectDirectory frees an object when its last holder and pin go", "[head][objects]") {
  Fixture f;
  ObjectId id = f.Ret(1);
  f.objects.Create(id).holders = {0};
  f.objects.Pin(id);
  f.objects.SetReady(id, InStore(id, 1));
  f.objects.AddHolder(id, 2);
  f.objects.RemoveHolder(id, 0);
  f.objects.RemoveHolder(id, 2);
  CHECK(f.objects.Has(id));  // a pending task still uses it
  f.objects.Unpin(id);
  CHECK_FALSE(f.objects.Has(id));
  // Its copy on node 1 is deleted by node 1's live process.
  CHECK(Freed(f.t) == std::vector<std::pair<ProcId, ObjectId>>{{2, id}});
}

TEST_CASE("ObjectDirectory keeps a pending object until it is ready", "[head][objects]") {
  Fixture f;
  ObjectId id = f.Ret(1);
  f.objects.Create(id).holders = {0};
  f.objects.RemoveHolder(id, 0);
  CHECK(f.objects.Has(id));  // freed when its value arrives
  f.objects.SetReady(id, Inline(id, Payload(7)));
  CHECK_FALSE(f.objects.Has(id));
  CHECK(f.t.OfType(proto::Msg::kFreeObjects).empty());  // inline: nothing stored anywhere
}

TEST_CASE("ObjectDirectory announces ready dependencies and keeps nested refs alive",
          "[head][objects]") {
  Fixture f;
  ObjectId inner = f.Ret(1), outer = f.Ret(2);
  f.objects.Create(inner).holders = {0};
  f.objects.SetReady(inner, Inline(inner, Payload(1)));
  auto& e = f.objects.Create(outer);
  e.holders = {0};
  ObjectDirectory::AddDependent(e, TaskId::Make(0, 9));
  auto obj = Inline(outer, Payload(2));
  obj.nested = {inner};
  f.objects.SetReady(outer, std::move(obj));
  CHECK(f.events.dependencies_ready == std::vector<TaskId>{TaskId::Make(0, 9)});

  f.objects.RemoveHolder(inner, 0);
  CHECK(f.objects.Has(inner));  // the outer object's value holds it
  f.objects.RemoveHolder(outer, 0);
  CHECK_FALSE(f.objects.Has(outer));
  CHECK_FALSE(f.objects.Has(inner));
}

TEST_CASE("ObjectDirectory announces lineage released when an object holding it is freed",
          "[head][objects]") {
  Fixture f;
  ObjectId id = f.Ret(5);
  f.objects.Create(id).holders = {0};
  f.objects.SetReady(id, InStore(id, 0));
  f.objects.Find(id)->lineage = true;
  f.objects.RemoveHolder(id, 0);
  CHECK(f.events.lineage_released == std::vector<TaskId>{TaskId::Make(0, 5)});
}

TEST_CASE("ObjectDirectory answers a process's wait now or when the object is ready",
          "[head][objects]") {
  Fixture f;
  ObjectId ready = f.Ret(1), later = f.Ret(2);
  f.objects.Create(ready).holders = {0};
  f.objects.SetReady(ready, InStore(ready, 0));
  f.objects.Create(later).holders = {0};
  f.objects.OnGetObjects(2, proto::GetObjects{7, {ready, later, f.Ret(3)}});
  auto replies = f.t.OfType(proto::Msg::kObjectsReady);
  REQUIRE(replies.size() == 1);
  auto r = replies[0].As<proto::ObjectsReady>();
  CHECK(r.req == 7);
  REQUIRE(r.objects.size() == 2);
  CHECK(r.objects[0].id == ready);
  CHECK(r.objects[0].node == 0);
  CHECK(r.objects[0].source == 0);  // the first live process of the node holding the copy
  CHECK(ErrorOf(r.objects[1]).code() == StatusCode::kObjectLost);  // unknown

  f.objects.SetReady(later, Inline(later, Payload(3)));
  replies = f.t.OfType(proto::Msg::kObjectsReady);
  REQUIRE(replies.size() == 2);
  CHECK(replies[1].dest == 2);
  CHECK(replies[1].As<proto::ObjectsReady>().objects.at(0).id == later);
}

TEST_CASE("ObjectDirectory waits for the returns of a call another process submitted",
          "[head][objects]") {
  // Process 1 (a worker) called an actor directly and passed the pending return to a call on
  // process 2; process 2 asks before process 1's registration of the call reaches the head.
  Fixture f;
  ObjectId ret = ObjectId::ForReturn(TaskId::Make(1, 9), 0);
  f.objects.OnGetObjects(2, proto::GetObjects{3, {ret}});
  CHECK(f.t.OfType(proto::Msg::kObjectsReady).empty());
  ObjectEntry& e = f.objects.Create(ret);  // the registration (SubmitCall) arrives
  e.holders = {1};
  CHECK(e.registered);
  CHECK_FALSE(f.objects.AwaitingPuts());
  f.now = ObjectDirectory::kAwaitPutMs + 1;
  f.objects.ExpireAwaitedPuts(f.now);  // no longer awaited: no error
  CHECK(f.t.OfType(proto::Msg::kObjectsReady).empty());
  f.objects.SetReady(ret, Inline(ret, Payload(4)));
  auto replies = f.t.OfType(proto::Msg::kObjectsReady);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].dest == 2);
  auto r = replies[0].As<proto::ObjectsReady>();
  REQUIRE(r.objects.size() == 1);
  CHECK(r.objects[0].id == ret);
  CHECK(r.objects[0].where == static_cast<uint8_t>(proto::Where::kInline));
}

TEST_CASE("ObjectDirectory waits a while for a put's registration, then reports it lost",
          "[head][objects]") {
  Fixture f;
  ObjectId put = ObjectId::ForPut(TaskId::Make(1, 4));  // made by process 1, not yet registered
  f.objects.OnGetObjects(2, proto::GetObjects{1, {put}});
  CHECK(f.t.OfType(proto::Msg::kObjectsReady).empty());
  SECTION("the registration arrives") {
    f.objects.Put(Inline(put, Payload(5)), 1);
    REQUIRE(f.t.OfType(proto::Msg::kObjectsReady).size() == 1);
    CHECK_FALSE(f.objects.AwaitingPuts());
  }
  SECTION("it never does") {
    f.objects.ExpireAwaitedPuts(ObjectDirectory::kAwaitPutMs - 1);
    CHECK(f.t.OfType(proto::Msg::kObjectsReady).empty());
    f.objects.ExpireAwaitedPuts(ObjectDirectory::kAwaitPutMs);
    auto replies = f.t.OfType(proto::Msg::kObjectsReady);
    REQUIRE(replies.size() == 1);
    CHECK(ErrorOf(replies[0].As<proto::ObjectsReady>().objects.at(0)).code() == StatusCode::kObjectLost);
    CHECK_FALSE(f.objects.Has(put));  // nobody holds the placeholder
  }
}

TEST_CASE("ObjectDirectory: a dead process's handles and its node's copies go", "[head][objects]") {
  Fixture f;
  ObjectId only = f.Ret(1), both = f.Ret(2), held = f.Ret(3);
  for (ObjectId id : {only, both}) {
    f.objects.Create(id).holders = {0};
    f.objects.SetReady(id, InStore(id, 1));
  }
  f.objects.AddLocation(both, 0);
  f.objects.Create(held).holders = {2};
  f.objects.SetReady(held, Inline(held, Payload(1)));

  std::vector<ObjectId> handles, lost;
  f.objects.OnProcessDied(2, 1, /*node_gone=*/true, &handles, &lost);
  CHECK(handles == std::vector<ObjectId>{held});
  CHECK(lost == std::vector<ObjectId>{only});
  f.objects.MarkLost(only, "no lineage");
  CHECK(ErrorOf(f.objects.LocateOrLost(only, 0)).message().find("no lineage") != std::string::npos);
  CHECK(f.objects.LocateOrLost(both, 1).node == 0);  // the surviving copy
  for (ObjectId id : handles) f.objects.MaybeFree(id);
  CHECK_FALSE(f.objects.Has(held));
}

TEST_CASE("ObjectDirectory frees a copy reported for an object already freed", "[head][objects]") {
  Fixture f;
  ObjectId id = f.Ret(1);
  f.objects.AddLocation(id, 1);
  CHECK(Freed(f.t) == std::vector<std::pair<ProcId, ObjectId>>{{2, id}});
  // A late duplicate result for a ready object: its stored copy is dropped too.
  f.t.posted.clear();
  f.objects.Create(id).holders = {0};
  f.objects.SetReady(id, InStore(id, 0));
  f.objects.SetReady(id, InStore(id, 1));
  CHECK(Freed(f.t) == std::vector<std::pair<ProcId, ObjectId>>{{2, id}});
  CHECK(f.objects.LocateOrLost(id, 1).node == 0);
}

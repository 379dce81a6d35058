// Unit tests of the head's actor directory (core/src/head/actor_directory.*) over the task
// table and the owners below it, without the HeadService: placement, names, calls, restarts
// and death.
#include <catch2/catch.hpp>

#include "head/actor_directory.h"
#include "mpiray/core/detail/core_client.h"
#include "head_fixture.h"

using namespace headtest;
using mpiray::StatusCode;
using mpiray::head::ActorDirectory;

namespace {

struct Fixture : TaskStack {
  explicit Fixture(int workers) : TaskStack(workers) { tasks.SetEvents(&actors); }
  ActorDirectory::Deps ActorDeps() {
    ActorDirectory::Deps d;
    d.transport = &t;
    d.sched = &sched;
    d.objects = &objects;
    d.tasks = &tasks;
    d.gpus = &gpus;
    d.members = &members;
    return d;
  }
  ActorDirectory actors{ActorDeps()};
};

proto::TaskSpec Create(uint64_t seq, int max_restarts = 0, const std::string& name = "") {
  auto s = Task(seq, "Counter");
  s.kind = static_cast<uint8_t>(proto::TaskKind::kActorCreate);
  s.actor = s.id;
  s.resources.clear();
  s.max_restarts = max_restarts;
  if (!name.empty()) {
    s.named = true;
    s.name = name;
  }
  return s;
}

proto::TaskSpec Call(uint64_t seq, TaskId actor, const std::string& method = "inc") {
  auto s = Task(seq, method);
  s.kind = static_cast<uint8_t>(proto::TaskKind::kActorCall);
  s.actor = actor;
  s.resources.clear();
  s.max_retries = mpiray::detail::kActorDefaultRetries;
  return s;
}

}  // namespace

TEST_CASE("ActorDirectory places an actor and routes the driver's calls in order", "[head][actors]") {
  Fixture f(1);
  TaskId actor = TaskId::Make(0, 1);
  REQUIRE(f.actors.SubmitCall(Call(2, actor), 0).ok());  // unknown actor: its return says so
  CHECK(ErrorOf(f.objects.LocateOrLost(ObjectId::ForReturn(TaskId::Make(0, 2), 0), 0)).code() ==
        StatusCode::kActorDied);
  REQUIRE(f.actors.Create(Create(1), 0).ok());
  auto ex = f.Executes();
  REQUIRE(ex.size() == 1);  // the constructor runs on worker 1
  CHECK(ex[0].first == 1);
  REQUIRE(f.actors.SubmitCall(Call(3, actor), 0).ok());
  REQUIRE(f.actors.SubmitCall(Call(4, actor), 0).ok());
  auto calls = f.t.OfType(proto::Msg::kActorCall);
  REQUIRE(calls.size() == 2);
  CHECK(calls[0].dest == 1);
  CHECK(calls[0].As<proto::TaskSpec>().seq == 1);
  CHECK(calls[1].As<proto::TaskSpec>().seq == 2);

  proto::TaskDone done;
  done.task = TaskId::Make(0, 3);
  done.kind = static_cast<uint8_t>(proto::TaskKind::kActorCall);
  ObjectId r3 = ObjectId::ForReturn(TaskId::Make(0, 3), 0);
  done.returns = {Inline(r3, Payload(1))};
  f.actors.OnCallDone(1, std::move(done));
  CHECK(f.Ready(r3));
  CHECK_FALSE(f.tasks.Has(TaskId::Make(0, 3)));
}

TEST_CASE("ActorDirectory keeps names unique and frees a dead actor's name", "[head][actors]") {
  Fixture f(1);
  REQUIRE(f.actors.Create(Create(1, 0, "svc"), 0).ok());
  CHECK(f.actors.Create(Create(2, 0, "svc"), 0).code() == StatusCode::kAlreadyExists);
  mpiray::ActorId id;
  Buffer meta;
  REQUIRE(f.actors.FindNamed("", "svc", &id, &meta));
  CHECK(id == TaskId::Make(0, 1));
  f.actors.OnGetNamedActor(3, proto::GetNamedActor{5, "", "nope"});
  auto reply = f.t.OfType(proto::Msg::kNamedActor).at(0).As<proto::NamedActor>();
  CHECK(reply.req == 5);
  CHECK_FALSE(reply.found);
  REQUIRE(f.actors.Kill(id, true).ok());
  CHECK_FALSE(f.actors.FindNamed("", "svc", &id, &meta));
  CHECK(f.actors.Kill(TaskId::Make(0, 77), true).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("ActorDirectory restarts an actor whose worker died, or fails its calls",
          "[head][actors]") {
  Fixture f(2);
  REQUIRE(f.actors.Create(Create(1, /*max_restarts=*/1), 0).ok());
  ProcId host = f.Executes().at(0).first;
  // The constructor finishes.
  proto::TaskDone ok;
  ok.task = TaskId::Make(0, 1);
  ok.kind = static_cast<uint8_t>(proto::TaskKind::kActorCreate);
  ok.returns = {Inline(ObjectId::ForReturn(TaskId::Make(0, 1), 0), Payload(true))};
  f.tasks.OnTaskDone(host, std::move(ok));
  REQUIRE(f.actors.SubmitCall(Call(2, TaskId::Make(0, 1)), 0).ok());

  auto gone = f.members.Remove(host, "killed");
  f.tasks.OnProcessDied(gone->peer);
  f.actors.OnProcessDied(host, "killed");
  auto ex = f.Executes();
  REQUIRE(ex.size() == 2);  // the constructor again, elsewhere, as instance 2
  CHECK(ex[1].first != host);
  CHECK(ex[1].second.spec.incarnation == 2);
  // The call in flight had no retries (max_task_retries 0): it fails, naming the actor's death.
  auto err = ErrorOf(f.objects.LocateOrLost(ObjectId::ForReturn(TaskId::Make(0, 2), 0), 0));
  CHECK(err.code() == StatusCode::kActorDied);
  CHECK(err.message().find("max_task_retries") != std::string::npos);

  // No restarts left: the next death is final.
  ProcId second = ex[1].first;
  gone = f.members.Remove(second, "killed");
  f.tasks.OnProcessDied(gone->peer);
  f.actors.OnProcessDied(second, "killed");
  REQUIRE(f.actors.SubmitCall(Call(3, TaskId::Make(0, 1)), 0).ok());
  auto dead = ErrorOf(f.objects.LocateOrLost(ObjectId::ForReturn(TaskId::Make(0, 3), 0), 0));
  CHECK(dead.message().find("is dead") != std::string::npos);
}

TEST_CASE("ActorDirectory answers where an actor is once it is placed", "[head][actors]") {
  Fixture f(0);
  f.config.autoscale = true;  // no worker yet: the actor waits for one
  REQUIRE(f.actors.Create(Create(1), 0).ok());
  f.actors.OnActorLookup(5, proto::ActorLookup{TaskId::Make(0, 1)});
  CHECK(f.t.OfType(proto::Msg::kActorLocation).empty());
  CHECK(f.actors.PendingCount() == 1);
  f.members.Add(Peer(1, 0), true, 0);
  f.actors.PlacePending();
  auto loc = f.t.OfType(proto::Msg::kActorLocation);
  REQUIRE(loc.size() == 1);
  CHECK(loc[0].dest == 5);
  CHECK(loc[0].As<proto::ActorLocation>().proc == 1);
  CHECK(loc[0].As<proto::ActorLocation>().state == static_cast<uint8_t>(proto::ActorState::kAlive));
}

// Unit tests of mpiray::HeadService driven through a fake transport: dispatch, results,
// reference counting, dependencies, errors, cancellation, worker failure and actors.
#include <catch2/catch.hpp>

#include <chrono>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include "fabric.h"
#include "head.h"
#include "mpiray/core/serialization.h"
#include "protocol.h"
#include "session.h"

using mpiray::Buffer;
using mpiray::HeadService;
using mpiray::ObjectId;
using mpiray::ProcId;
using mpiray::RuntimeConfig;
using mpiray::StatusCode;
using mpiray::TaskId;
using mpiray::proto::Msg;
namespace proto = mpiray::proto;
namespace detail = mpiray::detail;

namespace {

constexpr int64_t kUnit = proto::kResourceUnit;

struct Posted {
  ProcId dest;
  Msg type;
  std::string body;
};

// Records every message the head posts.
class FakeTransport : public mpiray::Transport {
 public:
  ProcId self() const override { return 0; }
  void Post(ProcId dest, Msg type, const char* body, size_t len) override {
    std::lock_guard<std::mutex> lk(mu_);
    posted_.push_back({dest, type, std::string(body, len)});
  }
  void SendBulk(ProcId, const proto::BulkHeader&, const void*, size_t, std::shared_ptr<const void>,
                std::function<void(bool)>) override {
    std::lock_guard<std::mutex> lk(mu_);
    ++bulk_;
  }
  void AddPeer(ProcId, const Buffer&) override {}
  void RemovePeer(ProcId) override {}
  void Wake() override {}

  std::vector<Posted> All() const {
    std::lock_guard<std::mutex> lk(mu_);
    return posted_;
  }
  std::vector<Posted> OfType(Msg type) const {
    std::vector<Posted> out;
    for (auto& p : All()) {
      if (p.type == type) out.push_back(p);
    }
    return out;
  }
  // Decoded kExecute messages (spec, resolved) with their destination.
  std::vector<std::pair<ProcId, proto::Execute>> Executes() const {
    std::vector<std::pair<ProcId, proto::Execute>> out;
    for (auto& p : OfType(Msg::kExecute)) {
      out.emplace_back(p.dest, mpiray::DecodeMsg<proto::Execute>(p.body.data(), p.body.size()));
    }
    return out;
  }
  // Destinations of the kExecute messages for `task`.
  std::vector<ProcId> ExecutedOn(TaskId task) const {
    std::vector<ProcId> out;
    for (auto& [dest, ex] : Executes()) {
      if (ex.spec.id == task) out.push_back(dest);
    }
    return out;
  }
  void Clear() {
    std::lock_guard<std::mutex> lk(mu_);
    posted_.clear();
  }

 private:
  mutable std::mutex mu_;
  std::vector<Posted> posted_;
  int bulk_ = 0;
};

proto::PeerInfo Peer(ProcId proc, mpiray::NodeId node) {
  proto::PeerInfo p;
  p.proc = proc;
  p.node = node;
  p.host = "host" + std::to_string(node);
  p.pid = 1000 + static_cast<int32_t>(proc);
  return p;
}

RuntimeConfig Config(int max_inflight = 64) {
  RuntimeConfig c;
  c.max_inflight_per_worker = max_inflight;
  return c;
}

// A head with itself (proc 0) and `workers` worker processes 1..workers, all on node 0.
void AddCluster(HeadService& head, int workers) {
  head.AddProcess(Peer(0, 0), false);
  for (int i = 1; i <= workers; ++i) head.AddProcess(Peer(static_cast<ProcId>(i), 0), true);
}

proto::TaskSpec NormalTask(uint64_t seq, const std::string& fn = "f", int max_retries = 0) {
  proto::TaskSpec s;
  s.id = TaskId::Make(0, seq);
  s.kind = static_cast<uint8_t>(proto::TaskKind::kNormal);
  s.function = fn;
  s.num_returns = 1;
  s.resources = {{"CPU", kUnit}};
  s.max_retries = max_retries;
  return s;
}

proto::Arg ByRef(const ObjectId& id) {
  proto::Arg a;
  a.by_ref = true;
  a.ref = id;
  return a;
}

template <class T>
Buffer Payload(const T& v) {
  return Buffer(detail::Serialize(v).ToVector());
}

proto::NewObject Inline(const ObjectId& id, const Buffer& data) {
  proto::NewObject o;
  o.id = id;
  o.where = static_cast<uint8_t>(proto::Where::kInline);
  o.data = data;
  o.size = data.size();
  return o;
}

proto::NewObject ErrorObject(const ObjectId& id, StatusCode code, const std::string& msg) {
  proto::NewObject o;
  o.id = id;
  o.where = static_cast<uint8_t>(proto::Where::kError);
  o.data = Buffer(detail::MakeErrorPayload(code, msg));
  o.size = o.data.size();
  return o;
}

void Deliver(HeadService& head, ProcId from, const proto::TaskDone& done) {
  msgpack::sbuffer sb;
  msgpack::pack(sb, done);
  head.Handle(from, Msg::kTaskDone, sb.data(), sb.size());
}

proto::TaskDone Done(TaskId task, std::vector<proto::NewObject> returns,
                     proto::TaskKind kind = proto::TaskKind::kNormal) {
  proto::TaskDone d;
  d.task = task;
  d.kind = static_cast<uint8_t>(kind);
  d.returns = std::move(returns);
  return d;
}

// Where the object is now (it must be ready).
proto::ObjectLoc ReadyLoc(HeadService& head, const ObjectId& id) {
  std::vector<bool> ready;
  auto locs = head.WaitLocal({id}, 1, 0, &ready, 0);
  REQUIRE(ready.size() == 1);
  REQUIRE(ready[0]);
  return locs.at(0);
}

bool IsReady(HeadService& head, const ObjectId& id) {
  std::vector<bool> ready;
  head.WaitLocal({id}, 1, 0, &ready, 0);
  return ready.at(0);
}

mpiray::Status ErrorOf(const proto::ObjectLoc& loc) {
  REQUIRE(loc.where == static_cast<uint8_t>(proto::Where::kError));
  return detail::ErrorFromPayload(loc.data);
}

}  // namespace

TEST_CASE("Head dispatches a submitted task and returns its result", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);

  auto spec = NormalTask(1);
  ObjectId rid = spec.ReturnId(0);
  REQUIRE(head.Submit(std::move(spec), 0).ok());
  auto ex = t.Executes();
  REQUIRE(ex.size() == 1);
  CHECK(ex[0].first == 1);
  CHECK(ex[0].second.spec.id == TaskId::Make(0, 1));
  CHECK(ex[0].second.spec.function == "f");
  CHECK(ex[0].second.resolved.empty());
  CHECK(head.HasObject(rid));
  CHECK_FALSE(IsReady(head, rid));
  CHECK(head.Status_().running_tasks == 1);

  Deliver(head, 1, Done(TaskId::Make(0, 1), {Inline(rid, Payload(42))}));
  auto loc = ReadyLoc(head, rid);
  CHECK(loc.id == rid);
  CHECK(loc.where == static_cast<uint8_t>(proto::Where::kInline));
  CHECK(detail::Deserialize<int>(loc.data) == 42);
  CHECK(head.Status_().running_tasks == 0);
}

TEST_CASE("Head frees an object when its last holder lets go", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);
  size_t base = head.NumObjects();

  auto spec = NormalTask(1);
  ObjectId rid = spec.ReturnId(0);
  REQUIRE(head.Submit(std::move(spec), 0).ok());
  CHECK(head.NumObjects() == base + 1);

  SECTION("released after the result arrived") {
    Deliver(head, 1, Done(TaskId::Make(0, 1), {Inline(rid, Payload(std::string("x")))}));
    CHECK(head.HasObject(rid));
    head.AddHolder(rid, 1);  // a second holder keeps it
    head.RemoveHolder(rid, 0);
    CHECK(head.HasObject(rid));
    head.RemoveHolder(rid, 1);
    CHECK_FALSE(head.HasObject(rid));
    CHECK(head.NumObjects() == base);
  }
  SECTION("released before the result arrived") {
    head.RemoveHolder(rid, 0);
    CHECK(head.HasObject(rid));  // still pending: freed when its task finishes
    Deliver(head, 1, Done(TaskId::Make(0, 1), {Inline(rid, Payload(1))}));
    CHECK_FALSE(head.HasObject(rid));
    CHECK(head.NumObjects() == base);
  }
  SECTION("an unknown or freed object reads as lost") {
    head.RemoveHolder(rid, 0);
    Deliver(head, 1, Done(TaskId::Make(0, 1), {Inline(rid, Payload(1))}));
    auto loc = ReadyLoc(head, rid);
    CHECK(ErrorOf(loc).code() == StatusCode::kObjectLost);
  }
}

TEST_CASE("Head dispatches a dependent task only when its argument is ready", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 2);

  auto a = NormalTask(1, "producer");
  ObjectId a_ret = a.ReturnId(0);
  REQUIRE(head.Submit(std::move(a), 0).ok());
  auto b = NormalTask(2, "consumer");
  b.args.push_back(ByRef(a_ret));
  ObjectId b_ret = b.ReturnId(0);
  REQUIRE(head.Submit(std::move(b), 0).ok());

  REQUIRE(t.ExecutedOn(TaskId::Make(0, 1)).size() == 1);
  ProcId a_worker = t.ExecutedOn(TaskId::Make(0, 1))[0];
  CHECK(t.ExecutedOn(TaskId::Make(0, 2)).empty());  // a worker is free, but the arg is not
  CHECK(head.Status_().queued_tasks == 0);

  // The driver drops its handle to a's result: b's pending use keeps it alive.
  head.RemoveHolder(a_ret, 0);
  Deliver(head, a_worker, Done(TaskId::Make(0, 1), {Inline(a_ret, Payload(7))}));
  CHECK(head.HasObject(a_ret));

  auto ex = t.Executes();
  std::vector<proto::Execute> for_b;
  for (auto& [dest, e] : ex) {
    if (e.spec.id == TaskId::Make(0, 2)) for_b.push_back(e);
  }
  REQUIRE(for_b.size() == 1);
  REQUIRE(for_b[0].resolved.size() == 1);
  CHECK(for_b[0].resolved[0].id == a_ret);
  CHECK(for_b[0].resolved[0].where == static_cast<uint8_t>(proto::Where::kInline));
  CHECK(detail::Deserialize<int>(for_b[0].resolved[0].data) == 7);

  ProcId b_worker = t.ExecutedOn(TaskId::Make(0, 2)).at(0);
  Deliver(head, b_worker, Done(TaskId::Make(0, 2), {Inline(b_ret, Payload(8))}));
  CHECK_FALSE(head.HasObject(a_ret));  // its last user finished
  CHECK(detail::Deserialize<int>(ReadyLoc(head, b_ret).data) == 8);
}

TEST_CASE("Head propagates an upstream error without running the dependent task", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 2);

  auto a = NormalTask(1, "fails");
  ObjectId a_ret = a.ReturnId(0);
  REQUIRE(head.Submit(std::move(a), 0).ok());
  auto b = NormalTask(2, "consumer");
  b.args.push_back(ByRef(a_ret));
  ObjectId b_ret = b.ReturnId(0);
  REQUIRE(head.Submit(std::move(b), 0).ok());

  ProcId a_worker = t.ExecutedOn(TaskId::Make(0, 1)).at(0);
  Deliver(head, a_worker,
          Done(TaskId::Make(0, 1), {ErrorObject(a_ret, StatusCode::kTaskError, "boom in fails")}));

  CHECK(t.ExecutedOn(TaskId::Make(0, 2)).empty());
  auto st = ErrorOf(ReadyLoc(head, b_ret));
  CHECK(st.code() == StatusCode::kTaskError);
  CHECK_THAT(st.message(), Catch::Contains("boom in fails"));
  CHECK(head.Status_().running_tasks == 0);
  CHECK(head.Status_().queued_tasks == 0);
}

TEST_CASE("Head rejects tasks that can never run", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);
  size_t base = head.NumObjects();

  auto gpu = NormalTask(1);
  gpu.resources = {{"GPU", kUnit}};
  auto st = head.Submit(std::move(gpu), 0);
  CHECK(st.code() == StatusCode::kInfeasible);
  CHECK_THAT(st.message(), Catch::Contains("GPU"));

  auto many = NormalTask(2);
  many.resources = {{"CPU", 2 * kUnit}};  // one worker: CPU = 1
  CHECK(head.Submit(std::move(many), 0).code() == StatusCode::kInfeasible);

  auto neg = NormalTask(3);
  neg.resources = {{"CPU", -kUnit}};
  CHECK(head.Submit(std::move(neg), 0).code() == StatusCode::kInvalidArgument);

  auto missing_arg = NormalTask(4);
  missing_arg.args.push_back(ByRef(ObjectId::ForPut(TaskId::Make(0, 99))));
  CHECK(head.Submit(std::move(missing_arg), 0).code() == StatusCode::kObjectLost);

  CHECK(t.Executes().empty());
  CHECK(head.NumObjects() == base);
}

TEST_CASE("Head cancels a queued task", "[head]") {
  FakeTransport t;
  HeadService head(t, Config(1));
  AddCluster(head, 1);

  auto a = NormalTask(1, "running");
  ObjectId a_ret = a.ReturnId(0);
  REQUIRE(head.Submit(std::move(a), 0).ok());
  auto b = NormalTask(2, "waiting");
  ObjectId b_ret = b.ReturnId(0);
  REQUIRE(head.Submit(std::move(b), 0).ok());
  REQUIRE(t.ExecutedOn(TaskId::Make(0, 2)).empty());
  CHECK(head.Status_().queued_tasks == 1);

  REQUIRE(head.Cancel(b_ret, false, true).ok());
  auto st = ErrorOf(ReadyLoc(head, b_ret));
  CHECK(st.code() == StatusCode::kCancelled);
  CHECK_THAT(st.message(), Catch::Contains("waiting"));
  CHECK(head.Status_().queued_tasks == 0);

  // The worker frees up: the cancelled task must still never run.
  Deliver(head, 1, Done(TaskId::Make(0, 1), {Inline(a_ret, Payload(1))}));
  CHECK(t.ExecutedOn(TaskId::Make(0, 2)).empty());
  // Cancelling again, or a finished task, is harmless.
  CHECK(head.Cancel(b_ret, false, true).ok());
  CHECK(head.Cancel(a_ret, false, true).ok());
}

TEST_CASE("Head asks the worker to cancel a running task", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);
  auto a = NormalTask(1, "long");
  ObjectId a_ret = a.ReturnId(0);
  REQUIRE(head.Submit(std::move(a), 0).ok());
  REQUIRE(head.Cancel(a_ret, true, true).ok());
  auto msgs = t.OfType(Msg::kCancelRunning);
  REQUIRE(msgs.size() == 1);
  CHECK(msgs[0].dest == 1);
  auto cr = mpiray::DecodeMsg<proto::CancelRunning>(msgs[0].body.data(), msgs[0].body.size());
  CHECK(cr.task == TaskId::Make(0, 1));
  CHECK(cr.force);
  // Whatever the worker reports afterwards, the result is a cancellation.
  Deliver(head, 1, Done(TaskId::Make(0, 1), {Inline(a_ret, Payload(5))}));
  CHECK(ErrorOf(ReadyLoc(head, a_ret)).code() == StatusCode::kCancelled);
}

TEST_CASE("Head retries or fails the tasks of a dead worker", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 2);

  SECTION("with retries left the task runs again on another worker") {
    auto a = NormalTask(1, "retry_me", /*max_retries=*/1);
    ObjectId a_ret = a.ReturnId(0);
    REQUIRE(head.Submit(std::move(a), 0).ok());
    auto first = t.ExecutedOn(TaskId::Make(0, 1));
    REQUIRE(first.size() == 1);
    head.RemoveProcess(first[0], "test: killed");
    auto all = t.ExecutedOn(TaskId::Make(0, 1));
    REQUIRE(all.size() == 2);
    CHECK(all[1] != first[0]);
    CHECK_FALSE(IsReady(head, a_ret));
    // A late result from the dead worker is ignored; the new worker's result counts.
    Deliver(head, first[0], Done(TaskId::Make(0, 1), {Inline(a_ret, Payload(-1))}));
    CHECK_FALSE(IsReady(head, a_ret));
    Deliver(head, all[1], Done(TaskId::Make(0, 1), {Inline(a_ret, Payload(11))}));
    CHECK(detail::Deserialize<int>(ReadyLoc(head, a_ret).data) == 11);
  }
  SECTION("without retries the result is WorkerCrashed") {
    auto a = NormalTask(1, "no_retry", /*max_retries=*/0);
    ObjectId a_ret = a.ReturnId(0);
    REQUIRE(head.Submit(std::move(a), 0).ok());
    ProcId w = t.ExecutedOn(TaskId::Make(0, 1)).at(0);
    head.RemoveProcess(w, "test: killed");
    CHECK(t.ExecutedOn(TaskId::Make(0, 1)).size() == 1);
    auto st = ErrorOf(ReadyLoc(head, a_ret));
    CHECK(st.code() == StatusCode::kWorkerCrashed);
    CHECK_THAT(st.message(), Catch::Contains("no_retry"));
    CHECK(head.Workers() == std::vector<ProcId>{w == 1 ? 2u : 1u});
  }
}

namespace {

proto::TaskSpec ActorCreate(uint64_t seq, const std::string& fn = "Counter::Create") {
  proto::TaskSpec s;
  s.id = TaskId::Make(0, seq);
  s.kind = static_cast<uint8_t>(proto::TaskKind::kActorCreate);
  s.function = fn;
  s.actor = s.id;
  s.num_returns = 1;
  return s;
}

proto::TaskSpec ActorCall(TaskId id, mpiray::ActorId actor, ProcId caller, uint64_t seq) {
  proto::TaskSpec s;
  s.id = id;
  s.kind = static_cast<uint8_t>(proto::TaskKind::kActorCall);
  s.function = "Counter::Add";
  s.actor = actor;
  s.caller = caller;
  s.seq = seq;
  s.num_returns = 1;
  return s;
}

}  // namespace

TEST_CASE("Head places an actor and routes driver calls to it", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);

  auto create = ActorCreate(1);
  mpiray::ActorId actor = create.id;
  ObjectId create_ret = create.ReturnId(0);
  REQUIRE(head.Submit(std::move(create), 0).ok());
  auto ex = t.Executes();
  REQUIRE(ex.size() == 1);
  CHECK(ex[0].first == 1);
  CHECK(ex[0].second.spec.task_kind() == proto::TaskKind::kActorCreate);
  CHECK(head.Status_().actors == 1);

  auto call = ActorCall(TaskId::Make(0, 2), actor, 0, 1);
  ObjectId call_ret = call.ReturnId(0);
  REQUIRE(head.Submit(std::move(call), 0).ok());
  auto calls = t.OfType(Msg::kActorCall);
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].dest == 1);
  auto spec = mpiray::DecodeMsg<proto::TaskSpec>(calls[0].body.data(), calls[0].body.size());
  CHECK(spec.id == TaskId::Make(0, 2));
  CHECK(spec.actor == actor);
  CHECK(spec.function == "Counter::Add");

  Deliver(head, 1, Done(actor, {Inline(create_ret, Payload(msgpack::type::nil_t()))},
                        proto::TaskKind::kActorCreate));
  Deliver(head, 1, Done(TaskId::Make(0, 2), {Inline(call_ret, Payload(3))},
                        proto::TaskKind::kActorCall));
  CHECK(detail::Deserialize<int>(ReadyLoc(head, call_ret).data) == 3);
  head.RemoveHolder(call_ret, 0);
  CHECK_FALSE(head.HasObject(call_ret));
}

TEST_CASE("Head queues driver calls made before the actor is placed", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  head.AddProcess(Peer(0, 0), false);
  head.AddProcess(Peer(1, 0), true);

  // The constructor argument is not ready, so the actor waits and so do its calls.
  auto producer = NormalTask(1, "arg");
  ObjectId arg = producer.ReturnId(0);
  REQUIRE(head.Submit(std::move(producer), 0).ok());
  auto create = ActorCreate(2);
  create.args.push_back(ByRef(arg));
  mpiray::ActorId actor = create.id;
  REQUIRE(head.Submit(std::move(create), 0).ok());
  REQUIRE(head.Submit(ActorCall(TaskId::Make(0, 3), actor, 0, 1), 0).ok());
  CHECK(t.OfType(Msg::kActorCall).empty());
  CHECK(t.ExecutedOn(actor).empty());

  Deliver(head, 1, Done(TaskId::Make(0, 1), {Inline(arg, Payload(0))}));
  CHECK(t.ExecutedOn(actor) == std::vector<ProcId>{1});
  auto calls = t.OfType(Msg::kActorCall);
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].dest == 1);
}

TEST_CASE("Head kills an actor and fails its pending calls", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);
  auto create = ActorCreate(1);
  mpiray::ActorId actor = create.id;
  REQUIRE(head.Submit(std::move(create), 0).ok());
  auto call = ActorCall(TaskId::Make(0, 2), actor, 0, 1);
  ObjectId call_ret = call.ReturnId(0);
  REQUIRE(head.Submit(std::move(call), 0).ok());

  REQUIRE(head.KillActor(actor, true).ok());
  auto destroy = t.OfType(Msg::kDestroyActor);
  REQUIRE(destroy.size() == 1);
  CHECK(destroy[0].dest == 1);
  CHECK(ErrorOf(ReadyLoc(head, call_ret)).code() == StatusCode::kActorDied);
  CHECK(head.Status_().actors == 0);

  // Later calls fail at once.
  auto late = ActorCall(TaskId::Make(0, 3), actor, 0, 2);
  ObjectId late_ret = late.ReturnId(0);
  REQUIRE(head.Submit(std::move(late), 0).ok());
  CHECK(ErrorOf(ReadyLoc(head, late_ret)).code() == StatusCode::kActorDied);
  CHECK(head.KillActor(TaskId::Make(0, 77), true).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("Head accepts an actor call result that beats the caller's registration", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 2);
  auto create = ActorCreate(1);
  mpiray::ActorId actor = create.id;
  REQUIRE(head.Submit(std::move(create), 0).ok());
  ProcId actor_worker = t.ExecutedOn(actor).at(0);
  ProcId caller = actor_worker == 1 ? 2 : 1;
  size_t base = head.NumObjects();

  // Worker `caller` calls the actor directly; the actor's result reaches the head first.
  TaskId call_id = TaskId::Make(caller, 1);
  ObjectId ret = ObjectId::ForReturn(call_id, 0);
  Deliver(head, actor_worker,
          Done(call_id, {Inline(ret, Payload(std::string("early")))}, proto::TaskKind::kActorCall));
  CHECK(head.HasObject(ret));  // kept until the registration says who holds it

  // Now the caller's registration arrives (as a kSubmit message from the caller).
  auto spec = ActorCall(call_id, actor, caller, 1);
  msgpack::sbuffer sb;
  msgpack::pack(sb, spec);
  head.Handle(caller, Msg::kSubmit, sb.data(), sb.size());
  CHECK(t.OfType(Msg::kActorCall).empty());  // the caller routes its own calls
  CHECK(detail::Deserialize<std::string>(ReadyLoc(head, ret).data) == "early");
  CHECK(head.NumObjects() == base + 1);

  // The caller drops its handle: nothing is left behind.
  proto::IdList del{{ret}};
  sb.clear();
  msgpack::pack(sb, del);
  head.Handle(caller, Msg::kDelRef, sb.data(), sb.size());
  CHECK_FALSE(head.HasObject(ret));
  CHECK(head.NumObjects() == base);
  CHECK(head.Status_().running_tasks == 1);  // only the actor creation
}

TEST_CASE("Head lets normal tasks run on a worker after it created an actor",
          "[head]") {
  // Scheduler::Finished is called for the actor-creation task although PlaceActor never
  // assigned it through the scheduler, so the worker's lease count goes negative.
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);
  auto create = ActorCreate(1);
  mpiray::ActorId actor = create.id;
  ObjectId create_ret = create.ReturnId(0);
  REQUIRE(head.Submit(std::move(create), 0).ok());
  REQUIRE(t.ExecutedOn(actor) == std::vector<ProcId>{1});
  Deliver(head, 1, Done(actor, {Inline(create_ret, Payload(msgpack::type::nil_t()))},
                        proto::TaskKind::kActorCreate));

  auto task = NormalTask(2, "after_actor");
  REQUIRE(head.Submit(std::move(task), 0).ok());
  CHECK(t.ExecutedOn(TaskId::Make(0, 2)) == std::vector<ProcId>{1});
  CHECK(head.Status_().queued_tasks == 0);
}

TEST_CASE("Head keeps a running task's CPU when an actor's creation finishes on its worker",
          "[head]") {
  // Same cause: finishing the actor creation releases the lease of the task running beside it.
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);
  auto create = ActorCreate(1);
  mpiray::ActorId actor = create.id;
  ObjectId create_ret = create.ReturnId(0);
  REQUIRE(head.Submit(std::move(create), 0).ok());
  REQUIRE(head.Submit(NormalTask(2, "running"), 0).ok());
  REQUIRE(t.ExecutedOn(TaskId::Make(0, 2)) == std::vector<ProcId>{1});
  REQUIRE(head.Status_().nodes.at(0).available.at("CPU") == 0.0);

  Deliver(head, 1, Done(actor, {Inline(create_ret, Payload(msgpack::type::nil_t()))},
                        proto::TaskKind::kActorCreate));
  CHECK(head.Status_().nodes.at(0).available.at("CPU") == 0.0);  // "running" still holds it
}

TEST_CASE("Head WaitLocal with a timeout reports pending objects as not ready", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);
  auto a = NormalTask(1);
  ObjectId a_ret = a.ReturnId(0);
  REQUIRE(head.Submit(std::move(a), 0).ok());
  auto b = NormalTask(2);
  ObjectId b_ret = b.ReturnId(0);
  REQUIRE(head.Submit(std::move(b), 0).ok());

  std::vector<bool> ready;
  auto start = std::chrono::steady_clock::now();
  auto locs = head.WaitLocal({a_ret, b_ret}, 1, 30, &ready, 0);
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(25));
  REQUIRE(ready.size() == 2);
  CHECK_FALSE(ready[0]);
  CHECK_FALSE(ready[1]);
  CHECK(locs.size() == 2);

  // One of two is enough when only one is asked for.
  Deliver(head, 1, Done(TaskId::Make(0, 1), {Inline(a_ret, Payload(1))}));
  locs = head.WaitLocal({a_ret, b_ret}, 1, 10000, &ready, 0);
  CHECK(ready == std::vector<bool>{true, false});
  CHECK(detail::Deserialize<int>(locs[0].data) == 1);
}

TEST_CASE("Head WaitLocal wakes up when the result arrives", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);
  auto a = NormalTask(1);
  ObjectId a_ret = a.ReturnId(0);
  REQUIRE(head.Submit(std::move(a), 0).ok());

  std::vector<bool> ready;
  std::vector<proto::ObjectLoc> locs;
  std::thread waiter([&] { locs = head.WaitLocal({a_ret}, 1, 10000, &ready, 0); });
  Deliver(head, 1, Done(TaskId::Make(0, 1), {Inline(a_ret, Payload(99))}));
  waiter.join();
  REQUIRE(ready.size() == 1);
  CHECK(ready[0]);
  CHECK(detail::Deserialize<int>(locs.at(0).data) == 99);
}

TEST_CASE("Head Close releases waiting drivers", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);
  auto a = NormalTask(1);
  ObjectId a_ret = a.ReturnId(0);
  REQUIRE(head.Submit(std::move(a), 0).ok());
  head.Close("test over");
  std::vector<bool> ready;
  auto locs = head.WaitLocal({a_ret}, 1, -1, &ready, 0);  // must not block
  CHECK(ready.at(0));
  auto st = ErrorOf(locs.at(0));
  CHECK(st.code() == StatusCode::kUnavailable);
  CHECK_THAT(st.message(), Catch::Contains("test over"));
  CHECK(head.Submit(NormalTask(2), 0).code() == StatusCode::kUnavailable);
}

TEST_CASE("Head keeps nested objects alive while their container lives", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);
  size_t base = head.NumObjects();

  // The driver puts an inner object, then a container whose value refers to it.
  ObjectId inner = ObjectId::ForPut(TaskId::Make(0, 1));
  REQUIRE(head.Put(Inline(inner, Payload(5)), 0).ok());
  ObjectId outer = ObjectId::ForPut(TaskId::Make(0, 2));
  auto container = Inline(outer, Payload(std::string("holds inner")));
  container.nested = {inner};
  REQUIRE(head.Put(std::move(container), 0).ok());
  CHECK(head.NumObjects() == base + 2);

  head.RemoveHolder(inner, 0);
  CHECK(head.HasObject(inner));  // the container still refers to it
  CHECK(detail::Deserialize<int>(ReadyLoc(head, inner).data) == 5);

  head.RemoveHolder(outer, 0);
  CHECK_FALSE(head.HasObject(outer));
  CHECK_FALSE(head.HasObject(inner));
  CHECK(head.NumObjects() == base);
}

TEST_CASE("Head keeps a task result's nested refs alive", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);
  ObjectId inner = ObjectId::ForPut(TaskId::Make(1, 1));
  // Worker 1 puts an object and returns a value that refers to it.
  proto::NewObject put = Inline(inner, Payload(1));
  msgpack::sbuffer sb;
  msgpack::pack(sb, put);
  head.Handle(1, Msg::kPutObject, sb.data(), sb.size());
  REQUIRE(head.HasObject(inner));

  auto a = NormalTask(1);
  ObjectId a_ret = a.ReturnId(0);
  REQUIRE(head.Submit(std::move(a), 0).ok());
  auto ret = Inline(a_ret, Payload(std::string("ref inside")));
  ret.nested = {inner};
  Deliver(head, 1, Done(TaskId::Make(0, 1), {ret}));
  // The worker's own handle goes away once it reported the task.
  proto::IdList del{{inner}};
  sb.clear();
  msgpack::pack(sb, del);
  head.Handle(1, Msg::kDelRef, sb.data(), sb.size());
  CHECK(head.HasObject(inner));
  head.RemoveHolder(a_ret, 0);
  CHECK_FALSE(head.HasObject(a_ret));
  CHECK_FALSE(head.HasObject(inner));
}

TEST_CASE("Head answers a worker's GetObjects when the object becomes ready", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 2);
  auto a = NormalTask(1);
  ObjectId a_ret = a.ReturnId(0);
  REQUIRE(head.Submit(std::move(a), 0).ok());
  ProcId w = t.ExecutedOn(TaskId::Make(0, 1)).at(0);
  ProcId other = w == 1 ? 2 : 1;

  proto::GetObjects get{17, {a_ret}};
  msgpack::sbuffer sb;
  msgpack::pack(sb, get);
  head.Handle(other, Msg::kGetObjects, sb.data(), sb.size());
  CHECK(t.OfType(Msg::kObjectsReady).empty());

  Deliver(head, w, Done(TaskId::Make(0, 1), {Inline(a_ret, Payload(23))}));
  auto replies = t.OfType(Msg::kObjectsReady);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].dest == other);
  auto r = mpiray::DecodeMsg<proto::ObjectsReady>(replies[0].body.data(), replies[0].body.size());
  CHECK(r.req == 17);
  REQUIRE(r.objects.size() == 1);
  CHECK(r.objects[0].id == a_ret);
  CHECK(detail::Deserialize<int>(r.objects[0].data) == 23);
}

TEST_CASE("Head reports a worker's failed submission through the task's return", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);
  auto spec = NormalTask(1, "needs_gpu");
  spec.id = TaskId::Make(1, 1);  // submitted by worker 1 (a nested task)
  spec.resources = {{"GPU", kUnit}};
  ObjectId ret = spec.ReturnId(0);
  msgpack::sbuffer sb;
  msgpack::pack(sb, spec);
  head.Handle(1, Msg::kSubmit, sb.data(), sb.size());
  CHECK(t.Executes().empty());
  auto st = ErrorOf(ReadyLoc(head, ret));
  CHECK(st.code() == StatusCode::kInfeasible);
  // The worker holds the error object until it lets go.
  proto::IdList del{{ret}};
  sb.clear();
  msgpack::pack(sb, del);
  head.Handle(1, Msg::kDelRef, sb.data(), sb.size());
  CHECK_FALSE(head.HasObject(ret));
}

namespace {

proto::NewObject ShmObject(const ObjectId& id, mpiray::NodeId node, uint64_t size) {
  proto::NewObject o;
  o.id = id;
  o.where = static_cast<uint8_t>(proto::Where::kShm);
  o.node = node;
  o.size = size;
  return o;
}

void PutFrom(HeadService& head, ProcId proc, const proto::NewObject& obj) {
  msgpack::sbuffer sb;
  msgpack::pack(sb, obj);
  head.Handle(proc, Msg::kPutObject, sb.data(), sb.size());
}

}  // namespace

TEST_CASE("Head locates shared-memory objects and frees them on their node", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  head.AddProcess(Peer(0, 0), false);
  head.AddProcess(Peer(1, 0), true);
  head.AddProcess(Peer(2, 1), true);
  ObjectId id = ObjectId::ForPut(TaskId::Make(2, 1));
  PutFrom(head, 2, ShmObject(id, 1, 1 << 20));
  head.AddHolder(id, 0);

  auto loc = ReadyLoc(head, id);  // asked from node 0: served by process 2 on node 1
  CHECK(loc.where == static_cast<uint8_t>(proto::Where::kShm));
  CHECK(loc.node == 1);
  CHECK(loc.source == 2);
  CHECK(loc.size == 1u << 20);

  // A task using it prefers node 1, where its bytes are.
  auto task = NormalTask(1, "reader");
  task.args.push_back(ByRef(id));
  REQUIRE(head.Submit(std::move(task), 0).ok());
  CHECK(t.ExecutedOn(TaskId::Make(0, 1)) == std::vector<ProcId>{2});
  Deliver(head, 2, Done(TaskId::Make(0, 1), {Inline(ObjectId::ForReturn(TaskId::Make(0, 1), 0),
                                                    Payload(0))}));

  t.Clear();
  head.RemoveHolder(id, 2);
  CHECK(t.OfType(Msg::kFreeObjects).empty());  // the driver still holds it
  head.RemoveHolder(id, 0);
  CHECK_FALSE(head.HasObject(id));
  auto frees = t.OfType(Msg::kFreeObjects);
  REQUIRE(frees.size() == 1);
  CHECK(frees[0].dest == 2);
  auto ids = mpiray::DecodeMsg<proto::IdList>(frees[0].body.data(), frees[0].body.size());
  CHECK(ids.ids == std::vector<ObjectId>{id});
}

TEST_CASE("Head marks an object lost when every node holding it is gone", "[head]") {
  FakeTransport t;
  HeadService head(t, Config());
  head.AddProcess(Peer(0, 0), false);
  head.AddProcess(Peer(1, 0), true);
  head.AddProcess(Peer(2, 1), true);
  ObjectId id = ObjectId::ForPut(TaskId::Make(2, 1));
  PutFrom(head, 2, ShmObject(id, 1, 4096));
  head.AddHolder(id, 0);

  SECTION("the only copy's node dies") {
    head.RemoveProcess(2, "test: node lost");
    auto st = ErrorOf(ReadyLoc(head, id));
    CHECK(st.code() == StatusCode::kObjectLost);
    CHECK_THAT(st.message(), Catch::Contains(id.Hex()));
  }
  SECTION("a second copy survives") {
    head.AddLocation(id, 0);
    head.RemoveProcess(2, "test: node lost");
    auto loc = ReadyLoc(head, id);
    CHECK(loc.where == static_cast<uint8_t>(proto::Where::kShm));
    CHECK(loc.node == 0);
  }
}

TEST_CASE("Head rebuilds a lost task result from its lineage, arguments first", "[head][lineage]") {
  FakeTransport t;
  HeadService head(t, Config());
  head.AddProcess(Peer(0, 0), false);
  head.AddProcess(Peer(1, 1), true);  // node 1: will die
  head.AddProcess(Peer(2, 2), true);

  // a = f() on node 1; b = g(a) on node 1; the driver keeps only b.
  auto fa = NormalTask(1, "f", 3);
  ObjectId a = fa.ReturnId(0);
  REQUIRE(head.Submit(std::move(fa), 0).ok());
  auto ran_a = t.ExecutedOn(TaskId::Make(0, 1));
  REQUIRE(ran_a.size() == 1);
  Deliver(head, ran_a[0], Done(TaskId::Make(0, 1), {ShmObject(a, 1, 1 << 20)}));
  auto gb = NormalTask(2, "g", 3);
  gb.args.push_back(ByRef(a));
  ObjectId b = gb.ReturnId(0);
  REQUIRE(head.Submit(std::move(gb), 0).ok());
  auto ran_b = t.ExecutedOn(TaskId::Make(0, 2));
  REQUIRE(ran_b.size() == 1);
  Deliver(head, ran_b[0], Done(TaskId::Make(0, 2), {ShmObject(b, 1, 1 << 20)}));
  head.RemoveHolder(a, 0);
  CHECK_FALSE(head.HasObject(a));  // freed, but its lineage is held by b's
  CHECK(head.NumLineage() == 2);

  t.Clear();
  head.RemoveProcess(1, "test: node 1 lost");
  CHECK_FALSE(IsReady(head, b));  // being rebuilt, not lost
  // f runs again first (on the surviving worker), then g.
  REQUIRE(t.ExecutedOn(TaskId::Make(0, 1)) == std::vector<ProcId>{2});
  CHECK(t.ExecutedOn(TaskId::Make(0, 2)).empty());
  Deliver(head, 2, Done(TaskId::Make(0, 1), {ShmObject(a, 2, 1 << 20)}));
  REQUIRE(t.ExecutedOn(TaskId::Make(0, 2)) == std::vector<ProcId>{2});
  Deliver(head, 2, Done(TaskId::Make(0, 2), {ShmObject(b, 2, 1 << 20)}));
  auto loc = ReadyLoc(head, b);
  CHECK(loc.where == static_cast<uint8_t>(proto::Where::kShm));
  CHECK(loc.node == 2);
  CHECK_FALSE(head.HasObject(a));  // the rebuilt argument went again
  CHECK(head.Status_().reconstructions == 2);

  // Releasing b releases the whole lineage.
  head.RemoveHolder(b, 0);
  CHECK_FALSE(head.HasObject(b));
  CHECK(head.NumLineage() == 0);
}

TEST_CASE("Head reports a lost object that cannot be rebuilt", "[head][lineage]") {
  FakeTransport t;
  HeadService head(t, Config());
  head.AddProcess(Peer(0, 0), false);
  head.AddProcess(Peer(1, 1), true);
  head.AddProcess(Peer(2, 2), true);
  auto f = NormalTask(1, "f", /*max_retries=*/0);
  ObjectId r = f.ReturnId(0);
  REQUIRE(head.Submit(std::move(f), 0).ok());
  ProcId w = t.ExecutedOn(TaskId::Make(0, 1)).at(0);
  Deliver(head, w, Done(TaskId::Make(0, 1), {ShmObject(r, w, 1 << 20)}));
  CHECK(head.NumLineage() == 0);  // no retries: nothing to keep
  head.RemoveProcess(w, "test: node lost");
  auto st = ErrorOf(ReadyLoc(head, r));
  CHECK(st.code() == StatusCode::kObjectLost);
  CHECK_THAT(st.message(), Catch::Contains("cannot be rebuilt"));
}

TEST_CASE("Head's lineage keeps put and nested arguments until the result goes",
          "[head][lineage]") {
  // A large by-value argument is stored as a put object that its submitter lets go as soon as
  // the task was submitted; a ref nested in an argument (a Python function's export) likewise.
  // Neither can be made again, so the lineage of the task keeps them.
  FakeTransport t;
  HeadService head(t, Config());
  head.AddProcess(Peer(0, 0), false);
  head.AddProcess(Peer(1, 1), true);  // node 1: will die
  head.AddProcess(Peer(2, 2), true);
  ObjectId big = ObjectId::ForPut(TaskId::Make(0, 50));
  ObjectId fn = ObjectId::ForPut(TaskId::Make(0, 51));
  REQUIRE(head.Put(ShmObject(big, 0, 1 << 20), 0).ok());
  REQUIRE(head.Put(Inline(fn, Payload(7)), 0).ok());
  auto f = NormalTask(1, "f", 3);
  f.args.push_back(ByRef(big));
  proto::Arg with_nested;
  with_nested.value = Buffer(Payload(1));
  with_nested.nested.push_back(fn);
  f.args.push_back(with_nested);
  ObjectId r = f.ReturnId(0);
  REQUIRE(head.Submit(std::move(f), 0).ok());
  head.RemoveHolder(big, 0);  // what the submitter does with its temporary put
  head.RemoveHolder(fn, 0);
  auto ran = t.ExecutedOn(TaskId::Make(0, 1));
  REQUIRE(ran.size() == 1);
  Deliver(head, ran[0], Done(TaskId::Make(0, 1), {ShmObject(r, ran[0], 1 << 20)}));
  CHECK(head.NumLineage() == 1);
  CHECK(head.HasObject(big));
  CHECK(head.HasObject(fn));

  t.Clear();
  head.RemoveProcess(ran[0], "test: node lost");
  ProcId other = ran[0] == 1 ? 2 : 1;
  REQUIRE(t.ExecutedOn(TaskId::Make(0, 1)) == std::vector<ProcId>{other});  // rebuilt, not lost
  Deliver(head, other, Done(TaskId::Make(0, 1), {ShmObject(r, other, 1 << 20)}));
  CHECK(ReadyLoc(head, r).node == other);
  CHECK(head.HasObject(big));

  head.RemoveHolder(r, 0);  // the result goes: so do its lineage and the arguments it kept
  CHECK(head.NumLineage() == 0);
  CHECK_FALSE(head.HasObject(big));
  CHECK_FALSE(head.HasObject(fn));
}

TEST_CASE("Head keeps lineage bounded: released with the last object needing it",
          "[head][lineage]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 1);
  // Only tasks with a return in a node's store keep lineage (small returns live in the head).
  for (uint64_t i = 1; i <= 200; ++i) {
    auto s = NormalTask(i, "f", 3);
    ObjectId r = s.ReturnId(0);
    REQUIRE(head.Submit(std::move(s), 0).ok());
    Deliver(head, 1, Done(TaskId::Make(0, i), {i % 2 ? ShmObject(r, 1, 1 << 20)
                                                       : Inline(r, Payload(static_cast<int>(i)))}));
  }
  CHECK(head.NumLineage() == 100);
  for (uint64_t i = 1; i <= 200; ++i) head.RemoveHolder(ObjectId::ForReturn(TaskId::Make(0, i), 0), 0);
  CHECK(head.NumLineage() == 0);
  CHECK(head.NumObjects() == 0);
}

TEST_CASE("Head reruns a task whose small argument was freed: its lineage kept the value",
          "[head][lineage]") {
  FakeTransport t;
  HeadService head(t, Config());
  head.AddProcess(Peer(0, 0), false);
  head.AddProcess(Peer(1, 1), true);
  head.AddProcess(Peer(2, 2), true);
  auto f = NormalTask(1, "f", 3);
  ObjectId small = f.ReturnId(0);
  REQUIRE(head.Submit(std::move(f), 0).ok());
  Deliver(head, t.ExecutedOn(TaskId::Make(0, 1)).at(0),
          Done(TaskId::Make(0, 1), {Inline(small, Payload(42))}));
  CHECK(head.NumLineage() == 0);
  auto g = NormalTask(2, "g", 3);
  g.args.push_back(ByRef(small));
  ObjectId big = g.ReturnId(0);
  REQUIRE(head.Submit(std::move(g), 0).ok());
  head.RemoveHolder(small, 0);
  ProcId w = t.ExecutedOn(TaskId::Make(0, 2)).at(0);
  Deliver(head, w, Done(TaskId::Make(0, 2), {ShmObject(big, w, 1 << 20)}));
  CHECK(head.NumLineage() == 1);
  CHECK(IsReady(head, small));  // kept for g's lineage
  t.Clear();
  head.RemoveProcess(w, "test: node lost");
  ProcId other = w == 1 ? 2 : 1;
  REQUIRE(t.ExecutedOn(TaskId::Make(0, 2)) == std::vector<ProcId>{other});
  CHECK(t.ExecutedOn(TaskId::Make(0, 1)).empty());  // its argument needed no rerun
  Deliver(head, other, Done(TaskId::Make(0, 2), {ShmObject(big, other, 1 << 20)}));
  head.RemoveHolder(big, 0);
  CHECK(head.NumLineage() == 0);
  CHECK(head.NumObjects() == 0);
}

namespace {

proto::TaskSpec RestartableActor(uint64_t seq, int max_restarts, int max_task_retries) {
  auto s = ActorCreate(seq);
  s.max_restarts = max_restarts;
  s.max_task_retries = max_task_retries;
  return s;
}

std::vector<proto::TaskSpec> CallsTo(const FakeTransport& t, ProcId dest) {
  std::vector<proto::TaskSpec> out;
  for (auto& p : t.OfType(Msg::kActorCall)) {
    if (p.dest == dest) out.push_back(mpiray::DecodeMsg<proto::TaskSpec>(p.body.data(), p.body.size()));
  }
  return out;
}

}  // namespace

TEST_CASE("Head restarts an actor on another worker and re-sends its lost calls",
          "[head][actor-restart]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 2);
  auto create = RestartableActor(1, 1, -1);
  mpiray::ActorId actor = create.id;
  REQUIRE(head.Submit(std::move(create), 0).ok());
  ProcId first = t.ExecutedOn(actor).at(0);
  Deliver(head, first, Done(actor, {Inline(ObjectId::ForReturn(actor, 0), Payload(msgpack::type::nil_t()))},
                            proto::TaskKind::kActorCreate));
  auto c1 = ActorCall(TaskId::Make(0, 2), actor, 0, 0);
  c1.max_retries = -2;  // the actor's default (-1: forever)
  ObjectId r1 = c1.ReturnId(0);
  REQUIRE(head.Submit(std::move(c1), 0).ok());
  auto c2 = ActorCall(TaskId::Make(0, 3), actor, 0, 0);
  c2.max_retries = 0;  // may not be retried
  ObjectId r2 = c2.ReturnId(0);
  REQUIRE(head.Submit(std::move(c2), 0).ok());
  auto sent = CallsTo(t, first);
  REQUIRE(sent.size() == 2);
  CHECK(sent[0].incarnation == 1);
  CHECK(sent[0].seq == 1);
  CHECK(sent[1].seq == 2);

  t.Clear();
  head.RemoveProcess(first, "test: worker died");
  ProcId second = first == 1 ? 2 : 1;
  auto again = t.Executes();
  REQUIRE(again.size() == 1);
  CHECK(again[0].first == second);
  CHECK(again[0].second.spec.id == actor);
  CHECK(again[0].second.spec.incarnation == 2);
  auto resent = CallsTo(t, second);
  REQUIRE(resent.size() == 1);  // only the retriable call
  CHECK(resent[0].id == TaskId::Make(0, 2));
  CHECK(resent[0].incarnation == 2);
  CHECK(resent[0].seq == 0);  // re-sent calls are not ordered against new ones
  CHECK(ErrorOf(ReadyLoc(head, r2)).code() == StatusCode::kActorDied);
  CHECK(head.Status_().actor_restarts == 1);

  // The re-sent call completes; a duplicate report of it is ignored.
  Deliver(head, second, Done(TaskId::Make(0, 2), {Inline(r1, Payload(7))}, proto::TaskKind::kActorCall));
  CHECK(detail::Deserialize<int>(ReadyLoc(head, r1).data) == 7);
  Deliver(head, second, Done(TaskId::Make(0, 2), {Inline(r1, Payload(8))}, proto::TaskKind::kActorCall));
  CHECK(detail::Deserialize<int>(ReadyLoc(head, r1).data) == 7);

  // New calls go to the new instance, counted from 1 again.
  t.Clear();
  REQUIRE(head.Submit(ActorCall(TaskId::Make(0, 4), actor, 0, 0), 0).ok());
  auto next = CallsTo(t, second);
  REQUIRE(next.size() == 1);
  CHECK(next[0].seq == 1);
  CHECK(next[0].incarnation == 2);

  // No restarts left: the next death is final.
  head.RemoveProcess(second, "test: worker died again");
  CHECK(head.Status_().actors == 0);
}

TEST_CASE("Head fails a call registered after its instance died, unless it may be retried",
          "[head][actor-restart]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 2);
  auto create = RestartableActor(1, -1, 0);
  mpiray::ActorId actor = create.id;
  REQUIRE(head.Submit(std::move(create), 0).ok());
  ProcId first = t.ExecutedOn(actor).at(0);
  head.RemoveProcess(first, "test: worker died");
  // A caller sent a call to instance 1 before it heard of the restart.
  auto late = ActorCall(TaskId::Make(5, 1), actor, 5, 1);
  late.incarnation = 1;
  late.max_retries = -2;
  ObjectId r = late.ReturnId(0);
  msgpack::sbuffer sb;
  msgpack::pack(sb, late);
  head.Handle(5, Msg::kSubmit, sb.data(), sb.size());
  auto st = ErrorOf(ReadyLoc(head, r));
  CHECK(st.code() == StatusCode::kActorDied);
  CHECK_THAT(st.message(), Catch::Contains("max_task_retries"));
}

// ------------------------------------------------------------------ placement groups

namespace {

proto::PlacementGroupSpec Group(uint64_t seq, proto::PgStrategy strategy, int bundles,
                                int64_t cpus = kUnit) {
  proto::PlacementGroupSpec g;
  g.id = TaskId::Make(0, seq);
  g.strategy = static_cast<uint8_t>(strategy);
  for (int i = 0; i < bundles; ++i) g.bundles.push_back({{"CPU", cpus}});
  return g;
}

// A task into bundle `bundle` of group `pg` (the client's rewriting of its resources).
proto::TaskSpec TaskInGroup(uint64_t seq, TaskId pg, int bundle) {
  auto s = NormalTask(seq);
  s.resources = {{proto::PgResourceName("CPU", bundle, pg), kUnit},
                 {proto::PgResourceName("bundle", bundle, pg), proto::kPgBundleShare}};
  return s;
}

// Three nodes with one worker (one CPU) each: node n holds worker n+1.
void AddThreeNodes(HeadService& head) {
  head.AddProcess(Peer(0, 9), false);
  for (ProcId w = 1; w <= 3; ++w) head.AddProcess(Peer(w, w - 1), true);
}

}  // namespace

TEST_CASE("Placement group STRICT_SPREAD reserves one bundle per node, all at once",
          "[head][placement-group]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddThreeNodes(head);
  auto g = Group(100, proto::PgStrategy::kStrictSpread, 3);
  TaskId pg = g.id;
  REQUIRE(head.CreatePlacementGroup(std::move(g), 0).ok());
  CHECK(IsReady(head, ObjectId::ForReturn(pg, 0)));
  auto table = head.PlacementGroups();
  REQUIRE(table.size() == 1);
  CHECK(table[0].state == "CREATED");
  std::set<mpiray::NodeId> nodes(table[0].nodes.begin(), table[0].nodes.end());
  CHECK(nodes.size() == 3);
  // Every CPU is reserved: a plain task waits, a task in bundle 1 runs on bundle 1's node.
  REQUIRE(head.Submit(NormalTask(1), 0).ok());
  CHECK(t.ExecutedOn(TaskId::Make(0, 1)).empty());
  REQUIRE(head.Submit(TaskInGroup(2, pg, 1), 0).ok());
  auto ran = t.ExecutedOn(TaskId::Make(0, 2));
  REQUIRE(ran.size() == 1);
  CHECK(ran[0] == table[0].nodes[1] + 1);
  // Removing the group gives the CPUs back: the plain task runs.
  REQUIRE(head.RemovePlacementGroup(pg).ok());
  CHECK(t.ExecutedOn(TaskId::Make(0, 1)).size() == 1);
  CHECK(head.PlacementGroups()[0].state == "REMOVED");
}

TEST_CASE("Placement group that can never be placed is reported, not left pending",
          "[head][placement-group]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddThreeNodes(head);
  auto spread = Group(100, proto::PgStrategy::kStrictSpread, 4);  // 4 bundles, 3 nodes
  TaskId a = spread.id;
  REQUIRE(head.CreatePlacementGroup(std::move(spread), 0).ok());
  auto st = ErrorOf(ReadyLoc(head, ObjectId::ForReturn(a, 0)));
  CHECK(st.code() == StatusCode::kInfeasible);
  CHECK_THAT(st.message(), Catch::Contains("STRICT_SPREAD") && Catch::Contains("can never be placed"));
  auto pack = Group(101, proto::PgStrategy::kStrictPack, 2);  // 2 CPUs on one 1-CPU node
  TaskId b = pack.id;
  REQUIRE(head.CreatePlacementGroup(std::move(pack), 0).ok());
  CHECK(ErrorOf(ReadyLoc(head, ObjectId::ForReturn(b, 0))).code() == StatusCode::kInfeasible);
  // PACK is best effort: the same two bundles go to two nodes.
  auto soft = Group(102, proto::PgStrategy::kPack, 2);
  TaskId c = soft.id;
  REQUIRE(head.CreatePlacementGroup(std::move(soft), 0).ok());
  CHECK(ReadyLoc(head, ObjectId::ForReturn(c, 0)).where == static_cast<uint8_t>(proto::Where::kInline));
  CHECK(head.PlacementGroups().back().state == "CREATED");
  // Bad input is refused at once.
  auto empty = Group(103, proto::PgStrategy::kPack, 0);
  CHECK(head.CreatePlacementGroup(std::move(empty), 0).code() == StatusCode::kInvalidArgument);
  auto zero = Group(104, proto::PgStrategy::kPack, 1, 0);
  CHECK_THAT(head.CreatePlacementGroup(std::move(zero), 0).message(), Catch::Contains("empty"));
}

TEST_CASE("Placement group waits for room, then reserves everything at once",
          "[head][placement-group]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 2);  // one node, 2 CPUs
  REQUIRE(head.Submit(NormalTask(1), 0).ok());
  ProcId busy = t.ExecutedOn(TaskId::Make(0, 1)).at(0);
  auto g = Group(100, proto::PgStrategy::kStrictPack, 2);
  TaskId pg = g.id;
  REQUIRE(head.CreatePlacementGroup(std::move(g), 0).ok());
  CHECK_FALSE(IsReady(head, ObjectId::ForReturn(pg, 0)));  // 1 CPU free, 2 needed: nothing taken
  CHECK(head.PlacementGroups()[0].state == "PENDING");
  // A task into the pending group is accepted and waits for it.
  REQUIRE(head.Submit(TaskInGroup(2, pg, 0), 0).ok());
  CHECK(t.ExecutedOn(TaskId::Make(0, 2)).empty());
  Deliver(head, busy, Done(TaskId::Make(0, 1), {Inline(ObjectId::ForReturn(TaskId::Make(0, 1), 0), Payload(1))}));
  CHECK(IsReady(head, ObjectId::ForReturn(pg, 0)));
  CHECK(t.ExecutedOn(TaskId::Make(0, 2)).size() == 1);
}

TEST_CASE("Removing a placement group kills its actors and fails its waiting tasks",
          "[head][placement-group]") {
  FakeTransport t;
  HeadService head(t, Config());
  AddCluster(head, 2);
  auto g = Group(100, proto::PgStrategy::kPack, 1);
  TaskId pg = g.id;
  REQUIRE(head.CreatePlacementGroup(std::move(g), 0).ok());
  auto actor = ActorCreate(1);
  actor.resources = {{proto::PgResourceName("bundle", 0, pg), proto::kPgBundleShare}};
  REQUIRE(head.Submit(std::move(actor), 0).ok());
  // The bundle's CPU is taken by a task; a second one waits.
  REQUIRE(head.Submit(TaskInGroup(2, pg, 0), 0).ok());
  REQUIRE(head.Submit(TaskInGroup(3, pg, 0), 0).ok());
  CHECK(t.ExecutedOn(TaskId::Make(0, 3)).empty());
  REQUIRE(head.RemovePlacementGroup(pg).ok());
  auto st = ErrorOf(ReadyLoc(head, ObjectId::ForReturn(TaskId::Make(0, 3), 0)));
  CHECK_THAT(st.message(), Catch::Contains("placement group") && Catch::Contains("removed"));
  CHECK_FALSE(t.OfType(Msg::kDestroyActor).empty());
}

TEST_CASE("Head waits for a put whose registration is still on its way", "[head]") {
  // Worker 1 puts x and sends a call using it straight to worker 2; worker 2's Get reaches
  // the head before worker 1's registration (another connection). It must wait, not fail.
  FakeTransport t;
  int64_t now = 0;
  HeadService head(t, Config(), [&] { return now; });
  AddCluster(head, 2);
  ObjectId x = ObjectId::ForPut(TaskId::Make(1, 7));
  auto get = [&](ProcId from, uint64_t req, const ObjectId& id) {
    msgpack::sbuffer sb;
    msgpack::pack(sb, proto::GetObjects{req, {id}});
    head.Handle(from, Msg::kGetObjects, sb.data(), sb.size());
  };
  get(2, 1, x);
  CHECK(t.OfType(Msg::kObjectsReady).empty());
  PutFrom(head, 1, Inline(x, Payload(42)));
  auto replies = t.OfType(Msg::kObjectsReady);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].dest == 2);
  auto r = mpiray::DecodeMsg<proto::ObjectsReady>(replies[0].body.data(), replies[0].body.size());
  REQUIRE(r.objects.size() == 1);
  CHECK(r.objects[0].where == static_cast<uint8_t>(proto::Where::kInline));
  head.RemoveHolder(x, 1);
  CHECK_FALSE(head.HasObject(x));

  // A put that never comes (freed long ago): an error after the wait, and no entry left.
  t.Clear();
  ObjectId gone = ObjectId::ForPut(TaskId::Make(1, 8));
  get(2, 2, gone);
  CHECK(t.OfType(Msg::kObjectsReady).empty());
  now += 11000;
  head.OnTick();
  replies = t.OfType(Msg::kObjectsReady);
  REQUIRE(replies.size() == 1);
  r = mpiray::DecodeMsg<proto::ObjectsReady>(replies[0].body.data(), replies[0].body.size());
  CHECK(ErrorOf(r.objects[0]).code() == StatusCode::kObjectLost);
  CHECK_FALSE(head.HasObject(gone));
  // From a dead maker, or asked by the maker itself: an error at once.
  t.Clear();
  get(1, 3, ObjectId::ForPut(TaskId::Make(1, 9)));
  CHECK(t.OfType(Msg::kObjectsReady).size() == 1);
}

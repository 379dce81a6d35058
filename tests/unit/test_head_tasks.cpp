// Unit tests of the head's task table (core/src/head/task_table.*) over the owners below it,
// without the HeadService: admission, dependencies, dispatch, completion, retries after a
// worker death, cancellation, reruns from lineage, and the creation events it announces.
#include <catch2/catch.hpp>

#include "head_fixture.h"

using namespace headtest;
using mpiray::StatusCode;
using mpiray::head::TaskRec;

namespace {

proto::TaskDone Done(TaskId task, std::vector<proto::NewObject> returns,
                     proto::TaskKind kind = proto::TaskKind::kNormal) {
  proto::TaskDone d;
  d.task = task;
  d.kind = static_cast<uint8_t>(kind);
  d.returns = std::move(returns);
  return d;
}

}  // namespace

TEST_CASE("TaskTable queues a task when its arguments are ready and dispatches it",
          "[head][tasks]") {
  TaskStack s(1);
  auto producer = Task(1, "producer");
  ObjectId arg = producer.ReturnId(0);
  REQUIRE(s.tasks.Submit(std::move(producer), 0).ok());
  auto consumer = Task(2, "consumer");
  consumer.args.push_back(ByRef(arg));
  ObjectId out = consumer.ReturnId(0);
  REQUIRE(s.tasks.Submit(std::move(consumer), 0).ok());
  s.tasks.DispatchQueued();
  auto ex = s.Executes();
  REQUIRE(ex.size() == 1);  // the consumer waits for its argument
  CHECK(ex[0].second.spec.function == "producer");

  s.tasks.OnTaskDone(1, Done(TaskId::Make(0, 1), {Inline(arg, Payload(1))}));
  s.tasks.DispatchQueued();
  ex = s.Executes();
  REQUIRE(ex.size() == 2);
  CHECK(ex[1].second.spec.function == "consumer");
  REQUIRE(ex[1].second.resolved.size() == 1);
  CHECK(ex[1].second.resolved[0].id == arg);
  s.tasks.OnTaskDone(1, Done(TaskId::Make(0, 2), {Inline(out, Payload(2))}));
  CHECK(s.Ready(out));
  CHECK_FALSE(s.tasks.Has(TaskId::Make(0, 2)));
  CHECK(s.tasks.Events().size() == 2);
}

TEST_CASE("TaskTable rejects what can never run, naming the cause", "[head][tasks]") {
  TaskStack s(1);
  auto nameless = Task(1, "");
  CHECK(s.tasks.Submit(std::move(nameless), 0).code() == StatusCode::kInvalidArgument);
  auto big = Task(2);
  big.resources = {{"CPU", 64 * kUnit}};
  CHECK(s.tasks.Submit(std::move(big), 0).code() == StatusCode::kInfeasible);
  auto dangling = Task(3);
  dangling.args.push_back(ByRef(ObjectId::ForReturn(TaskId::Make(0, 99), 0)));
  auto st = s.tasks.Submit(std::move(dangling), 0);
  CHECK(st.code() == StatusCode::kObjectLost);
  CHECK(st.message().find("argument 0 of f") != std::string::npos);
}

TEST_CASE("TaskTable propagates an upstream error instead of running the task", "[head][tasks]") {
  TaskStack s(1);
  ObjectId bad = ObjectId::ForPut(TaskId::Make(0, 50));
  proto::NewObject err;
  err.id = bad;
  err.where = static_cast<uint8_t>(proto::Where::kError);
  err.data = Buffer(mpiray::detail::MakeErrorPayload(StatusCode::kTaskError, "boom"));
  s.objects.Put(std::move(err), 0);
  auto t = Task(1);
  t.args.push_back(ByRef(bad));
  ObjectId out = t.ReturnId(0);
  REQUIRE(s.tasks.Submit(std::move(t), 0).ok());
  s.tasks.DispatchQueued();
  CHECK(s.Executes().empty());
  CHECK(ErrorOf(s.objects.LocateOrLost(out, 0)).message() == "boom");
}

TEST_CASE("TaskTable retries the tasks of a dead worker, then fails them", "[head][tasks]") {
  TaskStack s(2);
  REQUIRE(s.tasks.Submit(Task(1, "once", 1), 0).ok());
  s.tasks.DispatchQueued();
  ProcId first = s.Executes().at(0).first;
  auto gone = s.members.Remove(first, "killed");
  REQUIRE(gone.has_value());
  s.tasks.OnProcessDied(gone->peer);
  s.tasks.DispatchQueued();
  REQUIRE(s.Executes().size() == 2);
  ProcId second = s.Executes().at(1).first;
  CHECK(second != first);
  gone = s.members.Remove(second, "killed");
  s.tasks.OnProcessDied(gone->peer);
  auto err = ErrorOf(s.objects.LocateOrLost(ObjectId::ForReturn(TaskId::Make(0, 1), 0), 0));
  CHECK(err.code() == StatusCode::kWorkerCrashed);
  CHECK(err.message().find("retries exhausted") != std::string::npos);
}

TEST_CASE("TaskTable cancels a queued task and asks the worker to stop a running one",
          "[head][tasks]") {
  TaskStack s(1);
  REQUIRE(s.tasks.Submit(Task(1), 0).ok());
  REQUIRE(s.tasks.Submit(Task(2), 0).ok());
  s.tasks.DispatchQueued();  // both go to the one worker (pipelined)
  REQUIRE(s.tasks.CancelTask(*s.tasks.Find(TaskId::Make(0, 1)), false).ok());
  auto stop = s.t.OfType(proto::Msg::kCancelRunning);
  REQUIRE(stop.size() == 1);
  CHECK(stop[0].As<proto::CancelRunning>().task == TaskId::Make(0, 1));

  TaskStack q(0);  // no workers: tasks stay queued
  q.config.autoscale = true;
  REQUIRE(q.tasks.Submit(Task(3), 0).ok());
  REQUIRE(q.tasks.CancelTask(*q.tasks.Find(TaskId::Make(0, 3)), false).ok());
  CHECK(ErrorOf(q.objects.LocateOrLost(ObjectId::ForReturn(TaskId::Make(0, 3), 0), 0)).code() ==
        StatusCode::kCancelled);
  CHECK_FALSE(q.tasks.Has(TaskId::Make(0, 3)));
}

TEST_CASE("TaskTable rebuilds a lost store object from its kept lineage", "[head][tasks]") {
  TaskStack s(1);
  REQUIRE(s.tasks.Submit(Task(1, "make", 2), 0).ok());
  s.tasks.DispatchQueued();
  ObjectId out = ObjectId::ForReturn(TaskId::Make(0, 1), 0);
  s.tasks.OnTaskDone(1, Done(TaskId::Make(0, 1), {InStore(out, 0)}));
  CHECK(s.lineage.Has(TaskId::Make(0, 1)));  // succeeded with retries left, result stored
  auto* e = s.objects.Find(out);
  REQUIRE(e);
  e->locations.clear();  // as when the node holding it died
  CHECK(s.tasks.Reconstruct(out, *e).empty());
  CHECK_FALSE(s.Ready(out));
  s.tasks.DispatchQueued();
  CHECK(s.Executes().size() == 2);
  CHECK(s.lineage.Find(TaskId::Make(0, 1))->retries_left == 1);

  // Without lineage (a put) there is nothing to rerun: the reason is given.
  ObjectId put = ObjectId::ForPut(TaskId::Make(0, 9));
  s.objects.Put(InStore(put, 0), 0);
  CHECK(s.tasks.Reconstruct(put, *s.objects.Find(put)).find("put()") != std::string::npos);
}

TEST_CASE("TaskTable announces actor creations ready and failed", "[head][tasks]") {
  TaskStack s(1);
  auto create = Task(1, "Counter");
  create.kind = static_cast<uint8_t>(proto::TaskKind::kActorCreate);
  create.actor = create.id;
  create.resources.clear();
  uint32_t shape = 0;
  REQUIRE(s.tasks.Admit(create, &shape).ok());
  s.tasks.Insert(std::move(create), 0, shape);
  CHECK(s.task_events.ready == std::vector<TaskId>{TaskId::Make(0, 1)});
  TaskRec* t = s.tasks.Find(TaskId::Make(0, 1));
  REQUIRE(t);
  s.tasks.StartCreation(*t, 1, 1);
  CHECK(s.Executes().size() == 1);
  proto::NewObject err;
  err.id = ObjectId::ForReturn(TaskId::Make(0, 1), 0);
  err.where = static_cast<uint8_t>(proto::Where::kError);
  err.data = Buffer(mpiray::detail::MakeErrorPayload(StatusCode::kTaskError, "ctor"));
  s.tasks.OnTaskDone(1, Done(TaskId::Make(0, 1), {err}, proto::TaskKind::kActorCreate));
  REQUIRE(s.task_events.failed.size() == 1);
  CHECK(s.task_events.failed[0].second == "the actor's constructor failed: ctor");
}

TEST_CASE("TaskTable retries a retryable application error within the one max_retries budget",
          "[head][tasks]") {
  TaskStack s(1);
  REQUIRE(s.tasks.Submit(Task(1, "flaky", 1), 0).ok());
  s.tasks.DispatchQueued();
  ObjectId out = ObjectId::ForReturn(TaskId::Make(0, 1), 0);
  auto fail = [&](proto::DoneStatus status) {
    proto::NewObject err;
    err.id = out;
    err.where = static_cast<uint8_t>(proto::Where::kError);
    err.data = Buffer(mpiray::detail::MakeErrorPayload(StatusCode::kTaskError, "flaky failed"));
    auto done = Done(TaskId::Make(0, 1), {err});
    done.status = static_cast<uint8_t>(status);
    s.tasks.OnTaskDone(1, std::move(done));
    s.tasks.DispatchQueued();
  };
  fail(proto::DoneStatus::kRetryable);
  CHECK_FALSE(s.Ready(out));  // queued again, not failed
  CHECK(s.Executes().size() == 2);
  fail(proto::DoneStatus::kRetryable);  // the budget (1) is spent: the error stands
  CHECK(s.Executes().size() == 2);
  REQUIRE(s.Ready(out));
  CHECK(ErrorOf(s.objects.LocateOrLost(out, 0)).message() == "flaky failed");
  CHECK_FALSE(s.tasks.Has(TaskId::Make(0, 1)));
}

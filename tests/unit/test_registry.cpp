// Unit tests of the function registry behind MPIRAY_REMOTE (mpiray/core/detail/registry.h) and
// of how the API finds registered names (mpiray/core/api.h).
#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "mpiray/core/api.h"

using mpiray::Buffer;
using mpiray::ObjectId;
using mpiray::TaskId;
namespace detail = mpiray::detail;

namespace regtest {

int Plus(int a, int b) { return a + b; }
std::string Greet(const std::string& who) { return "hello " + who; }
int g_touched = 0;
void Touch() { ++g_touched; }
int Fail(int) { throw std::runtime_error("user code failed"); }
double Unregistered(double x) { return x; }

int g_destroyed = 0;
struct Counter {
  explicit Counter(int start) : n(start) {}
  ~Counter() { ++g_destroyed; }
  static Counter* Create(int start) { return new Counter(start); }
  static std::unique_ptr<Counter> CreateUnique(int start) { return std::make_unique<Counter>(start); }
  int Add(int d) {
    n += d;
    return n;
  }
  int Get() const { return n; }
  void Reset() { n = 0; }
  int Unlisted() { return -1; }
  int n;
};
Counter* UnregisteredFactory() { return new Counter(0); }

}  // namespace regtest

MPIRAY_REMOTE(regtest::Plus, regtest::Greet, regtest::Touch, regtest::Fail);
MPIRAY_REMOTE(regtest::Counter::Create, regtest::Counter::CreateUnique, &regtest::Counter::Add,
              &regtest::Counter::Get, &regtest::Counter::Reset);

namespace {

// Keeps the bytes of every emitted value.
class CaptureSink : public detail::ResultSink {
 public:
  void Emit(const detail::SerializedValue& value) override {
    values.emplace_back(value.ToVector());
  }
  std::vector<Buffer> values;
};

template <class T>
Buffer Arg(const T& v) {
  return Buffer(detail::Serialize(v).ToVector());
}

template <class T>
T Only(const CaptureSink& sink) {
  REQUIRE(sink.values.size() == 1);
  return detail::Deserialize<T>(sink.values[0]);
}

const detail::TaskFn& Task(const std::string& name) {
  const detail::TaskFn* fn = detail::FunctionRegistry::Instance().FindTask(name);
  INFO(name);
  REQUIRE(fn != nullptr);
  return *fn;
}

// Records submissions; every return id is a fresh one.
class RecordingClient : public detail::CoreClient {
 public:
  std::vector<ObjectId> Submit(detail::TaskRequest&& r) override {
    requests.push_back(std::move(r));
    return {ObjectId::ForReturn(TaskId::Make(0, requests.size()), 0)};
  }
  ObjectId Put(const detail::SerializedValue&) override { return {}; }
  std::vector<Buffer> Get(const std::vector<ObjectId>&, int64_t) override { return {}; }
  std::vector<bool> Wait(const std::vector<ObjectId>&, size_t, int64_t) override { return {}; }
  void Cancel(const ObjectId&, bool, bool) override {}
  void KillActor(const mpiray::ActorId&, bool) override {}
  void AddLocalRef(const ObjectId&) override { ++refs; }
  void RemoveLocalRef(const ObjectId&) override { --refs; }
  std::vector<detail::TaskRequest> requests;
  int refs = 0;
};

struct ScopedClient {
  RecordingClient client;
  ScopedClient() { detail::SetClientForTesting(&client); }
  ~ScopedClient() { detail::SetClientForTesting(nullptr); }
};

}  // namespace

TEST_CASE("SplitRemoteNames splits the macro's argument text", "[registry]") {
  using detail::SplitRemoteNames;
  using V = std::vector<std::string>;
  CHECK(SplitRemoteNames("f, &A::g") == V{"f", "A::g"});
  CHECK(SplitRemoteNames("Plus") == V{"Plus"});
  CHECK(SplitRemoteNames("  ns::f ,\n\t& ns::C::m  ") == V{"ns::f", "ns::C::m"});
  // Commas inside template arguments do not split.
  CHECK(SplitRemoteNames("Sum<int, 2>, Max<std::map<int, int>>, h") ==
        V{"Sum<int, 2>", "Max<std::map<int, int>>", "h"});
}

TEST_CASE("MPIRAY_REMOTE registers free functions that run from payloads", "[registry]") {
  CaptureSink sink;
  Task("regtest::Plus")({Arg(2), Arg(40)}, sink);
  CHECK(Only<int>(sink) == 42);

  CaptureSink greet;
  Task("regtest::Greet")({Arg(std::string("world"))}, greet);
  CHECK(Only<std::string>(greet) == "hello world");

  CaptureSink touch;
  int before = regtest::g_touched;
  Task("regtest::Touch")({}, touch);
  CHECK(regtest::g_touched == before + 1);
  REQUIRE(touch.values.size() == 1);  // a void function still produces a (nil) value
  CHECK(detail::CheckPayload(touch.values[0]) == detail::PayloadFormat::kMsgpack);

  CHECK(detail::FunctionRegistry::Instance().FindTask("regtest::Unregistered") == nullptr);
  CHECK(detail::FunctionRegistry::Instance().FindTask("regtest::Counter::Create") == nullptr);
  auto names = detail::FunctionRegistry::Instance().Names();
  CHECK(std::count(names.begin(), names.end(), "regtest::Plus") == 1);
}

TEST_CASE("Registered functions check their arity and argument types", "[registry]") {
  CaptureSink sink;
  const auto& plus = Task("regtest::Plus");
  CHECK_THROWS_AS(plus({Arg(1)}, sink), mpiray::InvalidArgumentError);
  CHECK_THROWS_WITH(plus({Arg(1)}, sink),
                    Catch::Contains("regtest::Plus") && Catch::Contains("takes 2 arguments, got 1"));
  CHECK_THROWS_AS(plus({Arg(1), Arg(2), Arg(3)}, sink), mpiray::InvalidArgumentError);
  CHECK_THROWS_AS(plus({Arg(std::string("x")), Arg(2)}, sink), mpiray::Error);
  CHECK_THROWS_AS(Task("regtest::Touch")({Arg(1)}, sink), mpiray::InvalidArgumentError);
  // Exceptions of user code reach the caller (the worker turns them into TaskError).
  CHECK_THROWS_WITH(Task("regtest::Fail")({Arg(1)}, sink), "user code failed");
  CHECK(sink.values.empty());
}

TEST_CASE("MPIRAY_REMOTE registers actor factories and methods", "[registry]") {
  auto& reg = detail::FunctionRegistry::Instance();
  const detail::FactoryFn* create = reg.FindFactory("regtest::Counter::Create");
  const detail::FactoryFn* create_unique = reg.FindFactory("regtest::Counter::CreateUnique");
  const detail::MethodFn* add = reg.FindMethod("regtest::Counter::Add");
  const detail::MethodFn* get = reg.FindMethod("regtest::Counter::Get");
  const detail::MethodFn* reset = reg.FindMethod("regtest::Counter::Reset");
  REQUIRE(create);
  REQUIRE(create_unique);
  REQUIRE(add);
  REQUIRE(get);
  REQUIRE(reset);
  CHECK(reg.FindMethod("regtest::Counter::Unlisted") == nullptr);

  int destroyed = regtest::g_destroyed;
  {
    std::shared_ptr<void> obj = (*create)({Arg(10)});
    REQUIRE(obj);
    CaptureSink s1, s2, s3, s4;
    (*add)(obj.get(), {Arg(5)}, s1);
    CHECK(Only<int>(s1) == 15);
    (*add)(obj.get(), {Arg(-3)}, s2);
    CHECK(Only<int>(s2) == 12);
    (*get)(obj.get(), {}, s3);
    CHECK(Only<int>(s3) == 12);
    CHECK(static_cast<regtest::Counter*>(obj.get())->n == 12);
    (*reset)(obj.get(), {}, s4);
    CHECK(static_cast<regtest::Counter*>(obj.get())->n == 0);
    CaptureSink bad;
    CHECK_THROWS_AS((*add)(obj.get(), {}, bad), mpiray::InvalidArgumentError);
    CHECK_THROWS_AS((*create)({}), mpiray::InvalidArgumentError);

    std::shared_ptr<void> u = (*create_unique)({Arg(7)});
    CaptureSink s5;
    (*get)(u.get(), {}, s5);
    CHECK(Only<int>(s5) == 7);
    CHECK(regtest::g_destroyed == destroyed);
  }
  CHECK(regtest::g_destroyed == destroyed + 2);  // the actors' deleters ran
}

TEST_CASE("The registry maps function pointers back to names", "[registry]") {
  auto& reg = detail::FunctionRegistry::Instance();
  const std::string* plus = reg.NameOf(reinterpret_cast<const void*>(&regtest::Plus));
  REQUIRE(plus);
  CHECK(*plus == "regtest::Plus");
  const std::string* factory = reg.NameOf(reinterpret_cast<const void*>(&regtest::Counter::Create));
  REQUIRE(factory);
  CHECK(*factory == "regtest::Counter::Create");
  CHECK(reg.NameOf(reinterpret_cast<const void*>(&regtest::Unregistered)) == nullptr);
  const std::string* add = reg.MethodNameOf(detail::MemberKey(&regtest::Counter::Add));
  REQUIRE(add);
  CHECK(*add == "regtest::Counter::Add");
  const std::string* get = reg.MethodNameOf(detail::MemberKey(&regtest::Counter::Get));
  REQUIRE(get);
  CHECK(*get == "regtest::Counter::Get");
  CHECK(reg.MethodNameOf(detail::MemberKey(&regtest::Counter::Unlisted)) == nullptr);
}

TEST_CASE("Task, Actor and actor methods need registration", "[registry]") {
  CHECK_THROWS_AS(mpiray::Task(regtest::Unregistered), mpiray::InvalidArgumentError);
  CHECK_THROWS_WITH(mpiray::Task(regtest::Unregistered), Catch::Contains("MPIRAY_REMOTE"));
  CHECK_THROWS_AS(mpiray::Actor(regtest::UnregisteredFactory), mpiray::InvalidArgumentError);
  mpiray::ActorHandle<regtest::Counter> handle(TaskId::Make(0, 1));
  CHECK_THROWS_AS(handle.Task(&regtest::Counter::Unlisted), mpiray::InvalidArgumentError);
  CHECK_NOTHROW(mpiray::Task(regtest::Plus));
  CHECK_NOTHROW(handle.Task(&regtest::Counter::Add));
}

TEST_CASE("Remote calls submit requests under the registered names", "[registry]") {
  ScopedClient scoped;
  RecordingClient& c = scoped.client;
  {
    auto ref = mpiray::Task(regtest::Plus).SetMaxRetries(1).Remote(1, 2);
    REQUIRE(c.requests.size() == 1);
    const auto& r = c.requests[0];
    CHECK(r.kind == detail::TaskKind::kNormal);
    CHECK(r.function == "regtest::Plus");
    CHECK(r.max_retries == 1);
    REQUIRE(r.args.size() == 2);
    CHECK_FALSE(r.args[0].by_ref);
    CHECK(detail::Deserialize<int>(Buffer(r.args[0].value)) == 1);
    CHECK(detail::Deserialize<int>(Buffer(r.args[1].value)) == 2);
    CHECK(c.refs == 0);  // the returned ref adopts the runtime's count

    // An ObjectRef passed for an int parameter travels by reference.
    auto ref2 = mpiray::Task(regtest::Plus).Remote(ref, 5);
    REQUIRE(c.requests.size() == 2);
    CHECK(c.requests[1].args[0].by_ref);
    CHECK(c.requests[1].args[0].ref == ref.ID());

    auto actor = mpiray::Actor(regtest::Counter::Create).SetResource("CPU", 1).Remote(3);
    REQUIRE(c.requests.size() == 3);
    CHECK(c.requests[2].kind == detail::TaskKind::kActorCreate);
    CHECK(c.requests[2].function == "regtest::Counter::Create");
    CHECK(c.requests[2].resources_set);
    CHECK(c.refs == -1);  // the creation's return ref is dropped at once: the actor lives on
    auto call = actor.Task(&regtest::Counter::Add).Remote(4);
    REQUIRE(c.requests.size() == 4);
    CHECK(c.requests[3].kind == detail::TaskKind::kActorCall);
    CHECK(c.requests[3].function == "regtest::Counter::Add");
    CHECK(c.requests[3].actor == actor.ID());
  }
  CHECK(c.refs == -4);  // every adopted return ref was released once
}

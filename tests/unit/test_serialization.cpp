// Unit tests of value serialization (mpiray/core/serialization.h) and of ObjectRef reference
// counting through a fake CoreClient (mpiray/core/object_ref.h).
#include <catch2/catch.hpp>

#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "mpiray/core/api.h"
#include "mpiray/core/detail/core_client.h"
#include "mpiray/core/object_ref.h"
#include "mpiray/core/serialization.h"

using mpiray::Buffer;
using mpiray::ObjectId;
using mpiray::ObjectRef;
using mpiray::StatusCode;
using mpiray::TaskId;
namespace detail = mpiray::detail;

namespace {

struct Point {
  int x = 0;
  double y = 0;
  std::string label;
  std::vector<int> tags;
  MSGPACK_DEFINE(x, y, label, tags);
  friend bool operator==(const Point& a, const Point& b) {
    return a.x == b.x && a.y == b.y && a.label == b.label && a.tags == b.tags;
  }
};

template <class T>
Buffer ToPayload(const T& v) {
  return Buffer(detail::Serialize(v).ToVector());
}

template <class T>
T RoundTrip(const T& v) {
  return detail::Deserialize<T>(ToPayload(v));
}

Buffer ErrorPayload(StatusCode code, const std::string& msg) {
  return Buffer(detail::MakeErrorPayload(code, msg));
}

// Counts reference operations per object id; everything else is unused.
class FakeClient : public detail::CoreClient {
 public:
  std::vector<ObjectId> Submit(detail::TaskRequest&&) override { return {}; }
  ObjectId Put(const detail::SerializedValue&) override { return {}; }
  std::vector<Buffer> Get(const std::vector<ObjectId>&, int64_t) override { return {}; }
  std::vector<bool> Wait(const std::vector<ObjectId>&, size_t, int64_t) override { return {}; }
  void Cancel(const ObjectId&, bool, bool) override {}
  void KillActor(const mpiray::ActorId&, bool) override {}
  void AddLocalRef(const ObjectId& id) override {
    std::lock_guard<std::mutex> lk(mu);
    ++adds[id];
    ++total_adds;
  }
  void RemoveLocalRef(const ObjectId& id) override {
    std::lock_guard<std::mutex> lk(mu);
    ++removes[id];
    ++total_removes;
  }

  int Live(const ObjectId& id) {
    std::lock_guard<std::mutex> lk(mu);
    return adds[id] - removes[id];
  }

  std::mutex mu;
  std::map<ObjectId, int> adds, removes;
  int total_adds = 0;
  int total_removes = 0;
};

// Installs a FakeClient as the process's runtime for the scope.
struct ScopedFakeClient {
  FakeClient client;
  ScopedFakeClient() { detail::SetClientForTesting(&client); }
  ~ScopedFakeClient() { detail::SetClientForTesting(nullptr); }
};

ObjectId Oid(uint64_t n, uint32_t index = 0) {
  return ObjectId::ForReturn(TaskId::Make(3, n), index);
}

}  // namespace

TEST_CASE("Serialize/Deserialize round trips", "[serialization]") {
  CHECK(RoundTrip(42) == 42);
  CHECK(RoundTrip(-7LL) == -7LL);
  CHECK(RoundTrip(true));
  CHECK(RoundTrip(std::string("hello, world")) == "hello, world");
  CHECK(RoundTrip(std::string()).empty());
  std::vector<double> v = {1.5, -2.25, 1e300, 0.0};
  CHECK(RoundTrip(v) == v);
  std::map<std::string, int> m = {{"a", 1}, {"b", 2}, {"long key", -3}};
  CHECK(RoundTrip(m) == m);
  std::vector<std::vector<std::string>> nested = {{"x"}, {}, {"y", "z"}};
  CHECK(RoundTrip(nested) == nested);
  Point p{3, 4.5, "pt", {1, 2, 3}};
  CHECK(RoundTrip(p) == p);
  std::vector<Point> ps = {p, Point{}, Point{-1, 0, "", {}}};
  CHECK(RoundTrip(ps) == ps);
}

TEST_CASE("SerializedValue knows its size before writing", "[serialization]") {
  std::vector<int> big(10000, 123456);
  detail::SerializedValue s = detail::Serialize(big);
  CHECK(s.format == detail::PayloadFormat::kMsgpack);
  CHECK(s.size() == sizeof(detail::PayloadHeader) + s.body_size);
  CHECK(s.body_size > big.size());  // every element costs at least a byte
  CHECK(s.nested.empty());

  // WriteTo fills exactly size() bytes: guard bytes after it stay untouched.
  std::vector<uint8_t> dst(s.size() + 16, 0xee);
  s.WriteTo(dst.data());
  for (size_t i = s.size(); i < dst.size(); ++i) REQUIRE(dst[i] == 0xee);
  detail::PayloadHeader h;
  std::memcpy(&h, dst.data(), sizeof h);
  CHECK(h.magic == detail::kPayloadMagic);
  CHECK(h.format == static_cast<uint8_t>(detail::PayloadFormat::kMsgpack));
  dst.resize(s.size());
  CHECK(detail::Deserialize<std::vector<int>>(Buffer(dst)) == big);

  // The same bytes as ToVector, and the size matches msgpack's own encoding.
  CHECK(s.ToVector() == dst);
  msgpack::sbuffer sb;
  msgpack::pack(sb, big);
  CHECK(s.body_size == sb.size());
}

TEST_CASE("Error payloads are thrown as the matching exception", "[serialization]") {
  auto task = ErrorPayload(StatusCode::kTaskError, "ValueError in f: boom");
  CHECK(detail::CheckPayload(task) == detail::PayloadFormat::kError);
  auto st = detail::ErrorFromPayload(task);
  CHECK(st.code() == StatusCode::kTaskError);
  CHECK(st.message() == "ValueError in f: boom");
  CHECK_THROWS_AS(detail::Deserialize<int>(task), mpiray::TaskError);
  CHECK_THROWS_WITH(detail::Deserialize<int>(task), Catch::Contains("boom"));

  CHECK_THROWS_AS(detail::Deserialize<std::string>(ErrorPayload(StatusCode::kObjectLost, "gone")),
                  mpiray::ObjectLostError);
  CHECK_THROWS_AS(detail::Deserialize<int>(ErrorPayload(StatusCode::kCancelled, "c")),
                  mpiray::TaskCancelledError);
  CHECK_THROWS_AS(detail::Deserialize<int>(ErrorPayload(StatusCode::kActorDied, "a")),
                  mpiray::ActorDiedError);
  CHECK_THROWS_AS(detail::Deserialize<int>(ErrorPayload(StatusCode::kWorkerCrashed, "w")),
                  mpiray::WorkerCrashedError);
  try {
    detail::Deserialize<int>(ErrorPayload(StatusCode::kObjectLost, "gone"));
    FAIL("no exception");
  } catch (const mpiray::Error& e) {
    CHECK(e.code() == StatusCode::kObjectLost);
  }

  // A normal payload is not an error.
  CHECK(detail::ErrorFromPayload(ToPayload(1)).code() == StatusCode::kInternal);
}

TEST_CASE("Deserialize of the wrong type or of garbage throws mpiray::Error", "[serialization]") {
  auto text = ToPayload(std::string("not a number"));
  CHECK_THROWS_AS(detail::Deserialize<int>(text), mpiray::Error);
  try {
    detail::Deserialize<std::vector<int>>(ToPayload(std::map<std::string, int>{{"a", 1}}));
    FAIL("no exception");
  } catch (const mpiray::Error& e) {
    CHECK(e.code() == StatusCode::kInvalidArgument);
    CHECK_THAT(e.what(), Catch::Contains("type"));
  }
  CHECK_THROWS_AS(detail::Deserialize<Point>(ToPayload(42)), mpiray::Error);

  std::vector<uint8_t> tiny = {1, 2, 3};
  CHECK_THROWS_AS(detail::CheckPayload(Buffer(tiny)), mpiray::Error);
  std::vector<uint8_t> bad_magic = detail::Serialize(1).ToVector();
  bad_magic[0] ^= 0xff;
  try {
    detail::Deserialize<int>(Buffer(bad_magic));
    FAIL("no exception");
  } catch (const mpiray::Error& e) {
    CHECK(e.code() == StatusCode::kInternal);
    CHECK_THAT(e.what(), Catch::Contains("magic"));
  }
  // Another language's payload cannot be read as a C++ value.
  std::vector<uint8_t> python = detail::Serialize(1).ToVector();
  python[4] = static_cast<uint8_t>(detail::PayloadFormat::kPython);
  CHECK_THROWS_AS(detail::Deserialize<int>(Buffer(python)), mpiray::Error);
}

TEST_CASE("A Blob read from a payload points into that payload", "[serialization]") {
  std::vector<uint8_t> bytes(5000);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i % 251);
  Buffer payload = ToPayload(mpiray::Blob(bytes));

  mpiray::Blob blob = detail::Deserialize<mpiray::Blob>(payload);
  REQUIRE(blob.size() == bytes.size());
  CHECK(blob.data() >= payload.data());
  CHECK(blob.data() + blob.size() <= payload.data() + payload.size());
  CHECK(blob.buffer().owner() == payload.owner());  // keeps the payload alive
  CHECK(std::memcmp(blob.data(), bytes.data(), bytes.size()) == 0);

  // The blob outlives the caller's handle to the payload.
  const uint8_t* where = blob.data();
  payload = Buffer();
  CHECK(blob.data() == where);
  CHECK(std::memcmp(blob.data(), bytes.data(), bytes.size()) == 0);

  // Inside a container too.
  std::vector<mpiray::Blob> many = {mpiray::Blob(bytes), mpiray::Blob(bytes.data(), 10)};
  Buffer p2 = ToPayload(many);
  auto back = detail::Deserialize<std::vector<mpiray::Blob>>(p2);
  REQUIRE(back.size() == 2);
  CHECK(back[0].data() > p2.data());
  CHECK(back[0].data() < p2.data() + p2.size());
  CHECK(back[1].size() == 10);
  CHECK(back[1].data() > back[0].data());
  CHECK(back[1].data() < p2.data() + p2.size());
}

TEST_CASE("An empty Blob serializes without undefined behaviour",
          "[serialization]") {
  // The Blob pack adaptor calls pack_bin_body(nullptr, 0) for an empty Blob and
  // detail::RawStream::write passes it to memcpy: undefined behaviour, which aborts the
  // MPIRAY_SANITIZE (UBSan, no recovery) build. Plain builds pass.
  Buffer empty = ToPayload(mpiray::Blob());
  CHECK(detail::Deserialize<mpiray::Blob>(empty).size() == 0);
  std::vector<mpiray::Blob> mixed = {mpiray::Blob(std::vector<uint8_t>{}),
                                     mpiray::Blob(std::vector<uint8_t>{1, 2, 3})};
  auto back = detail::Deserialize<std::vector<mpiray::Blob>>(ToPayload(mixed));
  REQUIRE(back.size() == 2);
  CHECK(back[0].size() == 0);
  CHECK(back[1].size() == 3);
}

TEST_CASE("Serializing ObjectRefs reports them as nested refs", "[serialization][objectref]") {
  ScopedFakeClient fake;
  FakeClient& c = fake.client;
  ObjectId a = Oid(1), b = Oid(2, 1);
  {
    std::vector<ObjectRef<int>> refs = {ObjectRef<int>(a), ObjectRef<int>(b), ObjectRef<int>()};
    int adds_before = c.total_adds;
    CHECK(c.Live(a) == 1);
    CHECK(c.Live(b) == 1);

    detail::SerializedValue s = detail::Serialize(refs);
    CHECK(s.nested == std::vector<ObjectId>{a, b});  // the nil ref is not a reference
    CHECK(c.total_adds == adds_before);               // packing counts nothing
    Buffer payload(s.ToVector());

    // The collector was restored: a later plain value reports nothing nested.
    CHECK(detail::Serialize(5).nested.empty());

    {
      auto back = detail::Deserialize<std::vector<ObjectRef<int>>>(payload);
      REQUIRE(back.size() == 3);
      CHECK(back[0].ID() == a);
      CHECK(back[1].ID() == b);
      CHECK(back[2].IsNil());
      CHECK(c.Live(a) == 2);  // each deserialized ref is a new handle
      CHECK(c.Live(b) == 2);
    }
    CHECK(c.Live(a) == 1);
    CHECK(c.Live(b) == 1);
  }
  CHECK(c.Live(a) == 0);
  CHECK(c.Live(b) == 0);
  CHECK(c.total_adds == c.total_removes);
}

TEST_CASE("ObjectRef copies count references and moves do not", "[serialization][objectref]") {
  ScopedFakeClient fake;
  FakeClient& c = fake.client;
  ObjectId id = Oid(7);
  {
    ObjectRef<std::string> r(id);
    CHECK(c.adds[id] == 1);
    {
      ObjectRef<std::string> copy = r;
      CHECK(copy == r);
      CHECK(c.Live(id) == 2);
      ObjectRef<std::string> moved = std::move(copy);
      CHECK(c.Live(id) == 2);
      CHECK(copy.IsNil());  // NOLINT(bugprone-use-after-move): moved-from is nil by contract
      ObjectRef<std::string> assigned;
      assigned = moved;
      CHECK(c.Live(id) == 3);
      assigned = ObjectRef<std::string>(Oid(8));  // drops its old ref
      CHECK(c.Live(id) == 2);
      CHECK(c.Live(Oid(8)) == 1);
      auto& alias = assigned;
      assigned = alias;  // self-assignment is harmless
      CHECK(c.Live(Oid(8)) == 1);
    }
    CHECK(c.Live(id) == 1);
    CHECK(c.Live(Oid(8)) == 0);
    // An adopted id was counted by the runtime already.
    ObjectRef<int> adopted(Oid(9), detail::AdoptRef{});
    CHECK(c.adds[Oid(9)] == 0);
  }
  CHECK(c.Live(id) == 0);
  CHECK(c.removes[Oid(9)] == 1);
  ObjectRef<int> nil;
  CHECK(nil.IsNil());
}

TEST_CASE("ObjectRef without a runtime", "[serialization][objectref]") {
  detail::SetClientForTesting(nullptr);
  CHECK(detail::ClientOrNull() == nullptr);
  CHECK_THROWS_AS(ObjectRef<int>(Oid(1)), mpiray::Error);
  { ObjectRef<int> adopted(Oid(2), detail::AdoptRef{}); }  // destroying needs no runtime
  ObjectRef<int> nil;
  CHECK_NOTHROW(ObjectRef<int>(nil));
}

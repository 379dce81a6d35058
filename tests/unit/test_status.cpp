// Unit tests of Status, Result, ThrowIfError (errors.h) and the id types (ids.h).
#include <catch2/catch.hpp>

#include <string>
#include <unordered_set>

#include "mpiray/core/errors.h"
#include "mpiray/core/ids.h"
#include "mpiray/core/status.h"

using mpiray::ObjectId;
using mpiray::Result;
using mpiray::Status;
using mpiray::StatusCode;
using mpiray::TaskId;

namespace {

template <class E>
void ExpectThrows(StatusCode code) {
  const std::string msg = "message for code " + std::to_string(static_cast<int>(code));
  try {
    mpiray::ThrowIfError(Status(code, msg));
    FAIL("nothing thrown for " << mpiray::StatusCodeName(code));
  } catch (const E& e) {
    CHECK(e.code() == code);
    CHECK_THAT(e.what(), Catch::Contains(msg));
  } catch (const std::exception& e) {
    FAIL("wrong exception type for " << mpiray::StatusCodeName(code) << ": " << e.what());
  }
}

// Exactly mpiray::Error, not one of its subclasses.
void ExpectPlainError(StatusCode code) {
  try {
    mpiray::ThrowIfError(Status(code, "plain"));
    FAIL("nothing thrown");
  } catch (const mpiray::TaskError&) {
    FAIL("subclass thrown");
  } catch (const mpiray::InvalidArgumentError&) {
    FAIL("subclass thrown");
  } catch (const mpiray::ObjectLostError&) {
    FAIL("subclass thrown");
  } catch (const mpiray::Error& e) {
    CHECK(e.code() == code);
    CHECK_THAT(e.what(), Catch::Contains("plain") &&
                             Catch::Contains(mpiray::StatusCodeName(code)));
  }
}

Result<int> ParsePositive(int v) {
  if (v <= 0) return mpiray::InvalidArgument("not positive: " + std::to_string(v));
  return v;
}

int g_reached = 0;
Result<int> DoubledPositive(int v) {
  MPIRAY_ASSIGN_OR_RETURN(int x, ParsePositive(v));
  ++g_reached;
  return 2 * x;
}

Status SumTwo(int a, int b, int* out) {
  MPIRAY_ASSIGN_OR_RETURN(int x, ParsePositive(a));
  MPIRAY_ASSIGN_OR_RETURN(int y, ParsePositive(b));  // two in one scope
  *out = x + y;
  return Status::OK();
}

Status CheckBoth(const Status& a, const Status& b, int* steps) {
  MPIRAY_RETURN_IF_ERROR(a);
  ++*steps;
  MPIRAY_RETURN_IF_ERROR(b);
  ++*steps;
  return Status::OK();
}

}  // namespace

TEST_CASE("ThrowIfError maps each status code to its exception class", "[status]") {
  CHECK_NOTHROW(mpiray::ThrowIfError(Status::OK()));
  ExpectThrows<mpiray::TaskError>(StatusCode::kTaskError);
  ExpectThrows<mpiray::GetTimeoutError>(StatusCode::kTimeout);
  ExpectThrows<mpiray::ObjectStoreFullError>(StatusCode::kObjectStoreFull);
  ExpectThrows<mpiray::ObjectLostError>(StatusCode::kObjectLost);
  ExpectThrows<mpiray::TaskCancelledError>(StatusCode::kCancelled);
  ExpectThrows<mpiray::ActorDiedError>(StatusCode::kActorDied);
  // (a call out of retries while its actor restarts: ActorDiedError in C++, as before)
  CHECK_THROWS_AS(mpiray::ThrowIfError(Status(StatusCode::kActorUnavailable, "x")), mpiray::ActorDiedError);
  ExpectThrows<mpiray::WorkerCrashedError>(StatusCode::kWorkerCrashed);
  ExpectThrows<mpiray::InfeasibleError>(StatusCode::kInfeasible);
  ExpectThrows<mpiray::InvalidArgumentError>(StatusCode::kInvalidArgument);
  for (StatusCode c : {StatusCode::kNotFound, StatusCode::kIoError, StatusCode::kUnavailable,
                       StatusCode::kInternal, StatusCode::kAlreadyExists,
                       StatusCode::kUnauthenticated, StatusCode::kFabricError,
                       StatusCode::kMpiError}) {
    INFO(mpiray::StatusCodeName(c));
    ExpectPlainError(c);
  }
  // Every mpiray exception is a std::runtime_error.
  CHECK_THROWS_AS(mpiray::ThrowIfError(Status(StatusCode::kActorDied, "x")), std::runtime_error);
}

TEST_CASE("ValueOrThrow unwraps a Result", "[status]") {
  CHECK(mpiray::ValueOrThrow(ParsePositive(3)) == 3);
  CHECK_THROWS_AS(mpiray::ValueOrThrow(ParsePositive(-3)), mpiray::InvalidArgumentError);
}

TEST_CASE("Status names and strings", "[status]") {
  CHECK(Status().ok());
  CHECK(Status::OK().ToString() == "OK");
  Status s(StatusCode::kObjectStoreFull, "no room");
  CHECK_FALSE(s.ok());
  CHECK(s.code() == StatusCode::kObjectStoreFull);
  CHECK(s.message() == "no room");
  CHECK(s.ToString() == "ObjectStoreFull: no room");
  CHECK(std::string(mpiray::StatusCodeName(StatusCode::kCancelled)) == "TaskCancelled");
  CHECK(std::string(mpiray::StatusCodeName(static_cast<StatusCode>(999))) == "Unknown");
  CHECK(mpiray::NotFound("x").code() == StatusCode::kNotFound);
  CHECK(mpiray::IoError("x").code() == StatusCode::kIoError);
  CHECK(mpiray::Internal("x").code() == StatusCode::kInternal);
  CHECK(mpiray::Unavailable("x").code() == StatusCode::kUnavailable);
}

TEST_CASE("ObjectId Hex and FromHex round trip", "[status][ids]") {
  ObjectId id{0x0123456789abcdefull, 0xfedcba98u, 1};
  std::string hex = id.Hex();
  // Memory order (as Python's ObjectRef.binary().hex()): task, index, kind, little-endian.
  CHECK(hex == "efcdab896745230198badcfe01000000");
  CHECK(hex.size() == 32);
  ObjectId back;
  REQUIRE(ObjectId::FromHex(hex, &back));
  CHECK(back == id);

  for (const ObjectId& o : {ObjectId{}, ObjectId::ForReturn(TaskId::Make(5, 77), 3),
                            ObjectId::ForPut(TaskId::Make(0xffffff, (1ull << 40) - 1)),
                            ObjectId{~0ull, ~0u, ~0u}}) {
    ObjectId r{1, 1, 1};
    REQUIRE(ObjectId::FromHex(o.Hex(), &r));
    CHECK(r == o);
  }
  ObjectId upper;
  REQUIRE(ObjectId::FromHex("EFCDAB896745230198BADCFE01000000", &upper));
  CHECK(upper == id);

  ObjectId untouched{9, 9, 9};
  for (const char* bad : {"", "0123", "0123456789abcdeffedcba98000000011",
                          "0123456789abcdeffedcba980000000g", "0x23456789abcdeffedcba9800000001",
                          " 123456789abcdeffedcba9800000001"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(ObjectId::FromHex(bad, &untouched));
  }
  CHECK(untouched == ObjectId{9, 9, 9});
}

TEST_CASE("TaskId packs the submitter and a sequence number", "[status][ids]") {
  TaskId t = TaskId::Make(42, 1000);
  CHECK(t.submitter() == 42);
  CHECK((t.value & ((1ull << 40) - 1)) == 1000);
  CHECK_FALSE(t.nil());
  CHECK(TaskId{}.nil());
  CHECK(t.ToString() == "42.1000");
  CHECK(TaskId::Make(0, 1).submitter() == 0);
  CHECK(TaskId::Make(0xffffff, 5).submitter() == 0xffffffu);
  // The sequence wraps within 40 bits and never spills into the submitter.
  TaskId wrap = TaskId::Make(3, (1ull << 40) + 9);
  CHECK(wrap.submitter() == 3);
  CHECK(wrap == TaskId::Make(3, 9));
  CHECK(TaskId::Make(1, 2) != TaskId::Make(2, 1));
  CHECK(TaskId::Make(1, 2) < TaskId::Make(2, 1));
}

TEST_CASE("ObjectId kinds, ordering and hashing", "[status][ids]") {
  TaskId t = TaskId::Make(7, 3);
  ObjectId r0 = ObjectId::ForReturn(t, 0);
  ObjectId r1 = ObjectId::ForReturn(t, 1);
  ObjectId p = ObjectId::ForPut(t);
  CHECK_FALSE(r0.is_put());
  CHECK(p.is_put());
  CHECK(r0.task_id() == t);
  CHECK(p.task_id() == t);
  CHECK(r0 != r1);
  CHECK(r0 != p);  // same task and index, different kind
  CHECK(r0 < r1);
  CHECK(ObjectId{}.nil());
  CHECK_FALSE(r0.nil());
  std::unordered_set<ObjectId> set = {r0, r1, p, r0};
  CHECK(set.size() == 3);
}

TEST_CASE("Result holds a value or an error status", "[status]") {
  Result<int> ok = ParsePositive(5);
  REQUIRE(ok.ok());
  CHECK(static_cast<bool>(ok));
  CHECK(*ok == 5);
  CHECK(ok.value() == 5);
  CHECK(ok.status().ok());

  Result<int> bad = ParsePositive(0);
  CHECK_FALSE(bad.ok());
  CHECK(bad.status().code() == StatusCode::kInvalidArgument);
  CHECK(bad.status().message() == "not positive: 0");

  Result<std::string> s = std::string("abc");
  CHECK(s->size() == 3);
  std::string moved = std::move(s).value();
  CHECK(moved == "abc");
}

TEST_CASE("MPIRAY_ASSIGN_OR_RETURN and MPIRAY_RETURN_IF_ERROR", "[status]") {
  g_reached = 0;
  auto good = DoubledPositive(4);
  REQUIRE(good.ok());
  CHECK(*good == 8);
  CHECK(g_reached == 1);

  auto bad = DoubledPositive(-1);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() == "not positive: -1");
  CHECK(g_reached == 1);  // returned before the rest of the function

  int out = 0;
  CHECK(SumTwo(2, 3, &out).ok());
  CHECK(out == 5);
  out = 0;
  Status st = SumTwo(2, -3, &out);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message() == "not positive: -3");
  CHECK(out == 0);

  int steps = 0;
  CHECK(CheckBoth(Status::OK(), Status::OK(), &steps).ok());
  CHECK(steps == 2);
  steps = 0;
  CHECK(CheckBoth(Status::OK(), Status(StatusCode::kTimeout, "t"), &steps).code() ==
        StatusCode::kTimeout);
  CHECK(steps == 1);
  steps = 0;
  CHECK(CheckBoth(mpiray::NotFound("n"), Status::OK(), &steps).code() == StatusCode::kNotFound);
  CHECK(steps == 0);
}

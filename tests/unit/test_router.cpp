// Unit tests of mpiray::MessageRouter: one handler per message type, decoded once, statuses
// and malformed bodies reported rather than thrown.
#include <catch2/catch.hpp>

#include <msgpack.hpp>

#include "router.h"

using mpiray::MessageRouter;
using mpiray::ProcId;
using mpiray::Status;
using mpiray::StatusCode;
namespace proto = mpiray::proto;

namespace {

template <class M>
std::string Body(const M& m) {
  msgpack::sbuffer sb;
  msgpack::pack(sb, m);
  return std::string(sb.data(), sb.size());
}

}  // namespace

TEST_CASE("MessageRouter decodes each message for the one handler of its type", "[router]") {
  MessageRouter r;
  std::vector<std::pair<ProcId, uint64_t>> seen;
  r.On<proto::GetObjects>(proto::Msg::kGetObjects, [&](ProcId src, proto::GetObjects&& g) {
    seen.emplace_back(src, g.req);
  });
  r.On<proto::Cancel>(proto::Msg::kCancel, [&](ProcId, proto::Cancel&& c) -> Status {
    return c.force ? mpiray::InvalidArgument("no force here") : Status::OK();
  });
  CHECK(r.Handles(proto::Msg::kGetObjects));
  CHECK_FALSE(r.Handles(proto::Msg::kSubmit));

  std::string b = Body(proto::GetObjects{9, {}});
  REQUIRE(r.Dispatch(3, proto::Msg::kGetObjects, b.data(), b.size()).ok());
  CHECK(seen == std::vector<std::pair<ProcId, uint64_t>>{{3, 9}});

  proto::Cancel c;
  c.force = true;
  b = Body(c);
  Status st = r.Dispatch(1, proto::Msg::kCancel, b.data(), b.size());
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message() == "no force here");

  st = r.Dispatch(1, proto::Msg::kSubmit, b.data(), b.size());
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("Submit") != std::string::npos);  // names the message

  std::string junk = "\xc1";  // never a valid msgpack byte
  st = r.Dispatch(1, proto::Msg::kGetObjects, junk.data(), junk.size());
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("malformed GetObjects") != std::string::npos);
  r.Route(1, proto::Msg::kGetObjects, junk.data(), junk.size());  // logged, not thrown
  CHECK(seen.size() == 1);
}

TEST_CASE("MsgName names every message of the protocol", "[router]") {
  CHECK(std::string(proto::MsgName(proto::Msg::kTaskDone)) == "TaskDone");
  CHECK(std::string(proto::MsgName(proto::Msg::kStreamWant)) == "StreamWant");
  CHECK(std::string(proto::MsgName(static_cast<proto::Msg>(63))) == "unknown");
}

// Unit tests of the head's join listener (mpiray::JoinListener / SendJoinRequest) on loopback.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "join.h"

using mpiray::JoinListener;
using mpiray::JoinReply;
using mpiray::JoinRequest;
using mpiray::StatusCode;

namespace {

const std::string kToken = "0123456789abcdef0123456789abcdef";

struct Listener {
  std::atomic<int> calls{0};
  std::unique_ptr<JoinListener> l;
  Listener() {
    auto r = JoinListener::Start("127.0.0.1", kToken, [this](const JoinRequest& req) {
      ++calls;
      JoinReply reply;
      reply.ok = true;
      reply.proc = 7;
      reply.node = 2;
      reply.status = "welcome " + req.role + " pid " + std::to_string(req.peer.pid);
      reply.session.name = "sess";
      return reply;
    });
    INFO(r.status().ToString());
    REQUIRE(r.ok());
    l = std::move(r).value();
  }
};

JoinRequest Request(const std::string& token, int pid = 4321) {
  JoinRequest req;
  req.token = token;
  req.role = "worker";
  req.peer.pid = pid;
  req.peer.host = "localhost";
  return req;
}

int Port(const std::string& address) {
  return std::atoi(address.c_str() + address.rfind(':') + 1);
}

// Connect to the listener, send `bytes`, close our side, and wait until the listener closes
// the connection (so it is done with it). Returns what the listener sent back.
std::string SendRaw(const std::string& address, const std::string& bytes) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(Port(address)));
  REQUIRE(inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr) == 1);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  if (!bytes.empty()) REQUIRE(send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
                              static_cast<ssize_t>(bytes.size()));
  shutdown(fd, SHUT_WR);
  std::string got;
  char buf[256];
  while (true) {
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, 10000);
    REQUIRE(r == 1);  // the listener must answer or close well within its 5 s deadline
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return got;
}

std::string Frame(const std::string& body) {
  uint32_t len = htonl(static_cast<uint32_t>(body.size()));
  return std::string(reinterpret_cast<const char*>(&len), 4) + body;
}

}  // namespace

TEST_CASE("JoinListener runs the handler for the right token", "[join]") {
  Listener L;
  CHECK(L.l->address().rfind("127.0.0.1:", 0) == 0);
  CHECK(Port(L.l->address()) > 0);

  auto reply = mpiray::SendJoinRequest(L.l->address(), Request(kToken, 99), 5000);
  INFO(reply.status().ToString());
  REQUIRE(reply.ok());
  CHECK(reply->ok);
  CHECK(reply->proc == 7);
  CHECK(reply->node == 2);
  CHECK(reply->status == "welcome worker pid 99");
  CHECK(reply->session.name == "sess");
  CHECK(L.calls == 1);
  CHECK(L.l->refused() == 0);

  // The listener serves one connection after another.
  auto again = mpiray::SendJoinRequest(L.l->address(), Request(kToken, 100), 5000);
  REQUIRE(again.ok());
  CHECK(again->status == "welcome worker pid 100");
  CHECK(L.calls == 2);
}

TEST_CASE("JoinListener refuses a wrong token without calling the handler", "[join]") {
  Listener L;
  for (const std::string& bad : {std::string("wrong"), kToken.substr(0, 31) + "0",
                                 std::string(), kToken + "x"}) {
    auto reply = mpiray::SendJoinRequest(L.l->address(), Request(bad), 5000);
    INFO("token '" << bad << "'");
    REQUIRE(reply.ok());
    CHECK_FALSE(reply->ok);
    CHECK_THAT(reply->error, Catch::Contains("wrong session token"));
    CHECK(reply->proc == 0);
  }
  CHECK(L.calls == 0);
  CHECK(L.l->refused() == 4);
}

TEST_CASE("JoinListener survives garbage connections", "[join]") {
  Listener L;
  // Not a frame at all, then a frame that is not msgpack, then msgpack of the wrong shape,
  // then a join request with the wrong magic, then a length over the limit.
  SendRaw(L.l->address(), "GET / HTTP/1.0\r\n\r\n");
  SendRaw(L.l->address(), Frame("\xc1\xc1\xc1garbage"));
  msgpack::sbuffer sb;
  msgpack::pack(sb, std::string("just a string"));
  SendRaw(L.l->address(), Frame(std::string(sb.data(), sb.size())));
  JoinRequest wrong_magic = Request(kToken);
  wrong_magic.magic = "something-else";
  sb.clear();
  msgpack::pack(sb, wrong_magic);
  std::string reply = SendRaw(L.l->address(), Frame(std::string(sb.data(), sb.size())));
  CHECK(reply.empty());  // no answer to something that is not a join request
  SendRaw(L.l->address(), std::string("\x7f\xff\xff\xff", 4));
  SendRaw(L.l->address(), "");  // connect and hang up
  CHECK(L.l->refused() == 6);
  CHECK(L.calls == 0);

  auto good = mpiray::SendJoinRequest(L.l->address(), Request(kToken), 5000);
  INFO(good.status().ToString());
  REQUIRE(good.ok());
  CHECK(good->ok);
  CHECK(L.calls == 1);
}

TEST_CASE("SendJoinRequest reports bad addresses and absent listeners", "[join]") {
  CHECK(mpiray::SendJoinRequest("no-port", Request(kToken), 1000).status().code() ==
        StatusCode::kInvalidArgument);
  CHECK(mpiray::SendJoinRequest("not.an.ip:80", Request(kToken), 1000).status().code() ==
        StatusCode::kInvalidArgument);

  // A port nobody listens on any more.
  std::string address;
  {
    Listener L;
    address = L.l->address();
    L.l->Stop();
  }
  auto r = mpiray::SendJoinRequest(address, Request(kToken), 2000);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kUnavailable);
}

TEST_CASE("JoinListener rejects a non-IPv4 bind address", "[join]") {
  auto r = JoinListener::Start("localhost", kToken, [](const JoinRequest&) { return JoinReply{}; });
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("DefaultListenHost honours MPIRAY_LISTEN_ADDR", "[join]") {
  CHECK(mpiray::DefaultListenHost({{"MPIRAY_LISTEN_ADDR", "10.1.2.3"}}) == "10.1.2.3");
  std::string h = mpiray::DefaultListenHost({});
  in_addr a{};
  CHECK(inet_pton(AF_INET, h.c_str(), &a) == 1);  // always a dotted IPv4 address
}

// The proxy over real loopback sockets. The clients are raw POSIX sockets so that malformed,
// oversized and slow requests can be sent; the "router" is the test thread calling Next().
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <vector>
#include <string>
#include <thread>

#include "mpiray/serve/proxy.h"

using namespace std::chrono_literals;
using mpiray::serve::Proxy;
using mpiray::serve::ProxyOptions;

namespace {

std::unique_ptr<Proxy> StartProxy(ProxyOptions o = {}) {
  o.port = 0;
  auto r = Proxy::Start(o);
  REQUIRE(r.ok());
  auto p = std::move(r).value();
  p->SetRoutes({{"/", "root"}, {"/api", "api"}});
  return p;
}

struct Client {
  int fd = -1;
  explicit Client(std::uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~Client() {
    if (fd >= 0) ::close(fd);
  }
  void Send(const std::string& s) const {
    std::size_t off = 0;
    while (off < s.size()) {
      auto n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<std::size_t>(n);
    }
  }
  // Reads until `until` appears (or the peer closes / the time is up).
  std::string ReadUntil(const std::string& until, std::chrono::milliseconds limit = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (buf.find(until) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char tmp[4096];
      auto n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) {
        closed = true;
        break;
      }
      buf.append(tmp, static_cast<std::size_t>(n));
    }
    auto at = buf.find(until);
    std::string out = at == std::string::npos ? buf : buf.substr(0, at + until.size());
    buf.erase(0, out.size());
    return out;
  }
  bool WaitClosed(std::chrono::milliseconds limit) {  // keeps what it read in buf
    std::string kept = buf;
    buf.clear();
    kept += ReadUntil("\x01never\x02", limit);
    buf = kept;
    return closed;
  }
  std::string buf;
  bool closed = false;
};

std::string Get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n";
}

}  // namespace

TEST_CASE("a routed request reaches the router and its answer the client", "[serve][proxy]") {
  auto p = StartProxy();
  Client c(p->port());
  c.Send("POST /api/items?id=7 HTTP/1.1\r\nHost: x\r\nX-Thing: Yes\r\nContent-Length: 5\r\n\r\nhello");
  auto r = p->Next(5000ms);
  REQUIRE(r.has_value());
  CHECK(r->app == "api");
  CHECK(r->route_prefix == "/api");
  CHECK(r->method == "POST");
  CHECK(r->path == "/api/items");
  CHECK(r->query == "id=7");
  CHECK(r->body == "hello");
  CHECK(r->client_host == "127.0.0.1");
  bool found = false;
  for (auto& [k, v] : r->headers) found |= (k == "x-thing" && v == "Yes");
  CHECK(found);
  REQUIRE(p->Respond(r->id, 201, {{"content-type", "text/plain"}}, "made"));
  auto resp = c.ReadUntil("made");
  CHECK(resp.rfind("HTTP/1.1 201", 0) == 0);
  CHECK(resp.find("Content-Length: 4") != std::string::npos);
  CHECK_FALSE(p->Respond(r->id, 200, {}, "again"));  // answered: the id is gone
}

TEST_CASE("keep-alive and pipelined requests are answered in order", "[serve][proxy]") {
  auto p = StartProxy();
  Client c(p->port());
  c.Send(Get("/a") + Get("/b") + Get("/c"));
  for (std::string want : {"/a", "/b", "/c"}) {
    auto r = p->Next(5000ms);
    REQUIRE(r.has_value());
    CHECK(r->path == want);
    CHECK_FALSE(p->Next(50ms).has_value());  // the next is read only after this answer
    REQUIRE(p->Respond(r->id, 200, {}, "got" + want));
    auto resp = c.ReadUntil("got" + want);
    CHECK(resp.find("got" + want) != std::string::npos);
  }
  CHECK(p->stats().connections == 1);
}

TEST_CASE("unknown routes get 404 with a clear body and no router call", "[serve][proxy]") {
  auto p = StartProxy();
  p->SetRoutes({{"/api", "api"}});
  Client c(p->port());
  c.Send(Get("/nothing/here"));
  auto resp = c.ReadUntil("routes.");
  CHECK(resp.rfind("HTTP/1.1 404", 0) == 0);
  CHECK(resp.find("Path '/nothing/here' not found") != std::string::npos);
  c.Send(Get("/-/routes"));
  auto routes = c.ReadUntil("}");
  CHECK(routes.find(R"({"/api":"api"})") != std::string::npos);
  CHECK_FALSE(p->Next(50ms).has_value());
}

TEST_CASE("malformed requests get 400 and the connection closes", "[serve][proxy]") {
  auto p = StartProxy();
  Client c(p->port());
  c.Send("THIS IS NOT HTTP\r\n\r\n");
  auto resp = c.ReadUntil("\r\n\r\n");
  CHECK(resp.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(c.ReadUntil("\n").find("Malformed HTTP request") != std::string::npos);
  CHECK(c.WaitClosed(3000ms));
  Client c2(p->port());
  c2.Send("GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n");
  CHECK(c2.ReadUntil("\r\n").rfind("HTTP/1.1 400", 0) == 0);
}

TEST_CASE("bodies over the limit get 413 whether announced or streamed", "[serve][proxy]") {
  ProxyOptions o;
  o.max_body_bytes = 1000;
  auto p = StartProxy(o);
  Client c(p->port());
  c.Send("POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + std::string(5000, 'x'));
  auto resp = c.ReadUntil("bytes\n");
  CHECK(resp.rfind("HTTP/1.1 413", 0) == 0);
  CHECK(resp.find("limit is 1000 bytes") != std::string::npos);
  Client c2(p->port());
  std::string chunked = "POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) chunked += "200\r\n" + std::string(512, 'y') + "\r\n";
  c2.Send(chunked);
  CHECK(c2.ReadUntil("\r\n").rfind("HTTP/1.1 413", 0) == 0);
  CHECK_FALSE(p->Next(50ms).has_value());
}

TEST_CASE("a slow client is cut off at the header timeout and stalls nobody", "[serve][proxy]") {
  ProxyOptions o;
  o.header_timeout = 600ms;
  auto p = StartProxy(o);
  Client slow(p->port());
  std::thread drip([&] {
    std::string req = Get("/slow");
    for (char ch : req) {
      slow.Send(std::string(1, ch));
      std::this_thread::sleep_for(100ms);
      if (slow.closed) break;
    }
  });
  // Meanwhile another client is served at once.
  auto t0 = std::chrono::steady_clock::now();
  Client fast(p->port());
  fast.Send(Get("/fast"));
  auto r = p->Next(2000ms);
  REQUIRE(r.has_value());
  CHECK(r->path == "/fast");
  REQUIRE(p->Respond(r->id, 200, {}, "quick"));
  CHECK(fast.ReadUntil("quick").find("quick") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - t0 < 500ms);
  CHECK(slow.WaitClosed(3000ms));
  drip.join();
  // The timed-out stream closes the socket before the proxy's handler counts the timeout:
  // the client may see the close first.
  auto counted = std::chrono::steady_clock::now() + 2000ms;
  while (p->stats().timeouts < 1 && std::chrono::steady_clock::now() < counted) {
    std::this_thread::sleep_for(5ms);
  }
  CHECK(p->stats().timeouts >= 1);
  CHECK_FALSE(p->Next(50ms).has_value());
}

TEST_CASE("a bearer token is required when set", "[serve][proxy]") {
  ProxyOptions o;
  o.token = "s3cret";
  auto p = StartProxy(o);
  Client c(p->port());
  c.Send(Get("/x"));
  auto resp = c.ReadUntil("<token>'\n");
  CHECK(resp.rfind("HTTP/1.1 401", 0) == 0);
  CHECK(resp.find("www-authenticate: Bearer") != std::string::npos);
  c.Send(Get("/x", "Authorization: Bearer wrong\r\n"));
  CHECK(c.ReadUntil("<token>'\n").rfind("HTTP/1.1 401", 0) == 0);
  c.Send(Get("/x", "Authorization: Bearer s3cret\r\n"));
  auto r = p->Next(5000ms);
  REQUIRE(r.has_value());
  REQUIRE(p->Respond(r->id, 200, {}, "in"));
  CHECK(c.ReadUntil("in").rfind("HTTP/1.1 200", 0) == 0);
}

TEST_CASE("the admin endpoint needs the admin token", "[serve][proxy]") {
  ProxyOptions o;
  o.admin_token = "adm";
  auto p = StartProxy(o);
  Client c(p->port());
  c.Send(Get("/-/serve/status"));
  CHECK(c.ReadUntil("file)\n").rfind("HTTP/1.1 401", 0) == 0);
  c.Send(Get("/-/serve/status", "Authorization: Bearer adm\r\n"));
  auto r = p->Next(5000ms);
  REQUIRE(r.has_value());
  CHECK(r->admin);
  CHECK(r->app.empty());
  auto noadmin = StartProxy();
  Client c2(noadmin->port());
  c2.Send(Get("/-/serve/status", "Authorization: Bearer adm\r\n"));
  CHECK(c2.ReadUntil("\r\n").rfind("HTTP/1.1 403", 0) == 0);
}

TEST_CASE("streamed responses use chunked transfer encoding", "[serve][proxy]") {
  auto p = StartProxy();
  Client c(p->port());
  c.Send(Get("/s"));
  auto r = p->Next(5000ms);
  REQUIRE(r.has_value());
  REQUIRE(p->StartStream(r->id, 200, {{"content-type", "text/plain"}}));
  REQUIRE(p->SendChunk(r->id, "first"));
  REQUIRE(p->SendChunk(r->id, "second!"));
  REQUIRE(p->EndStream(r->id));
  auto resp = c.ReadUntil("0\r\n\r\n");
  CHECK(resp.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(resp.find("Transfer-Encoding: chunked") != std::string::npos);
  CHECK(resp.find("5\r\nfirst\r\n7\r\nsecond!\r\n0\r\n\r\n") != std::string::npos);
  c.Send(Get("/after"));  // the connection stays usable
  auto r2 = p->Next(5000ms);
  REQUIRE(r2.has_value());
  CHECK(r2->path == "/after");
}

TEST_CASE("HTTP/1.0 clients get close-delimited streams and Connection handling", "[serve][proxy]") {
  auto p = StartProxy();
  Client c(p->port());
  c.Send("GET /s HTTP/1.0\r\n\r\n");
  auto r = p->Next(5000ms);
  REQUIRE(r.has_value());
  CHECK(r->http_minor == 0);
  REQUIRE(p->StartStream(r->id, 200, {}));
  REQUIRE(p->SendChunk(r->id, "abc"));
  REQUIRE(p->EndStream(r->id));
  CHECK(c.WaitClosed(3000ms));
  CHECK(c.buf.find("\r\n\r\nabc") != std::string::npos);
  CHECK(c.buf.find("chunked") == std::string::npos);
}

TEST_CASE("a port in use and a bad host are clear errors", "[serve][proxy]") {
  auto p = StartProxy();
  ProxyOptions o;
  o.port = p->port();
  auto r = Proxy::Start(o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("cannot listen on 127.0.0.1:" + std::to_string(p->port())) !=
        std::string::npos);
  o.host = "not-an-ip";
  auto r2 = Proxy::Start(o);
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.status().message().find("not-an-ip") != std::string::npos);
}

TEST_CASE("Stop closes connections and wakes Next", "[serve][proxy]") {
  auto p = StartProxy();
  Client c(p->port());
  c.Send(Get("/x"));
  auto r = p->Next(5000ms);
  REQUIRE(r.has_value());
  std::thread waiter([&] { CHECK_FALSE(p->Next(10000ms).has_value()); });
  std::this_thread::sleep_for(50ms);
  auto t0 = std::chrono::steady_clock::now();
  p->Stop();
  waiter.join();
  CHECK(std::chrono::steady_clock::now() - t0 < 3000ms);
  CHECK(c.WaitClosed(3000ms));
  CHECK_FALSE(p->Respond(r->id, 200, {}, "late"));
}

TEST_CASE("NextBatch hands every queued request over at once", "[serve][proxy]") {
  auto p = StartProxy();
  Client a(p->port()), b(p->port()), c(p->port());
  a.Send(Get("/a"));
  b.Send(Get("/b"));
  c.Send(Get("/c"));
  std::vector<mpiray::serve::Request> got;
  auto deadline = std::chrono::steady_clock::now() + 5000ms;
  while (got.size() < 3 && std::chrono::steady_clock::now() < deadline) {
    for (auto& r : p->NextBatch(64, 1000ms)) got.push_back(std::move(r));
  }
  REQUIRE(got.size() == 3);
  CHECK(p->stats().queued == 0);
  std::vector<std::string> paths;
  for (auto& r : got) paths.push_back(r.path);
  std::sort(paths.begin(), paths.end());
  CHECK(paths == std::vector<std::string>{"/a", "/b", "/c"});
  for (auto& r : got) REQUIRE(p->Respond(r.id, 200, {}, "ok" + r.path));
  CHECK(a.ReadUntil("ok/a").find("ok/a") != std::string::npos);
  CHECK(c.ReadUntil("ok/c").find("ok/c") != std::string::npos);
  CHECK(p->NextBatch(64, 50ms).empty());  // nothing queued: empty after the timeout
  a.Send(Get("/x") + Get("/y"));          // pipelined: one at a time, even in a batch
  auto first = p->NextBatch(64, 5000ms);
  REQUIRE(first.size() == 1);
  CHECK(first[0].path == "/x");
}

TEST_CASE("AbortStream resets the connection after what was sent", "[serve][proxy]") {
  auto p = StartProxy();
  Client c(p->port());
  c.Send(Get("/s"));
  auto r = p->Next(5000ms);
  REQUIRE(r.has_value());
  REQUIRE(p->StartStream(r->id, 200, {{"content-type", "text/plain"}}));
  REQUIRE(p->SendChunk(r->id, "part1"));
  REQUIRE(p->AbortStream(r->id));
  CHECK(c.WaitClosed(3000ms));
  CHECK(c.buf.find("5\r\npart1\r\n") != std::string::npos);  // what was sent arrives
  CHECK(c.buf.find("0\r\n\r\n") == std::string::npos);       // but no last chunk: an error
  CHECK_FALSE(p->SendChunk(r->id, "late"));
  CHECK_FALSE(p->IsOpen(r->id));
}

TEST_CASE("the proxy's sockets are not inherited by processes started later", "[serve][proxy]") {
  // (a worker the runtime starts would otherwise keep a client's connection open after the
  // proxy closed or reset it)
  auto p = StartProxy();
  Client c(p->port());
  c.Send(Get("/x"));
  auto r = p->Next(5000ms);
  REQUIRE(r.has_value());
  int server_side = 0;
  for (int fd = 0; fd < 4096; ++fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) continue;
    if (a.sin_family != AF_INET || ntohs(a.sin_port) != p->port()) continue;
    ++server_side;  // the listener and the accepted connection (the client's port differs)
    CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
  }
  CHECK(server_side == 2);
  REQUIRE(p->Respond(r->id, 200, {}, "ok"));
  CHECK(c.ReadUntil("ok").find("ok") != std::string::npos);
}

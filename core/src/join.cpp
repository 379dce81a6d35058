#include "join.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "log.h"

namespace mpiray {
namespace {

constexpr uint32_t kMaxMessage = 16u << 20;

bool WaitFd(int fd, short events, int64_t deadline_ms) {
  while (true) {
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count();
    int left = static_cast<int>(std::max<int64_t>(0, deadline_ms - now));
    pollfd p{fd, events, 0};
    int r = poll(&p, 1, left);
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Status ReadAll(int fd, char* buf, size_t len, int64_t deadline) {
  size_t off = 0;
  while (off < len) {
    if (!WaitFd(fd, POLLIN, deadline)) return Status(StatusCode::kTimeout, "read timed out");
    ssize_t n = recv(fd, buf + off, len - off, 0);
    if (n == 0) return IoError("connection closed");
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return IoError(std::string("recv: ") + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  return Status::OK();
}

Status WriteAll(int fd, const char* buf, size_t len, int64_t deadline) {
  size_t off = 0;
  while (off < len) {
    if (!WaitFd(fd, POLLOUT, deadline)) return Status(StatusCode::kTimeout, "write timed out");
    ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return IoError(std::string("send: ") + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  return Status::OK();
}

Status WriteFrame(int fd, const msgpack::sbuffer& sb, int64_t deadline) {
  uint32_t len = htonl(static_cast<uint32_t>(sb.size()));
  MPIRAY_RETURN_IF_ERROR(WriteAll(fd, reinterpret_cast<const char*>(&len), 4, deadline));
  return WriteAll(fd, sb.data(), sb.size(), deadline);
}

Result<std::string> ReadFrame(int fd, int64_t deadline) {
  uint32_t len = 0;
  MPIRAY_RETURN_IF_ERROR(ReadAll(fd, reinterpret_cast<char*>(&len), 4, deadline));
  len = ntohl(len);
  if (len > kMaxMessage) return InvalidArgument("message too large");
  std::string body(len, '\0');
  MPIRAY_RETURN_IF_ERROR(ReadAll(fd, body.data(), len, deadline));
  return body;
}

}  // namespace

std::string DefaultListenHost(const EnvMap& env) {
  auto it = env.find("MPIRAY_LISTEN_ADDR");
  if (it != env.end() && !it->second.empty()) return it->second;
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) == 0) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(host, nullptr, &hints, &res) == 0 && res) {
      char ip[INET_ADDRSTRLEN] = {0};
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, ip, sizeof ip);
      freeaddrinfo(res);
      if (ip[0]) return ip;
    }
  }
  return "127.0.0.1";
}

Result<std::unique_ptr<JoinListener>> JoinListener::Start(const std::string& bind_host,
                                                          const std::string& token,
                                                          Handler handler) {
  std::unique_ptr<JoinListener> l(new JoinListener());
  l->token_ = token;
  l->handler_ = std::move(handler);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return IoError(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;  // ephemeral
  if (inet_pton(AF_INET, bind_host.c_str(), &addr.sin_addr) != 1) {
    close(fd);
    return InvalidArgument("listen address '" + bind_host + "' is not an IPv4 address");
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 128) != 0) {
    int err = errno;
    close(fd);
    return IoError("cannot listen on " + bind_host + ": " + std::strerror(err));
  }
  socklen_t alen = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen);
  l->listen_fd_ = fd;
  l->address_ = bind_host + ":" + std::to_string(ntohs(addr.sin_port));
  if (pipe2(l->wake_fd_, O_CLOEXEC) != 0) return IoError("pipe failed");
  l->thread_ = std::thread([p = l.get()] { p->Loop(); });
  return l;
}

JoinListener::~JoinListener() { Stop(); }

void JoinListener::Stop() {
  if (thread_.joinable()) {
    char c = 1;
    (void)!write(wake_fd_[1], &c, 1);
    thread_.join();
  }
  for (int* fd : {&listen_fd_, &wake_fd_[0], &wake_fd_[1]}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

void JoinListener::Loop() {
  while (true) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_[0], POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents) return;
    if (!(p[0].revents & POLLIN)) continue;
    sockaddr_in peer{};
    socklen_t plen = sizeof peer;
    int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &plen, SOCK_CLOEXEC);
    if (fd < 0) continue;
    char ip[INET_ADDRSTRLEN] = {0};
    inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
    Serve(fd, std::string(ip) + ":" + std::to_string(ntohs(peer.sin_port)));
    close(fd);
  }
}

void JoinListener::Serve(int fd, const std::string& peer) {
  int64_t deadline = NowMs() + 5000;
  auto frame = ReadFrame(fd, deadline);
  JoinReply reply;
  JoinRequest req;
  bool parsed = false;
  if (frame.ok()) {
    try {
      msgpack::object_handle oh = msgpack::unpack(frame->data(), frame->size());
      req = oh.get().as<JoinRequest>();
      parsed = req.magic == "mpiray-join-1";
    } catch (const std::exception&) {
      parsed = false;
    }
  }
  if (!parsed) {
    ++refused_;
    MPIRAY_LOG(warn, "listener: refused a connection from {}: not an mpiray join request", peer);
    return;
  }
  if (req.token.size() != token_.size() ||
      sodium_memcmp(req.token.data(), token_.data(), token_.size()) != 0) {
    ++refused_;
    MPIRAY_LOG(warn, "listener: refused a {} from {} (pid {}): wrong session token", req.role,
               peer, req.peer.pid);
    reply.ok = false;
    reply.error = "authentication failed: wrong session token";
  } else {
    reply = handler_(req);
  }
  msgpack::sbuffer sb;
  msgpack::pack(sb, reply);
  (void)WriteFrame(fd, sb, deadline);
}

Result<JoinReply> SendJoinRequest(const std::string& address, const JoinRequest& request,
                                  int timeout_ms) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) return InvalidArgument("bad head address '" + address + "'");
  std::string host = address.substr(0, colon);
  int port = std::atoi(address.c_str() + colon + 1);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return IoError(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    close(fd);
    return InvalidArgument("bad head address '" + address + "'");
  }
  int64_t deadline = NowMs() + timeout_ms;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
    int err = errno;
    close(fd);
    return Unavailable("cannot connect to the head at " + address + ": " + std::strerror(err));
  }
  if (!WaitFd(fd, POLLOUT, deadline)) {
    close(fd);
    return Unavailable("timed out connecting to the head at " + address);
  }
  int err = 0;
  socklen_t elen = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
  if (err != 0) {
    close(fd);
    return Unavailable("cannot connect to the head at " + address + ": " + std::strerror(err));
  }
  msgpack::sbuffer sb;
  msgpack::pack(sb, request);
  Status st = WriteFrame(fd, sb, deadline);
  if (!st.ok()) {
    close(fd);
    return st;
  }
  auto frame = ReadFrame(fd, deadline);
  close(fd);
  if (!frame.ok()) return Unavailable("no reply from the head at " + address + ": " + frame.status().message());
  try {
    msgpack::object_handle oh = msgpack::unpack(frame->data(), frame->size());
    return oh.get().as<JoinReply>();
  } catch (const std::exception& e) {
    return Internal(std::string("malformed reply from the head: ") + e.what());
  }
}

}  // namespace mpiray

// The head's listener: processes that start after the bootstrap (local workers in singleton
// mode, worker jobs that join later, CLI clients) connect over TCP and must present the
// session token before anything else happens. After that, all traffic goes over UCX.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "mpiray/core/status.h"
#include "protocol.h"
#include "session.h"

namespace mpiray {

struct JoinRequest {
  std::string magic = "mpiray-join-1";
  std::string token;
  std::string role;  // "worker" or "client"
  proto::PeerInfo peer;
  std::string command;  // clients: "status", "stop", "timeline"
  MSGPACK_DEFINE(magic, token, role, peer, command);
};

struct JoinReply {
  bool ok = false;
  std::string error;
  ProcId proc = 0;
  NodeId node = 0;
  SessionInfo session;
  std::vector<proto::PeerInfo> peers;
  std::string status;  // role "client": a status report
  MSGPACK_DEFINE(ok, error, proc, node, session, peers, status);
};

class JoinListener {
 public:
  /// Called (on the listener thread) for an authenticated request.
  using Handler = std::function<JoinReply(const JoinRequest&)>;
  /// @brief Listen on `bind_host` (ephemeral port). Requests whose token differs from `token`
  /// are refused and logged; `handler` never sees them.
  static Result<std::unique_ptr<JoinListener>> Start(const std::string& bind_host,
                                                     const std::string& token, Handler handler);
  ~JoinListener();
  /// @brief "host:port" to write into the session directory.
  const std::string& address() const { return address_; }
  size_t refused() const { return refused_.load(); }
  void Stop();

 private:
  JoinListener() = default;
  void Loop();
  void Serve(int fd, const std::string& peer);

  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1};
  std::string token_;
  Handler handler_;
  std::string address_;
  std::thread thread_;
  std::atomic<size_t> refused_{0};
};

/// @brief Connect to a head's listener and exchange one request/reply.
Result<JoinReply> SendJoinRequest(const std::string& address, const JoinRequest& request,
                                  int timeout_ms);

/// @brief The address to listen on: MPIRAY_LISTEN_ADDR, else this host's address, else loopback.
std::string DefaultListenHost(const EnvMap& env);

}  // namespace mpiray

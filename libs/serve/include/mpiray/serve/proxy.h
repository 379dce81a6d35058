#pragma once
/// @file proxy.h
/// @brief The native HTTP/1.1 proxy of mpiray.serve (Boost.Beast on its own threads).
///
/// The proxy accepts connections, parses requests (keep-alive and pipelined clients, answered
/// in order), enforces size limits, timeouts and the optional bearer token, routes by the
/// longest route prefix and answers what it can alone (404 for unknown routes, `/-/routes`,
/// `/-/healthz`). Every other request is queued for the router (Python) that takes it with
/// `Next()` and answers it with `Respond()` or a chunked stream. No Beast header appears here.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mpiray/core/status.h"
#include "mpiray/serve/routes.h"

namespace mpiray::serve {

/// @brief A header list (names as received, lower-cased for requests).
using Headers = std::vector<std::pair<std::string, std::string>>;

/// @brief Settings of the proxy. Defaults: loopback, port 8000 (as Ray Serve).
struct ProxyOptions {
  std::string host = "127.0.0.1";  ///< interface to bind; "0.0.0.0" only when asked
  std::uint16_t port = 8000;       ///< 0: an ephemeral port (see Proxy::port())
  int threads = 2;                 ///< I/O threads
  std::size_t max_body_bytes = 64u << 20;    ///< larger bodies get 413
  std::size_t max_header_bytes = 16u << 10;  ///< larger request heads get 431
  std::chrono::milliseconds header_timeout{10000};  ///< first byte to end of the request head
  std::chrono::milliseconds body_timeout{30000};    ///< end of head to end of body
  std::chrono::milliseconds keep_alive_timeout{90000};  ///< idle connection between requests
  std::chrono::milliseconds write_timeout{30000};   ///< a client that does not read
  std::size_t max_connections = 4096;   ///< more are closed at once
  std::string token;  ///< when set, requests need "Authorization: Bearer <token>" (else 401)
  std::string admin_token;  ///< when set, "/-/serve/..." admin requests need it (else 401)
};

/// @brief A request handed to the router.
struct Request {
  std::uint64_t id = 0;
  std::string app;           ///< the matched application ("" for admin requests)
  std::string route_prefix;  ///< the matched prefix (ASGI root_path)
  std::string method;
  std::string path;          ///< target before '?'
  std::string query;         ///< after '?', without it
  Headers headers;           ///< names lower-cased
  std::string body;
  std::string client_host;
  std::uint16_t client_port = 0;
  int http_minor = 1;        ///< 0: HTTP/1.0, 1: HTTP/1.1
  bool admin = false;        ///< a "/-/serve/..." request (loopback and admin token checked)
};

/// @brief Counters of the proxy's life (for tests and the bench).
struct ProxyStats {
  std::uint64_t connections = 0;        ///< accepted in all
  std::uint64_t open_connections = 0;
  std::uint64_t requests = 0;           ///< complete requests parsed
  std::uint64_t routed = 0;             ///< handed to the router
  std::uint64_t rejected = 0;           ///< answered by the proxy with 4xx
  std::uint64_t timeouts = 0;           ///< connections closed by a timeout
  std::uint64_t queued = 0;             ///< waiting for Next() now
};

/// @brief The HTTP proxy. Thread-safe: Next/Respond/stream calls come from any thread.
class Proxy {
 public:
  /// @brief Binds, listens and starts the I/O threads; an error names the address.
  static Result<std::unique_ptr<Proxy>> Start(const ProxyOptions& options);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  /// @brief The port it listens on (the chosen one when options.port was 0).
  std::uint16_t port() const;
  /// @brief Replaces the route table.
  void SetRoutes(std::vector<Route> routes);
  /// @brief The route table now.
  RouteTable routes() const;

  /// @brief The next routed request; nullopt after `timeout` or once stopped.
  std::optional<Request> Next(std::chrono::milliseconds timeout);
  /// @brief Every routed request queued now, up to `max` (at least one: waits up to
  /// `timeout` for the first); empty after `timeout` or once stopped. One call hands a burst
  /// of requests to the router at once.
  std::vector<Request> NextBatch(std::size_t max, std::chrono::milliseconds timeout);
  /// @brief How many threads wait in Next() or NextBatch() now (a NextBatch with timeout 0,
  /// a poll, does not count).
  int waiting() const;

  /// @brief Answers request `id` with a whole response. False when the client is gone.
  bool Respond(std::uint64_t id, int status, Headers headers, std::string body);
  /// @brief Starts a chunked response to request `id`. False when the client is gone.
  bool StartStream(std::uint64_t id, int status, Headers headers);
  /// @brief Sends one chunk; waits while more than `max_buffered` bytes are unsent (a slow
  /// reader). False when the client is gone.
  bool SendChunk(std::uint64_t id, std::string data, std::size_t max_buffered = 4u << 20);
  /// @brief Ends a chunked response.
  bool EndStream(std::uint64_t id);
  /// @brief Ends request `id` with an error the client sees: what was sent before is
  /// written, then the connection is reset (a chunked body without its last chunk). For a
  /// stream whose producer died. False when the client is gone.
  bool AbortStream(std::uint64_t id);
  /// @brief Whether request `id` still has a client waiting.
  bool IsOpen(std::uint64_t id) const;

  /// @brief Counters.
  ProxyStats stats() const;
  /// @brief Stops accepting, closes connections, wakes Next() and joins the threads.
  void Stop();

  struct Impl;

 private:
  explicit Proxy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mpiray::serve

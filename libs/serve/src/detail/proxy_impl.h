#pragma once
// Internals of the proxy: the Impl behind mpiray::serve::Proxy and one Session per connection.
// Only the proxy's .cpp files include this (it brings in Boost.Beast and Asio).

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "mpiray/serve/proxy.h"

namespace mpiray::serve::detail {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
using tcp = boost::asio::ip::tcp;

class Session;

/// One piece of output of a connection, written in order.
struct Out {
  enum Kind { kFull, kHead, kChunk, kLast, kRaw, kAbort };
  Kind kind = kFull;
  std::shared_ptr<http::response<http::string_body>> full;
  std::shared_ptr<http::response<http::empty_body>> head;
  std::shared_ptr<http::response_serializer<http::empty_body>> head_sr;
  std::shared_ptr<std::string> data;
  bool ends_response = false;  // the last piece of a response
  bool close_after = false;    // close the connection once written
};

}  // namespace mpiray::serve::detail

namespace mpiray::serve {

struct Proxy::Impl {
  explicit Impl(const ProxyOptions& o);

  ProxyOptions opt;

  // Declared before the io_context: destroying the context destroys sessions, which
  // unregister themselves here.
  mutable std::mutex reg_mu;
  // request -> its connection, held while the router works on it
  std::unordered_map<std::uint64_t, std::shared_ptr<detail::Session>> pending;
  std::unordered_map<detail::Session*, std::weak_ptr<detail::Session>> sessions;

  mutable std::mutex routes_mu;
  RouteTable routes;

  std::mutex q_mu;
  std::condition_variable q_cv;
  std::deque<Request> queue;
  int waiting = 0;

  std::atomic<bool> stopped{false};
  std::atomic<std::uint64_t> next_id{1};
  std::atomic<std::uint64_t> n_connections{0}, n_open{0}, n_requests{0}, n_routed{0},
      n_rejected{0}, n_timeouts{0};

  detail::net::io_context ioc;
  detail::net::executor_work_guard<detail::net::io_context::executor_type> work;
  detail::tcp::acceptor acceptor;
  std::vector<std::thread> threads;
  std::mutex run_mu;
  std::condition_variable run_cv;
  int running = 0;
  std::uint16_t bound_port = 0;

  void Accept();
  void Enqueue(Request r);
  void Register(std::uint64_t id, const std::shared_ptr<detail::Session>& s);
  void Unregister(std::uint64_t id);
  std::shared_ptr<detail::Session> Find(std::uint64_t id) const;
  std::optional<Route> Match(std::string_view path) const;
};

namespace detail {

/// One client connection: reads a request, hands it on (or answers it), writes the response,
/// then reads the next one (pipelined requests wait in the read buffer, answered in order).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Proxy::Impl* impl);
  ~Session();
  void Start();
  void Close();  // on the strand
  void PostClose();  // from any thread

  // From any thread: queue output for request `id` on the strand.
  void PostFull(std::uint64_t id, int status, Headers headers, std::string body);
  void PostStreamHead(std::uint64_t id, int status, Headers headers);
  bool PostChunk(std::uint64_t id, std::string data, std::size_t max_buffered);
  void PostLast(std::uint64_t id);
  /// Resets the connection once what was queued before is written (a cut stream).
  void PostAbort(std::uint64_t id);
  bool closed() const { return closed_.load(); }

 private:
  void ReadNext();
  void ReadHeader();
  void OnHeader(beast::error_code ec);
  void ReadBody();
  void OnRequest();
  void OnReadError(beast::error_code ec);
  void Reject(int status, std::string body, bool close, Headers extra = {});
  void Push(Out o);
  void DoWrite();
  void OnWritten(beast::error_code ec, Out done);
  void Linger();
  void Reset();
  void DrainRead(std::size_t total);
  std::shared_ptr<http::response<http::string_body>> MakeFull(int status, const Headers& h,
                                                               std::string body) const;

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Proxy::Impl* impl_;
  std::string client_host_;
  std::uint16_t client_port_ = 0;
  bool client_loopback_ = false;
  bool first_ = true;
  std::uint64_t current_ = 0;  // the request being answered (0: none)
  bool keep_alive_ = true;
  bool head_request_ = false;
  unsigned version_ = 11;
  bool raw_stream_ = false;  // HTTP/1.0 client: a streamed body ends with the connection
  std::deque<Out> out_;
  bool writing_ = false;
  std::atomic<bool> closed_{false};
  std::mutex buf_mu_;
  std::condition_variable buf_cv_;
  std::size_t buffered_ = 0;  // bytes of chunks posted and not yet written
};

}  // namespace detail
}  // namespace mpiray::serve

// One client connection of the proxy: Beast parses (size limits, timeouts), the session answers
// what needs no application (built-in endpoints, auth, unknown routes, malformed requests) and
// hands the rest to the router; responses and chunks come back from any thread and are written
// in order on the connection's strand. Pipelined requests are read one after the other: the
// next is parsed only once the previous response is written, so answers keep their order.
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <cctype>

#include "detail/proxy_impl.h"

namespace mpiray::serve::detail {
namespace {

std::string Lower(beast::string_view s) {
  std::string out(s.data(), s.size());
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool ConstantTimeEqual(beast::string_view a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i]);
  return diff == 0;
}

// "Authorization: Bearer <token>" (the scheme's case does not matter).
bool BearerOk(const http::request<http::string_body>& req, const std::string& token) {
  auto it = req.find(http::field::authorization);
  if (it == req.end()) return false;
  beast::string_view v = it->value();
  if (v.size() < 7 || !beast::iequals(v.substr(0, 7), "bearer ")) return false;
  v.remove_prefix(7);
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  return ConstantTimeEqual(v, token);
}

bool Skipped(const std::string& lower_name) {
  // the proxy frames the body itself
  return lower_name == "content-length" || lower_name == "transfer-encoding" ||
         lower_name == "connection" || lower_name == "keep-alive";
}

}  // namespace

Session::Session(tcp::socket socket, Proxy::Impl* impl) : stream_(std::move(socket)), impl_(impl) {
  beast::error_code ec;
  auto ep = stream_.socket().remote_endpoint(ec);
  if (!ec) {
    client_host_ = ep.address().to_string();
    client_port_ = ep.port();
    client_loopback_ = ep.address().is_loopback();
  }
  stream_.socket().set_option(tcp::no_delay(true), ec);
  ++impl_->n_open;
}

Session::~Session() {
  --impl_->n_open;
  std::lock_guard<std::mutex> lk(impl_->reg_mu);
  impl_->sessions.erase(this);
}

void Session::Start() {
  {
    std::lock_guard<std::mutex> lk(impl_->reg_mu);
    impl_->sessions[this] = weak_from_this();
  }
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadNext(); });
}

void Session::ReadNext() {
  if (closed_) return;
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(impl_->opt.max_header_bytes));
  parser_->body_limit(impl_->opt.max_body_bytes);
  if (!first_ && buffer_.size() == 0) {
    // An idle keep-alive connection: wait for the next request's first bytes.
    stream_.expires_after(impl_->opt.keep_alive_timeout);
    stream_.async_read_some(buffer_.prepare(8192), [self = shared_from_this()](
                                                       beast::error_code ec, std::size_t n) {
      if (ec) {
        self->Close();  // idle timeout or the client left
        return;
      }
      self->buffer_.commit(n);
      self->ReadHeader();
    });
    return;
  }
  first_ = false;
  ReadHeader();
}

void Session::ReadHeader() {
  stream_.expires_after(impl_->opt.header_timeout);
  http::async_read_header(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, std::size_t) {
                            self->OnHeader(ec);
                          });
}

void Session::OnHeader(beast::error_code ec) {
  if (ec) return OnReadError(ec);
  if (parser_->is_done()) return OnRequest();
  auto& req = parser_->get();
  auto expect = req.find(http::field::expect);
  if (expect != req.end() && beast::iequals(expect->value(), "100-continue")) {
    auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                   req.version());
    stream_.expires_after(impl_->opt.write_timeout);
    http::async_write(stream_, *cont,
                      [self = shared_from_this(), cont](beast::error_code e, std::size_t) {
                        if (e) return self->Close();
                        self->ReadBody();
                      });
    return;
  }
  ReadBody();
}

void Session::ReadBody() {
  stream_.expires_after(impl_->opt.body_timeout);
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, std::size_t) {
                     if (ec) return self->OnReadError(ec);
                     self->OnRequest();
                   });
}

void Session::OnReadError(beast::error_code ec) {
  if (ec == beast::error::timeout) {
    // Slow or stalled client (slowloris): the stream has already closed the socket.
    ++impl_->n_timeouts;
    return Close();
  }
  if (ec == http::error::body_limit) {
    return Reject(413,
                  "Request body too large: the limit is " +
                      std::to_string(impl_->opt.max_body_bytes) + " bytes\n",
                  true);
  }
  if (ec == http::error::header_limit) {
    return Reject(431,
                  "Request header fields too large: the limit is " +
                      std::to_string(impl_->opt.max_header_bytes) + " bytes\n",
                  true);
  }
  if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message) {
    return Reject(400, "Malformed HTTP request: " + ec.message() + "\n", true);
  }
  Close();  // the client left (eof, reset, partial message)
}

void Session::OnRequest() {
  ++impl_->n_requests;
  http::request<http::string_body> req = parser_->release();
  version_ = req.version();
  keep_alive_ = req.keep_alive();
  head_request_ = req.method() == http::verb::head;
  raw_stream_ = false;
  std::string target(req.target());
  if (target.empty() || target[0] != '/') {
    return Reject(400, "Malformed HTTP request: the target must be a path starting with '/', got '" +
                           target.substr(0, 200) + "'\n", true);
  }
  const auto q = target.find('?');
  std::string path = target.substr(0, q);
  std::string query = q == std::string::npos ? std::string() : target.substr(q + 1);
  const auto& opt = impl_->opt;

  if (path == "/-/healthz") return Reject(200, "success", false, {{"content-type", "text/plain"}});
  const bool admin = path.rfind("/-/serve/", 0) == 0;
  if (admin) {
    if (opt.admin_token.empty() || !client_loopback_) {
      return Reject(403, "Forbidden: the admin endpoint answers loopback clients of a proxy "
                         "started with an admin token only\n", false);
    }
    if (!BearerOk(req, opt.admin_token)) {
      return Reject(401, "Unauthorized: the admin endpoint needs 'Authorization: Bearer "
                         "<admin token>' (mpiray serve status/shutdown read it from the state "
                         "file)\n", false, {{"www-authenticate", "Bearer"}});
    }
  } else if (!opt.token.empty() && !BearerOk(req, opt.token)) {
    return Reject(401, "Unauthorized: this service requires 'Authorization: Bearer <token>'\n",
                  false, {{"www-authenticate", "Bearer"}});
  }
  if (path == "/-/routes") {
    std::string json;
    {
      std::lock_guard<std::mutex> lk(impl_->routes_mu);
      json = impl_->routes.ToJson();
    }
    return Reject(200, std::move(json), false, {{"content-type", "application/json"}});
  }
  Request r;
  if (!admin) {
    auto route = impl_->Match(path);
    if (!route) {
      return Reject(404, "Path '" + path.substr(0, 500) +
                             "' not found. Ping http://.../-/routes for available routes.",
                    false, {{"content-type", "text/plain; charset=utf-8"}});
    }
    r.app = std::move(route->app);
    r.route_prefix = std::move(route->prefix);
  }
  r.id = impl_->next_id++;
  r.admin = admin;
  r.method = std::string(req.method_string());
  r.path = std::move(path);
  r.query = std::move(query);
  r.headers.reserve(std::distance(req.begin(), req.end()));
  for (const auto& f : req) r.headers.emplace_back(Lower(f.name_string()), std::string(f.value()));
  r.body = std::move(req.body());
  r.client_host = client_host_;
  r.client_port = client_port_;
  r.http_minor = static_cast<int>(version_ % 10);
  current_ = r.id;
  impl_->Register(r.id, shared_from_this());
  impl_->Enqueue(std::move(r));
  // Nothing more is read until the router answers (pipelined requests wait in buffer_).
}

std::shared_ptr<http::response<http::string_body>> Session::MakeFull(int status, const Headers& h,
                                                                     std::string body) const {
  auto res = std::make_shared<http::response<http::string_body>>();
  res->version(version_);
  res->result(static_cast<unsigned>(status >= 100 && status <= 999 ? status : 500));
  for (const auto& [name, value] : h) {
    if (Skipped(Lower(name))) continue;
    res->insert(beast::string_view(name), beast::string_view(value));
  }
  res->keep_alive(keep_alive_);
  if (head_request_) {
    res->content_length(body.size());  // HEAD: the length, no body
  } else {
    res->body() = std::move(body);
    res->prepare_payload();
  }
  return res;
}

void Session::Reject(int status, std::string body, bool close, Headers extra) {
  if (status >= 400) ++impl_->n_rejected;
  if (close) keep_alive_ = false;
  if (extra.empty()) extra.emplace_back("content-type", "text/plain; charset=utf-8");
  Out o;
  o.kind = Out::kFull;
  o.full = MakeFull(status, extra, std::move(body));
  o.ends_response = true;
  o.close_after = !keep_alive_;
  Push(std::move(o));
}

void Session::PostFull(std::uint64_t id, int status, Headers headers, std::string body) {
  net::post(stream_.get_executor(), [self = shared_from_this(), id, status,
                                     headers = std::move(headers), body = std::move(body)]() mutable {
    if (self->closed_ || id != self->current_) return;
    self->current_ = 0;
    Out o;
    o.kind = Out::kFull;
    o.full = self->MakeFull(status, headers, std::move(body));
    o.ends_response = true;
    o.close_after = !self->keep_alive_;
    self->Push(std::move(o));
  });
}

void Session::PostStreamHead(std::uint64_t id, int status, Headers headers) {
  net::post(stream_.get_executor(), [self = shared_from_this(), id, status,
                                     headers = std::move(headers)]() {
    if (self->closed_ || id != self->current_) return;
    auto res = std::make_shared<http::response<http::empty_body>>();
    res->version(self->version_);
    res->result(static_cast<unsigned>(status >= 100 && status <= 999 ? status : 500));
    for (const auto& [name, value] : headers) {
      if (Skipped(Lower(name))) continue;
      res->insert(beast::string_view(name), beast::string_view(value));
    }
    if (self->version_ < 11) {
      self->raw_stream_ = true;  // HTTP/1.0 has no chunks: the body ends with the connection
      self->keep_alive_ = false;
      res->keep_alive(false);
    } else {
      res->keep_alive(self->keep_alive_);
      res->chunked(true);
    }
    Out o;
    o.kind = Out::kHead;
    o.head = res;
    o.head_sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
    self->Push(std::move(o));
  });
}

bool Session::PostChunk(std::uint64_t id, std::string data, std::size_t max_buffered) {
  {
    std::unique_lock<std::mutex> lk(buf_mu_);
    buf_cv_.wait(lk, [&] { return closed_.load() || buffered_ <= max_buffered; });
    if (closed_) return false;
    buffered_ += data.size();
  }
  net::post(stream_.get_executor(), [self = shared_from_this(), id,
                                     data = std::make_shared<std::string>(std::move(data))]() {
    if (self->closed_ || id != self->current_ || data->empty() || self->head_request_) {
      std::lock_guard<std::mutex> lk(self->buf_mu_);
      self->buffered_ -= data->size();
      self->buf_cv_.notify_all();
      return;
    }
    Out o;
    o.kind = self->raw_stream_ ? Out::kRaw : Out::kChunk;
    o.data = data;
    self->Push(std::move(o));
  });
  return true;
}

void Session::PostLast(std::uint64_t id) {
  net::post(stream_.get_executor(), [self = shared_from_this(), id]() {
    if (self->closed_ || id != self->current_) return;
    self->current_ = 0;
    Out o;
    o.kind = self->raw_stream_ || self->head_request_ ? Out::kRaw : Out::kLast;
    if (o.kind == Out::kRaw) o.data = std::make_shared<std::string>();
    o.ends_response = true;
    o.close_after = !self->keep_alive_;
    self->Push(std::move(o));
  });
}

void Session::PostAbort(std::uint64_t id) {
  net::post(stream_.get_executor(), [self = shared_from_this(), id]() {
    if (self->closed_ || id != self->current_) return;
    Out o;
    o.kind = Out::kAbort;
    self->Push(std::move(o));
  });
}

void Session::Reset() {
  // SO_LINGER 0: close() sends RST, so the client's read fails instead of seeing an end.
  beast::error_code ec;
  stream_.socket().set_option(net::socket_base::linger(true, 0), ec);
  const bool was = closed_.exchange(true);
  if (current_) impl_->Unregister(current_);
  current_ = 0;
  {
    std::lock_guard<std::mutex> lk(buf_mu_);
    buf_cv_.notify_all();
  }
  if (!was) stream_.socket().close(ec);
}

void Session::Push(Out o) {
  out_.push_back(std::move(o));
  if (!writing_) DoWrite();
}

void Session::DoWrite() {
  if (out_.empty() || closed_) {
    writing_ = false;
    return;
  }
  writing_ = true;
  Out o = out_.front();
  if (o.kind == Out::kAbort) {
    out_.clear();
    writing_ = false;
    return Reset();
  }
  stream_.expires_after(impl_->opt.write_timeout);
  auto done = [self = shared_from_this(), o](beast::error_code ec, std::size_t) {
    self->OnWritten(ec, o);
  };
  switch (o.kind) {
    case Out::kFull: http::async_write(stream_, *o.full, std::move(done)); break;
    case Out::kHead: http::async_write_header(stream_, *o.head_sr, std::move(done)); break;
    case Out::kChunk:
      net::async_write(stream_, http::make_chunk(net::buffer(*o.data)), std::move(done));
      break;
    case Out::kLast: net::async_write(stream_, http::make_chunk_last(), std::move(done)); break;
    case Out::kRaw: net::async_write(stream_, net::buffer(*o.data), std::move(done)); break;
    case Out::kAbort: break;  // handled above
  }
}

void Session::OnWritten(beast::error_code ec, Out done) {
  out_.pop_front();
  if (done.data && (done.kind == Out::kChunk || done.kind == Out::kRaw)) {
    std::lock_guard<std::mutex> lk(buf_mu_);
    buffered_ -= done.data->size();
    buf_cv_.notify_all();
  }
  if (ec) return Close();
  if (done.ends_response) {
    writing_ = false;
    if (done.close_after) return Linger();
    stream_.expires_never();
    return ReadNext();
  }
  DoWrite();
}

void Session::Linger() {
  // Closing with unread request bytes (the rest of a body over the limit) makes the kernel
  // send a reset that can destroy the response before the client reads it: stop sending,
  // read and drop what still comes for a moment, then close.
  closed_ = true;
  if (current_) impl_->Unregister(current_);
  current_ = 0;
  {
    std::lock_guard<std::mutex> lk(buf_mu_);
    buf_cv_.notify_all();
  }
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream_.expires_after(std::chrono::seconds(2));
  DrainRead(0);
}

void Session::DrainRead(std::size_t total) {
  auto scratch = std::make_shared<std::array<char, 16384>>();
  stream_.async_read_some(net::buffer(*scratch), [self = shared_from_this(), scratch, total](
                                                     beast::error_code ec, std::size_t n) {
    if (ec || total + n > (8u << 20)) {
      beast::error_code ignored;
      self->stream_.socket().close(ignored);
      return;
    }
    self->DrainRead(total + n);
  });
}

void Session::Close() {
  const bool was = closed_.exchange(true);
  if (current_) impl_->Unregister(current_);
  current_ = 0;
  {
    std::lock_guard<std::mutex> lk(buf_mu_);
    buf_cv_.notify_all();
  }
  if (was && !stream_.socket().is_open()) return;
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream_.socket().close(ec);
}

void Session::PostClose() {
  net::post(stream_.get_executor(), [self = shared_from_this()] { self->Close(); });
}

}  // namespace mpiray::serve::detail

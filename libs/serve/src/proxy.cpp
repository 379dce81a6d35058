// Proxy: the listener, the I/O threads, the queue of routed requests and the registry that
// finds the connection of a request when its answer comes back from the router.
#include "mpiray/serve/proxy.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/post.hpp>

#include "detail/proxy_impl.h"

namespace mpiray::serve {

using detail::net::ip::make_address;
using detail::tcp;

Proxy::Impl::Impl(const ProxyOptions& o)
    : opt(o), ioc(std::max(1, o.threads)), work(detail::net::make_work_guard(ioc)),
      acceptor(detail::net::make_strand(ioc)) {}

void Proxy::Impl::Accept() {
  // Connections are accepted with accept4(SOCK_CLOEXEC): a process the runtime starts later
  // (a replacement worker, a user's subprocess) must not inherit a client's socket, or closing
  // (or resetting) the connection here would not reach the client while that process lives.
  acceptor.async_wait(tcp::acceptor::wait_read, [this](detail::beast::error_code ec) {
    if (ec) {
      if (ec == detail::net::error::operation_aborted || stopped) return;
    } else {
      while (!stopped) {
        const int fd = ::accept4(acceptor.native_handle(), nullptr, nullptr,
                                 SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;  // EAGAIN: none left (other errors: the next wait reports them)
        if (n_open.load() >= opt.max_connections) {
          ::close(fd);  // over the limit: refused at once
          continue;
        }
        tcp::socket socket(detail::net::make_strand(ioc));
        detail::beast::error_code aec;
        socket.assign(acceptor.local_endpoint().protocol(), fd, aec);
        if (aec) {
          ::close(fd);
          continue;
        }
        ++n_connections;
        std::make_shared<detail::Session>(std::move(socket), this)->Start();
      }
    }
    if (!stopped) Accept();
  });
}

void Proxy::Impl::Enqueue(Request r) {
  {
    std::lock_guard<std::mutex> lk(q_mu);
    queue.push_back(std::move(r));
  }
  ++n_routed;
  q_cv.notify_one();
}

void Proxy::Impl::Register(std::uint64_t id, const std::shared_ptr<detail::Session>& s) {
  std::lock_guard<std::mutex> lk(reg_mu);
  pending[id] = s;
}

void Proxy::Impl::Unregister(std::uint64_t id) {
  std::shared_ptr<detail::Session> last;  // released after the lock: ~Session takes reg_mu
  std::lock_guard<std::mutex> lk(reg_mu);
  auto it = pending.find(id);
  if (it == pending.end()) return;
  last = std::move(it->second);
  pending.erase(it);
}

std::shared_ptr<detail::Session> Proxy::Impl::Find(std::uint64_t id) const {
  std::lock_guard<std::mutex> lk(reg_mu);
  auto it = pending.find(id);
  if (it == pending.end()) return nullptr;
  return it->second->closed() ? nullptr : it->second;
}

std::optional<Route> Proxy::Impl::Match(std::string_view path) const {
  std::lock_guard<std::mutex> lk(routes_mu);
  return routes.Match(path);
}

Proxy::Proxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Proxy::~Proxy() { Stop(); }

Result<std::unique_ptr<Proxy>> Proxy::Start(const ProxyOptions& options) {
  if (options.threads < 1) return InvalidArgument("serve proxy: threads must be >= 1");
  if (options.max_body_bytes == 0) return InvalidArgument("serve proxy: max_body_bytes must be > 0");
  detail::beast::error_code ec;
  auto addr = make_address(options.host, ec);
  if (ec) {
    return InvalidArgument("serve proxy: '" + options.host + "' is not an IP address to bind (" +
                           ec.message() + ")");
  }
  auto impl = std::make_unique<Impl>(options);
  tcp::endpoint ep(addr, options.port);
  const std::string where = options.host + ":" + std::to_string(options.port);
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(detail::net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (ec) {
    return IoError("serve proxy: cannot listen on " + where + ": " + ec.message() +
                   (ec == detail::net::error::address_in_use
                        ? " (another process uses the port; choose another with "
                          "http_options={'port': ...})"
                        : ""));
  }
  if (!ec) ::fcntl(impl->acceptor.native_handle(), F_SETFD, FD_CLOEXEC);  // see Accept()
  impl->acceptor.listen(detail::net::socket_base::max_listen_connections, ec);
  if (!ec) impl->acceptor.non_blocking(true, ec);
  if (ec) return IoError("serve proxy: cannot listen on " + where + ": " + ec.message());
  impl->bound_port = impl->acceptor.local_endpoint().port();
  impl->Accept();
  Impl* raw = impl.get();
  for (int i = 0; i < options.threads; ++i) {
    impl->threads.emplace_back([raw] {
      {
        std::lock_guard<std::mutex> lk(raw->run_mu);
        ++raw->running;
      }
      raw->ioc.run();
      std::lock_guard<std::mutex> lk(raw->run_mu);
      --raw->running;
      raw->run_cv.notify_all();
    });
  }
  return std::unique_ptr<Proxy>(new Proxy(std::move(impl)));
}

std::uint16_t Proxy::port() const { return impl_->bound_port; }

void Proxy::SetRoutes(std::vector<Route> routes) {
  RouteTable t(std::move(routes));
  std::lock_guard<std::mutex> lk(impl_->routes_mu);
  impl_->routes = std::move(t);
}

RouteTable Proxy::routes() const {
  std::lock_guard<std::mutex> lk(impl_->routes_mu);
  return impl_->routes;
}

std::optional<Request> Proxy::Next(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(impl_->q_mu);
  ++impl_->waiting;
  impl_->q_cv.wait_for(lk, timeout, [&] { return impl_->stopped || !impl_->queue.empty(); });
  --impl_->waiting;
  if (impl_->stopped || impl_->queue.empty()) return std::nullopt;
  Request r = std::move(impl_->queue.front());
  impl_->queue.pop_front();
  return r;
}

std::vector<Request> Proxy::NextBatch(std::size_t max, std::chrono::milliseconds timeout) {
  std::vector<Request> out;
  std::unique_lock<std::mutex> lk(impl_->q_mu);
  if (timeout.count() > 0) {  // a poll (timeout 0) does not count as a waiting thread
    ++impl_->waiting;
    impl_->q_cv.wait_for(lk, timeout, [&] { return impl_->stopped || !impl_->queue.empty(); });
    --impl_->waiting;
  }
  if (impl_->stopped) return out;
  const std::size_t n = std::min(std::max<std::size_t>(max, 1), impl_->queue.size());
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(std::move(impl_->queue.front()));
    impl_->queue.pop_front();
  }
  return out;
}

int Proxy::waiting() const {
  std::lock_guard<std::mutex> lk(impl_->q_mu);
  return impl_->waiting;
}

bool Proxy::Respond(std::uint64_t id, int status, Headers headers, std::string body) {
  auto s = impl_->Find(id);
  if (!s) return false;
  impl_->Unregister(id);
  s->PostFull(id, status, std::move(headers), std::move(body));
  return true;
}

bool Proxy::StartStream(std::uint64_t id, int status, Headers headers) {
  auto s = impl_->Find(id);
  if (!s) return false;
  s->PostStreamHead(id, status, std::move(headers));
  return true;
}

bool Proxy::SendChunk(std::uint64_t id, std::string data, std::size_t max_buffered) {
  auto s = impl_->Find(id);
  if (!s) return false;
  return s->PostChunk(id, std::move(data), max_buffered);
}

bool Proxy::EndStream(std::uint64_t id) {
  auto s = impl_->Find(id);
  if (!s) return false;
  impl_->Unregister(id);
  s->PostLast(id);
  return true;
}

bool Proxy::AbortStream(std::uint64_t id) {
  auto s = impl_->Find(id);
  if (!s) return false;
  impl_->Unregister(id);
  s->PostAbort(id);
  return true;
}

bool Proxy::IsOpen(std::uint64_t id) const { return impl_->Find(id) != nullptr; }

ProxyStats Proxy::stats() const {
  ProxyStats st;
  st.connections = impl_->n_connections;
  st.open_connections = impl_->n_open;
  st.requests = impl_->n_requests;
  st.routed = impl_->n_routed;
  st.rejected = impl_->n_rejected;
  st.timeouts = impl_->n_timeouts;
  std::lock_guard<std::mutex> lk(impl_->q_mu);
  st.queued = impl_->queue.size();
  return st;
}

void Proxy::Stop() {
  Impl* im = impl_.get();
  if (im->stopped.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lk(im->q_mu);
    im->queue.clear();
  }
  im->q_cv.notify_all();
  // Close the listener and every connection on the I/O threads, then let them return.
  detail::net::post(im->ioc, [im] {
    detail::beast::error_code ec;
    im->acceptor.close(ec);
    std::vector<std::shared_ptr<detail::Session>> live;
    {
      std::lock_guard<std::mutex> lk(im->reg_mu);
      for (auto& [_, w] : im->sessions)
        if (auto s = w.lock()) live.push_back(std::move(s));
    }
    for (auto& s : live) s->PostClose();
  });
  im->work.reset();
  {
    // Connections close on their strands; the threads return when nothing is left to do.
    std::unique_lock<std::mutex> lk(im->run_mu);
    im->run_cv.wait_for(lk, std::chrono::seconds(2), [im] { return im->running == 0; });
  }
  im->ioc.stop();
  for (auto& t : im->threads) t.join();
  std::unordered_map<std::uint64_t, std::shared_ptr<detail::Session>> held;
  {
    std::lock_guard<std::mutex> lk(im->reg_mu);
    held.swap(im->pending);
  }
  held.clear();  // (a Session's destructor takes reg_mu)
  im->threads.clear();
}

}  // namespace mpiray::serve

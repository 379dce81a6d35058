#include "metrics.h"

#include <httplib.h>

namespace mpiray {

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& address,
                                                            std::function<std::string()> render) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) return InvalidArgument("metrics address must be host:port, got '" + address + "'");
  std::string host = address.substr(0, colon);
  int port = std::atoi(address.c_str() + colon + 1);
  std::unique_ptr<MetricsServer> m(new MetricsServer());
  m->server_ = std::make_unique<httplib::Server>();
  m->server_->new_task_queue = [] { return new httplib::ThreadPool(1); };
  m->server_->Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4");
  });
  int bound = port == 0 ? m->server_->bind_to_any_port(host) : (m->server_->bind_to_port(host, port) ? port : -1);
  if (bound <= 0) return IoError("cannot listen for metrics on " + address);
  m->address_ = host + ":" + std::to_string(bound);
  httplib::Server* s = m->server_.get();
  m->thread_ = std::thread([s] { s->listen_after_bind(); });
  return m;
}

MetricsServer::~MetricsServer() { Stop(); }

void MetricsServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace mpiray

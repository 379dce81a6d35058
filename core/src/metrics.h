// A Prometheus text endpoint on the head (GET /metrics), on loopback unless configured
// otherwise (MPIRAY_METRICS_ADDR=host:port; "off" disables it).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "mpiray/core/status.h"

namespace httplib {
class Server;
}

namespace mpiray {

class MetricsServer {
 public:
  /// @brief Serve `render()` at http://<address>/metrics; address "host:port" (port 0: any).
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& address,
                                                      std::function<std::string()> render);
  ~MetricsServer();
  const std::string& address() const { return address_; }
  void Stop();

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string address_;
};

}  // namespace mpiray

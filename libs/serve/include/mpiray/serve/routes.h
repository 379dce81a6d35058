#pragma once
/// @file routes.h
/// @brief Route table of the Serve HTTP proxy: longest `route_prefix` wins.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mpiray::serve {

/// @brief One application reachable over HTTP under a path prefix.
struct Route {
  std::string prefix;  ///< starts with '/', no trailing '/' except the root "/"
  std::string app;     ///< the Serve application's name
};

/// @brief The route table: a request path goes to the application with the longest prefix
/// that matches it on a path-segment boundary ("/api" matches "/api" and "/api/x", not "/apix").
class RouteTable {
 public:
  RouteTable() = default;
  /// @brief A table of the given routes (a trailing '/' of a prefix other than "/" is dropped).
  explicit RouteTable(std::vector<Route> routes);

  /// @brief The route for a request target (the query string, if any, is ignored).
  std::optional<Route> Match(std::string_view target) const;

  /// @brief The routes, longest prefix first.
  const std::vector<Route>& routes() const { return routes_; }

  /// @brief The table as a JSON object {"prefix": "app", ...} (Ray's `/-/routes`).
  std::string ToJson() const;

 private:
  std::vector<Route> routes_;
};

}  // namespace mpiray::serve

// The route table: longest matching route_prefix on a path-segment boundary.
#include "mpiray/serve/routes.h"

#include <algorithm>

namespace mpiray::serve {
namespace {

std::string Normalize(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

void JsonString(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          static const char* kHex = "0123456789abcdef";
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

}  // namespace

RouteTable::RouteTable(std::vector<Route> routes) : routes_(std::move(routes)) {
  for (auto& r : routes_) r.prefix = Normalize(r.prefix);
  std::stable_sort(routes_.begin(), routes_.end(), [](const Route& a, const Route& b) {
    return a.prefix.size() > b.prefix.size();
  });
}

std::optional<Route> RouteTable::Match(std::string_view target) const {
  std::string_view path = target.substr(0, target.find('?'));
  for (const auto& r : routes_) {
    if (r.prefix == "/") return r;
    if (path.size() < r.prefix.size() || path.compare(0, r.prefix.size(), r.prefix) != 0) continue;
    if (path.size() == r.prefix.size() || path[r.prefix.size()] == '/') return r;
  }
  return std::nullopt;
}

std::string RouteTable::ToJson() const {
  std::string out = "{";
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    if (i) out += ',';
    JsonString(out, routes_[i].prefix);
    out += ':';
    JsonString(out, routes_[i].app);
  }
  out += '}';
  return out;
}

}  // namespace mpiray::serve

#include "resources.h"

#include <cmath>
#include <cstdio>

namespace mpiray {

Result<int64_t> ToFixed(const std::string& name, double amount) {
  if (!std::isfinite(amount) || amount < 0) {
    char buf[64];
    snprintf(buf, sizeof buf, "%g", amount);
    return InvalidArgument("resource '" + name + "' must be a non-negative number, got " + buf);
  }
  return static_cast<int64_t>(std::llround(amount * proto::kResourceUnit));
}

static std::string Amount(int64_t v) {
  char buf[64];
  snprintf(buf, sizeof buf, "%g", static_cast<double>(v) / proto::kResourceUnit);
  return buf;
}

std::string DescribeRequest(const ResourceNames& names, const ResourceRequest& r) {
  std::string s = "{";
  for (size_t i = 0; i < r.size(); ++i) {
    if (i) s += ", ";
    s += names.Name(r[i].first) + ": " + Amount(r[i].second);
  }
  return s + "}";
}

std::string DescribeVector(const ResourceNames& names, const ResourceVector& v) {
  std::string s = "{";
  bool first = true;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == 0) continue;
    if (!first) s += ", ";
    first = false;
    s += names.Name(i) + ": " + Amount(v[i]);
  }
  return s + "}";
}

}  // namespace mpiray

// Resource vectors: names interned to small indices, amounts in fixed point (1/10000 units).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mpiray/core/status.h"
#include "protocol.h"

namespace mpiray {

/// @brief Interns resource names ("CPU", "GPU", "memory", custom) to dense indices.
class ResourceNames {
 public:
  ResourceNames() {
    Intern("CPU");
    Intern("GPU");
    Intern("memory");
  }
  size_t Intern(const std::string& name) {
    auto it = index_.find(name);
    if (it != index_.end()) return it->second;
    index_.emplace(name, names_.size());
    names_.push_back(name);
    return names_.size() - 1;
  }
  /// @brief Index of `name`, or -1 when never seen.
  int Find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? -1 : static_cast<int>(it->second);
  }
  const std::string& Name(size_t i) const { return names_[i]; }
  size_t size() const { return names_.size(); }

 private:
  std::map<std::string, size_t> index_;
  std::vector<std::string> names_;
};

/// @brief A sparse request: (index, amount) pairs sorted by index.
using ResourceRequest = std::vector<std::pair<uint32_t, int64_t>>;
/// @brief A dense vector indexed by ResourceNames.
using ResourceVector = std::vector<int64_t>;

/// @brief Fixed point from a user amount; rejects negative and non-finite values.
Result<int64_t> ToFixed(const std::string& name, double amount);
/// @brief "CPU: 2, GPU: 0.5" for messages.
std::string DescribeRequest(const ResourceNames& names, const ResourceRequest& r);
std::string DescribeVector(const ResourceNames& names, const ResourceVector& v);

}  // namespace mpiray

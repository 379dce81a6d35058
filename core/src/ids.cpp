// Behind mpiray/core/ids.h: id formatting and parsing.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "mpiray/core/ids.h"

namespace mpiray {

std::string TaskId::ToString() const {
  char buf[48];
  snprintf(buf, sizeof buf, "%u.%llu", submitter(),
           static_cast<unsigned long long>(value & ((1ull << 40) - 1)));
  return buf;
}

std::string ObjectId::Hex() const {
  char buf[40];
  snprintf(buf, sizeof buf, "%016llx%08x%08x", static_cast<unsigned long long>(task), index, kind);
  return buf;
}

bool ObjectId::FromHex(const std::string& hex, ObjectId* out) {
  if (hex.size() != 32) return false;
  for (char c : hex) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  out->task = std::strtoull(hex.substr(0, 16).c_str(), nullptr, 16);
  out->index = static_cast<uint32_t>(std::strtoul(hex.substr(16, 8).c_str(), nullptr, 16));
  out->kind = static_cast<uint32_t>(std::strtoul(hex.substr(24, 8).c_str(), nullptr, 16));
  return true;
}

}  // namespace mpiray

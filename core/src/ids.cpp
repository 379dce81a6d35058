// Behind mpiray/core/ids.h: id formatting and parsing.
#include <cstdio>
#include <cstring>
#include <string>

#include "mpiray/core/ids.h"

namespace mpiray {

std::string TaskId::ToString() const {
  char buf[48];
  snprintf(buf, sizeof buf, "%u.%llu", submitter(),
           static_cast<unsigned long long>(value & ((1ull << 40) - 1)));
  return buf;
}

// The id's 16 bytes in memory order (task, index, kind), as hex: what Python's
// ObjectRef.binary().hex() gives (binding.h's IdBytes copies the same fields the same way), as
// Ray's ObjectRef.hex() does.
std::string ObjectId::Hex() const {
  unsigned char raw[16];
  std::memcpy(raw, &task, 8);
  std::memcpy(raw + 8, &index, 4);
  std::memcpy(raw + 12, &kind, 4);
  static const char kDigits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[2 * i] = kDigits[raw[i] >> 4];
    out[2 * i + 1] = kDigits[raw[i] & 15];
  }
  return out;
}

namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool ObjectId::FromHex(const std::string& hex, ObjectId* out) {
  if (hex.size() != 32) return false;
  unsigned char raw[16];
  for (int i = 0; i < 16; ++i) {
    int hi = HexDigit(hex[2 * i]), lo = HexDigit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    raw[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  std::memcpy(&out->task, raw, 8);
  std::memcpy(&out->index, raw + 8, 4);
  std::memcpy(&out->kind, raw + 12, 4);
  return true;
}

}  // namespace mpiray

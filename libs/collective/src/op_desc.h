// What a member says about the operation it is in, so that members can check that they all
// called the same operation with the same shape before any data moves (internal).
#pragma once

#include <cstdint>
#include <string>

#include "mpiray/collective/group.h"

namespace mpiray::collective::detail {

enum class OpKind : uint8_t {
  kAllReduce = 1,
  kReduce = 2,
  kBroadcast = 3,
  kAllGather = 4,
  kReduceScatter = 5,
  kBarrier = 6,
  kSend = 7,
  kRecv = 8,
};

/// @brief One collective call as a member made it (plain data: lives in shared memory and in
/// messages).
struct OpDesc {
  uint64_t op_seq = 0;  // the group's operation counter (every member counts the same)
  uint64_t count = 0;   // elements per member buffer (per block for all-gather/reduce-scatter)
  int32_t root = -1;    // group rank for reduce/broadcast, -1 otherwise
  uint8_t kind = 0;
  uint8_t dtype = 0;
  uint8_t reduce_op = 0;
  uint8_t phase = 0;  // which step of a composite operation (hierarchical algorithms)
};
static_assert(sizeof(OpDesc) == 24);

const char* OpKindName(OpKind kind);
/// @brief "allreduce(count=10, dtype=float32, op=sum)".
std::string Describe(const OpDesc& d);
/// @brief OK when `a` (this member's, rank `rank_a`) and `b` (member `rank_b`'s) are the same
/// operation; else InvalidArgument naming both.
Status CompareDesc(const std::string& group, const OpDesc& a, int rank_a, const OpDesc& b, int rank_b);

}  // namespace mpiray::collective::detail

#include "op_desc.h"

#include "communicator.h"

namespace mpiray::collective::detail {

const char* OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kAllReduce: return "allreduce";
    case OpKind::kReduce: return "reduce";
    case OpKind::kBroadcast: return "broadcast";
    case OpKind::kAllGather: return "allgather";
    case OpKind::kReduceScatter: return "reducescatter";
    case OpKind::kBarrier: return "barrier";
    case OpKind::kSend: return "send";
    case OpKind::kRecv: return "recv";
  }
  return "unknown operation";
}

std::string Describe(const OpDesc& d) {
  auto kind = static_cast<OpKind>(d.kind);
  std::string s = OpKindName(kind);
  if (kind == OpKind::kBarrier) return s;
  s += "(count=" + std::to_string(d.count) + ", dtype=" + DTypeName(static_cast<DType>(d.dtype));
  if (kind == OpKind::kAllReduce || kind == OpKind::kReduce || kind == OpKind::kReduceScatter) {
    s += std::string(", op=") + ReduceOpName(static_cast<ReduceOp>(d.reduce_op));
  }
  if (d.root >= 0) s += ", root=" + std::to_string(d.root);
  return s + ")";
}

Status CompareDesc(const std::string& group, const OpDesc& a, int rank_a, const OpDesc& b, int rank_b) {
  if (a.kind == b.kind && a.count == b.count && a.root == b.root && a.dtype == b.dtype &&
      a.reduce_op == b.reduce_op && a.op_seq == b.op_seq && a.phase == b.phase) {
    return Status::OK();
  }
  std::string why = "collective group '" + group + "': mismatched operation #" + std::to_string(a.op_seq) +
                    ": rank " + std::to_string(rank_a) + " called " + Describe(a) + " but rank " +
                    std::to_string(rank_b) + " called " + Describe(b);
  if (a.op_seq != b.op_seq) why += " as its operation #" + std::to_string(b.op_seq);
  why += ". Every member must call the same operations in the same order with the same shape and "
         "dtype; the group is unusable now (destroy it and create it again).";
  return Status(StatusCode::kInvalidArgument, why);
}

}  // namespace mpiray::collective::detail

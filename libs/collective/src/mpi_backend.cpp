// The "mpi" backend: the launcher's MPI (MPI_Allreduce and friends on a communicator of the
// group's processes). Only for launches that keep MPI alive after start-up
// (InitOptions::keep_mpi, mpiray.init(keep_mpi=True)); such a launch cannot survive a worker's
// death (mpirun and srun end the job), which is why mpiray leaves MPI by default.
//
// Members' world ranks go through the rendezvous; MPI_Comm_create_group makes the communicator
// (collective over the members only). Each operation first checks, with one small
// MPI_Allreduce, that every member called the same operation with the same shape.
// float16/bfloat16 travel as 2-byte types reduced by the kernels (user-defined MPI ops).
#include <mpi.h>

#include <cstring>
#include <msgpack.hpp>
#include <set>

#include "communicator.h"
#include "health.h"
#include "op_desc.h"

namespace mpiray::collective::detail {

namespace {

Status CheckMpi(std::string* detail_out = nullptr) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (!init || fin) {
    return Status(StatusCode::kUnavailable,
                  "the mpi backend needs MPI alive in this process, but it is " +
                      std::string(fin ? "finalized" : "not initialized") +
                      ": start the job under mpirun or srun with MPI kept after start-up "
                      "(mpiray.init(keep_mpi=True), InitOptions::keep_mpi); mpiray leaves MPI by default "
                      "because a live MPI world cannot survive a worker's death. The 'ucx' backend needs none of this.");
  }
  int level = 0;
  MPI_Query_thread(&level);
  if (level < MPI_THREAD_MULTIPLE) {
    return Status(StatusCode::kUnavailable,
                  "the mpi backend needs MPI_THREAD_MULTIPLE (actors run on their own threads); this MPI provides level " +
                      std::to_string(level));
  }
  (void)detail_out;
  return Status::OK();
}

Status MpiError(int code, const std::string& group, const char* what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, msg, &len);
  return Status(StatusCode::kMpiError, "collective group '" + group + "' (mpi): " + what + ": " + std::string(msg, len));
}

template <ReduceOp O, DType D>
void HalfOp(void* in, void* inout, int* len, MPI_Datatype*) {
  kernels::ReduceInto(O, D, inout, in, static_cast<size_t>(*len));
}

struct HalfTypes {
  MPI_Datatype type = MPI_DATATYPE_NULL;  // 2 bytes, contiguous
  MPI_Op ops[2][4] = {};                 // [float16, bfloat16][sum, product, min, max]
};

const HalfTypes& Halves() {
  static HalfTypes h = [] {
    HalfTypes t;
    MPI_Type_contiguous(2, MPI_BYTE, &t.type);
    MPI_Type_commit(&t.type);
    MPI_Op_create(&HalfOp<ReduceOp::kSum, DType::kFloat16>, 1, &t.ops[0][0]);
    MPI_Op_create(&HalfOp<ReduceOp::kProduct, DType::kFloat16>, 1, &t.ops[0][1]);
    MPI_Op_create(&HalfOp<ReduceOp::kMin, DType::kFloat16>, 1, &t.ops[0][2]);
    MPI_Op_create(&HalfOp<ReduceOp::kMax, DType::kFloat16>, 1, &t.ops[0][3]);
    MPI_Op_create(&HalfOp<ReduceOp::kSum, DType::kBFloat16>, 1, &t.ops[1][0]);
    MPI_Op_create(&HalfOp<ReduceOp::kProduct, DType::kBFloat16>, 1, &t.ops[1][1]);
    MPI_Op_create(&HalfOp<ReduceOp::kMin, DType::kBFloat16>, 1, &t.ops[1][2]);
    MPI_Op_create(&HalfOp<ReduceOp::kMax, DType::kBFloat16>, 1, &t.ops[1][3]);
    return t;
  }();
  return h;
}

MPI_Datatype MpiType(DType d) {
  switch (d) {
    case DType::kFloat16:
    case DType::kBFloat16: return Halves().type;
    case DType::kFloat32: return MPI_FLOAT;
    case DType::kFloat64: return MPI_DOUBLE;
    case DType::kInt32: return MPI_INT32_T;
    case DType::kInt64: return MPI_INT64_T;
    case DType::kUInt8: return MPI_UINT8_T;
  }
  return MPI_BYTE;
}

MPI_Op MpiOp(ReduceOp op, DType d) {
  if (d == DType::kFloat16 || d == DType::kBFloat16) {
    return Halves().ops[d == DType::kFloat16 ? 0 : 1][static_cast<int>(op)];
  }
  switch (op) {
    case ReduceOp::kSum: return MPI_SUM;
    case ReduceOp::kProduct: return MPI_PROD;
    case ReduceOp::kMin: return MPI_MIN;
    case ReduceOp::kMax: return MPI_MAX;
  }
  return MPI_SUM;
}

struct MpiInfo {
  int rank = 0;
  int world_rank = 0;
  int pid = 0;
  MSGPACK_DEFINE(rank, world_rank, pid)
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(const GroupOptions& o, MPI_Comm comm) : opts_(o), comm_(comm) {}
  ~MpiCommunicator() override {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  Status AllReduce(void* data, size_t count, DType dtype, ReduceOp op) override {
    MPIRAY_RETURN_IF_ERROR(Agree(OpKind::kAllReduce, count, dtype, op, -1));
    return Check(MPI_Allreduce(MPI_IN_PLACE, data, Count(count), MpiType(dtype), MpiOp(op, dtype), comm_), "MPI_Allreduce");
  }
  Status Reduce(void* data, size_t count, DType dtype, int root, ReduceOp op) override {
    MPIRAY_RETURN_IF_ERROR(Agree(OpKind::kReduce, count, dtype, op, root));
    const void* send = opts_.rank == root ? MPI_IN_PLACE : data;
    return Check(MPI_Reduce(send, opts_.rank == root ? data : nullptr, Count(count), MpiType(dtype), MpiOp(op, dtype),
                            root, comm_),
                 "MPI_Reduce");
  }
  Status Broadcast(void* data, size_t count, DType dtype, int root) override {
    MPIRAY_RETURN_IF_ERROR(Agree(OpKind::kBroadcast, count, dtype, ReduceOp::kSum, root));
    return Check(MPI_Bcast(data, Count(count), MpiType(dtype), root, comm_), "MPI_Bcast");
  }
  Status AllGather(const void* input, void* output, size_t count, DType dtype) override {
    MPIRAY_RETURN_IF_ERROR(Agree(OpKind::kAllGather, count, dtype, ReduceOp::kSum, -1));
    return Check(MPI_Allgather(input, Count(count), MpiType(dtype), output, Count(count), MpiType(dtype), comm_),
                 "MPI_Allgather");
  }
  Status ReduceScatter(const void* input, void* output, size_t count, DType dtype, ReduceOp op) override {
    MPIRAY_RETURN_IF_ERROR(Agree(OpKind::kReduceScatter, count, dtype, op, -1));
    return Check(MPI_Reduce_scatter_block(input, output, Count(count), MpiType(dtype), MpiOp(op, dtype), comm_),
                 "MPI_Reduce_scatter_block");
  }
  Status Barrier() override {
    MPIRAY_RETURN_IF_ERROR(Agree(OpKind::kBarrier, 0, DType::kUInt8, ReduceOp::kSum, -1));
    return Check(MPI_Barrier(comm_), "MPI_Barrier");
  }
  Status Send(const void* data, size_t count, DType dtype, int dst) override {
    uint64_t header[2] = {count, static_cast<uint64_t>(dtype)};
    MPIRAY_RETURN_IF_ERROR(Check(MPI_Send(header, 2, MPI_UINT64_T, dst, 1, comm_), "MPI_Send"));
    return Check(MPI_Send(data, Count(count), MpiType(dtype), dst, 2, comm_), "MPI_Send");
  }
  Status Recv(void* data, size_t count, DType dtype, int src) override {
    uint64_t header[2] = {0, 0};
    MPIRAY_RETURN_IF_ERROR(Check(MPI_Recv(header, 2, MPI_UINT64_T, src, 1, comm_, MPI_STATUS_IGNORE), "MPI_Recv"));
    if (header[0] != count || header[1] != static_cast<uint64_t>(dtype)) {
      // Take the message anyway (it is on its way), then fail: the pair's stream stays in step.
      std::vector<uint8_t> sink(header[0] * kernels::DTypeSize(static_cast<DType>(header[1])));
      MPI_Recv(sink.data(), Count(header[0]), MpiType(static_cast<DType>(header[1])), src, 2, comm_, MPI_STATUS_IGNORE);
      return Status(StatusCode::kInvalidArgument,
                    "collective group '" + opts_.name + "': rank " + std::to_string(opts_.rank) + " receives " +
                        std::to_string(count) + " " + DTypeName(dtype) + " elements from rank " + std::to_string(src) +
                        ", which sent " + std::to_string(header[0]) + " " + DTypeName(static_cast<DType>(header[1])) +
                        " elements");
    }
    return Check(MPI_Recv(data, Count(count), MpiType(dtype), src, 2, comm_, MPI_STATUS_IGNORE), "MPI_Recv");
  }

 private:
  int Count(size_t count) const { return static_cast<int>(count); }  // checked in Agree

  Status Check(int code, const char* what) {
    return code == MPI_SUCCESS ? Status::OK() : MpiError(code, opts_.name, what);
  }

  // Every member called the same operation with the same shape: max over (x, -x) of each
  // descriptor field is (max, -min), equal iff all are equal.
  Status Agree(OpKind kind, size_t count, DType dtype, ReduceOp op, int root) {
    if (count > static_cast<size_t>(INT32_MAX)) {
      return Status(StatusCode::kInvalidArgument, "collective group '" + opts_.name +
                                                      "' (mpi): more than 2^31-1 elements in one call");
    }
    int64_t v[10] = {static_cast<int64_t>(kind), static_cast<int64_t>(count), static_cast<int64_t>(dtype),
                     static_cast<int64_t>(op), root};
    for (int i = 0; i < 5; ++i) v[5 + i] = -v[i];
    int64_t r[10];
    MPIRAY_RETURN_IF_ERROR(Check(MPI_Allreduce(v, r, 10, MPI_INT64_T, MPI_MAX, comm_), "MPI_Allreduce"));
    for (int i = 0; i < 5; ++i) {
      if (r[i] != -r[5 + i]) {
        OpDesc d;
        d.kind = static_cast<uint8_t>(kind);
        d.count = count;
        d.dtype = static_cast<uint8_t>(dtype);
        d.reduce_op = static_cast<uint8_t>(op);
        d.root = root;
        return Status(StatusCode::kInvalidArgument,
                      "collective group '" + opts_.name + "' (mpi): rank " + std::to_string(opts_.rank) + " called " +
                          Describe(d) + ", but another member called a different operation or shape");
      }
    }
    return Status::OK();
  }

  GroupOptions opts_;
  MPI_Comm comm_;
};

class MpiConnector final : public Connector {
 public:
  explicit MpiConnector(const GroupOptions& o) : opts_(o) {}

  Result<std::string> LocalInfo() override {
    MPIRAY_RETURN_IF_ERROR(CheckMpi());
    MpiInfo m;
    m.rank = opts_.rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &m.world_rank);
    m.pid = SelfIdentity().pid;
    msgpack::sbuffer sb;
    msgpack::pack(sb, m);
    return std::string(sb.data(), sb.size());
  }

  Result<std::unique_ptr<Communicator>> Connect(const Roster& roster, const Exchange&) override {
    std::vector<int> world_ranks;
    std::set<int> seen;
    for (size_t r = 0; r < roster.members.size(); ++r) {
      MpiInfo m;
      try {
        auto oh = msgpack::unpack(roster.members[r].data(), roster.members[r].size());
        m = oh.get().as<MpiInfo>();
      } catch (const std::exception& e) {
        return Status(StatusCode::kInvalidArgument, "collective group '" + opts_.name + "': member " +
                                                        std::to_string(r) + " did not join with the mpi backend");
      }
      if (!seen.insert(m.world_rank).second) {
        return Status(StatusCode::kInvalidArgument,
                      "collective group '" + opts_.name + "': two members are in one process (MPI rank " +
                          std::to_string(m.world_rank) + "); the mpi backend needs one member per process "
                          "(place the actors on different workers, or use the 'ucx' backend)");
      }
      world_ranks.push_back(m.world_rank);
    }
    MPI_Group world_group, group;
    MPI_Comm_group(MPI_COMM_WORLD, &world_group);
    MPI_Group_incl(world_group, static_cast<int>(world_ranks.size()), world_ranks.data(), &group);
    MPI_Group_free(&world_group);
    int tag = static_cast<int>(roster.incarnation % 30000);
    MPI_Comm comm = MPI_COMM_NULL;
    int rc = MPI_Comm_create_group(MPI_COMM_WORLD, group, tag, &comm);
    MPI_Group_free(&group);
    if (rc != MPI_SUCCESS) return MpiError(rc, opts_.name, "MPI_Comm_create_group");
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    return std::unique_ptr<Communicator>(std::make_unique<MpiCommunicator>(opts_, comm));
  }

 private:
  GroupOptions opts_;
};

}  // namespace

bool MpiAvailable(std::string* why) {
  Status st = CheckMpi();
  if (!st.ok() && why) *why = st.message();
  return st.ok();
}

Result<std::unique_ptr<Connector>> MakeMpiConnector(const GroupOptions& options) {
  MPIRAY_RETURN_IF_ERROR(CheckMpi());
  return std::unique_ptr<Connector>(std::make_unique<MpiConnector>(options));
}

}  // namespace mpiray::collective::detail

#include "mpiray/collective/group.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "communicator.h"
#include "rendezvous.h"

namespace mpiray::collective {

const char* BackendName(Backend backend) {
  switch (backend) {
    case Backend::kUcx: return "ucx";
    case Backend::kNccl: return "nccl";
    case Backend::kMpi: return "mpi";
  }
  return "unknown";
}

Result<Backend> ParseBackend(const std::string& name) {
  std::string s = name;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "ucx") return Backend::kUcx;
  if (s == "nccl") return Backend::kNccl;
  if (s == "mpi") return Backend::kMpi;
  return Status(StatusCode::kInvalidArgument,
                "unknown collective backend '" + name + "'; the backends are 'ucx' (default), 'nccl' and 'mpi'");
}

void ThrowOnError(const Status& status) {
  if (status.ok()) return;
  if (status.code() == StatusCode::kInvalidArgument) throw InvalidArgumentError(status.message());
  throw CollectiveError(status.code(), status.message());
}

namespace detail {

int64_t EffectiveTimeoutMs(const GroupOptions& options) {
  int64_t t = options.timeout_ms;
  if (t == -1) {
    const char* v = std::getenv("MPIRAY_COLLECTIVE_TIMEOUT_MS");
    t = v && *v ? std::atoll(v) : 30 * 60 * 1000;
  }
  return t > 0 ? t : -1;
}

Result<std::unique_ptr<Connector>> MakeConnector(const GroupOptions& options) {
  switch (options.backend) {
    case Backend::kUcx: return MakeUcxConnector(options);
    case Backend::kNccl: return MakeNcclConnector(options);
    case Backend::kMpi: return MakeMpiConnector(options);
  }
  return Status(StatusCode::kInvalidArgument, "unknown collective backend");
}

}  // namespace detail

namespace {

Status ValidateOptions(const GroupOptions& o) {
  if (o.name.empty()) return InvalidArgument("a collective group needs a non-empty name");
  if (o.world_size <= 0) {
    return InvalidArgument("collective group '" + o.name + "': world_size must be positive, got " +
                           std::to_string(o.world_size));
  }
  if (o.rank < 0 || o.rank >= o.world_size) {
    return InvalidArgument("collective group '" + o.name + "': rank must be in [0, " + std::to_string(o.world_size) +
                           "), got " + std::to_string(o.rank));
  }
  if (o.world_size > (1 << 20)) return InvalidArgument("collective group '" + o.name + "': world_size too large");
  return Status::OK();
}

}  // namespace

bool Group::BackendAvailable(Backend backend, std::string* why) {
  switch (backend) {
    case Backend::kUcx: return detail::UcxAvailable(why);
    case Backend::kNccl: return detail::NcclAvailable(why);
    case Backend::kMpi: return detail::MpiAvailable(why);
  }
  return false;
}

std::unique_ptr<Group> Group::Create(const GroupOptions& options) {
  ThrowOnError(ValidateOptions(options));
  auto rdv = detail::MakeActorRendezvous();
  auto group = Create(options, *rdv);
  group->owned_rendezvous_ = std::move(rdv);
  return group;
}

std::unique_ptr<Group> Group::Create(const GroupOptions& options, Rendezvous& rendezvous) {
  ThrowOnError(ValidateOptions(options));
  auto connector = detail::MakeConnector(options);
  ThrowOnError(connector.status());
  auto mine = (*connector)->LocalInfo();
  ThrowOnError(mine.status());
  auto roster = rendezvous.Join(options, *mine);
  ThrowOnError(roster.status());
  const uint64_t incarnation = roster->incarnation;
  detail::Connector::Exchange exchange = [&](int round, const std::string& blob) {
    return rendezvous.Exchange(options, incarnation, round, blob);
  };
  auto comm = (*connector)->Connect(*roster, exchange);
  if (!comm.ok()) {
    rendezvous.Leave(options, incarnation);
    ThrowOnError(comm.status());
  }
  return std::unique_ptr<Group>(new Group(options, std::move(*comm), incarnation));
}

Group::Group(const GroupOptions& options, std::unique_ptr<detail::Communicator> comm, uint64_t incarnation)
    : options_(options),
      name_(options.name),
      rank_(options.rank),
      world_size_(options.world_size),
      backend_(options.backend),
      incarnation_(incarnation),
      comm_(std::move(comm)) {}

Group::~Group() {
  comm_.reset();
  if (owned_rendezvous_) owned_rendezvous_->Leave(options_, incarnation_);
}

void Group::CheckRank(int r, const char* what) const {
  if (r < 0 || r >= world_size_) {
    throw InvalidArgumentError("collective group '" + name_ + "': " + what + " " + std::to_string(r) +
                               " is not a rank of the group (0.." + std::to_string(world_size_ - 1) + ")");
  }
}

void Group::AllReduce(void* data, size_t count, DType dtype, ReduceOp op) {
  ThrowOnError(comm_->AllReduce(data, count, dtype, op));
}

void Group::Reduce(void* data, size_t count, DType dtype, int root, ReduceOp op) {
  CheckRank(root, "root");
  ThrowOnError(comm_->Reduce(data, count, dtype, root, op));
}

void Group::Broadcast(void* data, size_t count, DType dtype, int root) {
  CheckRank(root, "root");
  ThrowOnError(comm_->Broadcast(data, count, dtype, root));
}

void Group::AllGather(const void* input, void* output, size_t count, DType dtype) {
  ThrowOnError(comm_->AllGather(input, output, count, dtype));
}

void Group::ReduceScatter(const void* input, void* output, size_t count, DType dtype, ReduceOp op) {
  ThrowOnError(comm_->ReduceScatter(input, output, count, dtype, op));
}

void Group::Barrier() { ThrowOnError(comm_->Barrier()); }

void Group::Send(const void* data, size_t count, DType dtype, int dst) {
  CheckRank(dst, "destination rank");
  if (dst == rank_) throw InvalidArgumentError("collective group '" + name_ + "': send to itself (rank " + std::to_string(dst) + ")");
  ThrowOnError(comm_->Send(data, count, dtype, dst));
}

void Group::Recv(void* data, size_t count, DType dtype, int src) {
  CheckRank(src, "source rank");
  if (src == rank_) throw InvalidArgumentError("collective group '" + name_ + "': receive from itself (rank " + std::to_string(src) + ")");
  ThrowOnError(comm_->Recv(data, count, dtype, src));
}

void Group::SetCudaStream(void* stream) { comm_->SetCudaStream(stream); }

}  // namespace mpiray::collective

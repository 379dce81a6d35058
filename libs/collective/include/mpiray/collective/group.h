// Collective communication among the members of a named group (Ray's ray.util.collective, for
// C++ actors and tasks):
//
//   mpiray::collective::GroupOptions o;
//   o.name = "grads"; o.world_size = 4; o.rank = my_rank;       // inside an actor or task
//   auto group = mpiray::collective::Group::Create(o);           // blocks until all 4 joined
//   group->AllReduce(grads.data(), grads.size(), DType::kFloat32, ReduceOp::kSum);
//
// Backends: "ucx" (default: shared memory between the members of a node, UCX between nodes),
// "nccl" (CUDA device memory; NCCL loaded at run time), "mpi" (the launcher's MPI, only when
// the launch keeps MPI alive). See docs/collective.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "mpiray/core/errors.h"
#include "mpiray/core/status.h"
#include "mpiray/kernels/reduce.h"

namespace mpiray::collective {

using kernels::DType;
using kernels::ReduceOp;

namespace detail {
class Communicator;
}  // namespace detail

/// @brief The transport a group runs on.
enum class Backend : uint8_t { kUcx = 0, kNccl = 1, kMpi = 2 };

/// @brief "ucx", "nccl" or "mpi".
const char* BackendName(Backend backend);
/// @brief Parse a backend name (case-insensitive; "ucx", "nccl", "mpi"); InvalidArgument names
/// the unknown one and the known ones.
Result<Backend> ParseBackend(const std::string& name);

/// @brief A collective operation failed: a member died, a member called a different operation
/// or passed a different shape, the timeout passed, or the backend cannot run here. The group is
/// unusable afterwards (destroy it and create it again).
class CollectiveError : public Error {
 public:
  CollectiveError(StatusCode code, const std::string& what) : Error(code, what) {}
};

/// @brief Throw the exception for `status` (InvalidArgumentError for bad input, CollectiveError
/// otherwise); no-op when OK.
void ThrowOnError(const Status& status);

/// @brief What a member says when it joins a group.
struct GroupOptions {
  /// The group's name; members that use the same name form one group.
  std::string name = "default";
  /// Number of members.
  int world_size = 0;
  /// This member's rank, 0 <= rank < world_size, unique in the group.
  int rank = -1;
  Backend backend = Backend::kUcx;
  /// How long one operation waits for the other members, in milliseconds (<= 0: forever).
  /// -1 takes MPIRAY_COLLECTIVE_TIMEOUT_MS, default 1,800,000 (30 minutes, as NCCL's watchdog).
  int64_t timeout_ms = -1;
  /// How long Create waits for every member to join, in milliseconds (default 60 s, or
  /// MPIRAY_COLLECTIVE_JOIN_TIMEOUT_MS).
  int64_t join_timeout_ms = -1;
  /// CUDA device of this member for the "nccl" backend (-1: the current device).
  int device = -1;
  /// Which node this member counts as on for the "ucx" backend: members with the same key share
  /// memory, the others talk over UCX. Empty: the runtime's node (MPIRAY_RANKS_PER_NODE makes
  /// virtual nodes), or the host outside a running job.
  std::string node_key;
};

/// @brief Who joined a group: each member's published bytes, indexed by rank.
struct Roster {
  /// Distinguishes successive groups of the same name (after destroy and create again).
  uint64_t incarnation = 0;
  std::vector<std::string> members;
};

/// @brief How members find each other: an all-gather of a few bytes through the head. The
/// default (Group::Create) is a named detached actor per job; language bindings bring their own.
class Rendezvous {
 public:
  virtual ~Rendezvous() = default;
  /// @brief Publish `mine` as member `options.rank` of `options.name` and wait (up to
  /// options.join_timeout_ms) until all world_size members have published. A name whose last
  /// group is complete starts a new incarnation.
  virtual Result<Roster> Join(const GroupOptions& options, const std::string& mine) = 0;
  /// @brief A further all-gather round (1, 2, ...) among the members of `incarnation`.
  virtual Result<std::vector<std::string>> Exchange(const GroupOptions& options, uint64_t incarnation,
                                                    int round, const std::string& mine) = 0;
  /// @brief This member leaves `incarnation` (the last one to leave frees it).
  virtual void Leave(const GroupOptions& options, uint64_t incarnation) { (void)options, (void)incarnation; }
};

/// @brief One member's handle on a collective group. Operations are blocking and collective:
/// every member calls the same operations in the same order with matching shapes (checked:
/// a mismatch is an error naming both sides). Buffers are host memory, except for the "nccl"
/// backend (device memory). A handle is used by one thread at a time.
class Group {
 public:
  /// @brief Join group `options.name`, rendezvousing through the head (a named detached actor);
  /// returns once all members have joined and are connected. Call inside an actor or task.
  static std::unique_ptr<Group> Create(const GroupOptions& options);
  /// @brief Join with an explicit rendezvous (bindings, tests).
  static std::unique_ptr<Group> Create(const GroupOptions& options, Rendezvous& rendezvous);
  /// @brief Whether `backend` can run in this process; if not, `why` says what is missing.
  static bool BackendAvailable(Backend backend, std::string* why = nullptr);

  /// @brief Leaves the group (frees shared memory, endpoints, communicators).
  ~Group();
  /// @brief Which incarnation of the name this is (successive groups of one name differ).
  uint64_t incarnation() const { return incarnation_; }
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  const std::string& name() const { return name_; }
  Backend backend() const { return backend_; }

  /// @brief data[i] = op over all members' data[i], in place, on every member.
  void AllReduce(void* data, size_t count, DType dtype, ReduceOp op = ReduceOp::kSum);
  /// @brief Like AllReduce, but only `root` receives the result (the others' data is unchanged).
  void Reduce(void* data, size_t count, DType dtype, int root, ReduceOp op = ReduceOp::kSum);
  /// @brief Every member's `data` becomes `root`'s.
  void Broadcast(void* data, size_t count, DType dtype, int root);
  /// @brief output[r * count .. (r+1) * count) = member r's input, on every member.
  void AllGather(const void* input, void* output, size_t count, DType dtype);
  /// @brief input holds world_size blocks of `count`; member r gets op over all members' block r.
  void ReduceScatter(const void* input, void* output, size_t count, DType dtype,
                     ReduceOp op = ReduceOp::kSum);
  /// @brief Returns once every member has called Barrier.
  void Barrier();
  /// @brief Send `count` elements to member `dst` (which calls Recv with the same shape).
  void Send(const void* data, size_t count, DType dtype, int dst);
  /// @brief Receive `count` elements from member `src`.
  void Recv(void* data, size_t count, DType dtype, int src);
  /// @brief The CUDA stream the "nccl" backend enqueues on (default: its own); ignored otherwise.
  void SetCudaStream(void* stream);

  /// @brief Typed conveniences.
  template <class T>
  void AllReduce(std::vector<T>& v, ReduceOp op = ReduceOp::kSum) {
    AllReduce(v.data(), v.size(), DTypeOf<T>(), op);
  }
  template <class T>
  void Broadcast(std::vector<T>& v, int root) {
    Broadcast(v.data(), v.size(), DTypeOf<T>(), root);
  }
  template <class T>
  std::vector<T> AllGather(const std::vector<T>& v) {
    std::vector<T> out(v.size() * static_cast<size_t>(world_size_));
    AllGather(v.data(), out.data(), v.size(), DTypeOf<T>());
    return out;
  }
  template <class T>
  void Send(const std::vector<T>& v, int dst) {
    Send(v.data(), v.size(), DTypeOf<T>(), dst);
  }
  template <class T>
  void Recv(std::vector<T>& v, int src) {
    Recv(v.data(), v.size(), DTypeOf<T>(), src);
  }

  /// @brief The element type of T (float, double, int32_t, int64_t, uint8_t).
  template <class T>
  static constexpr DType DTypeOf() {
    if constexpr (std::is_same_v<T, float>) return DType::kFloat32;
    else if constexpr (std::is_same_v<T, double>) return DType::kFloat64;
    else if constexpr (std::is_same_v<T, int32_t>) return DType::kInt32;
    else if constexpr (std::is_same_v<T, int64_t>) return DType::kInt64;
    else if constexpr (std::is_same_v<T, uint8_t>) return DType::kUInt8;
    else static_assert(sizeof(T) == 0, "no collective DType for this element type");
  }

 private:
  Group(const GroupOptions& options, std::unique_ptr<detail::Communicator> comm, uint64_t incarnation);
  void CheckRank(int r, const char* what) const;

  GroupOptions options_;
  std::string name_;
  int rank_;
  int world_size_;
  Backend backend_;
  uint64_t incarnation_;
  std::unique_ptr<detail::Communicator> comm_;
  std::unique_ptr<Rendezvous> owned_rendezvous_;  // Create(options): left at destruction
};

}  // namespace mpiray::collective

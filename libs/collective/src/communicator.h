// The interface every backend implements (internal). Operations return Status; the public
// Group turns errors into exceptions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mpiray/collective/group.h"
#include "mpiray/core/status.h"

namespace mpiray::collective::detail {

/// @brief A backend's member of a connected group.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual Status AllReduce(void* data, size_t count, DType dtype, ReduceOp op) = 0;
  virtual Status Reduce(void* data, size_t count, DType dtype, int root, ReduceOp op) = 0;
  virtual Status Broadcast(void* data, size_t count, DType dtype, int root) = 0;
  virtual Status AllGather(const void* input, void* output, size_t count, DType dtype) = 0;
  virtual Status ReduceScatter(const void* input, void* output, size_t count, DType dtype,
                               ReduceOp op) = 0;
  virtual Status Barrier() = 0;
  virtual Status Send(const void* data, size_t count, DType dtype, int dst) = 0;
  virtual Status Recv(void* data, size_t count, DType dtype, int src) = 0;
  virtual void SetCudaStream(void* stream) { (void)stream; }
};

/// @brief Builds a Communicator in two steps around the rendezvous: what this member publishes,
/// then the connection once every member's bytes are known.
class Connector {
 public:
  virtual ~Connector() = default;
  /// @brief Bytes this member publishes in the rendezvous (round 0).
  virtual Result<std::string> LocalInfo() = 0;
  /// @brief Connect to the members of `roster`. `exchange(round, mine)` runs a further
  /// all-gather round through the same rendezvous when the backend needs one.
  using Exchange = std::function<Result<std::vector<std::string>>(int round, const std::string& mine)>;
  virtual Result<std::unique_ptr<Communicator>> Connect(const Roster& roster,
                                                        const Exchange& exchange) = 0;
};

/// @brief The connector of `options.backend`, or why that backend cannot run here.
Result<std::unique_ptr<Connector>> MakeConnector(const GroupOptions& options);

/// @brief Per backend: can it run in this process (`why` says what is missing)?
bool UcxAvailable(std::string* why);
bool NcclAvailable(std::string* why);
bool MpiAvailable(std::string* why);
Result<std::unique_ptr<Connector>> MakeUcxConnector(const GroupOptions& options);
Result<std::unique_ptr<Connector>> MakeNcclConnector(const GroupOptions& options);
Result<std::unique_ptr<Connector>> MakeMpiConnector(const GroupOptions& options);

using kernels::DTypeName;     // "float32"
using kernels::ReduceOpName;  // "sum"

/// @brief The operation timeout after defaults: options.timeout_ms, else
/// MPIRAY_COLLECTIVE_TIMEOUT_MS, else 30 minutes; <= 0 means none (returned as -1).
int64_t EffectiveTimeoutMs(const GroupOptions& options);

}  // namespace mpiray::collective::detail

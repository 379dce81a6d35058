// The members of a group across nodes, through a UCX worker of the group's own (internal).
//
// The runtime's fabric is internal to core, so the library opens one UCX worker per member of a
// multi-node group and exchanges worker addresses through the group's rendezvous. Endpoints
// handle peer failure (a dead peer fails the operations that involve it instead of hanging),
// messages are tagged (kind, source rank, per-pair sequence number), so every message matches
// exactly one receive and no ordering assumption is needed, and large messages go as several
// tagged pieces in flight at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "health.h"
#include "mpiray/core/status.h"

namespace mpiray::collective::detail {

/// @brief Message streams; each has its own sequence numbers per pair of members.
enum class Stream : uint8_t { kData = 1, kDesc = 2, kP2p = 3, kAbort = 4 };

class NetLink {
 public:
  /// @brief A UCX worker for member `rank` (largest piece per tagged message: `piece` bytes;
  /// `spin`: busy-wait iterations before a waiting caller yields, see SpinIterations).
  static Result<std::unique_ptr<NetLink>> Create(Health& health, int rank, int world_size, size_t piece,
                                                 uint32_t spin, uint32_t yields);
  ~NetLink();

  /// @brief This worker's address (published through the rendezvous).
  const std::string& address() const { return address_; }
  /// @brief The largest piece of one tagged message (PostSend/PostRecv split at this size).
  size_t piece() const;
  /// @brief Every member's address (empty for members without one), and connect now to
  /// `eager` (the others on first use).
  Status SetPeers(const std::vector<std::string>& addresses, const std::vector<int>& eager);

  /// @brief A pending send or receive (several may be in flight; Wait completes them).
  struct Op {
    int peer = -1;
    bool done = false;
    bool failed = false;
    size_t length = 0;  // received bytes
    std::string error;
  };
  /// @brief Start sending/receiving `bytes` to/from `peer` on `stream`, split into pieces.
  /// The ops are appended to `ops` and stay owned by this link until Wait returns.
  Status PostSend(int peer, Stream stream, const void* data, size_t bytes, std::vector<Op*>* ops);
  Status PostRecv(int peer, Stream stream, void* data, size_t bytes, std::vector<Op*>* ops);
  /// @brief Wait for all `ops`; fails (and breaks the group) on a dead peer, an abort message,
  /// a size mismatch or the timeout of `what` (counted from `start`).
  Status Wait(std::vector<Op*>& ops, const char* what, Clock::time_point start);

  /// @brief Progress plus failure checks (an abort message from another member).
  Status Poll();
  /// @brief Tell every connected member that the group failed (best effort, brief).
  void SendAbort(const Status& st);
  /// @brief Idle wait of at most about a millisecond on the worker's event fd.
  void Sleep();

 private:
  struct Impl;
  explicit NetLink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

}  // namespace mpiray::collective::detail

// The members of a group on one node, through one shared-memory segment (internal).
//
// The segment is a memfd created by the node's leader (the lowest rank there) and opened by the
// others through /proc/<leader pid>/fd/<fd>: it has no name in any file system, so nothing is
// left behind whatever happens to the processes. Layout:
//
//   header | per member: 3 progress counters + 2 operation descriptors | per member: `slots`
//   chunk buffers of `chunk` bytes (the pipeline) | per ordered pair: a point-to-point channel
//
// Every operation is a pipeline over chunks: each member copies its chunk k into its buffer
// k % slots (counter `in`), optionally reduces its slice of chunk k over all members' buffers
// in place (counter `red`: reduce-scatter), then reads what it needs (counter `done`). Counters
// are monotonic over the group's life, so one chunk index orders everything, members run ahead
// up to `slots` chunks, and no counter is ever reset.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "health.h"
#include "mpiray/collective/group.h"
#include "op_desc.h"

namespace mpiray::collective::detail {

/// @brief Sizes of a node's segment (the leader's values are used by every member).
struct ShmConfig {
  uint64_t chunk = 1 << 18;       // pipeline chunk per member (MPIRAY_COLLECTIVE_CHUNK_BYTES)
  uint32_t slots = 8;             // pipeline depth (MPIRAY_COLLECTIVE_SLOTS)
  uint64_t p2p_chunk = 1 << 16;   // point-to-point channel chunk
  uint32_t p2p_slots = 8;         // point-to-point channel depth
  uint64_t small = 16 << 10;      // all-reduce at or below this many bytes: one phase
  uint64_t stream = 4 << 20;      // results of at least this many bytes: non-temporal stores
};

/// @brief The configuration from the environment (defaults above).
ShmConfig ShmConfigFromEnv();

/// @brief Where a node's segment is and who is on the node.
struct ShmPlan {
  std::vector<int> ranks;  // group ranks of the node's members, by local index
  int local_index = 0;     // this member's
  int leader_pid = 0;      // the process that holds the memfd
  int leader_fd = -1;
  int own_fd = -1;         // this member's memfd (the leader's when it is the leader)
  ShmConfig config;
};

/// @brief A memfd for a segment (sized later by the leader); -1 and errno on failure.
int CreateSegmentFd(const std::string& group);

class ShmNode {
 public:
  /// @brief Map the node's segment (the leader sizes it first) and wait until every local
  /// member has attached.
  static Result<std::unique_ptr<ShmNode>> Open(const ShmPlan& plan, Health& health);
  ~ShmNode();

  int size() const { return n_; }
  int me() const { return me_; }

  /// @brief in -> out (may alias): out = op over the local members' `in`, on every member
  /// (root_local < 0) or only on member root_local (others' `out` untouched). With
  /// `window`, each member copies only bytes [window_lo, window_hi) of the result to
  /// out + (offset - window_lo) (reduce-scatter).
  Status AllReduce(const OpDesc& d, const void* in, void* out, size_t count, DType dtype, ReduceOp op,
                   int root_local, size_t window_lo = 0, size_t window_hi = SIZE_MAX);
  /// @brief Local member `src_local`'s `bytes` reach every local member's `data` (or, with a
  /// window, bytes [window_lo, window_hi) reach data; with only_local >= 0, only that member
  /// receives).
  Status Broadcast(const OpDesc& d, void* data, size_t bytes, int src_local, int only_local = -1,
                   size_t window_lo = 0, size_t window_hi = SIZE_MAX);
  /// @brief Every local member's `bytes` of `in` reach every local member at out + offsets[j].
  Status AllGather(const OpDesc& d, const void* in, size_t bytes, void* out,
                   const std::vector<size_t>& offsets);
  /// @brief All local members have arrived.
  Status Barrier(const OpDesc& d);
  /// @brief Point to point through the pair's channel (blocking until copied in / out).
  Status Send(int dst_local, const void* data, size_t bytes, DType dtype);
  Status Recv(int src_local, void* data, size_t bytes, DType dtype);

  /// @brief A failure reported by a local member (abort flag), or OK.
  Status PollAbort() const;
  /// @brief Tell the local members that the group failed.
  void PublishAbort(const Status& st);

 private:
  struct Header;
  struct MemberCtl;
  struct ChanCtl;
  ShmNode(const ShmPlan& plan, Health& health, void* base, size_t bytes);

  template <class Post, class Mid, class Consume>
  Status Run(const OpDesc& d, uint64_t chunks, bool has_mid, Post&& post, Mid&& mid, Consume&& consume);
  Status CheckDescs(const OpDesc& d);
  uint8_t* Slot(int member, uint64_t chunk) const;
  void Notify();
  template <class Ready>
  void Sleep(Ready&& ready);

  Health& health_;
  std::vector<int> ranks_;
  int n_;
  int me_;
  ShmConfig cfg_;
  void* base_;
  size_t bytes_;
  Header* hdr_;
  MemberCtl* ctl_;
  uint8_t* data_;
  uint8_t* chans_;
  size_t chan_stride_;
  uint64_t next_chunk_ = 0;
  uint32_t spin_;    // busy-wait iterations before yielding (0 when the node is oversubscribed)
  uint32_t yields_;  // yields before sleeping on the segment's futex
  std::vector<uint64_t> sent_;   // per destination: chunks sent on my channel to it
  std::vector<uint64_t> recvd_;  // per source: chunks received
};

}  // namespace mpiray::collective::detail

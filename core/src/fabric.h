// The fabric: how runtime processes talk. Control messages are appended to per-destination
// outboxes from any thread and sent as one batch per destination by the progress thread
// (coalescing); batches from one sender are delivered in order. Bulk chunks (object bytes)
// travel separately, zero-copy where the transport allows.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "mpiray/core/buffer.h"
#include "mpiray/core/ids.h"
#include "protocol.h"

namespace mpiray {

/// @brief Callbacks from the fabric; all run on the progress thread.
class FabricHandler {
 public:
  virtual ~FabricHandler() = default;
  /// @brief One control message; messages from one sender arrive in the order they were posted.
  virtual void OnMessage(ProcId src, proto::Msg type, const char* body, size_t len) = 0;
  /// @brief Called after a received batch has been dispatched (a good moment to flush).
  virtual void OnBatchEnd() {}
  /// @brief A bulk chunk is arriving: return where to put its `len` bytes, or null to drop it.
  virtual uint8_t* OnBulkBegin(ProcId src, const proto::BulkHeader& h, size_t len) = 0;
  /// @brief The chunk announced by OnBulkBegin has landed (ok) or failed.
  virtual void OnBulkEnd(ProcId src, const proto::BulkHeader& h, size_t len, bool ok) = 0;
  /// @brief The connection to `proc` failed (the peer died or became unreachable).
  virtual void OnPeerFailed(ProcId proc, const std::string& why) = 0;
  /// @brief Periodic tick (about every tick_ms) for timers such as heartbeats.
  virtual void OnTick() = 0;
};

/// @brief Sending side of the fabric; a fake implements it for unit tests.
class Transport {
 public:
  virtual ~Transport() = default;
  /// @brief This process's id.
  virtual ProcId self() const = 0;
  /// @brief Queue one control message for `dest` (thread-safe, non-blocking).
  virtual void Post(ProcId dest, proto::Msg type, const char* body, size_t len) = 0;
  /// @brief Send `len` bytes at `data` as one bulk chunk; `keepalive` pins the memory until
  /// `done(ok)` runs on the progress thread.
  virtual void SendBulk(ProcId dest, const proto::BulkHeader& h, const void* data, size_t len,
                        std::shared_ptr<const void> keepalive, std::function<void(bool)> done) = 0;
  /// @brief Learn how to reach `proc`. Messages queued for it are then sent.
  virtual void AddPeer(ProcId proc, const Buffer& address) = 0;
  /// @brief Forget `proc`: drop its connection and anything queued for it.
  virtual void RemovePeer(ProcId proc) = 0;
  /// @brief Ask the progress thread to flush the outboxes soon.
  virtual void Wake() = 0;
};

/// @brief Pack `m` with msgpack and post it.
template <class M>
void SendMsg(Transport& t, ProcId dest, proto::Msg type, const M& m) {
  thread_local msgpack::sbuffer sb;
  sb.clear();
  msgpack::pack(sb, m);
  t.Post(dest, type, sb.data(), sb.size());
}

/// @brief Build a message with `fill(packer)` and post it (for messages packed from parts).
template <class F>
void SendWith(Transport& t, ProcId dest, proto::Msg type, F&& fill) {
  thread_local msgpack::sbuffer sb;
  sb.clear();
  msgpack::packer<msgpack::sbuffer> pk(sb);
  fill(pk);
  t.Post(dest, type, sb.data(), sb.size());
}

/// @brief Unpack a message body into `M` (throws msgpack errors on malformed input).
template <class M>
M DecodeMsg(const char* body, size_t len) {
  msgpack::object_handle oh = msgpack::unpack(body, len);
  return oh.get().as<M>();
}

}  // namespace mpiray

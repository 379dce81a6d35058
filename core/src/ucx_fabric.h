// UcxFabric: the Transport over UCX active messages, one UCP worker per process driven by one
// progress thread that sleeps on the worker's event fd when idle.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fabric.h"
#include "mpiray/core/status.h"

namespace mpiray {

/// @brief Settings for UcxFabric.
struct UcxFabricOptions {
  /// Busy-poll this long after activity before sleeping (latency vs idle CPU).
  int spin_us = 50;
  /// Period of FabricHandler::OnTick.
  int tick_ms = 200;
  /// UCX network devices to use (UCX_NET_DEVICES, e.g. "lo"); empty: UCX's choice. An explicit
  /// UCX_NET_DEVICES in the environment wins.
  std::string net_devices;
};

/// @brief Translate a UCX status code into a Status naming `what` failed (the one place UCX
/// errors are mapped).
Status UcxStatus(int ucs_status, const std::string& what);

class UcxFabric final : public Transport {
 public:
  /// @brief Create the UCP context and worker; nothing runs until Start().
  static Result<std::unique_ptr<UcxFabric>> Create(const UcxFabricOptions& options);
  ~UcxFabric() override;

  /// @brief This worker's UCX address, to give to peers.
  const Buffer& address() const { return address_; }
  /// @brief Set this process's id (joiners learn it after creating the fabric).
  void set_self(ProcId self) { self_ = self; }
  /// @brief Authenticate every message with a key derived from the session token: messages
  /// sent carry it, messages received without it are dropped (counted, logged). Call before
  /// Start().
  void set_session_token(const std::string& token);
  /// @brief Messages dropped because they did not carry the session's key.
  uint64_t rejected() const;
  /// @brief Start the progress thread delivering to `handler`.
  void Start(FabricHandler* handler);
  /// @brief Flush what is queued (bounded wait), close connections, stop the thread.
  void Stop();
  /// @brief Run `fn` on the progress thread (after the current batch).
  void RunOnProgressThread(std::function<void()> fn);

  ProcId self() const override { return self_; }
  void Post(ProcId dest, proto::Msg type, const char* body, size_t len) override;
  void SendBulk(ProcId dest, const proto::BulkHeader& h, const void* data, size_t len,
                std::shared_ptr<const void> keepalive, std::function<void(bool)> done) override;
  void AddPeer(ProcId proc, const Buffer& address) override;
  void RemovePeer(ProcId proc) override;
  void Wake() override;

  struct Impl;

 private:
  explicit UcxFabric(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  Buffer address_;
  std::atomic<ProcId> self_{kNoProc};
};

}  // namespace mpiray

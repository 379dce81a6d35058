// Fetcher: moves object bytes between nodes. The requester reserves space in its node's store
// and asks a process on the holding node; that process streams the mapped object as bulk
// chunks straight into the requester's new shared-memory object (zero-copy where UCX can).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <unordered_set>
#include <memory>
#include <mutex>
#include <vector>

#include "fabric.h"
#include "mpiray/core/status.h"
#include "protocol.h"
#include "router.h"
#include "shm_store.h"

namespace mpiray {

class Fetcher {
 public:
  /// @param on_fetched called after a fetched copy is published (to tell the head).
  /// @param same_machine whether a process shares this machine's memory: objects of its node
  /// are then copied straight from their shared-memory file instead of over the fabric.
  Fetcher(Transport& transport, ShmStore& store, uint64_t chunk,
          std::function<void(const ObjectId&)> on_fetched,
          std::function<bool(ProcId)> same_machine = nullptr);

  /// @brief Copy the object described by `loc` (a shared-memory object on another node) into
  /// this node's store and map it. Blocks; fails if the source dies or refuses. When this
  /// node's store has no room even after spilling (the copy then goes to the spill directory)
  /// and spilling is off, the object is read without a local copy (mapped in place on the
  /// same machine, else received into private memory).
  Result<Buffer> Fetch(const proto::ObjectLoc& loc);

  /// @brief Raw fabric throughput: receive `bytes` from `source` into memory (benchmark).
  Result<double> MeasureStream(ProcId source, uint64_t bytes);

  /// @brief Handle kFetch, kFetchFailed and kBenchStream.
  void RegisterHandlers(MessageRouter& router);

  // Progress-thread entry points.
  void OnFetch(ProcId src, const proto::Fetch& req);
  void OnFetchFailed(const proto::FetchFailed& f);
  void OnBenchStream(ProcId src, const proto::BenchStream& req);
  uint8_t* OnBulkBegin(ProcId src, const proto::BulkHeader& h, size_t len);
  void OnBulkEnd(ProcId src, const proto::BulkHeader& h, size_t len, bool ok);
  void OnPeerFailed(ProcId proc);
  /// @brief Fail every transfer in progress (shutdown).
  void FailAll(const std::string& why);

 private:
  struct Transfer {
    uint8_t* dst = nullptr;
    uint64_t size = 0;
    uint64_t received = 0;
    ProcId source = 0;
    bool done = false;
    bool ok = false;
    std::string error;
  };
  uint64_t Begin(uint8_t* dst, uint64_t size, ProcId source);
  Status Await(uint64_t id);
  void Stream(ProcId dest, uint64_t transfer, const Buffer& data);
  Result<Buffer> FetchUncached(const proto::ObjectLoc& loc);

  Transport& transport_;
  ShmStore& store_;
  uint64_t chunk_;
  std::function<void(const ObjectId&)> on_fetched_;
  std::function<bool(ProcId)> same_machine_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t next_ = 0;
  std::map<uint64_t, Transfer> transfers_;
  std::unordered_set<ProcId> dead_;  // peers known to be gone: fetches from them fail at once
  std::map<ObjectId, std::shared_ptr<std::condition_variable>> inflight_;  // dedupe per object
  std::shared_ptr<std::vector<uint8_t>> bench_buf_;
};

}  // namespace mpiray

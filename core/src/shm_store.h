// ShmStore: a node's object store in shared memory. Each large object is one file in the node's
// directory under /dev/shm (or a configured root); readers on the node map it read-only, so
// the bytes are written once and read in place. Capacity is accounted in a small control file
// shared by every process of the node (atomic counters), so no round trip is needed to
// reserve space.
//
// Fresh pages are expensive (the kernel zeroes and maps each one; on this kind of VM that caps
// writes at ~1.5 GB/s while warm memory copies at ~10 GB/s), so deleted objects' files are kept
// in a per-node pool and recycled for new objects. A file is recycled only when no process maps
// it any more: each file starts with a header page holding a cross-process pin count that every
// mapping holds while it lives (a process that dies leaks its pins, which only keeps that file
// from being recycled).
//
// Spilling: when an object does not fit, sealed objects that no process maps (pin count 0) are
// written to the node's spill directory on local disk, least recently used first, and leave
// shared memory; Map/MapFrom/Contains find them there and bring them back transparently (see
// "Spilling" in docs/architecture.md). The head's directory does not change: the node still
// holds the object.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "mpiray/core/buffer.h"
#include "mpiray/core/ids.h"
#include "mpiray/core/status.h"

namespace mpiray {

/// @brief Where a node's store lives and how big it may grow.
struct StoreOptions {
  std::string root;       // e.g. /dev/shm/mpiray-1a2b3c4d; node dirs are <root>-n<node>
  NodeId node = 0;
  uint64_t capacity = 0;  // bytes
  /// Spill directories are <spill_root>-n<node> (created on first use); empty: no spilling,
  /// a full store reports ObjectStoreFull at once.
  std::string spill_root;
  /// With spilling on, how long Create keeps trying while the store is full of objects in use
  /// (pinned by readers or being written) before it writes the object to disk instead: such
  /// pins are often short (a transfer, a restore, a task reading its argument).
  int64_t full_wait_ms = 20;
};

/// @brief Spilling counters of one node's store (shared by its processes).
struct StoreStats {
  uint64_t used = 0;            // bytes of live objects in shared memory
  uint64_t capacity = 0;
  uint64_t spilled_total = 0;   // payload bytes written to the spill directory, ever
  uint64_t restored_total = 0;  // payload bytes read back from it, ever
  uint64_t spilled_now = 0;     // payload bytes in spill files at the moment
  uint64_t spills = 0;          // objects spilled, ever
  uint64_t restores = 0;        // objects read back (into memory or mapped from disk), ever
};

/// @brief An object being written; Seal() publishes it.
struct WritableObject {
  ObjectId id;
  uint8_t* data = nullptr;
  uint64_t size = 0;
  std::string tmp_path;
  std::shared_ptr<const void> mapping;
  /// Written straight into the spill directory (memory was full of objects in use): Seal
  /// publishes it there, where readers find it as a spilled object.
  bool on_disk = false;
};

class ShmStore {
 public:
  /// @brief Open (creating if needed) the store directory and control file of `options.node`.
  static Result<std::unique_ptr<ShmStore>> Open(const StoreOptions& options);
  ~ShmStore();

  /// @brief Reserve `size` bytes and create a writable object, spilling others if needed.
  /// `wait`: when the store is full of objects in use, keep trying for
  /// StoreOptions::full_wait_ms first (callers with another way out pass false). If it still
  /// cannot fit and spilling is on, the object is created in the spill directory instead
  /// (file-backed, as Ray's fallback allocation); ObjectStoreFull only when that fails too, when
  /// spilling is off, or when the object is larger than the whole store.
  Result<WritableObject> Create(const ObjectId& id, uint64_t size, bool wait = true);
  /// @brief Publish a written object; returns a read view of it.
  Result<Buffer> Seal(WritableObject& obj);
  /// @brief Drop an unpublished object and its reservation.
  void Abort(WritableObject& obj);
  /// @brief Map a published object of this node (ObjectLost if absent). A spilled object is
  /// restored into shared memory first (spilling others if needed); if it cannot fit, its spill
  /// file is mapped read-only instead.
  Result<Buffer> Map(const ObjectId& id);
  /// @brief Map a published object of another node of this machine (read-only, pinned). A
  /// spilled one is mapped from that node's spill file (the caller copies it right away).
  Result<Buffer> MapFrom(NodeId node, const ObjectId& id);
  /// @brief True if the object is in this node's store (in shared memory or spilled).
  bool Contains(const ObjectId& id) const;
  /// @brief Unlink an object (and its spill file) and release its bytes (readers that mapped
  /// it keep their view).
  void Delete(const ObjectId& id);
  /// @brief Remove the whole node directory and the node's spill directory (shutdown).
  void RemoveAll();
  /// @brief Spill unpinned objects, least recently used first, until at least `bytes` of
  /// shared memory are released or nothing is left to spill. Returns the bytes released
  /// (file sizes); an error only if nothing was released and the spill directory failed.
  Result<uint64_t> Spill(uint64_t bytes);
  /// @brief True if the object has a spill file (it may be in shared memory as well).
  bool IsSpilled(const ObjectId& id) const;

  /// @brief Bytes held by live objects.
  uint64_t used() const;
  /// @brief Bytes of recycled files kept warm for new objects (evicted when space is needed).
  uint64_t pooled() const;
  uint64_t capacity() const;
  NodeId node() const { return node_; }
  const std::string& dir() const { return dir_; }
  /// @brief This node's spill directory (empty when spilling is off; created on first spill).
  const std::string& spill_dir() const { return spill_dir_; }
  /// @brief Counters of this node's store.
  StoreStats stats() const;
  /// @brief The directory that holds node `node`'s objects.
  static std::string NodeDir(const std::string& root, NodeId node);
  /// @brief Counters of the store of `node` under `root` on this machine, if it exists (read
  /// without joining it; e.g. for the head's metrics).
  static bool PeekStats(const std::string& root, NodeId node, StoreStats* out);

 private:
  struct Ctl;
  struct SpillScan;
  enum class Found { kMapped, kAbsent, kBusy, kError };
  ShmStore() = default;
  Result<WritableObject> CreateFile(const ObjectId& id, uint64_t size, bool wait, bool populate);
  Result<WritableObject> CreateOnDisk(const ObjectId& id, uint64_t size, const Status& full);
  Status Reserve(uint64_t size, bool wait);
  void Release(uint64_t size);
  bool EvictPool(uint64_t need);
  int ClaimFromPool(uint64_t file_size, const std::string& tmp_path);
  std::string PathOf(const ObjectId& id) const;
  std::string SpillPathOf(const std::string& spill_dir, const ObjectId& id) const;
  Result<Buffer> MapPath(const std::string& path, const ObjectId& id, bool cache, Found* found);
  Result<Buffer> Lookup(const std::string& path, const std::string& spill_path,
                        const ObjectId& id, bool local);
  Result<Buffer> Restore(int fd, const std::string& spill_path, const ObjectId& id, bool* retry);
  Result<Buffer> MapSpilled(int fd, const std::string& spill_path, const ObjectId& id,
                            bool* retry);
  Result<uint64_t> SpillLru(uint64_t bytes, SpillScan* scan);
  Result<uint64_t> SpillFile(const std::string& name, SpillScan* scan);
  Status EnsureSpillDir();
  void UnlinkSpill(const std::string& spill_path);

  NodeId node_ = 0;
  std::string root_;
  std::string dir_;
  bool leased_ = false;  // holds a lease on dir_ (dir_lease.h)
  std::atomic<bool> spill_leased_{false};  // ... and on spill_dir_, once made
  std::string pool_dir_;
  std::string spill_root_;
  std::string spill_dir_;
  std::atomic<bool> spill_dir_ready_{false};
  int64_t full_wait_ms_ = 0;
  Ctl* ctl_ = nullptr;
  std::mutex mu_;
  std::unordered_map<ObjectId, std::weak_ptr<const void>> maps_;
};

}  // namespace mpiray

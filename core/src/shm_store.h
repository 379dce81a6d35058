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
};

/// @brief An object being written; Seal() publishes it.
struct WritableObject {
  ObjectId id;
  uint8_t* data = nullptr;
  uint64_t size = 0;
  std::string tmp_path;
  std::shared_ptr<const void> mapping;
};

class ShmStore {
 public:
  /// @brief Open (creating if needed) the store directory and control file of `options.node`.
  static Result<std::unique_ptr<ShmStore>> Open(const StoreOptions& options);
  ~ShmStore();

  /// @brief Reserve `size` bytes and create a writable object (ObjectStoreFull if it can't fit).
  Result<WritableObject> Create(const ObjectId& id, uint64_t size);
  /// @brief Publish a written object; returns a read view of it.
  Result<Buffer> Seal(WritableObject& obj);
  /// @brief Drop an unpublished object and its reservation.
  void Abort(WritableObject& obj);
  /// @brief Map a published object of this node (ObjectLost if absent).
  Result<Buffer> Map(const ObjectId& id);
  /// @brief Map a published object of another node of this machine (read-only, pinned).
  Result<Buffer> MapFrom(NodeId node, const ObjectId& id);
  /// @brief True if the object's file exists in this node's store.
  bool Contains(const ObjectId& id) const;
  /// @brief Unlink an object and release its bytes (readers that mapped it keep their view).
  void Delete(const ObjectId& id);
  /// @brief Remove the whole node directory (shutdown).
  void RemoveAll();

  /// @brief Bytes held by live objects.
  uint64_t used() const;
  /// @brief Bytes of recycled files kept warm for new objects (evicted when space is needed).
  uint64_t pooled() const;
  uint64_t capacity() const;
  NodeId node() const { return node_; }
  const std::string& dir() const { return dir_; }
  /// @brief The directory that holds node `node`'s objects.
  static std::string NodeDir(const std::string& root, NodeId node);

 private:
  struct Ctl;
  ShmStore() = default;
  Status Reserve(uint64_t size);
  void Release(uint64_t size);
  bool EvictPool(uint64_t need);
  int ClaimFromPool(uint64_t file_size, const std::string& tmp_path);
  std::string PathOf(const ObjectId& id) const;
  Result<Buffer> MapPath(const std::string& path, const ObjectId& id, bool cache);

  NodeId node_ = 0;
  std::string root_;
  std::string dir_;
  std::string pool_dir_;
  Ctl* ctl_ = nullptr;
  std::mutex mu_;
  std::unordered_map<ObjectId, std::weak_ptr<const void>> maps_;
};

}  // namespace mpiray

// Internals shared by the HDF5 sources: the process-wide lock, RAII handles, the one place that
// turns HDF5's error stack into a Status, and conversions between TypeDesc and HDF5 types.
#pragma once

#include <hdf5.h>

#include <mutex>
#include <string>
#include <utility>

#include "mpiray/core/status.h"
#include "mpiray/hdf5/types.h"

namespace mpiray::hdf5::impl {

/// Debian's HDF5 is built without thread safety: every call into it holds this lock. It also
/// switches HDF5's automatic error printing off (per thread in thread-safe builds).
class Lock {
 public:
  Lock();
  ~Lock() = default;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

 private:
  std::unique_lock<std::recursive_mutex> lock_;
};

/// An HDF5 identifier closed with the matching H5*close when it goes.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      Close();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { Close(); }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void Close();

 private:
  hid_t id_ = H5I_INVALID_HID;
};

/// The deepest messages of HDF5's current error stack ("can't open file; file signature not
/// found"), then the stack is cleared. Empty when the stack is empty.
std::string TakeErrorStack();

/// A Status of `code` saying "<what>: <HDF5's messages>".
Status Failed(StatusCode code, const std::string& what);

/// The memory type (native order and offsets) of a dataset's or attribute's file type.
Result<TypeDesc> DescribeType(hid_t file_type, const std::string& where);

/// An HDF5 type for `desc`: the memory type (native) or, for files, the same with
/// little-endian standard types and packed compounds.
Result<Handle> MakeType(const TypeDesc& desc, bool for_file);

/// The name of a filter id ("deflate", "shuffle", "szip", ... or "filter <id>").
std::string FilterName(int id);

}  // namespace mpiray::hdf5::impl

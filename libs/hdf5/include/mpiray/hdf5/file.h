// Reading HDF5 files for mpiray.data: what a dataset looks like (shape, chunking, element type,
// filters), hyperslab reads of whole rows straight into a caller's buffer, attributes, and the
// datasets of a file (through soft and external links and virtual datasets, which the HDF5
// library resolves). Every function is safe to call from several threads (the HDF5 library of
// Debian is not thread-safe, so calls are serialised with one process-wide lock) and never
// prints HDF5's error stack: errors come back as a Status whose message names the file, the
// object and the deepest message of HDF5's error stack.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mpiray/core/status.h"
#include "mpiray/hdf5/types.h"

namespace mpiray::hdf5 {

/// @brief How a dataset's bytes are laid out in its file.
enum class Layout : uint8_t { kCompact, kContiguous, kChunked, kVirtual };

/// @brief The name of a layout ("compact", "contiguous", "chunked", "virtual").
const char* LayoutName(Layout layout);

/// @brief A filter in a dataset's pipeline (deflate, shuffle, szip, or a plugin's).
struct FilterInfo {
  int id = 0;
  std::string name;
  /// Whether this process's HDF5 library can apply it (reads fail otherwise).
  bool available = true;
};

/// @brief What a dataset is: enough to plan reads and to allocate their buffers.
struct DatasetInfo {
  std::string name;
  std::vector<uint64_t> shape;
  /// Chunk shape (empty unless the layout is chunked).
  std::vector<uint64_t> chunks;
  Layout layout = Layout::kContiguous;
  /// The element type in memory (native order; what ReadRows writes).
  TypeDesc type;
  std::vector<FilterInfo> filters;

  /// @brief Elements in one row (the product of shape[1:]; 1 for a 1-d dataset).
  uint64_t RowElements() const;
  /// @brief Bytes of one row in memory.
  uint64_t RowBytes() const { return RowElements() * type.size; }
};

/// @brief An attribute's value: raw native bytes (numbers, fixed strings, compounds) or, for
/// variable-length strings, the strings.
struct Attribute {
  std::string name;
  TypeDesc type;
  /// Empty for a scalar.
  std::vector<uint64_t> shape;
  std::vector<uint8_t> data;
  std::vector<std::string> strings;
};

namespace impl {
class FileState;
}

/// @brief An HDF5 file open for reading. Cheap to move; closed when the last copy goes.
class File {
 public:
  /// @brief Open `path` read-only. NotFound when it does not exist; IoError when it is not an
  /// HDF5 file, is truncated or cannot be read.
  static Result<File> Open(const std::string& path);

  const std::string& path() const;

  /// @brief Paths of every dataset in the file (depth first, sorted by name, without a leading
  /// "/"), following soft and external links.
  Result<std::vector<std::string>> ListDatasets() const;

  /// @brief Shape, chunking, type and filters of `dataset` (NotFound if there is none).
  Result<DatasetInfo> Describe(const std::string& dataset) const;

  /// @brief Read rows [start, start + count) of `dataset` (all of its other dimensions) into
  /// `dst`, which must hold count * RowBytes() bytes, in `info.type`'s memory layout. The
  /// dataset must not have a variable-length string type (use ReadStrings).
  Status ReadRows(const std::string& dataset, uint64_t start, uint64_t count, void* dst,
                  size_t dst_bytes) const;

  /// @brief Rows [start, start + count) of a dataset of variable-length strings, flattened
  /// in C order.
  Result<std::vector<std::string>> ReadStrings(const std::string& dataset, uint64_t start,
                                               uint64_t count) const;

  /// @brief Every attribute of the object at `object` ("/" for the file).
  Result<std::vector<Attribute>> ReadAttributes(const std::string& object) const;

 private:
  explicit File(std::shared_ptr<impl::FileState> state) : state_(std::move(state)) {}
  std::shared_ptr<impl::FileState> state_;
};

/// @brief Whether `path` starts with HDF5's file signature (at offset 0, 512, 1024, ...).
bool LooksLikeHdf5(const std::string& path);

}  // namespace mpiray::hdf5

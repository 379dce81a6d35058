// Writing HDF5 files for mpiray.data: one file of datasets per block (written in parallel by
// the blocks' tasks), and a file of virtual datasets that stitches the blocks' files into one
// logical dataset per column, which any HDF5 reader (h5py included) reads as one array.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mpiray/core/status.h"
#include "mpiray/hdf5/types.h"

namespace mpiray::hdf5 {

/// @brief Storage options of a dataset being created.
struct StorageOptions {
  /// Chunk shape; empty: contiguous, unless compression is asked for (then about 1 MiB chunks
  /// of whole rows are chosen).
  std::vector<uint64_t> chunks;
  /// gzip (deflate) level 0-9; -1: no compression.
  int deflate_level = -1;
  /// The byte-shuffle filter before compression.
  bool shuffle = false;
};

/// @brief One dataset to write: its name, type, shape and data (C order, `type`'s layout), or
/// its strings for a variable-length string type.
struct DatasetData {
  std::string name;
  TypeDesc type;
  std::vector<uint64_t> shape;
  const void* data = nullptr;
  size_t data_bytes = 0;
  const std::vector<std::string>* strings = nullptr;
  StorageOptions storage;
};

/// @brief An attribute to attach: a scalar or an array of `type`, or strings.
struct AttributeData {
  std::string name;
  TypeDesc type;
  std::vector<uint64_t> shape;
  const void* data = nullptr;
  size_t data_bytes = 0;
  const std::vector<std::string>* strings = nullptr;
};

/// @brief Create (or truncate) `path` and write `datasets` into it, with `attributes` on the
/// root group. Groups in dataset names ("a/b") are created.
Status WriteFile(const std::string& path, const std::vector<DatasetData>& datasets,
                 const std::vector<AttributeData>& attributes = {});

/// @brief Where the rows of a virtual dataset come from: `rows` rows of `dataset` in `file`
/// (relative paths are relative to the directory of the virtual dataset's file).
struct VirtualSource {
  std::string file;
  std::string dataset;
  uint64_t rows = 0;
};

/// @brief One virtual dataset: rows of each source in order, every source with the same row
/// shape and type.
struct VirtualDataset {
  std::string name;
  TypeDesc type;
  /// Shape of one row (empty for a 1-d dataset).
  std::vector<uint64_t> row_shape;
  std::vector<VirtualSource> sources;
};

/// @brief Create (or truncate) `path` with `datasets` as virtual datasets and `attributes`
/// on its root group.
Status WriteVirtualFile(const std::string& path, const std::vector<VirtualDataset>& datasets,
                        const std::vector<AttributeData>& attributes = {});

}  // namespace mpiray::hdf5

// Writing (mpiray/hdf5/write.h).
#include "mpiray/hdf5/write.h"

#include <algorithm>
#include <numeric>

#include "impl/h5.h"

namespace mpiray::hdf5 {

using impl::Failed;
using impl::Handle;
using impl::Lock;

namespace {

std::string Where(const std::string& file, const std::string& name) {
  return "dataset '" + name + "' in HDF5 file '" + file + "'";
}

// Creates the groups on the way to `name` ("a/b/x": a and a/b).
Handle LinkCreatePlist() {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE));
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  return lcpl;
}

uint64_t Product(const std::vector<uint64_t>& v, size_t from = 0) {
  uint64_t p = 1;
  for (size_t i = from; i < v.size(); ++i) p *= v[i];
  return p;
}

Result<Handle> CreatePlist(const DatasetData& d, const std::string& where) {
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
  const StorageOptions& s = d.storage;
  std::vector<uint64_t> chunks = s.chunks;
  bool compress = s.deflate_level >= 0 || s.shuffle;
  if (s.deflate_level > 9) return InvalidArgument("gzip level must be 0-9 for " + where);
  if (chunks.empty() && compress && !d.shape.empty()) {
    // About 1 MiB of whole rows per chunk.
    uint64_t row = std::max<uint64_t>(1, Product(d.shape, 1) * d.type.size);
    chunks = d.shape;
    chunks[0] = std::clamp<uint64_t>((1u << 20) / row, 1, std::max<uint64_t>(1, d.shape[0]));
  }
  if (!chunks.empty()) {
    if (chunks.size() != d.shape.size()) {
      return InvalidArgument("chunks of " + where + " must have " + std::to_string(d.shape.size()) +
                             " dimensions like its shape, got " + std::to_string(chunks.size()));
    }
    for (size_t i = 0; i < chunks.size(); ++i) {
      if (chunks[i] == 0) return InvalidArgument("chunk dimensions of " + where + " must be positive");
      // A chunk may not be larger than a fixed-size dimension (HDF5's rule); 0-row datasets
      // still get 1-row chunks.
      if (d.shape[i] > 0) chunks[i] = std::min(chunks[i], d.shape[i]);
    }
    std::vector<hsize_t> c(chunks.begin(), chunks.end());
    if (H5Pset_chunk(dcpl.get(), static_cast<int>(c.size()), c.data()) < 0) {
      return Failed(StatusCode::kInvalidArgument, "bad chunk shape for " + where);
    }
    if (s.shuffle && H5Pset_shuffle(dcpl.get()) < 0) return Failed(StatusCode::kInvalidArgument, "shuffle filter for " + where);
    if (s.deflate_level >= 0) {
      if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0) return InvalidArgument("this HDF5 library has no gzip (deflate) filter");
      if (H5Pset_deflate(dcpl.get(), static_cast<unsigned>(s.deflate_level)) < 0) {
        return Failed(StatusCode::kInvalidArgument, "gzip filter for " + where);
      }
    }
  }
  return dcpl;
}

Status WriteOne(hid_t file, const std::string& path, const DatasetData& d) {
  std::string where = Where(path, d.name);
  uint64_t n = Product(d.shape);
  auto ftype = impl::MakeType(d.type, true);
  if (!ftype.ok()) return Status(ftype.status().code(), where + ": " + ftype.status().message());
  auto mtype = impl::MakeType(d.type, false);
  if (!mtype.ok()) return mtype.status();
  if (d.type.cls == TypeClass::kVarString) {
    if (!d.strings || d.strings->size() != n) {
      return InvalidArgument(where + " needs " + std::to_string(n) + " strings");
    }
  } else if (d.data_bytes != n * d.type.size || (n > 0 && !d.data)) {
    return InvalidArgument(where + " needs " + std::to_string(n * d.type.size) + " bytes of data, got " +
                           std::to_string(d.data_bytes));
  }
  std::vector<hsize_t> dims(d.shape.begin(), d.shape.end());
  Handle space(d.shape.empty() ? H5Screate(H5S_SCALAR)
                               : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  auto dcpl = CreatePlist(d, where);
  if (!dcpl.ok()) return dcpl.status();
  Handle lcpl = LinkCreatePlist();
  Handle ds(H5Dcreate2(file, d.name.c_str(), ftype->get(), space.get(), lcpl.get(), dcpl->get(), H5P_DEFAULT));
  if (!ds.valid()) return Failed(StatusCode::kIoError, "cannot create " + where);
  if (n == 0) return Status::OK();
  herr_t rc;
  if (d.type.cls == TypeClass::kVarString) {
    std::vector<const char*> ptrs(n);
    for (uint64_t i = 0; i < n; ++i) ptrs[i] = (*d.strings)[i].c_str();
    rc = H5Dwrite(ds.get(), mtype->get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data());
  } else {
    rc = H5Dwrite(ds.get(), mtype->get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, d.data);
  }
  if (rc < 0) return Failed(StatusCode::kIoError, "cannot write " + where);
  return Status::OK();
}

Status WriteAttributes(hid_t file, const std::string& path, const std::vector<AttributeData>& attrs) {
  for (const auto& a : attrs) {
    std::string where = "attribute '" + a.name + "' of HDF5 file '" + path + "'";
    auto ftype = impl::MakeType(a.type, true);
    if (!ftype.ok()) return Status(ftype.status().code(), where + ": " + ftype.status().message());
    auto mtype = impl::MakeType(a.type, false);
    if (!mtype.ok()) return mtype.status();
    std::vector<hsize_t> dims(a.shape.begin(), a.shape.end());
    Handle space(a.shape.empty() ? H5Screate(H5S_SCALAR)
                                 : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
    uint64_t n = Product(a.shape);
    Handle attr(H5Acreate2(file, a.name.c_str(), ftype->get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
    if (!attr.valid()) return Failed(StatusCode::kIoError, "cannot create " + where);
    herr_t rc;
    if (a.type.cls == TypeClass::kVarString) {
      if (!a.strings || a.strings->size() != n) return InvalidArgument(where + " needs " + std::to_string(n) + " strings");
      std::vector<const char*> ptrs(n);
      for (uint64_t i = 0; i < n; ++i) ptrs[i] = (*a.strings)[i].c_str();
      rc = H5Awrite(attr.get(), mtype->get(), ptrs.data());
    } else {
      if (a.data_bytes != n * a.type.size) return InvalidArgument(where + " has the wrong number of bytes");
      rc = H5Awrite(attr.get(), mtype->get(), a.data);
    }
    if (rc < 0) return Failed(StatusCode::kIoError, "cannot write " + where);
  }
  return Status::OK();
}

Result<Handle> CreateFile(const std::string& path) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS));
  // The oldest format that holds what we write, so that older HDF5 libraries read the files.
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_EARLIEST, H5F_LIBVER_LATEST);
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  if (f < 0) return Failed(StatusCode::kIoError, "cannot create HDF5 file '" + path + "'");
  return Handle(f);
}

}  // namespace

Status WriteFile(const std::string& path, const std::vector<DatasetData>& datasets,
                 const std::vector<AttributeData>& attributes) {
  Lock lock;
  auto file = CreateFile(path);
  if (!file.ok()) return file.status();
  for (const auto& d : datasets) MPIRAY_RETURN_IF_ERROR(WriteOne(file->get(), path, d));
  MPIRAY_RETURN_IF_ERROR(WriteAttributes(file->get(), path, attributes));
  if (H5Fflush(file->get(), H5F_SCOPE_LOCAL) < 0) return Failed(StatusCode::kIoError, "cannot flush '" + path + "'");
  return Status::OK();
}

Status WriteVirtualFile(const std::string& path, const std::vector<VirtualDataset>& datasets,
                        const std::vector<AttributeData>& attributes) {
  Lock lock;
  auto file = CreateFile(path);
  if (!file.ok()) return file.status();
  for (const auto& v : datasets) {
    std::string where = Where(path, v.name);
    uint64_t total = 0;
    for (const auto& s : v.sources) total += s.rows;
    std::vector<hsize_t> dims{total};
    dims.insert(dims.end(), v.row_shape.begin(), v.row_shape.end());
    auto ftype = impl::MakeType(v.type, true);
    if (!ftype.ok()) return Status(ftype.status().code(), where + ": " + ftype.status().message());
    Handle vspace(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
    Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
    uint64_t at = 0;
    for (const auto& s : v.sources) {
      if (s.rows == 0) continue;
      std::vector<hsize_t> sdims{s.rows};
      sdims.insert(sdims.end(), v.row_shape.begin(), v.row_shape.end());
      Handle sspace(H5Screate_simple(static_cast<int>(sdims.size()), sdims.data(), nullptr));
      std::vector<hsize_t> off(dims.size(), 0);
      off[0] = at;
      if (H5Sselect_hyperslab(vspace.get(), H5S_SELECT_SET, off.data(), nullptr, sdims.data(), nullptr) < 0 ||
          H5Pset_virtual(dcpl.get(), vspace.get(), s.file.c_str(), s.dataset.c_str(), sspace.get()) < 0) {
        return Failed(StatusCode::kIoError, "cannot map '" + s.file + "' into virtual " + where);
      }
      at += s.rows;
    }
    H5Sselect_all(vspace.get());
    Handle lcpl = LinkCreatePlist();
    Handle ds(H5Dcreate2(file->get(), v.name.c_str(), ftype->get(), vspace.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT));
    if (!ds.valid()) return Failed(StatusCode::kIoError, "cannot create virtual " + where);
  }
  MPIRAY_RETURN_IF_ERROR(WriteAttributes(file->get(), path, attributes));
  if (H5Fflush(file->get(), H5F_SCOPE_LOCAL) < 0) return Failed(StatusCode::kIoError, "cannot flush '" + path + "'");
  return Status::OK();
}

}  // namespace mpiray::hdf5

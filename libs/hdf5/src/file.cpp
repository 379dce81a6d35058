// Reading (mpiray/hdf5/file.h).
#include "mpiray/hdf5/file.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <numeric>

#include "impl/h5.h"

namespace mpiray::hdf5 {

namespace impl {
class FileState {
 public:
  std::string path;
  Handle file;
  ~FileState() {
    Lock lock;
    file.Close();
  }
};
}  // namespace impl

using impl::Failed;
using impl::Handle;
using impl::Lock;

const char* LayoutName(Layout layout) {
  switch (layout) {
    case Layout::kCompact: return "compact";
    case Layout::kContiguous: return "contiguous";
    case Layout::kChunked: return "chunked";
    case Layout::kVirtual: return "virtual";
  }
  return "?";
}

uint64_t DatasetInfo::RowElements() const {
  if (shape.size() <= 1) return 1;
  return std::accumulate(shape.begin() + 1, shape.end(), uint64_t{1}, std::multiplies<>());
}

bool LooksLikeHdf5(const std::string& path) {
  static const char kSig[8] = {'\211', 'H', 'D', 'F', '\r', '\n', '\032', '\n'};
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  in.seekg(0, std::ios::end);
  auto size = static_cast<uint64_t>(in.tellg());
  for (uint64_t off = 0; off + 8 <= size; off = off ? off * 2 : 512) {
    char buf[8];
    in.seekg(static_cast<std::streamoff>(off));
    if (!in.read(buf, 8)) return false;
    if (std::memcmp(buf, kSig, 8) == 0) return true;
  }
  return false;
}

namespace {

std::string Where(const std::string& file, const std::string& object) {
  return "dataset '" + object + "' in HDF5 file '" + file + "'";
}

// The names of the datasets in a file, for "no dataset 'z' (the file has: x, y)".
std::string Available(hid_t file);

struct VisitState {
  hid_t file;
  std::vector<std::string>* out;
};

herr_t VisitLink(hid_t /*group*/, const char* name, const H5L_info_t* info, void* data) {
  auto* st = static_cast<VisitState*>(data);
  (void)info;
  // H5Oopen follows soft and external links; a dangling one is skipped.
  hid_t o = H5Oopen(st->file, name, H5P_DEFAULT);
  if (o < 0) {
    H5Eclear2(H5E_DEFAULT);
    return 0;
  }
  if (H5Iget_type(o) == H5I_DATASET) st->out->emplace_back(name);
  H5Oclose(o);
  return 0;
}

Result<std::vector<std::string>> ListLocked(hid_t file, const std::string& path) {
  std::vector<std::string> out;
  VisitState st{file, &out};
  if (H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, VisitLink, &st) < 0) {
    return Failed(StatusCode::kIoError, "cannot list the datasets of HDF5 file '" + path + "'");
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string Available(hid_t file) {
  auto names = ListLocked(file, "");
  if (!names.ok()) return "";
  std::string s;
  size_t n = std::min<size_t>(names->size(), 12);
  for (size_t i = 0; i < n; ++i) s += (i ? ", " : "") + (*names)[i];
  if (names->size() > n) s += ", ...";
  return names->empty() ? "no datasets" : s;
}

std::string Strip(const std::string& name) {
  size_t i = 0;
  while (i < name.size() && name[i] == '/') ++i;
  return name.substr(i);
}

// Opens `name` as a dataset, with a NotFound naming what the file has when it is missing.
// `dapl`: the dataset access properties (H5P_DEFAULT, or ReadRows' without a chunk cache).
Result<Handle> OpenDataset(hid_t file, const std::string& path, const std::string& name,
                           hid_t dapl = H5P_DEFAULT) {
  std::string n = Strip(name);
  if (n.empty()) return InvalidArgument("empty dataset name for HDF5 file '" + path + "'");
  // Walk the components: H5Lexists fails on a missing intermediate group.
  size_t pos = 0;
  while (true) {
    size_t next = n.find('/', pos);
    std::string prefix = n.substr(0, next);
    htri_t e = H5Lexists(file, prefix.c_str(), H5P_DEFAULT);
    if (e <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return NotFound("no " + Where(path, n) + " (the file has: " + Available(file) + ")");
    }
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  hid_t o = H5Oopen(file, n.c_str(), H5P_DEFAULT);
  if (o < 0) return Failed(StatusCode::kIoError, "cannot open " + Where(path, n));
  if (H5Iget_type(o) != H5I_DATASET) {
    H5Oclose(o);
    return InvalidArgument("'" + n + "' in HDF5 file '" + path + "' is a group, not a dataset");
  }
  if (dapl == H5P_DEFAULT) return Handle(o);
  // Access properties take effect only on a dataset that is not open yet (open handles share
  // one chunk cache): close the probe first.
  H5Oclose(o);
  hid_t d = H5Dopen2(file, n.c_str(), dapl);
  if (d < 0) return Failed(StatusCode::kIoError, "cannot open " + Where(path, n));
  return Handle(d);
}

// Dataset access properties for reads of whole row ranges: no chunk cache. With HDF5's default
// 1 MiB cache, a chunk that fits is read into the cache and copied from there into the
// destination (a second copy of every byte); without it, whole chunks go straight from the file
// into the destination, and a chunk only partly selected (a range that does not start or end on
// a chunk boundary, a filtered chunk) goes through a temporary buffer as before.
hid_t NoChunkCacheAccess() {
  static hid_t dapl = [] {
    hid_t p = H5Pcreate(H5P_DATASET_ACCESS);
    if (p >= 0 && H5Pset_chunk_cache(p, H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0, H5D_CHUNK_CACHE_W0_DEFAULT) < 0) {
      H5Pclose(p);
      p = H5P_DEFAULT;
    }
    return p < 0 ? H5P_DEFAULT : p;
  }();
  return dapl;
}

Result<DatasetInfo> DescribeLocked(hid_t file, const std::string& path, const std::string& name) {
  auto ds = OpenDataset(file, path, name);
  if (!ds.ok()) return ds.status();
  DatasetInfo info;
  info.name = Strip(name);
  Handle space(H5Dget_space(ds->get()));
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) return Failed(StatusCode::kIoError, "cannot read the shape of " + Where(path, info.name));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  info.shape.assign(dims.begin(), dims.end());
  Handle ftype(H5Dget_type(ds->get()));
  if (!ftype.valid()) return Failed(StatusCode::kIoError, "cannot read the type of " + Where(path, info.name));
  auto type = impl::DescribeType(ftype.get(), Where(path, info.name));
  if (!type.ok()) return type.status();
  info.type = std::move(type).value();
  Handle dcpl(H5Dget_create_plist(ds->get()));
  switch (H5Pget_layout(dcpl.get())) {
    case H5D_COMPACT: info.layout = Layout::kCompact; break;
    case H5D_CHUNKED: {
      info.layout = Layout::kChunked;
      std::vector<hsize_t> c(static_cast<size_t>(rank));
      if (H5Pget_chunk(dcpl.get(), rank, c.data()) >= 0) info.chunks.assign(c.begin(), c.end());
      break;
    }
    case H5D_VIRTUAL: info.layout = Layout::kVirtual; break;
    default: info.layout = Layout::kContiguous; break;
  }
  int nf = H5Pget_nfilters(dcpl.get());
  for (int i = 0; i < nf; ++i) {
    unsigned flags = 0, cd[8];
    size_t ncd = 8;
    char fname[128] = {0};
    unsigned fc = 0;
    H5Z_filter_t id = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &ncd, cd,
                                     sizeof fname, fname, &fc);
    FilterInfo f;
    f.id = static_cast<int>(id);
    f.name = impl::FilterName(f.id);
    f.available = H5Zfilter_avail(id) > 0;
    info.filters.push_back(f);
  }
  H5Eclear2(H5E_DEFAULT);
  return info;
}

// The hyperslab of rows [start, start + count) and its memory space.
Status SelectRows(hid_t space, const DatasetInfo& info, const std::string& where, uint64_t start,
                  uint64_t count, Handle* mem) {
  if (info.shape.empty()) return InvalidArgument(where + " is a scalar: it has no rows to read");
  if (start > info.shape[0] || count > info.shape[0] - start) {
    return InvalidArgument("rows " + std::to_string(start) + ".." + std::to_string(start + count) + " of " +
                           where + " are out of range (it has " + std::to_string(info.shape[0]) + " rows)");
  }
  std::vector<hsize_t> off(info.shape.size(), 0), cnt(info.shape.begin(), info.shape.end());
  off[0] = start;
  cnt[0] = count;
  if (H5Sselect_hyperslab(space, H5S_SELECT_SET, off.data(), nullptr, cnt.data(), nullptr) < 0) {
    return Failed(StatusCode::kInvalidArgument, "cannot select rows of " + where);
  }
  *mem = Handle(H5Screate_simple(static_cast<int>(cnt.size()), cnt.data(), nullptr));
  return Status::OK();
}

Status CheckFilters(const DatasetInfo& info, const std::string& where) {
  for (const auto& f : info.filters) {
    if (!f.available) {
      return Status(StatusCode::kInvalidArgument,
                    where + " is compressed with the HDF5 filter '" + f.name + "' (id " + std::to_string(f.id) +
                        "), which this HDF5 library does not have (install its plugin and set HDF5_PLUGIN_PATH)");
    }
  }
  return Status::OK();
}

}  // namespace

Result<File> File::Open(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return NotFound("HDF5 file '" + path + "' does not exist");
  if (S_ISDIR(st.st_mode)) return InvalidArgument("'" + path + "' is a directory, not an HDF5 file");
  Lock lock;
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    std::string stack = impl::TakeErrorStack();
    std::string what = LooksLikeHdf5(path) ? "HDF5 file '" + path + "' is corrupted or truncated"
                                           : "'" + path + "' is not an HDF5 file";
    return Status(StatusCode::kIoError, stack.empty() ? what : what + ": " + stack);
  }
  auto state = std::make_shared<impl::FileState>();
  state->path = path;
  state->file = Handle(f);
  return File(std::move(state));
}

const std::string& File::path() const { return state_->path; }

Result<std::vector<std::string>> File::ListDatasets() const {
  Lock lock;
  return ListLocked(state_->file.get(), state_->path);
}

Result<DatasetInfo> File::Describe(const std::string& dataset) const {
  Lock lock;
  return DescribeLocked(state_->file.get(), state_->path, dataset);
}

Status File::ReadRows(const std::string& dataset, uint64_t start, uint64_t count, void* dst,
                      size_t dst_bytes) const {
  Lock lock;
  const std::string& path = state_->path;
  auto info = DescribeLocked(state_->file.get(), path, dataset);
  if (!info.ok()) return info.status();
  std::string where = Where(path, info->name);
  if (info->type.cls == TypeClass::kVarString) {
    return InvalidArgument(where + " holds variable-length strings: read them with ReadStrings");
  }
  MPIRAY_RETURN_IF_ERROR(CheckFilters(*info, where));
  uint64_t need = count * info->RowBytes();
  if (dst_bytes < need) {
    return InvalidArgument("buffer of " + std::to_string(dst_bytes) + " bytes is too small for rows of " +
                           where + " (" + std::to_string(need) + " needed)");
  }
  if (count == 0) return Status::OK();
  auto ds = OpenDataset(state_->file.get(), path, info->name, NoChunkCacheAccess());
  if (!ds.ok()) return ds.status();
  Handle space(H5Dget_space(ds->get())), mem;
  MPIRAY_RETURN_IF_ERROR(SelectRows(space.get(), *info, where, start, count, &mem));
  auto mtype = impl::MakeType(info->type, false);
  if (!mtype.ok()) return mtype.status();
  if (H5Dread(ds->get(), mtype->get(), mem.get(), space.get(), H5P_DEFAULT, dst) < 0) {
    return Failed(StatusCode::kIoError, "cannot read rows " + std::to_string(start) + ".." +
                                            std::to_string(start + count) + " of " + where);
  }
  return Status::OK();
}

Result<std::vector<std::string>> File::ReadStrings(const std::string& dataset, uint64_t start,
                                                   uint64_t count) const {
  Lock lock;
  const std::string& path = state_->path;
  auto info = DescribeLocked(state_->file.get(), path, dataset);
  if (!info.ok()) return info.status();
  std::string where = Where(path, info->name);
  if (info->type.cls != TypeClass::kVarString) {
    return InvalidArgument(where + " does not hold variable-length strings");
  }
  MPIRAY_RETURN_IF_ERROR(CheckFilters(*info, where));
  auto ds = OpenDataset(state_->file.get(), path, info->name);
  if (!ds.ok()) return ds.status();
  Handle space(H5Dget_space(ds->get())), mem;
  MPIRAY_RETURN_IF_ERROR(SelectRows(space.get(), *info, where, start, count, &mem));
  std::vector<std::string> out;
  uint64_t n = count * info->RowElements();
  if (n == 0) return out;
  std::vector<char*> ptrs(n, nullptr);
  auto mtype = impl::MakeType(info->type, false);
  if (!mtype.ok()) return mtype.status();
  if (H5Dread(ds->get(), mtype->get(), mem.get(), space.get(), H5P_DEFAULT, ptrs.data()) < 0) {
    return Failed(StatusCode::kIoError, "cannot read strings of " + where);
  }
  out.reserve(n);
  for (char* p : ptrs) out.emplace_back(p ? p : "");
#if H5_VERSION_GE(1, 12, 0)
  H5Treclaim(mtype->get(), mem.get(), H5P_DEFAULT, ptrs.data());
#else
  H5Dvlen_reclaim(mtype->get(), mem.get(), H5P_DEFAULT, ptrs.data());
#endif
  return out;
}

namespace {

struct AttrState {
  std::vector<Attribute>* out;
  std::string where;
  Status status;
};

herr_t ReadOneAttribute(hid_t loc, const char* name, const H5A_info_t* /*info*/, void* data) {
  auto* st = static_cast<AttrState*>(data);
  Handle attr(H5Aopen(loc, name, H5P_DEFAULT));
  if (!attr.valid()) {
    st->status = Failed(StatusCode::kIoError, "cannot open attribute '" + std::string(name) + "' of " + st->where);
    return -1;
  }
  Attribute a;
  a.name = name;
  Handle ftype(H5Aget_type(attr.get()));
  auto type = impl::DescribeType(ftype.get(), "attribute '" + a.name + "' of " + st->where);
  if (!type.ok()) {
    st->status = type.status();
    return -1;
  }
  a.type = std::move(type).value();
  Handle space(H5Aget_space(attr.get()));
  int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  a.shape.assign(dims.begin(), dims.end());
  hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0) n = 0;
  auto mtype = impl::MakeType(a.type, false);
  if (!mtype.ok()) {
    st->status = mtype.status();
    return -1;
  }
  if (a.type.cls == TypeClass::kVarString) {
    std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
    if (n > 0 && H5Aread(attr.get(), mtype->get(), ptrs.data()) < 0) {
      st->status = Failed(StatusCode::kIoError, "cannot read attribute '" + a.name + "' of " + st->where);
      return -1;
    }
    for (char* p : ptrs) a.strings.emplace_back(p ? p : "");
    if (n > 0) {
#if H5_VERSION_GE(1, 12, 0)
      H5Treclaim(mtype->get(), space.get(), H5P_DEFAULT, ptrs.data());
#else
      H5Dvlen_reclaim(mtype->get(), space.get(), H5P_DEFAULT, ptrs.data());
#endif
    }
  } else {
    a.data.resize(static_cast<size_t>(n) * a.type.size);
    if (n > 0 && H5Aread(attr.get(), mtype->get(), a.data.data()) < 0) {
      st->status = Failed(StatusCode::kIoError, "cannot read attribute '" + a.name + "' of " + st->where);
      return -1;
    }
  }
  st->out->push_back(std::move(a));
  return 0;
}

}  // namespace

Result<std::vector<Attribute>> File::ReadAttributes(const std::string& object) const {
  Lock lock;
  const std::string& path = state_->path;
  std::string name = Strip(object);
  std::string where = name.empty() ? "HDF5 file '" + path + "'" : "'" + name + "' in HDF5 file '" + path + "'";
  Handle obj;
  if (name.empty()) {
    obj = Handle(H5Oopen(state_->file.get(), "/", H5P_DEFAULT));
  } else {
    htri_t e = H5Lexists(state_->file.get(), name.c_str(), H5P_DEFAULT);
    if (e <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return NotFound("no object " + where);
    }
    obj = Handle(H5Oopen(state_->file.get(), name.c_str(), H5P_DEFAULT));
  }
  if (!obj.valid()) return Failed(StatusCode::kIoError, "cannot open " + where);
  std::vector<Attribute> out;
  AttrState st{&out, where, Status::OK()};
  hsize_t idx = 0;
  if (H5Aiterate2(obj.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, ReadOneAttribute, &st) < 0) {
    if (!st.status.ok()) {
      H5Eclear2(H5E_DEFAULT);
      return st.status;
    }
    return Failed(StatusCode::kIoError, "cannot read the attributes of " + where);
  }
  return out;
}

}  // namespace mpiray::hdf5

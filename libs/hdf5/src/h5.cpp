// The lock, handles, error stack and type conversions (src/impl/h5.h).
#include "impl/h5.h"

#include <algorithm>
#include <numeric>
#include <vector>

namespace mpiray::hdf5::impl {

namespace {

std::recursive_mutex& Mutex() {
  static std::recursive_mutex m;
  return m;
}

herr_t CollectMessage(unsigned /*n*/, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::vector<std::string>*>(data);
  std::string msg = err->desc ? err->desc : "";
  char minor[256] = {0};
  if (H5Eget_msg(err->min_num, nullptr, minor, sizeof minor) > 0 && minor[0]) {
    if (!msg.empty()) msg += " (";
    msg += minor;
    if (msg.back() != ')' && msg.find('(') != std::string::npos) msg += ")";
  }
  if (!msg.empty()) out->push_back(std::move(msg));
  return 0;
}

}  // namespace

Lock::Lock() : lock_(Mutex()) {
  // No automatic printing of error stacks: errors are reported through Status.
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

void Handle::Close() {
  if (id_ < 0) return;
  switch (H5Iget_type(id_)) {
    case H5I_FILE: H5Fclose(id_); break;
    case H5I_GROUP: H5Gclose(id_); break;
    case H5I_DATATYPE: H5Tclose(id_); break;
    case H5I_DATASPACE: H5Sclose(id_); break;
    case H5I_DATASET: H5Dclose(id_); break;
    case H5I_ATTR: H5Aclose(id_); break;
    case H5I_GENPROP_LST: H5Pclose(id_); break;
    default: H5Idec_ref(id_); break;
  }
  id_ = H5I_INVALID_HID;
}

std::string TakeErrorStack() {
  std::vector<std::string> msgs;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, CollectMessage, &msgs);
  H5Eclear2(H5E_DEFAULT);
  // The innermost entries say what actually went wrong; the outer ones repeat the call chain.
  std::string out;
  for (size_t i = 0; i < msgs.size() && i < 2; ++i) {
    if (!out.empty()) out += "; ";
    out += msgs[i];
  }
  return out;
}

Status Failed(StatusCode code, const std::string& what) {
  std::string stack = TakeErrorStack();
  return Status(code, stack.empty() ? what : what + ": " + stack);
}

namespace {

bool IsH5pyBool(hid_t t) {
  if (H5Tget_class(t) != H5T_ENUM || H5Tget_nmembers(t) != 2 || H5Tget_size(t) != 1) return false;
  bool ok = true;
  for (unsigned i = 0; i < 2 && ok; ++i) {
    char* name = H5Tget_member_name(t, i);
    if (!name) return false;
    signed char v = 0;
    H5Tget_member_value(t, i, &v);
    ok = (v == 0 && std::string(name) == "FALSE") || (v == 1 && std::string(name) == "TRUE");
    H5free_memory(name);
  }
  return ok;
}

}  // namespace

Result<TypeDesc> DescribeType(hid_t file_type, const std::string& where) {
  H5T_class_t cls = H5Tget_class(file_type);
  TypeDesc d;
  switch (cls) {
    case H5T_INTEGER: {
      d.cls = H5Tget_sign(file_type) == H5T_SGN_NONE ? TypeClass::kUInt : TypeClass::kInt;
      d.size = H5Tget_size(file_type);
      return d;
    }
    case H5T_FLOAT: {
      size_t size = H5Tget_size(file_type);
      if (size != 2 && size != 4 && size != 8) {
        return InvalidArgument(where + " has a " + std::to_string(size * 8) +
                               "-bit floating-point type, which numpy cannot hold");
      }
      d.cls = TypeClass::kFloat;
      d.size = size;
      return d;
    }
    case H5T_ENUM: {
      if (IsH5pyBool(file_type)) return Scalar(TypeClass::kBool, 1);
      Handle super(H5Tget_super(file_type));
      return DescribeType(super.get(), where);  // enums read as their integer values
    }
    case H5T_STRING: {
      htri_t var = H5Tis_variable_str(file_type);
      d.utf8 = H5Tget_cset(file_type) == H5T_CSET_UTF8;
      if (var > 0) {
        d.cls = TypeClass::kVarString;
        d.size = sizeof(char*);
      } else {
        d.cls = TypeClass::kFixedString;
        d.size = H5Tget_size(file_type);
      }
      return d;
    }
    case H5T_COMPOUND: {
      // Members at packed native offsets (numpy lays out structured dtypes the same way when
      // given explicit offsets).
      d.cls = TypeClass::kCompound;
      int n = H5Tget_nmembers(file_type);
      size_t offset = 0;
      for (int i = 0; i < n; ++i) {
        char* name = H5Tget_member_name(file_type, static_cast<unsigned>(i));
        Handle mt(H5Tget_member_type(file_type, static_cast<unsigned>(i)));
        std::string mname = name ? name : "";
        if (name) H5free_memory(name);
        auto sub = DescribeType(mt.get(), where + " member '" + mname + "'");
        if (!sub.ok()) return sub.status();
        Member m;
        m.name = mname;
        m.offset = offset;
        m.type = std::move(sub).value();
        offset += m.type.size;
        d.members.push_back(std::move(m));
      }
      d.size = offset;
      return d;
    }
    case H5T_ARRAY: {
      int rank = H5Tget_array_ndims(file_type);
      std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
      H5Tget_array_dims2(file_type, dims.data());
      Handle super(H5Tget_super(file_type));
      auto base = DescribeType(super.get(), where);
      if (!base.ok()) return base.status();
      d.cls = TypeClass::kArray;
      d.dims.assign(dims.begin(), dims.end());
      uint64_t n = std::accumulate(d.dims.begin(), d.dims.end(), uint64_t{1}, std::multiplies<>());
      d.size = base->size * n;
      d.base.push_back(std::move(base).value());
      return d;
    }
    case H5T_OPAQUE: {
      d.cls = TypeClass::kOpaque;
      d.size = H5Tget_size(file_type);
      return d;
    }
    case H5T_BITFIELD: {
      d.cls = TypeClass::kUInt;
      d.size = H5Tget_size(file_type);
      return d;
    }
    default:
      break;
  }
  const char* names[] = {"integer", "float", "time", "string", "bitfield", "opaque", "compound",
                         "reference", "enum", "variable-length sequence", "array"};
  std::string cname = (cls >= 0 && cls <= 10) ? names[cls] : "unknown";
  return InvalidArgument(where + " has an HDF5 " + cname +
                         " type, which mpiray.data cannot turn into a numpy column");
}

Result<Handle> MakeType(const TypeDesc& desc, bool for_file) {
  switch (desc.cls) {
    case TypeClass::kInt:
    case TypeClass::kUInt: {
      hid_t base;
      bool s = desc.cls == TypeClass::kInt;
      switch (desc.size) {
        case 1: base = for_file ? (s ? H5T_STD_I8LE : H5T_STD_U8LE) : (s ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8); break;
        case 2: base = for_file ? (s ? H5T_STD_I16LE : H5T_STD_U16LE) : (s ? H5T_NATIVE_INT16 : H5T_NATIVE_UINT16); break;
        case 4: base = for_file ? (s ? H5T_STD_I32LE : H5T_STD_U32LE) : (s ? H5T_NATIVE_INT32 : H5T_NATIVE_UINT32); break;
        case 8: base = for_file ? (s ? H5T_STD_I64LE : H5T_STD_U64LE) : (s ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64); break;
        default: return InvalidArgument("no " + std::to_string(desc.size * 8) + "-bit integer type");
      }
      return Handle(H5Tcopy(base));
    }
    case TypeClass::kFloat: {
      if (desc.size == 4) return Handle(H5Tcopy(for_file ? H5T_IEEE_F32LE : H5T_NATIVE_FLOAT));
      if (desc.size == 8) return Handle(H5Tcopy(for_file ? H5T_IEEE_F64LE : H5T_NATIVE_DOUBLE));
      if (desc.size == 2) {
        // IEEE half precision as h5py writes it: 1 sign, 5 exponent, 10 mantissa bits.
        Handle t(H5Tcopy(H5T_IEEE_F32LE));
        if (H5Tset_fields(t.get(), 15, 10, 5, 0, 10) < 0 || H5Tset_size(t.get(), 2) < 0 ||
            H5Tset_ebias(t.get(), 15) < 0) {
          return Failed(StatusCode::kInvalidArgument, "cannot make a 16-bit float type");
        }
        return t;
      }
      return InvalidArgument("no " + std::to_string(desc.size * 8) + "-bit floating-point type");
    }
    case TypeClass::kBool: {
      Handle t(H5Tenum_create(H5T_NATIVE_INT8));
      signed char f = 0, tr = 1;
      H5Tenum_insert(t.get(), "FALSE", &f);
      H5Tenum_insert(t.get(), "TRUE", &tr);
      return t;
    }
    case TypeClass::kFixedString: {
      Handle t(H5Tcopy(H5T_C_S1));
      if (desc.size == 0) return InvalidArgument("a fixed-length string type needs at least one byte");
      H5Tset_size(t.get(), desc.size);
      H5Tset_strpad(t.get(), H5T_STR_NULLPAD);
      H5Tset_cset(t.get(), desc.utf8 ? H5T_CSET_UTF8 : H5T_CSET_ASCII);
      return t;
    }
    case TypeClass::kVarString: {
      Handle t(H5Tcopy(H5T_C_S1));
      H5Tset_size(t.get(), H5T_VARIABLE);
      H5Tset_cset(t.get(), desc.utf8 ? H5T_CSET_UTF8 : H5T_CSET_ASCII);
      return t;
    }
    case TypeClass::kCompound: {
      if (desc.members.empty()) return InvalidArgument("a compound type needs members");
      size_t size = desc.size;
      if (for_file) {
        size = 0;
        for (const auto& m : desc.members) size += m.type.size;
      }
      Handle t(H5Tcreate(H5T_COMPOUND, size));
      size_t off = 0;
      for (const auto& m : desc.members) {
        auto mt = MakeType(m.type, for_file);
        if (!mt.ok()) return mt.status();
        size_t at = for_file ? off : m.offset;
        if (H5Tinsert(t.get(), m.name.c_str(), at, mt->get()) < 0) {
          return Failed(StatusCode::kInvalidArgument, "cannot add member '" + m.name + "' to a compound type");
        }
        off += m.type.size;
      }
      return t;
    }
    case TypeClass::kArray: {
      if (desc.base.size() != 1) return InvalidArgument("an array type needs one element type");
      auto bt = MakeType(desc.base[0], for_file);
      if (!bt.ok()) return bt.status();
      std::vector<hsize_t> dims(desc.dims.begin(), desc.dims.end());
      return Handle(H5Tarray_create2(bt->get(), static_cast<unsigned>(dims.size()), dims.data()));
    }
    case TypeClass::kOpaque: {
      Handle t(H5Tcreate(H5T_OPAQUE, desc.size));
      return t;
    }
  }
  return InvalidArgument("unknown type class");
}

std::string FilterName(int id) {
  switch (id) {
    case H5Z_FILTER_DEFLATE: return "deflate";
    case H5Z_FILTER_SHUFFLE: return "shuffle";
    case H5Z_FILTER_FLETCHER32: return "fletcher32";
    case H5Z_FILTER_SZIP: return "szip";
    case H5Z_FILTER_NBIT: return "nbit";
    case H5Z_FILTER_SCALEOFFSET: return "scaleoffset";
    case 32000: return "lzf";
    case 32001: return "blosc";
    case 32004: return "lz4";
    case 32008: return "bitshuffle";
    case 32015: return "zstd";
    default: return "filter " + std::to_string(id);
  }
}

}  // namespace mpiray::hdf5::impl

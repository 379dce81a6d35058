// TypeDesc helpers (mpiray/hdf5/types.h).
#include "mpiray/hdf5/types.h"

namespace mpiray::hdf5 {

TypeDesc Scalar(TypeClass cls, size_t size) {
  TypeDesc d;
  d.cls = cls;
  d.size = size;
  return d;
}

std::string TypeDesc::ToString() const {
  switch (cls) {
    case TypeClass::kInt: return "int" + std::to_string(size * 8);
    case TypeClass::kUInt: return "uint" + std::to_string(size * 8);
    case TypeClass::kFloat: return "float" + std::to_string(size * 8);
    case TypeClass::kBool: return "bool";
    case TypeClass::kFixedString: return "bytes" + std::to_string(size);
    case TypeClass::kVarString: return utf8 ? "string (variable length, utf-8)" : "string (variable length)";
    case TypeClass::kOpaque: return "opaque" + std::to_string(size);
    case TypeClass::kArray: {
      std::string s = (base.empty() ? std::string("?") : base[0].ToString()) + "[";
      for (size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
      return s + "]";
    }
    case TypeClass::kCompound: {
      std::string s = "compound{";
      for (size_t i = 0; i < members.size(); ++i) {
        s += (i ? ", " : "") + members[i].name + ": " + members[i].type.ToString();
      }
      return s + "}";
    }
  }
  return "?";
}

bool TypeDesc::operator==(const TypeDesc& o) const {
  if (cls != o.cls || size != o.size || dims != o.dims || members.size() != o.members.size() ||
      base.size() != o.base.size()) {
    return false;
  }
  if ((cls == TypeClass::kFixedString || cls == TypeClass::kVarString) && utf8 != o.utf8) return false;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].name != o.members[i].name || members[i].offset != o.members[i].offset ||
        members[i].type != o.members[i].type) {
      return false;
    }
  }
  for (size_t i = 0; i < base.size(); ++i) {
    if (base[i] != o.base[i]) return false;
  }
  return true;
}

}  // namespace mpiray::hdf5

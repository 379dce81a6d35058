// Element types of HDF5 datasets as mpiray sees them: a small description that maps one to one
// onto a numpy dtype (the Python binding converts), built from or turned into an HDF5 type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mpiray::hdf5 {

/// @brief The kind of an element type.
enum class TypeClass : uint8_t {
  kInt,          ///< signed integer of `size` bytes
  kUInt,         ///< unsigned integer of `size` bytes
  kFloat,        ///< IEEE float of `size` bytes (4 or 8; 2 where the HDF5 library has it)
  kBool,         ///< one byte, h5py's convention: an int8 enum {FALSE = 0, TRUE = 1}
  kFixedString,  ///< `size` bytes, null padded (numpy "S<size>")
  kVarString,    ///< variable-length string (numpy object array of str/bytes)
  kCompound,     ///< a struct of named members (numpy structured dtype)
  kArray,        ///< a fixed-shape array of `base` elements (numpy subarray dtype)
  kOpaque,       ///< raw bytes of `size` (numpy "V<size>")
};

struct Member;

/// @brief An element type in memory (native byte order, native member offsets).
struct TypeDesc {
  TypeClass cls = TypeClass::kInt;
  /// Bytes of one element in memory; for kVarString the size of a `char*`.
  size_t size = 0;
  /// Strings: UTF-8 (otherwise ASCII bytes).
  bool utf8 = false;
  /// kCompound: the members with their offsets in memory.
  std::vector<Member> members;
  /// kArray: the element shape and the element type (exactly one entry in `base`).
  std::vector<uint64_t> dims;
  std::vector<TypeDesc> base;

  /// @brief A readable name, e.g. "int64", "float32", "compound{a: int32, b: float64}".
  std::string ToString() const;
  /// @brief Same kind, size and (recursively) members.
  bool operator==(const TypeDesc& other) const;
  bool operator!=(const TypeDesc& other) const { return !(*this == other); }
};

/// @brief A member of a compound type.
struct Member {
  std::string name;
  size_t offset = 0;
  TypeDesc type;
};

/// @brief A scalar type of `cls` and `size` bytes.
TypeDesc Scalar(TypeClass cls, size_t size);

}  // namespace mpiray::hdf5

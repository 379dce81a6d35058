// mpiray._hdf5: the Python binding of libs/hdf5 (used by mpiray.data's read_hdf5/write_hdf5).
// Types travel as small dicts that mpiray.data turns into numpy dtypes; reads go straight into
// a writable buffer the caller allocated (a numpy array), with the GIL released. Errors are
// raised as _hdf5.Error (an OSError), _hdf5.NotFoundError or _hdf5.InvalidError, whose
// messages name the file and the dataset.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "mpiray/hdf5/file.h"
#include "mpiray/hdf5/write.h"

namespace py = pybind11;
namespace h5 = mpiray::hdf5;

namespace {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct NotFoundError : Error {
  using Error::Error;
};
struct InvalidError : Error {
  using Error::Error;
};

// The one place that maps a Status to a Python exception.
void Check(const mpiray::Status& s) {
  if (s.ok()) return;
  switch (s.code()) {
    case mpiray::StatusCode::kNotFound: throw NotFoundError(s.message());
    case mpiray::StatusCode::kInvalidArgument: throw InvalidError(s.message());
    default: throw Error(s.message());
  }
}

template <class T>
T Take(mpiray::Result<T> r) {
  Check(r.status());
  return std::move(r).value();
}

const char* ClassName(h5::TypeClass c) {
  switch (c) {
    case h5::TypeClass::kInt: return "int";
    case h5::TypeClass::kUInt: return "uint";
    case h5::TypeClass::kFloat: return "float";
    case h5::TypeClass::kBool: return "bool";
    case h5::TypeClass::kFixedString: return "string";
    case h5::TypeClass::kVarString: return "vstring";
    case h5::TypeClass::kCompound: return "compound";
    case h5::TypeClass::kArray: return "array";
    case h5::TypeClass::kOpaque: return "opaque";
  }
  return "?";
}

py::dict TypeToPy(const h5::TypeDesc& t) {
  py::dict d;
  d["class"] = ClassName(t.cls);
  d["size"] = t.size;
  d["utf8"] = t.utf8;
  if (t.cls == h5::TypeClass::kCompound) {
    py::list members;
    for (const auto& m : t.members) members.append(py::make_tuple(m.name, m.offset, TypeToPy(m.type)));
    d["members"] = members;
  }
  if (t.cls == h5::TypeClass::kArray) {
    d["dims"] = t.dims;
    d["base"] = TypeToPy(t.base.at(0));
  }
  return d;
}

h5::TypeDesc TypeFromPy(const py::dict& d) {
  static const std::pair<const char*, h5::TypeClass> kClasses[] = {
      {"int", h5::TypeClass::kInt},         {"uint", h5::TypeClass::kUInt},
      {"float", h5::TypeClass::kFloat},     {"bool", h5::TypeClass::kBool},
      {"string", h5::TypeClass::kFixedString}, {"vstring", h5::TypeClass::kVarString},
      {"compound", h5::TypeClass::kCompound}, {"array", h5::TypeClass::kArray},
      {"opaque", h5::TypeClass::kOpaque}};
  auto cls = d["class"].cast<std::string>();
  h5::TypeDesc t;
  bool found = false;
  for (const auto& [name, c] : kClasses) {
    if (cls == name) {
      t.cls = c;
      found = true;
    }
  }
  if (!found) throw InvalidError("unknown type class '" + cls + "'");
  t.size = d["size"].cast<size_t>();
  if (d.contains("utf8")) t.utf8 = d["utf8"].cast<bool>();
  if (t.cls == h5::TypeClass::kCompound) {
    for (auto item : d["members"]) {
      auto tup = item.cast<py::tuple>();
      h5::Member m;
      m.name = tup[0].cast<std::string>();
      m.offset = tup[1].cast<size_t>();
      m.type = TypeFromPy(tup[2].cast<py::dict>());
      t.members.push_back(std::move(m));
    }
  }
  if (t.cls == h5::TypeClass::kArray) {
    t.dims = d["dims"].cast<std::vector<uint64_t>>();
    t.base.push_back(TypeFromPy(d["base"].cast<py::dict>()));
  }
  return t;
}

py::dict InfoToPy(const h5::DatasetInfo& info) {
  py::dict d;
  d["name"] = info.name;
  d["shape"] = py::tuple(py::cast(info.shape));
  d["chunks"] = info.chunks.empty() ? py::object(py::none()) : py::object(py::tuple(py::cast(info.chunks)));
  d["layout"] = h5::LayoutName(info.layout);
  d["type"] = TypeToPy(info.type);
  py::list filters;
  for (const auto& f : info.filters) {
    py::dict fd;
    fd["id"] = f.id;
    fd["name"] = f.name;
    fd["available"] = f.available;
    filters.append(fd);
  }
  d["filters"] = filters;
  return d;
}

py::object StringsToPy(const std::vector<std::string>& strings, bool utf8) {
  py::list out(strings.size());
  for (size_t i = 0; i < strings.size(); ++i) {
    const auto& s = strings[i];
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), utf8 ? "strict" : "surrogateescape");
    if (!o) throw py::error_already_set();
    out[i] = py::reinterpret_steal<py::object>(o);
  }
  return out;
}

std::vector<std::string> StringsFromPy(const py::handle& seq) {
  std::vector<std::string> out;
  for (auto item : seq) {
    if (py::isinstance<py::bytes>(item)) {
      out.push_back(item.cast<std::string>());
    } else if (py::isinstance<py::str>(item)) {
      out.push_back(item.cast<std::string>());
    } else if (item.is_none()) {
      out.emplace_back();
    } else {
      throw InvalidError("strings to write must be str or bytes, got " +
                         std::string(py::str(py::type::of(item).attr("__name__"))));
    }
  }
  return out;
}

// Keeps what a write needs from Python alive while the GIL is released.
struct WriteInputs {
  std::vector<py::buffer_info> buffers;
  std::vector<std::vector<std::string>> strings;
};

h5::AttributeData AttrFromPy(const py::dict& a, WriteInputs& keep) {
  h5::AttributeData out;
  out.name = a["name"].cast<std::string>();
  out.type = TypeFromPy(a["type"].cast<py::dict>());
  out.shape = a["shape"].cast<std::vector<uint64_t>>();
  if (out.type.cls == h5::TypeClass::kVarString) {
    keep.strings.push_back(StringsFromPy(a["strings"]));
  } else {
    keep.buffers.push_back(a["data"].cast<py::buffer>().request());
    out.data = keep.buffers.back().ptr;
    out.data_bytes = static_cast<size_t>(keep.buffers.back().size * keep.buffers.back().itemsize);
  }
  return out;
}

void WriteFile(const std::string& path, const py::list& datasets, const py::list& attributes) {
  WriteInputs keep;
  keep.buffers.reserve(datasets.size() + attributes.size());
  keep.strings.reserve(datasets.size() + attributes.size());
  std::vector<h5::DatasetData> ds;
  for (auto item : datasets) {
    auto d = item.cast<py::dict>();
    h5::DatasetData out;
    out.name = d["name"].cast<std::string>();
    out.type = TypeFromPy(d["type"].cast<py::dict>());
    out.shape = d["shape"].cast<std::vector<uint64_t>>();
    if (out.type.cls == h5::TypeClass::kVarString) {
      keep.strings.push_back(StringsFromPy(d["strings"]));
    } else {
      keep.buffers.push_back(d["data"].cast<py::buffer>().request());
      out.data = keep.buffers.back().ptr;
      out.data_bytes = static_cast<size_t>(keep.buffers.back().size * keep.buffers.back().itemsize);
    }
    if (d.contains("chunks") && !d["chunks"].is_none()) out.storage.chunks = d["chunks"].cast<std::vector<uint64_t>>();
    if (d.contains("deflate") && !d["deflate"].is_none()) out.storage.deflate_level = d["deflate"].cast<int>();
    if (d.contains("shuffle")) out.storage.shuffle = d["shuffle"].cast<bool>();
    ds.push_back(std::move(out));
  }
  std::vector<h5::AttributeData> attrs;
  for (auto item : attributes) attrs.push_back(AttrFromPy(item.cast<py::dict>(), keep));
  // Strings are attached once `keep.strings` no longer grows (pointers stay valid).
  size_t si = 0;
  for (auto& d : ds) {
    if (d.type.cls == h5::TypeClass::kVarString) d.strings = &keep.strings[si++];
  }
  for (auto& a : attrs) {
    if (a.type.cls == h5::TypeClass::kVarString) a.strings = &keep.strings[si++];
  }
  mpiray::Status st;
  {
    py::gil_scoped_release release;
    st = h5::WriteFile(path, ds, attrs);
  }
  Check(st);
}

void WriteVirtualFile(const std::string& path, const py::list& datasets, const py::list& attributes) {
  WriteInputs keep;
  keep.buffers.reserve(attributes.size());
  keep.strings.reserve(attributes.size());
  std::vector<h5::VirtualDataset> vds;
  for (auto item : datasets) {
    auto d = item.cast<py::dict>();
    h5::VirtualDataset v;
    v.name = d["name"].cast<std::string>();
    v.type = TypeFromPy(d["type"].cast<py::dict>());
    v.row_shape = d["row_shape"].cast<std::vector<uint64_t>>();
    for (auto s : d["sources"]) {
      auto t = s.cast<py::tuple>();
      v.sources.push_back({t[0].cast<std::string>(), t[1].cast<std::string>(), t[2].cast<uint64_t>()});
    }
    vds.push_back(std::move(v));
  }
  std::vector<h5::AttributeData> attrs;
  for (auto item : attributes) attrs.push_back(AttrFromPy(item.cast<py::dict>(), keep));
  size_t si = 0;
  for (auto& a : attrs) {
    if (a.type.cls == h5::TypeClass::kVarString) a.strings = &keep.strings[si++];
  }
  mpiray::Status st;
  {
    py::gil_scoped_release release;
    st = h5::WriteVirtualFile(path, vds, attrs);
  }
  Check(st);
}

}  // namespace

PYBIND11_MODULE(_hdf5, m) {
  m.doc() = "HDF5 reading and writing for mpiray.data (libs/hdf5)";
  auto error = py::register_exception<Error>(m, "Error", PyExc_OSError);
  py::register_exception<NotFoundError>(m, "NotFoundError", error.ptr());
  py::register_exception<InvalidError>(m, "InvalidError", error.ptr());

  py::class_<h5::File>(m, "File")
      .def(py::init([](const std::string& path) {
             mpiray::Result<h5::File> f = [&] {
               py::gil_scoped_release release;
               return h5::File::Open(path);
             }();
             return Take(std::move(f));
           }),
           py::arg("path"))
      .def_property_readonly("path", &h5::File::path)
      .def("list_datasets", [](const h5::File& f) {
        mpiray::Result<std::vector<std::string>> r = [&] {
          py::gil_scoped_release release;
          return f.ListDatasets();
        }();
        return Take(std::move(r));
      })
      .def("describe", [](const h5::File& f, const std::string& name) {
        mpiray::Result<h5::DatasetInfo> r = [&] {
          py::gil_scoped_release release;
          return f.Describe(name);
        }();
        return InfoToPy(Take(std::move(r)));
      })
      .def("read_rows",
           [](const h5::File& f, const std::string& name, uint64_t start, uint64_t count, py::buffer out) {
             py::buffer_info info = out.request(true);
             size_t bytes = static_cast<size_t>(info.size * info.itemsize);
             mpiray::Status st;
             {
               py::gil_scoped_release release;
               st = f.ReadRows(name, start, count, info.ptr, bytes);
             }
             Check(st);
           },
           py::arg("dataset"), py::arg("start"), py::arg("count"), py::arg("out"))
      .def("read_strings",
           [](const h5::File& f, const std::string& name, uint64_t start, uint64_t count, bool utf8) {
             mpiray::Result<std::vector<std::string>> r = [&] {
               py::gil_scoped_release release;
               return f.ReadStrings(name, start, count);
             }();
             return StringsToPy(Take(std::move(r)), utf8);
           },
           py::arg("dataset"), py::arg("start"), py::arg("count"), py::arg("utf8") = true)
      .def("read_attributes", [](const h5::File& f, const std::string& object) {
        mpiray::Result<std::vector<h5::Attribute>> r = [&] {
          py::gil_scoped_release release;
          return f.ReadAttributes(object);
        }();
        py::list out;
        for (const auto& a : Take(std::move(r))) {
          py::dict d;
          d["name"] = a.name;
          d["type"] = TypeToPy(a.type);
          d["shape"] = py::tuple(py::cast(a.shape));
          if (a.type.cls == h5::TypeClass::kVarString) {
            d["strings"] = StringsToPy(a.strings, a.type.utf8);
          } else {
            d["data"] = py::bytes(reinterpret_cast<const char*>(a.data.data()), a.data.size());
          }
          out.append(d);
        }
        return out;
      }, py::arg("object") = "/");

  m.def("write_file", &WriteFile, py::arg("path"), py::arg("datasets"), py::arg("attributes") = py::list());
  m.def("write_virtual_file", &WriteVirtualFile, py::arg("path"), py::arg("datasets"),
        py::arg("attributes") = py::list());
  m.def("looks_like_hdf5", [](const std::string& path) { return h5::LooksLikeHdf5(path); });
}

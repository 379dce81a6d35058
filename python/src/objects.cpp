// mpiray._core: object references and values: ObjectRef, put, get, wait, cancel.
#include "binding.h"

namespace mpiray_py {

namespace {

std::vector<ObjectId> RefIds(py::handle refs) {
  std::vector<ObjectId> ids;
  for (auto r : refs) {
    if (!py::isinstance<PyRef>(r)) {
      throw py::type_error("expected an ObjectRef, got " + Describe(r));
    }
    ids.push_back(r.cast<PyRef&>().Use());
  }
  return ids;
}

py::list Get(py::object refs, py::object timeout) {
  std::vector<ObjectId> ids = RefIds(refs);
  int64_t t = TimeoutMs(timeout);
  std::vector<Buffer> bufs = Interruptible(t, [&](int64_t slice) { return detail::Client()->Get(ids, slice); });
  py::list out;
  for (const Buffer& b : bufs) out.append(DeserializePy(b));
  return out;
}

py::list Wait(py::object refs, size_t num_returns, py::object timeout) {
  std::vector<ObjectId> ids = RefIds(refs);
  int64_t t = TimeoutMs(timeout);
  std::vector<bool> ready;
  if (t < 0 || detail::CurrentContext().driver) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(t);
    while (true) {
      int64_t slice = t < 0 ? kInterruptSliceMs : std::max<int64_t>(0, std::min<int64_t>(kInterruptSliceMs, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
      {
        py::gil_scoped_release release;
        ready = detail::Client()->Wait(ids, num_returns, slice);
      }
      size_t n = 0;
      for (bool r : ready) n += r;
      if (n >= num_returns || (t >= 0 && std::chrono::steady_clock::now() >= deadline)) break;
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    }
  } else {
    py::gil_scoped_release release;
    ready = detail::Client()->Wait(ids, num_returns, t);
  }
  py::list out;
  for (bool r : ready) out.append(py::bool_(r));
  return out;
}

py::object Put(py::handle value, py::object fill) {
  if (py::isinstance<PyRef>(value)) {
    throw py::type_error("Calling 'put' on an ObjectRef is not allowed (put the value instead)");
  }
  detail::SerializedValue s = SerializePy(value, "value", std::move(fill));
  ObjectId id;
  std::shared_ptr<py::error_already_set> failed;
  try {
    py::gil_scoped_release release;
    id = detail::Client()->Put(s);
  } catch (FillFailed& f) {
    failed = std::move(f.error);  // raised below, with the GIL held
  }
  if (failed) throw py::error_already_set(*failed);
  return AdoptRef(id);
}

}  // namespace

// Object references and values: put, get, wait, cancel.
void BindObjects(py::module_& m) {
  py::class_<PayloadView>(m, "_PayloadView", py::buffer_protocol())
      .def_buffer([](PayloadView& v) {
        return py::buffer_info(const_cast<uint8_t*>(v.data), 1, py::format_descriptor<uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(v.size)}, {1}, /*readonly=*/true);
      });
  py::class_<PyRef>(m, "ObjectRef")
      .def(py::init([](py::bytes id) {
             ObjectId i = IdFromBytes(id);
             detail::Client()->AddLocalRef(i);
             return new PyRef(i);
           }),
           py::arg("id"))
      .def("binary", [](const PyRef& r) { return IdBytes(r.id); })
      .def("hex", [](const PyRef& r) { return r.id.Hex(); })
      .def("is_nil", [](const PyRef& r) { return r.id.nil(); })
      .def("__hash__", [](const PyRef& r) { return std::hash<ObjectId>()(r.id); })
      .def("__eq__", [](const PyRef& a, py::object b) {
        return py::isinstance<PyRef>(b) && b.cast<PyRef&>().id == a.id;
      })
      .def("__repr__", [](const PyRef& r) { return "ObjectRef(" + r.id.Hex() + ")"; })
      .def("__reduce__", [](const PyRef& r) {
        // A ref pickled inside another value is a nested ref of that value.
        if (auto* c = detail::NestedRefCollector(); c && !r.id.nil()) c->push_back(r.Use());
        static py::object* rebuild = new py::object(Import("mpiray._refs").attr("rebuild"));
        return py::make_tuple(*rebuild, py::make_tuple(IdBytes(r.id)));
      });
  m.def("_rebuild_ref", [](py::bytes b) { return NewRef(IdFromBytes(b)); });
  m.def("_ref_from_hex", [](const std::string& hex) {
    ObjectId id;
    if (!ObjectId::FromHex(hex, &id)) throw py::value_error("not an object id: " + hex);
    return NewRef(id);
  });
  m.def("put", &Put, py::arg("value"), py::arg("fill") = py::none());
  py::class_<PyFilled>(m, "FilledValue")
      .def(py::init([](py::object value, py::object fill) { return PyFilled{std::move(value), std::move(fill)}; }),
           py::arg("value"), py::arg("fill"))
      .def_readonly("value", &PyFilled::value);
  m.def("get", &Get, py::arg("refs"), py::arg("timeout") = py::none());
  m.def("wait", &Wait);
  m.def("cancel", [](PyRef& r, bool force, bool recursive) { detail::Client()->Cancel(r.Use(), force, recursive); });
  m.def("serialized_size", [](py::handle v) { return SerializePy(v, "value").size(); });
}

}  // namespace mpiray_py

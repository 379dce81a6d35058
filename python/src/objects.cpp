// mpiray._core: object references and values: ObjectRef, put, get, wait, cancel.
#include "binding.h"

namespace mpiray_py {

namespace {

std::vector<ObjectId> RefIds(py::handle refs) {
  std::vector<ObjectId> ids;
  for (auto r : refs) {
    PyRefObject* ref = AsRef(r);
    if (!ref) throw py::type_error("expected an ObjectRef, got " + Describe(r));
    ids.push_back(RefUse(ref));
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

std::vector<bool> WaitFlags(const std::vector<ObjectId>& ids, size_t num_returns, py::object timeout) {
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
  return ready;
}

py::list Wait(py::object refs, size_t num_returns, py::object timeout) {
  std::vector<bool> ready = WaitFlags(RefIds(refs), num_returns, timeout);
  py::list out;
  for (bool r : ready) out.append(py::bool_(r));
  return out;
}

// ray.wait's whole job once the arguments' kinds are checked (mpiray._api.wait): the refs'
// ids, Ray's checks (ObjectRefs only, no duplicates, 1 <= num_returns <= len), the wait, and
// (ready, not_ready) split in input order: the first num_returns ready ones are ready.
py::tuple WaitSplit(py::sequence refs, size_t num_returns, py::object timeout) {
  const size_t n = py::len(refs);
  std::vector<py::handle> items(n);
  std::vector<ObjectId> ids(n);
  for (size_t i = 0; i < n; ++i) {
    items[i] = PySequence_Fast_GET_ITEM(refs.ptr(), static_cast<py::ssize_t>(i));
    PyRefObject* ref = AsRef(items[i]);
    if (!ref) {
      std::string type = py::str(py::type::handle_of(items[i]).attr("__name__")).cast<std::string>();
      throw py::type_error("wait() expects ObjectRefs, got " + type + ": " + Describe(items[i]).substr(0, 100));
    }
    ids[i] = RefUse(ref);
  }
  std::vector<ObjectId> sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    throw py::value_error("Wait requires a list of unique object refs.");
  }
  if (num_returns == 0 || num_returns > n) {
    throw py::value_error("Invalid number of objects to return: num_returns must be between 1 and "
                          "the number of refs (" + std::to_string(n) + "), got " +
                          std::to_string(num_returns));
  }
  std::vector<bool> flags = WaitFlags(ids, num_returns, timeout);
  py::list ready, not_ready;
  size_t taken = 0;
  for (size_t i = 0; i < n; ++i) {
    bool r = flags[i] && taken < num_returns;
    taken += r;
    (r ? ready : not_ready).append(items[i]);
  }
  return py::make_tuple(ready, not_ready);
}

py::object Put(py::handle value, py::object fill) {
  if (IsRef(value)) {
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
  m.def("put", &Put, py::arg("value"), py::arg("fill") = py::none());
  m.def("put_item", [](py::handle value) {
    // An item of a num_returns="dynamic" generator: a return of the running task (rebuilt by
    // lineage), or, outside a task, a put.
    detail::SerializedValue s = SerializePy(value, "yielded value");
    ObjectId id;
    {
      py::gil_scoped_release release;
      id = detail::PutTaskItem(s);
      if (id.nil()) id = detail::Client()->Put(s);
    }
    return AdoptRef(id);
  }, py::arg("value"));
  py::class_<PyFilled>(m, "FilledValue")
      .def(py::init([](py::object value, py::object fill) { return PyFilled{std::move(value), std::move(fill)}; }),
           py::arg("value"), py::arg("fill"))
      .def_readonly("value", &PyFilled::value);
  m.def("get", &Get, py::arg("refs"), py::arg("timeout") = py::none());
  m.def("wait", &Wait);
  m.def("wait_split", [](py::object refs, py::object num_returns, py::object timeout) {
    // A list or tuple (mpiray._api.wait checked); the fast sequence view of it is the list itself.
    py::sequence seq = py::reinterpret_steal<py::sequence>(PySequence_Fast(refs.ptr(), "wait() expects a list"));
    if (!seq) throw py::error_already_set();
    if (py::isinstance<py::bool_>(num_returns) || !py::isinstance<py::int_>(num_returns) || num_returns.cast<long long>() <= 0) {
      throw py::value_error("Invalid number of objects to return: num_returns must be between 1 and "
                            "the number of refs (" + std::to_string(py::len(seq)) + "), got " +
                            py::str(num_returns).cast<std::string>());
    }
    return WaitSplit(seq, num_returns.cast<size_t>(), timeout);
  });
  m.def("cancel", [](py::handle r, bool force, bool recursive) {
    PyRefObject* ref = AsRef(r);
    if (!ref) throw py::type_error("ray.cancel() expects an ObjectRef, got " + Describe(r));
    detail::Client()->Cancel(RefUse(ref), force, recursive);
  });
  m.def("serialized_size", [](py::handle v) { return SerializePy(v, "value").size(); });
}

}  // namespace mpiray_py

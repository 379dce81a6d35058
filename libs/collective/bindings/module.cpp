// mpiray._collective: the native half of mpiray.util.collective. Python does the rendezvous
// (a named actor, see mpiray/util/collective/_rendezvous.py) and passes tensors as
// (address, element count, dtype code); every operation runs with the GIL released.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>

#include "mpiray/collective/group.h"
#include "nccl_paths.h"
#include "registry.h"

namespace py = pybind11;
using namespace mpiray;
using namespace mpiray::collective;

namespace {

// The rendezvous as three Python callables (called with the GIL held).
class PyRendezvous final : public Rendezvous {
 public:
  PyRendezvous(py::object join, py::object exchange, py::object leave)
      : join_(std::move(join)), exchange_(std::move(exchange)), leave_(std::move(leave)) {}
  ~PyRendezvous() override {
    py::gil_scoped_acquire gil;
    join_ = py::object();
    exchange_ = py::object();
    leave_ = py::object();
  }

  Result<Roster> Join(const GroupOptions&, const std::string& mine) override {
    py::gil_scoped_acquire gil;
    try {
      py::tuple t = join_(py::bytes(mine));
      Roster r;
      r.incarnation = t[0].cast<uint64_t>();
      for (auto b : t[1].cast<py::list>()) r.members.push_back(b.cast<std::string>());
      return r;
    } catch (py::error_already_set& e) {
      return FromPython(e);
    }
  }
  Result<std::vector<std::string>> Exchange(const GroupOptions&, uint64_t incarnation, int round,
                                            const std::string& mine) override {
    py::gil_scoped_acquire gil;
    try {
      py::list l = exchange_(incarnation, round, py::bytes(mine));
      std::vector<std::string> out;
      for (auto b : l) out.push_back(b.cast<std::string>());
      return out;
    } catch (py::error_already_set& e) {
      return FromPython(e);
    }
  }
  void Leave(const GroupOptions&, uint64_t incarnation) override {
    py::gil_scoped_acquire gil;
    try {
      leave_(incarnation);
    } catch (py::error_already_set&) {
      // best effort
    }
  }

 private:
  static Status FromPython(py::error_already_set& e) {
    StatusCode code = StatusCode::kUnavailable;
    if (e.matches(PyExc_ValueError)) code = StatusCode::kInvalidArgument;
    if (e.matches(PyExc_TimeoutError)) code = StatusCode::kTimeout;
    std::string msg = py::str(e.value());
    return Status(code, msg);
  }
  py::object join_, exchange_, leave_;
};

// A group handle; one operation at a time (members may call from several threads).
struct PyGroup {
  std::unique_ptr<Group> group;
  std::unique_ptr<PyRendezvous> rendezvous;
  std::mutex mu;
  GroupOptions options;

  Group& Get() {
    if (!group) throw InvalidArgumentError("collective group '" + options.name + "' was destroyed");
    return *group;
  }
};

DType ToDType(int code) {
  if (code < 0 || code > static_cast<int>(DType::kUInt8)) throw InvalidArgumentError("bad dtype code " + std::to_string(code));
  return static_cast<DType>(code);
}

ReduceOp ToOp(int code) {
  if (code < 0 || code > static_cast<int>(ReduceOp::kMax)) throw InvalidArgumentError("bad reduce op code " + std::to_string(code));
  return static_cast<ReduceOp>(code);
}

void* Ptr(uintptr_t p) { return reinterpret_cast<void*>(p); }

// The hot path for numpy arrays: the buffer protocol straight to (address, count, dtype) (numpy
// keeps the buffer's format per array, so this is cheap after the first call). False (no Python
// error set) when `obj` is not a C-contiguous writeable buffer of a supported element type: the
// caller then takes the Python path, which names the problem.
bool ArrayBuffer(PyObject* obj, Py_buffer* view, DType* dtype) {
  if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
    PyErr_Clear();
    return false;
  }
  const char* f = view->format ? view->format : "B";
  if (*f == '<' || *f == '=' || *f == '@') ++f;
  bool ok = f[0] != '\0' && f[1] == '\0';
  switch (ok ? f[0] : 0) {
    case 'e': *dtype = DType::kFloat16; break;
    case 'f': *dtype = DType::kFloat32; break;
    case 'd': *dtype = DType::kFloat64; break;
    case 'i':
    case 'l':
    case 'q':
      if (view->itemsize == 4) *dtype = DType::kInt32;
      else if (view->itemsize == 8) *dtype = DType::kInt64;
      else ok = false;
      break;
    case 'B': *dtype = DType::kUInt8; break;
    default: ok = false;
  }
  if (!ok) PyBuffer_Release(view);
  return ok;
}

// The module's parts, one function each.
void BindErrorsAndBackends(py::module_& m) {
  m.doc() = "Native half of mpiray.util.collective";
  static py::exception<CollectiveError> collective_error(m, "CollectiveError", PyExc_RuntimeError);
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const CollectiveError& e) {
      collective_error(e.what());
    } catch (const InvalidArgumentError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("backend_available", [](const std::string& name) {
    auto b = ParseBackend(name);
    ThrowOnError(b.status());
    std::string why;
    bool ok;
    {
      py::gil_scoped_release release;
      ok = Group::BackendAvailable(*b, &why);
    }
    return py::make_tuple(ok, why);
  });
  m.def("set_library_paths", [](const std::vector<std::string>& dirs) { detail::SetNcclSearchPaths(dirs); },
        "Directories searched for libnccl.so.2 and libcudart.so before the linker's path");
}

void BindGroup(py::module_& m) {
  py::class_<PyGroup>(m, "Group")
      .def_property_readonly("rank", [](PyGroup& g) { return g.options.rank; })
      .def_property_readonly("world_size", [](PyGroup& g) { return g.options.world_size; })
      .def_property_readonly("name", [](PyGroup& g) { return g.options.name; })
      .def_property_readonly("backend", [](PyGroup& g) { return std::string(BackendName(g.options.backend)); })
      .def_property_readonly("incarnation", [](PyGroup& g) { return g.group ? g.group->incarnation() : 0; })
      .def("allreduce", [](PyGroup& g, uintptr_t p, size_t n, int dt, int op) {
        py::gil_scoped_release r;
        std::lock_guard<std::mutex> lk(g.mu);
        g.Get().AllReduce(Ptr(p), n, ToDType(dt), ToOp(op));
      })
      .def("allreduce_array", [](PyGroup& g, py::handle arr, int op) {
        // True when done; False: not a contiguous writeable array of a supported dtype.
        Py_buffer view;
        DType dt;
        if (!ArrayBuffer(arr.ptr(), &view, &dt)) return false;
        struct Release {  // after the GIL is back
          Py_buffer* v;
          ~Release() { PyBuffer_Release(v); }
        } release{&view};
        const size_t n = static_cast<size_t>(view.len) / kernels::DTypeSize(dt);
        py::gil_scoped_release r;
        std::lock_guard<std::mutex> lk(g.mu);
        g.Get().AllReduce(view.buf, n, dt, ToOp(op));
        return true;
      })
      .def("reduce", [](PyGroup& g, uintptr_t p, size_t n, int dt, int root, int op) {
        py::gil_scoped_release r;
        std::lock_guard<std::mutex> lk(g.mu);
        g.Get().Reduce(Ptr(p), n, ToDType(dt), root, ToOp(op));
      })
      .def("broadcast", [](PyGroup& g, uintptr_t p, size_t n, int dt, int root) {
        py::gil_scoped_release r;
        std::lock_guard<std::mutex> lk(g.mu);
        g.Get().Broadcast(Ptr(p), n, ToDType(dt), root);
      })
      .def("allgather", [](PyGroup& g, uintptr_t in, uintptr_t out, size_t n, int dt) {
        py::gil_scoped_release r;
        std::lock_guard<std::mutex> lk(g.mu);
        g.Get().AllGather(Ptr(in), Ptr(out), n, ToDType(dt));
      })
      .def("reducescatter", [](PyGroup& g, uintptr_t in, uintptr_t out, size_t n, int dt, int op) {
        py::gil_scoped_release r;
        std::lock_guard<std::mutex> lk(g.mu);
        g.Get().ReduceScatter(Ptr(in), Ptr(out), n, ToDType(dt), ToOp(op));
      })
      .def("barrier", [](PyGroup& g) {
        py::gil_scoped_release r;
        std::lock_guard<std::mutex> lk(g.mu);
        g.Get().Barrier();
      })
      .def("send", [](PyGroup& g, uintptr_t p, size_t n, int dt, int dst) {
        py::gil_scoped_release r;
        std::lock_guard<std::mutex> lk(g.mu);
        g.Get().Send(Ptr(p), n, ToDType(dt), dst);
      })
      .def("recv", [](PyGroup& g, uintptr_t p, size_t n, int dt, int src) {
        py::gil_scoped_release r;
        std::lock_guard<std::mutex> lk(g.mu);
        g.Get().Recv(Ptr(p), n, ToDType(dt), src);
      })
      .def("set_cuda_stream", [](PyGroup& g, uintptr_t stream) {
        std::lock_guard<std::mutex> lk(g.mu);
        g.Get().SetCudaStream(Ptr(stream));
      })
      .def("destroy", [](PyGroup& g) {
        std::unique_ptr<Group> dead;
        {
          py::gil_scoped_release r;
          std::lock_guard<std::mutex> lk(g.mu);
          dead = std::move(g.group);
          dead.reset();
        }
      });
}

void BindCreateGroup(py::module_& m) {
  m.def(
      "create_group",
      [](const std::string& name, int world_size, int rank, const std::string& backend, int64_t timeout_ms,
         int64_t join_timeout_ms, const std::string& node_key, int device, py::object join, py::object exchange,
         py::object leave) {
        GroupOptions o;
        o.name = name;
        o.world_size = world_size;
        o.rank = rank;
        auto b = ParseBackend(backend);
        ThrowOnError(b.status());
        o.backend = *b;
        o.timeout_ms = timeout_ms;
        o.join_timeout_ms = join_timeout_ms;
        o.node_key = node_key;
        o.device = device;
        auto g = std::make_unique<PyGroup>();
        g->options = o;
        g->rendezvous = std::make_unique<PyRendezvous>(std::move(join), std::move(exchange), std::move(leave));
        {
          py::gil_scoped_release release;
          g->group = Group::Create(o, *g->rendezvous);
        }
        return g;
      },
      py::arg("name"), py::arg("world_size"), py::arg("rank"), py::arg("backend"), py::arg("timeout_ms"),
      py::arg("join_timeout_ms"), py::arg("node_key"), py::arg("device"), py::arg("join"), py::arg("exchange"),
      py::arg("leave"));
}

void BindRegistry(py::module_& m) {
  // The registry's rules, for the Python rendezvous actor.
  py::class_<detail::Registry>(m, "Registry")
      .def(py::init<>())
      .def("join", [](detail::Registry& r, const std::string& name, int world, int rank, py::bytes blob) {
        auto id = r.Join(name, world, rank, blob);
        ThrowOnError(id.status());
        return *id;
      })
      .def("publish", [](detail::Registry& r, uint64_t inc, int rank, int round, py::bytes blob) {
        ThrowOnError(r.Publish(inc, rank, round, blob));
      })
      .def("collect", [](detail::Registry& r, uint64_t inc, int round) {
        std::vector<int> joined;
        auto blobs = r.Collect(inc, round, &joined);
        ThrowOnError(blobs.status());
        py::object out = py::none();
        if (!blobs->empty()) {
          py::list l;
          for (auto& b : *blobs) l.append(py::bytes(b));
          out = l;
        }
        return py::make_tuple(out, joined);
      })
      .def("leave", &detail::Registry::Leave);
}

}  // namespace

PYBIND11_MODULE(_collective, m) {
  BindErrorsAndBackends(m);
  BindGroup(m);
  BindCreateGroup(m);
  BindRegistry(m);
  m.attr("DTYPES") = py::dict(py::arg("float16") = 0, py::arg("bfloat16") = 1, py::arg("float32") = 2,
                              py::arg("float64") = 3, py::arg("int32") = 4, py::arg("int64") = 5, py::arg("uint8") = 6);
}

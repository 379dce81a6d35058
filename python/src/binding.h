// The parts of the mpiray._core binding that its translation units share (internal: not
// installed, not included outside python/src/). Which file holds what: docs/architecture.md
// ("The Python binding").
//
// Every file of the binding includes this header first, so that all of them see the same
// pybind11 type casters (pybind11/stl.h included in some translation units and not in others
// would give one C++ type two different conversions).
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "mpiray/core/detail/language.h"
#include "mpiray/core/errors.h"

namespace mpiray_py {

namespace py = pybind11;
using mpiray::Buffer;
using mpiray::ObjectId;
using mpiray::StatusCode;
namespace detail = mpiray::detail;

// ------------------------------------------------------------------ module-level helpers

inline py::object Import(const char* module) { return py::module_::import(module); }

// Cached Python callables (looked up once; the interpreter lives as long as the process).
struct PyFns {
  py::object pickle_dumps, pickle_loads, cloudpickle_dumps, pickle_buffer;
  py::object from_error;  // mpiray.exceptions._from_error(code, message, extra)
  py::object hooks;       // mpiray._worker_hooks
  py::object rebuild_ref;
  bool ready = false;
};
PyFns& Fns();            // pickle and cloudpickle (serialize.cpp)
py::object& FromError();  // mpiray.exceptions._from_error
py::object& Hooks();      // mpiray._worker_hooks
py::dict Context();       // mpiray._core.context(): the calling thread's runtime context
py::dict CallContext();   // its per-call part: task_id, actor_id, incarnation, gpu_ids

// ------------------------------------------------------------------ ObjectRef

// An ObjectRef instance (object_ref.cpp): a plain CPython object, not a pybind11 class.
struct PyRefObject {
  PyObject_HEAD
  ObjectId id;
  uint32_t epoch;      // the session it was counted in (see detail::ClientEpoch)
  PyObject* weakrefs;
};
extern PyTypeObject* g_ref_type;  // mpiray._core.ObjectRef (not subclassable)

// The ObjectRef behind `h`, or nullptr when it is something else.
inline PyRefObject* AsRef(py::handle h) {
  return Py_TYPE(h.ptr()) == g_ref_type ? reinterpret_cast<PyRefObject*>(h.ptr()) : nullptr;
}
inline bool IsRef(py::handle h) { return AsRef(h) != nullptr; }
// Its id, for use in this session only (a ValueError for a ref of an earlier session).
const ObjectId& RefUse(const PyRefObject* r);

inline py::bytes IdBytes(const ObjectId& id) {
  char raw[16];
  std::memcpy(raw, &id.task, 8);
  std::memcpy(raw + 8, &id.index, 4);
  std::memcpy(raw + 12, &id.kind, 4);
  return py::bytes(raw, 16);
}

inline ObjectId IdFromBytes(const std::string& b) {
  if (b.size() != 16) throw py::value_error("an ObjectRef id has 16 bytes, got " + std::to_string(b.size()));
  ObjectId id;
  std::memcpy(&id.task, b.data(), 8);
  std::memcpy(&id.index, b.data() + 8, 4);
  std::memcpy(&id.kind, b.data() + 12, 4);
  return id;
}

// A new Python ObjectRef that takes over a reference the runtime already counted.
py::object AdoptRef(const ObjectId& id);

// A new Python ObjectRef counting a new reference.
inline py::object NewRef(const ObjectId& id) {
  detail::Client()->AddLocalRef(id);
  return AdoptRef(id);
}

// ------------------------------------------------------------------ values (serialize.cpp)

// Exposes (part of) a payload through the buffer protocol, read-only, keeping it mapped.
struct PayloadView {
  Buffer owner;
  const uint8_t* data;
  size_t size;
};

py::object MemoryView(const Buffer& owner, const uint8_t* data, size_t size);

// A Python value as msgpack, for the arguments of C++ functions.
void PackPy(msgpack::packer<msgpack::sbuffer>& pk, py::handle o, int depth = 0);

// Thrown out of a payload writer when the `fill` of put() raised (the Python error is kept in
// Pickled::fill_error and raised again once the GIL is held).
struct FillFailed {
  std::shared_ptr<py::error_already_set> error;
};

// put(value, _fill=fill): `fill(index, dst, src_address)` may write out-of-band buffer `index`
// of the value (its original at `src_address`) straight into `dst`, the object's memory, and
// return True; False (or None) has the buffer copied as usual. `dst` is released afterwards:
// keeping a view of it is an error (the object is immutable once sealed).
// A task's return value whose out-of-band buffers `fill` writes straight into the returned
// object, as put(value, _fill=...) does (mpiray._api._filled makes one).
struct PyFilled {
  py::object value;
  py::object fill;
};

// `obj` and its type, shortened, for error messages.
std::string Describe(py::handle obj);

// Pickle `obj` (protocol 5, out-of-band buffers); refs inside are collected as nested refs.
detail::SerializedValue SerializePy(py::handle obj, const char* what, py::object fill = py::object());

// A payload back to a Python object (errors raise the matching exception).
py::object DeserializePy(const Buffer& payload);

// ------------------------------------------------------------------ waiting

inline int64_t TimeoutMs(py::object timeout) {
  if (timeout.is_none()) return -1;
  double s = timeout.cast<double>();
  if (s < 0) throw py::value_error("timeout must be non-negative or None");
  return static_cast<int64_t>(s * 1000.0);
}

// Driver waits happen in slices so that Ctrl-C raises KeyboardInterrupt promptly (within a
// slice: kInterruptSliceMs, 20 wake-ups a second while the driver waits, ~0 CPU).
inline constexpr int64_t kInterruptSliceMs = 50;

template <class F>
auto Interruptible(int64_t timeout_ms, F&& call) {
  bool driver = detail::CurrentContext().driver;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    int64_t slice = timeout_ms;
    if (driver) {
      int64_t left = timeout_ms < 0 ? kInterruptSliceMs
                                    : std::chrono::duration_cast<std::chrono::milliseconds>(
                                          deadline - std::chrono::steady_clock::now()).count();
      slice = std::max<int64_t>(0, std::min<int64_t>(kInterruptSliceMs, left));
    }
    try {
      py::gil_scoped_release release;
      return call(slice);
    } catch (const mpiray::GetTimeoutError& e) {
      bool expired = timeout_ms >= 0 && std::chrono::steady_clock::now() >= deadline;
      if (!driver) throw;
      if (expired) {
        // Report the caller's timeout, not the last slice's.
        std::string what = e.what();
        auto colon = what.find(" ms");
        throw mpiray::GetTimeoutError("Get timed out after " + std::to_string(timeout_ms) + " ms" +
                                      (colon == std::string::npos ? "" : what.substr(colon + 3)));
      }
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

// ------------------------------------------------------------------ the module's parts

void RegisterPythonRuntime(py::module_& m);  // worker_runtime.cpp
// A cancel ended (on) or no longer ends (off) the waits of `thread` (worker_runtime.cpp: whatever
// is left of it is cleared when that thread's task ends).
void NoteInterruptedThread(uint64_t thread, bool on);
void BindObjectRef(py::module_& m);       // object_ref.cpp
void BindObjects(py::module_& m);         // objects.cpp
void BindTasks(py::module_& m);           // tasks.cpp
void BindCluster(py::module_& m);         // cluster.cpp

}  // namespace mpiray_py

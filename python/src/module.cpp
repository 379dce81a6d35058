// mpiray._core: the Python binding of the runtime.
//
// Values are pickled with protocol 5; out-of-band buffers (numpy arrays and anything exposing
// the buffer protocol) are written once into the object payload, 64-byte aligned, and come
// back as read-only memoryviews into the node's shared memory (zero-copy, as in Ray).
//
// Python payload layout (after the 8-byte PayloadHeader):
//   u32 nbuf | u32 reserved | u64 pickle_len | nbuf x (u64 offset, u64 length) | pickle | buffers
// Offsets are from the start of the payload.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <dlfcn.h>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mpiray/core/api.h"
#include "mpiray/core/bootstrap.h"
#include "mpiray/core/detail/language.h"
#include "mpiray/mpi/init.h"
#include "thread_state.h"

namespace py = pybind11;
using mpiray::Buffer;
using mpiray::ObjectId;
using mpiray::StatusCode;
namespace detail = mpiray::detail;

namespace {

constexpr size_t kAlign = 64;
size_t AlignUp(size_t n) { return (n + kAlign - 1) & ~(kAlign - 1); }

// ------------------------------------------------------------------ module-level helpers

py::object Import(const char* module) { return py::module_::import(module); }

// Cached Python callables (looked up once; the interpreter lives as long as the process).
struct PyFns {
  py::object pickle_dumps, pickle_loads, cloudpickle_dumps, pickle_buffer;
  py::object from_error;  // mpiray.exceptions._from_error(code, message, extra)
  py::object hooks;       // mpiray._worker_hooks
  py::object rebuild_ref;
  bool ready = false;
};
PyFns& Fns() {
  static PyFns* f = new PyFns();  // leaked on purpose: no destruction after finalization
  if (!f->ready) {
    py::object pickle = Import("pickle");
    f->pickle_dumps = pickle.attr("dumps");
    f->pickle_loads = pickle.attr("loads");
    f->pickle_buffer = pickle.attr("PickleBuffer");
    f->cloudpickle_dumps = Import("cloudpickle").attr("dumps");
    f->ready = true;
  }
  return *f;
}
py::object& FromError() {
  auto& f = Fns();
  if (!f.from_error) f.from_error = Import("mpiray.exceptions").attr("_from_error");
  return f.from_error;
}
py::object& Hooks() {
  auto& f = Fns();
  if (!f.hooks) f.hooks = Import("mpiray._worker_hooks");
  return f.hooks;
}

// ------------------------------------------------------------------ ObjectRef

struct PyRef {
  ObjectId id;
  uint32_t epoch;  // the session it was counted in (see detail::ClientEpoch)
  explicit PyRef(const ObjectId& i) : id(i), epoch(detail::ClientEpoch()) {}
  ~PyRef() {
    if (!id.nil() && epoch == detail::ClientEpoch()) {
      if (auto* c = detail::ClientOrNull()) c->RemoveLocalRef(id);
    }
  }
  // The id, for use in this session only.
  const ObjectId& Use() const {
    if (epoch != detail::ClientEpoch()) {
      throw py::value_error("this ObjectRef belongs to an earlier session (" + id.Hex() + ")");
    }
    return id;
  }
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
};

py::bytes IdBytes(const ObjectId& id) {
  char raw[16];
  std::memcpy(raw, &id.task, 8);
  std::memcpy(raw + 8, &id.index, 4);
  std::memcpy(raw + 12, &id.kind, 4);
  return py::bytes(raw, 16);
}

ObjectId IdFromBytes(const std::string& b) {
  if (b.size() != 16) throw py::value_error("an ObjectRef id has 16 bytes, got " + std::to_string(b.size()));
  ObjectId id;
  std::memcpy(&id.task, b.data(), 8);
  std::memcpy(&id.index, b.data() + 8, 4);
  std::memcpy(&id.kind, b.data() + 12, 4);
  return id;
}

// A new Python ObjectRef that takes over a reference the runtime already counted.
py::object AdoptRef(const ObjectId& id) { return py::cast(new PyRef(id), py::return_value_policy::take_ownership); }

// A new Python ObjectRef counting a new reference.
py::object NewRef(const ObjectId& id) {
  detail::Client()->AddLocalRef(id);
  return AdoptRef(id);
}

// ------------------------------------------------------------------ payload views

// Exposes (part of) a payload through the buffer protocol, read-only, keeping it mapped.
struct PayloadView {
  Buffer owner;
  const uint8_t* data;
  size_t size;
};

py::object MemoryView(const Buffer& owner, const uint8_t* data, size_t size) {
  auto* v = new PayloadView{owner, data, size};
  py::object holder = py::cast(v, py::return_value_policy::take_ownership);
  return py::reinterpret_steal<py::object>(PyMemoryView_FromObject(holder.ptr()));
}

// ------------------------------------------------------------------ msgpack <-> Python

void PackPy(msgpack::packer<msgpack::sbuffer>& pk, py::handle o, int depth = 0) {
  if (depth > 64) throw py::value_error("value nested too deeply for a C++ argument");
  if (o.is_none()) {
    pk.pack_nil();
  } else if (py::isinstance<py::bool_>(o)) {
    if (o.cast<bool>()) pk.pack_true(); else pk.pack_false();
  } else if (py::isinstance<py::int_>(o)) {
    try {
      pk.pack(o.cast<int64_t>());
    } catch (const py::cast_error&) {
      pk.pack(o.cast<uint64_t>());
    }
  } else if (py::isinstance<py::float_>(o)) {
    pk.pack(o.cast<double>());
  } else if (py::isinstance<py::str>(o)) {
    pk.pack(o.cast<std::string>());
  } else if (py::isinstance<py::bytes>(o) || py::isinstance<py::bytearray>(o)) {
    std::string b = py::isinstance<py::bytes>(o) ? o.cast<std::string>()
                                                 : py::bytes(py::reinterpret_borrow<py::object>(o)).cast<std::string>();
    pk.pack_bin(static_cast<uint32_t>(b.size()));
    pk.pack_bin_body(b.data(), static_cast<uint32_t>(b.size()));
  } else if (py::isinstance<py::list>(o) || py::isinstance<py::tuple>(o)) {
    py::sequence seq = py::reinterpret_borrow<py::sequence>(o);
    pk.pack_array(static_cast<uint32_t>(seq.size()));
    for (auto item : seq) PackPy(pk, item, depth + 1);
  } else if (py::isinstance<py::dict>(o)) {
    py::dict d = py::reinterpret_borrow<py::dict>(o);
    pk.pack_map(static_cast<uint32_t>(d.size()));
    for (auto kv : d) {
      PackPy(pk, kv.first, depth + 1);
      PackPy(pk, kv.second, depth + 1);
    }
  } else if (py::hasattr(o, "tolist")) {  // numpy arrays and scalars
    PackPy(pk, o.attr("tolist")(), depth + 1);
  } else {
    throw py::type_error("cannot pass a " + std::string(py::str(py::type::of(o).attr("__name__"))) +
                         " to a C++ function (use None, bool, int, float, str, bytes, list, "
                         "tuple, dict or numpy arrays)");
  }
}

py::object UnpackMsgpack(const msgpack::object& o, const Buffer& owner) {
  switch (o.type) {
    case msgpack::type::NIL: return py::none();
    case msgpack::type::BOOLEAN: return py::bool_(o.via.boolean);
    case msgpack::type::POSITIVE_INTEGER: return py::int_(o.via.u64);
    case msgpack::type::NEGATIVE_INTEGER: return py::int_(o.via.i64);
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return py::float_(o.via.f64);
    case msgpack::type::STR: return py::str(o.via.str.ptr, o.via.str.size);
    case msgpack::type::BIN: {
      const auto* p = reinterpret_cast<const uint8_t*>(o.via.bin.ptr);
      if (o.via.bin.size >= (64u << 10) && p >= owner.data() && p < owner.data() + owner.size()) {
        return MemoryView(owner, p, o.via.bin.size);  // large byte arrays stay in the store
      }
      return py::bytes(o.via.bin.ptr, o.via.bin.size);
    }
    case msgpack::type::ARRAY: {
      py::list l(o.via.array.size);
      for (uint32_t i = 0; i < o.via.array.size; ++i) l[i] = UnpackMsgpack(o.via.array.ptr[i], owner);
      return l;
    }
    case msgpack::type::MAP: {
      py::dict d;
      for (uint32_t i = 0; i < o.via.map.size; ++i) {
        d[UnpackMsgpack(o.via.map.ptr[i].key, owner)] = UnpackMsgpack(o.via.map.ptr[i].val, owner);
      }
      return d;
    }
    case msgpack::type::EXT:
      if (o.via.ext.type() == detail::kExtObjectRef && o.via.ext.size == 16) {
        return NewRef(IdFromBytes(std::string(o.via.ext.data(), 16)));
      }
      return py::bytes(o.via.ext.data(), o.via.ext.size);
  }
  return py::none();
}

// ------------------------------------------------------------------ Python values

// Keeps what a pickled value refers to alive until it is written.
struct Pickled {
  py::object data;               // the pickle bytes
  std::vector<Py_buffer> views;  // out-of-band buffers
  py::object fill;               // put(value, _fill=...): writes buffers in place of the copy
  std::shared_ptr<py::error_already_set> fill_error;  // what `fill` raised
  ~Pickled() {
    py::gil_scoped_acquire gil;
    for (auto& v : views) PyBuffer_Release(&v);
    data = py::object();
    fill = py::object();
    fill_error.reset();
  }
};

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

bool FillBuffer(Pickled& held, size_t i, uint8_t* dst, size_t len) {
  py::gil_scoped_acquire gil;
  try {
    py::memoryview mv = py::memoryview::from_memory(dst, static_cast<py::ssize_t>(len), false);
    py::object r = held.fill(i, mv, reinterpret_cast<uintptr_t>(held.views[i].buf));
    mv.attr("release")();  // BufferError if the fill kept a view of the object's memory
    return r.is_none() ? false : r.cast<bool>();
  } catch (py::error_already_set& e) {
    held.fill_error = std::make_shared<py::error_already_set>(e);
    throw FillFailed{held.fill_error};
  }
}

std::string Describe(py::handle obj) {
  std::string r;
  try {
    r = py::repr(obj).cast<std::string>();
  } catch (...) {
    r = "<unprintable>";
  }
  if (r.size() > 200) r = r.substr(0, 200) + "...";
  return r + " (type " + py::str(py::type::of(obj).attr("__qualname__")).cast<std::string>() + ")";
}

// Pickle `obj` (protocol 5, out-of-band buffers); refs inside are collected as nested refs.
detail::SerializedValue SerializePy(py::handle obj, const char* what, py::object fill = py::object()) {
  detail::SerializedValue out;
  out.format = detail::PayloadFormat::kPython;
  auto held = std::make_shared<Pickled>();
  if (fill && !fill.is_none()) held->fill = std::move(fill);
  py::list buffers;
  auto* saved = detail::NestedRefCollector();
  detail::NestedRefCollector() = &out.nested;
  struct Restore {
    std::vector<ObjectId>* saved;
    ~Restore() { detail::NestedRefCollector() = saved; }
  } restore{saved};
  auto& f = Fns();
  bool by_value = false;
  try {
    held->data = f.pickle_dumps(obj, py::arg("protocol") = 5, py::arg("buffer_callback") = buffers.attr("append"));
    // Plain pickle names functions and classes of the driver's script as "__main__.<name>",
    // which a worker cannot import: those go by value (cloudpickle) too.
    char* p = nullptr;
    Py_ssize_t n = 0;
    if (PyBytes_AsStringAndSize(held->data.ptr(), &p, &n) == 0 &&
        memmem(p, static_cast<size_t>(n), "__main__", 8) != nullptr) {
      by_value = true;
    }
  } catch (py::error_already_set&) {
    by_value = true;  // lambdas, local functions ...
  }
  if (by_value) {
    // Functions, lambdas, classes defined in __main__ ...: cloudpickle handles them.
    buffers = py::list();
    out.nested.clear();
    try {
      held->data = f.cloudpickle_dumps(obj, py::arg("protocol") = 5,
                                       py::arg("buffer_callback") = buffers.attr("append"));
    } catch (py::error_already_set& e) {
      std::string msg = std::string("Could not serialize the ") + what + " " + Describe(obj) + ": " + e.what();
      throw py::type_error(msg);
    }
  }
  for (auto b : buffers) {
    py::object raw = b.attr("raw")();  // contiguous bytes
    Py_buffer view;
    if (PyObject_GetBuffer(raw.ptr(), &view, PyBUF_SIMPLE) != 0) throw py::error_already_set();
    held->views.push_back(view);
  }
  char* pdata = nullptr;
  Py_ssize_t plen = 0;
  PyBytes_AsStringAndSize(held->data.ptr(), &pdata, &plen);
  const size_t nbuf = held->views.size();
  const size_t table = 16 + nbuf * 16;
  std::vector<std::pair<uint64_t, uint64_t>> layout;
  size_t pos = sizeof(detail::PayloadHeader) + table + static_cast<size_t>(plen);
  for (auto& v : held->views) {
    pos = AlignUp(pos);
    layout.emplace_back(pos, static_cast<uint64_t>(v.len));
    pos += static_cast<size_t>(v.len);
  }
  out.body_size = pos - sizeof(detail::PayloadHeader);
  out.write_body = [held, layout, pdata, plen, table](uint8_t* dst) {
    uint8_t* base = dst - sizeof(detail::PayloadHeader);
    uint32_t n = static_cast<uint32_t>(layout.size()), zero = 0;
    uint64_t pl = static_cast<uint64_t>(plen);
    std::memcpy(dst, &n, 4);
    std::memcpy(dst + 4, &zero, 4);
    std::memcpy(dst + 8, &pl, 8);
    for (size_t i = 0; i < layout.size(); ++i) {
      std::memcpy(dst + 16 + i * 16, &layout[i].first, 8);
      std::memcpy(dst + 24 + i * 16, &layout[i].second, 8);
    }
    std::memcpy(dst + table, pdata, static_cast<size_t>(plen));
    size_t end = table + static_cast<size_t>(plen);
    for (size_t i = 0; i < layout.size(); ++i) {
      size_t at = layout[i].first - sizeof(detail::PayloadHeader);
      if (at > end) std::memset(dst + end, 0, at - end);
      if (!held->fill || !FillBuffer(*held, i, base + layout[i].first, layout[i].second)) {
        std::memcpy(base + layout[i].first, held->views[i].buf, layout[i].second);
      }
      end = at + layout[i].second;
    }
  };
  return out;
}

[[noreturn]] void RaiseError(const Buffer& payload) {
  mpiray::Status st = detail::ErrorFromPayload(payload);
  std::string extra = detail::ErrorExtraFromPayload(payload);
  py::object exc = FromError()(static_cast<int>(st.code()), st.message(), py::bytes(extra));
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
  throw py::error_already_set();
}

// A payload back to a Python object (errors raise the matching exception).
py::object DeserializePy(const Buffer& payload) {
  detail::PayloadFormat f = detail::CheckPayload(payload);
  const uint8_t* body = payload.data() + sizeof(detail::PayloadHeader);
  size_t len = payload.size() - sizeof(detail::PayloadHeader);
  if (f == detail::PayloadFormat::kError) RaiseError(payload);
  if (f == detail::PayloadFormat::kMsgpack) {
    msgpack::object_handle oh = msgpack::unpack(reinterpret_cast<const char*>(body), len, detail::ReferenceBins);
    return UnpackMsgpack(oh.get(), payload);
  }
  if (f != detail::PayloadFormat::kPython) throw py::value_error("unknown object format");
  uint32_t n;
  uint64_t plen;
  std::memcpy(&n, body, 4);
  std::memcpy(&plen, body + 8, 8);
  size_t table = 16 + static_cast<size_t>(n) * 16;
  if (table + plen > len) throw py::value_error("corrupt Python object");
  py::list buffers;
  for (uint32_t i = 0; i < n; ++i) {
    uint64_t off, blen;
    std::memcpy(&off, body + 16 + i * 16, 8);
    std::memcpy(&blen, body + 24 + i * 16, 8);
    if (off + blen > payload.size()) throw py::value_error("corrupt Python object buffer");
    buffers.append(MemoryView(payload, payload.data() + off, blen));
  }
  py::object pickled = MemoryView(payload, body + table, plen);
  return Fns().pickle_loads(pickled, py::arg("buffers") = buffers);
}

// ------------------------------------------------------------------ the Python language runtime

// os.environ["CUDA_VISIBLE_DEVICES"] for work given GPUs (the C environment is set by the
// worker; Python's os.environ is a copy), put back afterwards unless `keep` (actors).
class PyVisibleDevices {
 public:
  explicit PyVisibleDevices(bool keep = false) : keep_(keep) {
    if (detail::CurrentGpuIds().empty()) return;
    // The worker has set the C environment to the devices' names: Python's copy follows it.
    const char* set = std::getenv("CUDA_VISIBLE_DEVICES");
    std::string list = set ? set : "";
    environ_ = py::module_::import("os").attr("environ");
    old_ = environ_.attr("get")("CUDA_VISIBLE_DEVICES");
    environ_["CUDA_VISIBLE_DEVICES"] = list;
  }
  ~PyVisibleDevices() {
    if (!environ_ || keep_) return;
    try {
      if (old_.is_none()) {
        environ_.attr("pop")("CUDA_VISIBLE_DEVICES", py::none());
      } else {
        environ_["CUDA_VISIBLE_DEVICES"] = old_;
      }
    } catch (py::error_already_set&) {
    }
  }

 private:
  bool keep_;
  py::object environ_;
  py::object old_;
};

// Runs Python tasks in workers by calling mpiray._worker_hooks with the GIL held.
class PyRuntime final : public detail::LanguageRuntime {
 public:
  mpiray::Status CallFunction(const std::string& name, const detail::ArgList& args,
                              detail::ResultSink& sink) override {
    mpiray_py::KeepThreadState();
    py::gil_scoped_acquire gil;
    PyVisibleDevices devices;
    return Run(sink, [&] { return Hooks().attr("run_task")(name, Args(args)); });
  }
  mpiray::Result<std::shared_ptr<void>> CreateActor(const std::string& factory,
                                                    const detail::ArgList& args) override {
    mpiray_py::KeepThreadState();
    py::gil_scoped_acquire gil;
    try {
      PyVisibleDevices devices(/*keep=*/true);
      py::object inst = Hooks().attr("create_actor")(factory, Args(args));
      auto* holder = new py::object(std::move(inst));
      return std::shared_ptr<void>(holder, [](void* p) {
        py::gil_scoped_acquire g;
        delete static_cast<py::object*>(p);
      });
    } catch (py::error_already_set& e) {
      return Failure(e);
    }
  }
  mpiray::Status CallMethod(void* self, const std::string& method, const detail::ArgList& args,
                            detail::ResultSink& sink) override {
    mpiray_py::KeepThreadState();
    py::gil_scoped_acquire gil;
    auto* inst = static_cast<py::object*>(self);
    return Run(sink, [&] { return Hooks().attr("call_method")(*inst, method, Args(args)); });
  }
  void BeforeExit() override {
    if (!Py_IsInitialized()) return;
    py::gil_scoped_acquire gil;
    try {
      Hooks().attr("flush_output")();
    } catch (...) {
    }
  }
  std::string TakeErrorDetail() override {
    std::string d = std::move(detail_);
    detail_.clear();
    return d;
  }
  bool TakeRetryable() override {
    bool r = retryable_;
    retryable_ = false;
    return r;
  }
  void Interrupt(const mpiray::TaskId& task) override {
    if (!Py_IsInitialized()) return;
    py::gil_scoped_acquire gil;
    try {
      Hooks().attr("interrupt")(task.ToString());
    } catch (py::error_already_set&) {  // nothing to interrupt: the task ends by itself
    }
  }

 private:
  static py::list Args(const detail::ArgList& args) {
    py::list out;
    for (const Buffer& b : args) out.append(DeserializePy(b));
    return out;
  }
  template <class F>
  mpiray::Status Run(detail::ResultSink& sink, F&& call) {
    try {
      py::object results = call();
      for (auto r : results) {
        if (py::isinstance<PyFilled>(r)) {
          const auto& f = r.cast<const PyFilled&>();
          sink.Emit(SerializePy(f.value, "return value", f.fill));
        } else {
          sink.Emit(SerializePy(r, "return value"));
        }
      }
      return mpiray::Status::OK();
    } catch (py::error_already_set& e) {
      return Failure(e);  // the exception itself travels pickled (TakeErrorDetail)
    } catch (FillFailed& f) {  // a return value's fill raised
      py::error_already_set e(*f.error);
      return Failure(e);
    } catch (const std::exception& e) {
      return mpiray::Status(StatusCode::kTaskError, e.what());
    }
  }
  mpiray::Status Failure(py::error_already_set& e) {
    // pybind11 keeps the traceback apart from the exception: attach it before formatting.
    if (e.trace() && !e.trace().is_none()) PyException_SetTraceback(e.value().ptr(), e.trace().ptr());
    py::tuple t = Hooks().attr("format_error")(e.value());
    std::string message = t[0].cast<std::string>();
    detail_ = t[1].cast<std::string>();
    auto code = t[2].cast<StatusCode>();
    retryable_ = t[3].cast<bool>();  // retry_exceptions matched: the head may run it again
    return mpiray::Status(code, message);
  }
  static thread_local std::string detail_;
  static thread_local bool retryable_;
};
thread_local std::string PyRuntime::detail_;
thread_local bool PyRuntime::retryable_ = false;

PyRuntime* g_py_runtime = nullptr;

// ------------------------------------------------------------------ API entry points

int64_t TimeoutMs(py::object timeout) {
  if (timeout.is_none()) return -1;
  double s = timeout.cast<double>();
  if (s < 0) throw py::value_error("timeout must be non-negative or None");
  return static_cast<int64_t>(s * 1000.0);
}

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

// Driver waits happen in slices so that Ctrl-C raises KeyboardInterrupt promptly (within a
// slice: kInterruptSliceMs, 20 wake-ups a second while the driver waits, ~0 CPU).
constexpr int64_t kInterruptSliceMs = 50;

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

/// @brief What a submission says besides its kind, language, function and arguments
/// (mpiray._core.TaskOptions; built once per remote function and options, then reused).
struct PyTaskOptions {
  uint32_t num_returns = 1;
  bool resources_set = false;  // false: the runtime's default
  std::vector<std::pair<std::string, double>> resources;
  int max_retries = 3;
  std::string name;
  mpiray::ActorId actor;
  int max_concurrency = 1;
  std::string ns;
  bool named = false;
  bool scoped = false;
  std::vector<uint8_t> handle_meta;
  int max_restarts = 0;
  int max_task_retries = 0;
  detail::SchedulingStrategy strategy = detail::SchedulingStrategy::kDefault;
  uint32_t node = detail::kAnyNode;
  mpiray::TaskId placement_group;
  int bundle_index = -1;
};

mpiray::TaskId TaskIdFromBytes(const std::string& b) {
  mpiray::TaskId id;
  if (b.size() == 8) std::memcpy(&id.value, b.data(), 8);
  return id;
}

// TaskOptions(**kwargs): every field by name; an unknown name is an error naming it.
PyTaskOptions MakeTaskOptions(const py::kwargs& kw) {
  PyTaskOptions o;
  for (auto kv : kw) {
    std::string k = kv.first.cast<std::string>();
    py::handle v = kv.second;
    if (k == "num_returns") o.num_returns = v.cast<uint32_t>();
    else if (k == "resources") {
      o.resources_set = !v.is_none();
      if (o.resources_set) {
        for (auto r : v.cast<py::dict>()) o.resources.emplace_back(r.first.cast<std::string>(), r.second.cast<double>());
      }
    } else if (k == "max_retries") o.max_retries = v.cast<int>();
    else if (k == "name") o.name = v.cast<std::string>();
    else if (k == "actor") o.actor = TaskIdFromBytes(v.cast<py::bytes>());
    else if (k == "max_concurrency") o.max_concurrency = v.cast<int>();
    else if (k == "scoped") o.scoped = v.cast<bool>();
    else if (k == "namespace") o.ns = v.cast<std::string>();
    else if (k == "named") o.named = v.cast<bool>();
    else if (k == "handle_meta") {
      std::string m = v.cast<py::bytes>();
      o.handle_meta.assign(m.begin(), m.end());
    } else if (k == "max_restarts") o.max_restarts = v.cast<int>();
    else if (k == "max_task_retries") o.max_task_retries = v.cast<int>();
    else if (k == "strategy") o.strategy = v.cast<detail::SchedulingStrategy>();
    else if (k == "node") o.node = v.cast<uint32_t>();
    else if (k == "placement_group") o.placement_group = TaskIdFromBytes(v.cast<py::bytes>());
    else if (k == "bundle_index") o.bundle_index = v.cast<int>();
    else throw py::type_error("TaskOptions got an unexpected option '" + k + "'");
  }
  return o;
}

detail::TaskRequest MakeRequest(detail::TaskKind kind, detail::Language language,
                                const std::string& function, const PyTaskOptions& o) {
  detail::TaskRequest req;
  req.kind = kind;
  req.language = static_cast<uint8_t>(language);
  req.function = function;
  req.num_returns = o.num_returns;
  req.resources_set = o.resources_set;
  req.resources = o.resources;
  req.max_retries = o.max_retries;
  req.name = o.name;
  req.actor = o.actor;
  req.max_concurrency = o.max_concurrency;
  req.scoped = o.scoped;
  req.ns = o.ns;
  req.named = o.named;
  req.handle_meta = o.handle_meta;
  req.max_restarts = o.max_restarts;
  req.max_task_retries = o.max_task_retries;
  req.strategy = static_cast<uint8_t>(o.strategy);
  req.node = o.node;
  req.placement_group = o.placement_group;
  req.bundle_index = o.bundle_index;
  return req;
}

py::list Submit(detail::TaskKind kind, detail::Language language, const std::string& function,
                py::list args, const PyTaskOptions& options) {
  detail::TaskRequest req = MakeRequest(kind, language, function, options);
  const bool cpp = language == detail::Language::kCpp;
  for (auto a : args) {
    detail::TaskArgument arg;
    if (py::isinstance<PyRef>(a)) {
      arg.by_ref = true;
      arg.ref = a.cast<PyRef&>().Use();
    } else if (cpp) {
      msgpack::sbuffer sb;
      msgpack::packer<msgpack::sbuffer> pk(sb);
      PackPy(pk, a);
      detail::PayloadHeader h;
      h.format = static_cast<uint8_t>(detail::PayloadFormat::kMsgpack);
      arg.value.resize(sizeof h + sb.size());
      std::memcpy(arg.value.data(), &h, sizeof h);
      std::memcpy(arg.value.data() + sizeof h, sb.data(), sb.size());
    } else {
      detail::SerializedValue s = SerializePy(a, "argument");
      arg.value = s.ToVector();
      arg.nested = std::move(s.nested);
    }
    req.args.push_back(std::move(arg));
  }
  std::vector<ObjectId> ids;
  {
    py::gil_scoped_release release;
    ids = detail::Client()->Submit(std::move(req));
  }
  py::list out;
  for (const ObjectId& id : ids) out.append(AdoptRef(id));
  return out;
}

// Errors from the runtime become the exception types of mpiray.exceptions.
void TranslateErrors() {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const mpiray::Error& e) {
      py::object exc = FromError()(static_cast<int>(e.code()), std::string(e.what()), py::bytes());
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    }
  });
}

py::dict Context() {
  detail::RuntimeContext c = detail::CurrentContext();
  py::dict d;
  d["job_id"] = c.job_id;
  d["session_dir"] = c.session_dir;
  d["rank"] = c.proc;
  d["node"] = c.node;
  d["task_id"] = c.task.nil() ? py::object(py::none()) : py::object(py::str(c.task.ToString()));
  d["actor_id"] = c.actor.nil() ? py::object(py::none()) : py::object(py::bytes(reinterpret_cast<const char*>(&c.actor.value), 8));
  d["driver"] = c.driver;
  d["incarnation"] = c.incarnation;
  d["namespace"] = c.ns;
  py::list gpus;
  for (int32_t g : c.gpu_ids) gpus.append(g);
  d["gpu_ids"] = gpus;
  return d;
}

py::dict Snapshot() {
  detail::ClusterSnapshot s;
  {
    py::gil_scoped_release release;
    s = detail::Client()->Snapshot();
  }
  py::dict d;
  py::list nodes;
  for (const auto& n : s.nodes) {
    py::dict nd;
    nd["id"] = n.id;
    py::dict total, avail;
    for (const auto& [k, v] : n.total) total[py::str(k)] = v;
    for (const auto& [k, v] : n.available) avail[py::str(k)] = v;
    nd["total"] = total;
    nd["available"] = avail;
    nd["workers"] = n.workers;
    nodes.append(nd);
  }
  d["nodes"] = nodes;
  py::list procs;
  for (const auto& p : s.processes) {
    py::dict pd;
    pd["rank"] = p.proc;
    pd["node"] = p.node;
    pd["pid"] = p.pid;
    pd["host"] = p.host;
    procs.append(pd);
  }
  d["processes"] = procs;
  d["objects"] = s.objects;
  d["queued_tasks"] = s.queued_tasks;
  d["running_tasks"] = s.running_tasks;
  d["actors"] = s.actors;
  d["store_used"] = s.store_used;
  d["actor_restarts"] = s.actor_restarts;
  d["reconstructions"] = s.reconstructions;
  d["lineage_tasks"] = s.lineage_tasks;
  return d;
}


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

// init, shutdown and what the running job looks like.
void BindLifecycle(py::module_& m) {
  m.def("init", [](py::dict o) {
    mpiray::InitOptions opts;
    for (auto kv : o) {
      std::string k = kv.first.cast<std::string>();
      py::handle v = kv.second;
      if (v.is_none()) continue;
      if (k == "num_workers") opts.num_workers = v.cast<int>();
      else if (k == "num_cpus") opts.num_cpus = v.cast<double>();
      else if (k == "num_gpus") opts.num_gpus = v.cast<double>();
      else if (k == "resources") {
        for (auto r : v.cast<py::dict>()) opts.resources[r.first.cast<std::string>()] = r.second.cast<double>();
      } else if (k == "object_store_memory") opts.object_store_memory = v.cast<int64_t>();
      else if (k == "ranks_per_node") opts.ranks_per_node = v.cast<int>();
      else if (k == "log_level") opts.log_level = v.cast<std::string>();
      else if (k == "session_root") opts.session_root = v.cast<std::string>();
      else if (k == "keep_session") opts.keep_session = v.cast<bool>();
      else if (k == "keep_mpi") opts.keep_mpi = v.cast<bool>();
      else if (k == "worker_command") opts.worker_command = v.cast<std::vector<std::string>>();
      else if (k == "log_to_driver") opts.log_to_driver = v.cast<bool>();
      else if (k == "namespace") opts.ns = v.cast<std::string>();
      else if (k == "join_timeout_ms") opts.join_timeout_ms = v.cast<int>();
      else if (k == "autoscale") opts.autoscale = v.cast<std::string>();
      else throw py::value_error("unknown init option '" + k + "'");
    }
    opts.handle_sigint = false;  // Ctrl-C raises KeyboardInterrupt in the driver
    {
      py::gil_scoped_release release;
      mpiray::Init(opts);  // workers serve here and never return
    }
  });
  m.def("shutdown", [] {
    py::gil_scoped_release release;
    mpiray::Shutdown();
  });
  m.def("is_initialized", [] { return mpiray::IsInitialized(); });
  m.def("record_exit_status", [](int status) { detail::RecordExitStatus(status); });
  m.def("context", &Context);
  m.def("current_task_id", []() -> py::object {  // per task, so without building a context
    mpiray::TaskId t = detail::CurrentTaskId();
    return t.nil() ? py::object(py::none()) : py::object(py::str(t.ToString()));
  });
  m.def("snapshot", &Snapshot);
  m.def("add_checkpoint_callback", [](py::object fn) {
    auto* held = new py::object(std::move(fn));  // lives until the process exits
    mpiray::AddCheckpointCallback([held] {
      py::gil_scoped_acquire gil;
      try {
        (*held)();
      } catch (py::error_already_set& e) {
        PySys_WriteStderr("mpiray: checkpoint callback raised: %s\n", e.what());
      }
    });
  });
  m.def("set_output_name", [](const std::string& n) { detail::SetOutputName(n); });
  m.def("cpp_function_exists", [](const std::string& library, const std::string& name) {
    if (!library.empty() && !dlopen(library.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
      throw py::value_error("cannot load C++ library " + library + ": " + dlerror());
    }
    return detail::FunctionRegistry::Instance().FindTask(name) != nullptr;
  });
}

// Submitting tasks, actor creations and calls; streaming items; named actors.
void BindTasks(py::module_& m) {
  py::class_<PyTaskOptions>(m, "TaskOptions",
                            "What a submission says besides kind, language, function and arguments "
                            "(keywords: num_returns, resources, max_retries, name, actor, "
                            "max_concurrency, namespace, named, scoped, handle_meta, max_restarts, "
                            "max_task_retries, strategy, node, placement_group, bundle_index).")
      .def(py::init([](const py::kwargs& kw) { return MakeTaskOptions(kw); }));
  m.def("submit", &Submit, py::arg("kind"), py::arg("language"), py::arg("function"), py::arg("args"),
        py::arg("options"));
  // Streaming tasks: stream_next -> (1, ref) an item, (0, None) the end; GetTimeoutError.
  m.def("stream_next", [](py::bytes task, uint32_t index, py::object timeout, bool want) -> py::tuple {
    std::string t = task;
    mpiray::TaskId tid;
    if (t.size() >= 8) std::memcpy(&tid.value, t.data(), 8);
    int64_t ms = TimeoutMs(timeout);
    int r = Interruptible(ms, [&](int64_t slice) {
      int got = detail::Client()->StreamNext(tid, index, slice, want);
      want = false;  // registered once
      if (got < 0) throw mpiray::GetTimeoutError("Get timed out after " + std::to_string(slice) + " ms: the next item is not ready");
      return got;
    });
    if (r == 0) return py::make_tuple(0, py::none());
    return py::make_tuple(1, AdoptRef(ObjectId::ForReturn(tid, index)));
  });
  m.def("interrupt_waits", [](uint64_t thread, bool on) {
    py::gil_scoped_release release;
    detail::Client()->InterruptWaits(thread, on);
  }, py::arg("thread"), py::arg("on") = true,
        "End the gets/waits thread `thread` (threading.get_ident()) is blocked in, and those "
        "it starts until called with on=False (a cancelled task).");
  m.def("stream_emit", [](py::handle value) {
    detail::SerializedValue s = SerializePy(value, "yielded value");
    py::gil_scoped_release release;
    detail::StreamEmit(s);
  });
  m.def("stream_release", [](py::bytes task, uint32_t from, uint32_t to) {
    std::string t = task;
    mpiray::TaskId tid;
    if (t.size() >= 8) std::memcpy(&tid.value, t.data(), 8);
    detail::Client()->StreamRelease(tid, from, to);
  });
  m.def("kill_actor", [](py::bytes actor, bool no_restart) {
    std::string a = actor;
    mpiray::ActorId id;
    std::memcpy(&id.value, a.data(), 8);
    detail::Client()->KillActor(id, no_restart);
  });
  m.def("get_named_actor", [](const std::string& ns, const std::string& name) -> py::object {
    mpiray::ActorId id;
    Buffer meta;
    bool found;
    {
      py::gil_scoped_release release;
      found = detail::Client()->GetNamedActor(ns, name, &id, &meta);
    }
    if (!found) return py::none();
    return py::make_tuple(py::bytes(reinterpret_cast<const char*>(&id.value), 8),
                          py::bytes(reinterpret_cast<const char*>(meta.data()), meta.size()));
  });
}

// Placement groups and the job's state listing.
void BindGroups(py::module_& m) {
  m.def("create_placement_group", [](const std::string& name, int strategy, py::list bundles) {
    std::vector<std::vector<std::pair<std::string, double>>> b;
    for (auto bundle : bundles) {
      std::vector<std::pair<std::string, double>> one;
      for (auto kv : bundle.cast<py::dict>()) {
        one.emplace_back(kv.first.cast<std::string>(), kv.second.cast<double>());
      }
      b.push_back(std::move(one));
    }
    mpiray::TaskId id;
    ObjectId ready;
    {
      py::gil_scoped_release release;
      ready = detail::Client()->CreatePlacementGroup(name, static_cast<uint8_t>(strategy), b, &id);
    }
    return py::make_tuple(py::bytes(reinterpret_cast<const char*>(&id.value), 8), AdoptRef(ready));
  });
  m.def("list_state", [](size_t limit) {
    std::vector<uint8_t> bytes = detail::Client()->ListState(limit);
    return DeserializePy(Buffer(std::move(bytes)));
  });
  m.def("remove_placement_group", [](py::bytes id) {
    std::string s = id;
    mpiray::TaskId t;
    if (s.size() == 8) std::memcpy(&t.value, s.data(), 8);
    py::gil_scoped_release release;
    detail::Client()->RemovePlacementGroup(t);
  });
  m.def("placement_group_table", [] {
    py::list out;
    for (const auto& g : detail::Client()->PlacementGroups()) {
      py::dict d;
      d["id"] = py::bytes(reinterpret_cast<const char*>(&g.id.value), 8);
      d["name"] = g.name;
      d["strategy"] = g.strategy;
      d["state"] = g.state;
      d["error"] = g.error;
      py::list bundles;
      for (const auto& b : g.bundles) {
        py::dict bd;
        for (const auto& [n, a] : b) bd[py::str(n)] = a;
        bundles.append(bd);
      }
      d["bundles"] = bundles;
      py::list nodes;
      for (uint32_t n : g.nodes) nodes.append(n == detail::kAnyNode ? py::object(py::none()) : py::object(py::int_(n)));
      d["nodes"] = nodes;
      out.append(d);
    }
    return out;
  });
}

// The facts Python must not repeat: enums and constants of the runtime, by their C++ names.
void BindConstants(py::module_& m) {
  py::enum_<detail::TaskKind>(m, "TaskKind")
      .value("NORMAL", detail::TaskKind::kNormal)
      .value("ACTOR_CREATE", detail::TaskKind::kActorCreate)
      .value("ACTOR_CALL", detail::TaskKind::kActorCall);
  py::enum_<detail::Language>(m, "Language")
      .value("CPP", detail::Language::kCpp)
      .value("PYTHON", detail::Language::kPython);
  py::enum_<detail::SchedulingStrategy>(m, "SchedulingStrategy")
      .value("DEFAULT", detail::SchedulingStrategy::kDefault)
      .value("SPREAD", detail::SchedulingStrategy::kSpread)
      .value("NODE_AFFINITY_SOFT", detail::SchedulingStrategy::kNodeAffinitySoft);
  py::enum_<detail::PlacementStrategy>(m, "PlacementStrategy")
      .value("PACK", detail::PlacementStrategy::kPack)
      .value("SPREAD", detail::PlacementStrategy::kSpread)
      .value("STRICT_PACK", detail::PlacementStrategy::kStrictPack)
      .value("STRICT_SPREAD", detail::PlacementStrategy::kStrictSpread);
  py::enum_<StatusCode> codes(m, "StatusCode", py::arithmetic());
  for (int c = 0; c <= static_cast<int>(StatusCode::kMpiError); ++c) {
    auto code = static_cast<StatusCode>(c);
    codes.value(StatusCodeName(code), code);
  }
  m.attr("RETRY_FOREVER") = detail::kRetryForever;
  m.attr("ACTOR_DEFAULT_RETRIES") = detail::kActorDefaultRetries;
  m.attr("NO_NODE") = detail::kAnyNode;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "mpiray runtime binding (use the mpiray package)";
  TranslateErrors();
  g_py_runtime = new PyRuntime();
  detail::RegisterLanguage(detail::kLanguagePython, g_py_runtime);
  BindConstants(m);
  BindObjects(m);
  BindLifecycle(m);
  BindTasks(m);
  BindGroups(m);
}

// mpiray._core: Python values <-> object payloads (pickle protocol 5 with out-of-band buffers,
// msgpack for C++ functions) and the cached Python callables the binding uses.
//
// Values are pickled with protocol 5; out-of-band buffers (numpy arrays and anything exposing
// the buffer protocol) are written once into the object payload, 64-byte aligned, and come
// back as read-only memoryviews into the node's shared memory (zero-copy, as in Ray).
//
// Python payload layout (after the 8-byte PayloadHeader):
//   u32 nbuf | u32 reserved | u64 pickle_len | nbuf x (u64 offset, u64 length) | pickle | buffers
// Offsets are from the start of the payload; a buffer starts 64-byte aligned, a large one half
// a page from its source's offset within a page (PlaceBuffer), zeros in between.
#include "binding.h"

#include "mpiray/core/object_ref.h"

namespace mpiray_py {

namespace {

constexpr size_t kAlign = 64;
size_t AlignUp(size_t n) { return (n + kAlign - 1) & ~(kAlign - 1); }

// Where a large out-of-band buffer goes in the payload. Payloads in the store start on a page,
// and a large copy whose destination lies a little (up to ~600 bytes) after its source within
// a 4 KiB page runs at a fifth of the speed (glibc's memmove loads alias the stores it just
// made: 3 vs 18 GB/s here). A numpy array's data sits 16 bytes into a page, so the usual
// 64-aligned place just after the pickle copied slowly into the store, and one at the same
// offset would copy slowly back out into a new array. So a buffer of 256 KiB or more starts
// half a page away from its source's offset within a page (rounded down to kAlign): both
// copies then run at full speed, for at most a page of padding.
constexpr size_t kPlacedMin = 256 << 10;
size_t PlaceBuffer(size_t pos, const void* src, size_t len) {
  pos = AlignUp(pos);
  if (len < kPlacedMin) return pos;
  const size_t want = ((reinterpret_cast<uintptr_t>(src) & 4095) + 2048) & 4095 & ~(kAlign - 1);
  return pos + ((want - pos) & 4095);
}

}  // namespace

// ------------------------------------------------------------------ module-level helpers

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

// ------------------------------------------------------------------ payload views

py::object MemoryView(const Buffer& owner, const uint8_t* data, size_t size) {
  auto* v = new PayloadView{owner, data, size};
  py::object holder = py::cast(v, py::return_value_policy::take_ownership);
  return py::reinterpret_steal<py::object>(PyMemoryView_FromObject(holder.ptr()));
}

// ------------------------------------------------------------------ msgpack <-> Python

void PackPy(msgpack::packer<msgpack::sbuffer>& pk, py::handle o, int depth) {
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

namespace {

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

}  // namespace

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

namespace {

// dumps(obj, protocol=5, buffer_callback=buffers.append) by vectorcall (no keyword dict, no
// pybind11 argument collector: it is on the path of every task and result).
py::object DumpsFast(const py::object& dumps, py::handle obj, py::list& buffers) {
  static PyObject* kw = Py_BuildValue("(ss)", "protocol", "buffer_callback");
  static PyObject* five = PyLong_FromLong(5);
  py::object append = py::reinterpret_steal<py::object>(PyObject_GetAttrString(buffers.ptr(), "append"));
  if (!append) throw py::error_already_set();
  PyObject* argv[] = {obj.ptr(), five, append.ptr()};
  PyObject* r = PyObject_Vectorcall(dumps.ptr(), argv, 1, kw);
  if (!r) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(r);
}

}  // namespace

// Pickle `obj` (protocol 5, out-of-band buffers); refs inside are collected as nested refs.
detail::SerializedValue SerializePy(py::handle obj, const char* what, py::object fill) {
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
    held->data = DumpsFast(f.pickle_dumps, obj, buffers);
    // Plain pickle names functions and classes of the driver's script by their module,
    // "__main__", which a worker cannot import: those go by value (cloudpickle) too. The
    // module name is a pickled string of its own (SHORT_BINUNICODE, 8 bytes); a string that
    // merely contains it ("__main__.f", a task's name for the runtime context) is no reason
    // for the ten times slower cloudpickle.
    static const char kMainModule[] = "\x8c\x08__main__";
    char* p = nullptr;
    Py_ssize_t n = 0;
    if (PyBytes_AsStringAndSize(held->data.ptr(), &p, &n) == 0 &&
        memmem(p, static_cast<size_t>(n), kMainModule, sizeof kMainModule - 1) != nullptr) {
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
    pos = PlaceBuffer(pos, v.buf, static_cast<size_t>(v.len));
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

namespace {

[[noreturn]] void RaiseError(const Buffer& payload) {
  mpiray::Status st = detail::ErrorFromPayload(payload);
  std::string extra = detail::ErrorExtraFromPayload(payload);
  py::object exc = FromError()(static_cast<int>(st.code()), st.message(), py::bytes(extra));
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
  throw py::error_already_set();
}

}  // namespace

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
  // pickle.loads(pickled, buffers=buffers) by vectorcall: no keyword dict per object.
  static PyObject* kw = Py_BuildValue("(s)", "buffers");
  PyObject* argv[] = {pickled.ptr(), buffers.ptr()};
  PyObject* r = PyObject_Vectorcall(Fns().pickle_loads.ptr(), argv, 1, kw);
  if (!r) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(r);
}

}  // namespace mpiray_py

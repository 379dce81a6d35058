// mpiray._core.ObjectRef: a plain CPython heap type rather than a pybind11 class. A get of a value
// holding 10,000 refs makes 10,000 of them; pybind11 would register each instance in its
// instance map, look up its type info, and unregister it when it dies (a fifth of that get's
// time), where this type's instances are a 16-byte id and a session number, allocated with
// PyObject_New and not tracked by the garbage collector. A heap type so that mpiray._api can add
// the future/await methods to it; not subclassable.
#include "binding.h"

#include <structmember.h>

namespace mpiray_py {

PyTypeObject* g_ref_type = nullptr;

namespace {

PyObject* g_rebuild = nullptr;  // mpiray._core._rebuild_ref

// Runs a body that may throw a C++ or pybind11 exception; returns nullptr with the Python error set.
template <class F>
PyObject* Guard(F&& f) {
  try {
    return f();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const py::builtin_exception& e) {
    e.set_error();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

// A new ObjectRef counting a reference to the id whose 16 bytes `raw` holds (`what` names the
// caller in the error for anything else).
PyObject* RefFromBytes(PyObject* raw, const char* what) {
  return Guard([&] {
    if (!PyBytes_Check(raw)) throw py::type_error(std::string(what) + " expects the 16 bytes of an object id");
    return NewRef(IdFromBytes(std::string(PyBytes_AS_STRING(raw), static_cast<size_t>(PyBytes_GET_SIZE(raw)))))
        .release()
        .ptr();
  });
}

PyObject* RefNew(PyTypeObject*, PyObject* args, PyObject* kwargs) {
  static const char* kw[] = {"id", nullptr};
  PyObject* raw = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:ObjectRef", const_cast<char**>(kw), &raw)) return nullptr;
  return RefFromBytes(raw, "ObjectRef(id)");
}

void RefDealloc(PyObject* self) {
  auto* r = reinterpret_cast<PyRefObject*>(self);
  if (r->weakrefs) PyObject_ClearWeakRefs(self);
  if (!r->id.nil() && r->epoch == detail::ClientEpoch()) {
    if (auto* c = detail::ClientOrNull()) c->RemoveLocalRef(r->id);
  }
  PyTypeObject* type = Py_TYPE(self);
  PyObject_Free(self);
  Py_DECREF(type);
}

PyObject* RefBinary(PyObject* self, PyObject*) { return IdBytes(AsRef(self)->id).release().ptr(); }
PyObject* RefHex(PyObject* self, PyObject*) { return PyUnicode_FromString(AsRef(self)->id.Hex().c_str()); }
PyObject* RefIsNil(PyObject* self, PyObject*) { return PyBool_FromLong(AsRef(self)->id.nil()); }

// What an ObjectRef pickles to: _rebuild_ref(id bytes). A ref pickled inside another value is a
// nested ref of that value.
PyObject* RefReduce(PyObject* self, PyObject*) {
  return Guard([&] {
    PyRefObject* r = AsRef(self);
    if (auto* c = detail::NestedRefCollector(); c && !r->id.nil()) c->push_back(RefUse(r));
    return py::make_tuple(py::handle(g_rebuild), py::make_tuple(IdBytes(r->id))).release().ptr();
  });
}

Py_hash_t RefHash(PyObject* self) {
  Py_hash_t h = static_cast<Py_hash_t>(std::hash<ObjectId>()(AsRef(self)->id));
  return h == -1 ? -2 : h;
}

PyObject* RefCompare(PyObject* a, PyObject* b, int op) {
  PyRefObject* ra = AsRef(a);
  PyRefObject* rb = AsRef(b);
  if (!ra || !rb || (op != Py_EQ && op != Py_NE)) Py_RETURN_NOTIMPLEMENTED;
  return PyBool_FromLong((ra->id == rb->id) == (op == Py_EQ));
}

PyObject* RefRepr(PyObject* self) {
  return PyUnicode_FromString(("ObjectRef(" + AsRef(self)->id.Hex() + ")").c_str());
}

PyMethodDef g_ref_methods[] = {
    {"binary", RefBinary, METH_NOARGS, "The id's 16 bytes."},
    {"hex", RefHex, METH_NOARGS, "binary() as 32 hex digits."},
    {"is_nil", RefIsNil, METH_NOARGS, "Whether this is the nil id."},
    {"__reduce__", RefReduce, METH_NOARGS, "Pickles as _rebuild_ref(id bytes)."},
    {nullptr, nullptr, 0, nullptr}};

PyMemberDef g_ref_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(PyRefObject, weakrefs), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr}};

PyType_Slot g_ref_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(RefNew)},
    {Py_tp_dealloc, reinterpret_cast<void*>(RefDealloc)},
    {Py_tp_hash, reinterpret_cast<void*>(RefHash)},
    {Py_tp_richcompare, reinterpret_cast<void*>(RefCompare)},
    {Py_tp_repr, reinterpret_cast<void*>(RefRepr)},
    {Py_tp_methods, g_ref_methods},
    {Py_tp_members, g_ref_members},
    {Py_tp_doc, const_cast<char*>("A reference to an object in the cluster (ray.ObjectRef).")},
    {0, nullptr}};

PyType_Spec g_ref_spec = {"mpiray._core.ObjectRef", sizeof(PyRefObject), 0, Py_TPFLAGS_DEFAULT, g_ref_slots};

// _core._rebuild_ref(id_bytes): what an ObjectRef pickles to, so a value holding 10,000 refs
// unpickles 10,000 of them. A plain C function of the module that pickle finds by name.
PyObject* RebuildRef(PyObject*, PyObject* arg) { return RefFromBytes(arg, "_rebuild_ref"); }

PyMethodDef g_rebuild_ref_def = {"_rebuild_ref", RebuildRef, METH_O, "An ObjectRef from its id's bytes (unpickling)."};

}  // namespace

const ObjectId& RefUse(const PyRefObject* r) {
  if (r->epoch != detail::ClientEpoch()) {
    throw py::value_error("this ObjectRef belongs to an earlier session (" + r->id.Hex() + ")");
  }
  return r->id;
}

py::object AdoptRef(const ObjectId& id) {
  PyRefObject* r = PyObject_New(PyRefObject, g_ref_type);
  if (!r) throw py::error_already_set();
  r->id = id;
  r->epoch = detail::ClientEpoch();
  r->weakrefs = nullptr;
  return py::reinterpret_steal<py::object>(reinterpret_cast<PyObject*>(r));
}

void BindObjectRef(py::module_& m) {
  g_ref_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&g_ref_spec));
  if (!g_ref_type) throw py::error_already_set();
  m.attr("ObjectRef") = py::handle(reinterpret_cast<PyObject*>(g_ref_type));  // the module keeps a reference
  g_rebuild = PyCFunction_NewEx(&g_rebuild_ref_def, m.ptr(), py::str("mpiray._core").ptr());
  if (!g_rebuild) throw py::error_already_set();
  m.attr("_rebuild_ref") = py::handle(g_rebuild);  // and g_rebuild keeps its own
}

}  // namespace mpiray_py

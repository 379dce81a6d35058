// A runtime thread (an actor's executor, an extra executor started while a task blocks) that
// calls into Python keeps one Python thread state for its whole life.
//
// Without it, every py::gil_scoped_acquire on such a thread creates a thread state and
// deletes it again: threading.local values and threading.current_thread() did not survive
// from one actor call to the next (Ray runs an actor's calls on one thread), and each call
// paid for a new state (its frame stack is mmapped and unmapped, with TLB shootdowns across
// the process's threads).
#pragma once

#include <Python.h>

namespace mpiray_py {

inline bool PythonFinalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

// Call without holding the GIL, before taking it (py::gil_scoped_acquire then finds this
// thread's state and reuses it). Does nothing on threads Python already knows.
inline void KeepThreadState() {
  thread_local struct Anchor {
    PyThreadState* state = nullptr;
    ~Anchor() {  // the thread ends: its state goes too (not while Python shuts down)
      if (state == nullptr || !Py_IsInitialized() || PythonFinalizing()) return;
      PyEval_RestoreThread(state);
      PyGILState_Release(PyGILState_UNLOCKED);
    }
  } anchor;
  if (anchor.state != nullptr || !Py_IsInitialized() || PyGILState_GetThisThreadState() != nullptr) {
    return;
  }
  PyGILState_Ensure();  // makes this thread's state (count 1) and takes the GIL
  anchor.state = PyEval_SaveThread();
}

}  // namespace mpiray_py

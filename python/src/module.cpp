// mpiray._core: the Python binding of the runtime. This file defines the module: error
// translation, the runtime's enums and constants, init/shutdown; the other parts are bound by
// their own files (see binding.h and docs/architecture.md, "The Python binding"):
//   serialize.cpp       Python values <-> object payloads (pickle 5, msgpack)
//   object_ref.cpp      ObjectRef (a plain CPython type), _rebuild_ref
//   objects.cpp         put, get, wait, cancel
//   tasks.cpp           TaskOptions, submit, streams, actors by name, kill
//   cluster.cpp         context, snapshot, state listing, placement groups
//   worker_runtime.cpp  the Python language runtime workers call into (thread_state.h)
#include "binding.h"

#include <dlfcn.h>

#include "mpiray/core/api.h"
#include "mpiray/core/bootstrap.h"
#include "mpiray/mpi/init.h"

namespace mpiray_py {

namespace {

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

// init and shutdown; the process's exit status, checkpoint callbacks, output name; C++ libraries.
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
  for (int c = 0; c <= static_cast<int>(StatusCode::kActorUnavailable); ++c) {
    auto code = static_cast<StatusCode>(c);
    codes.value(StatusCodeName(code), code);
  }
  m.attr("RETRY_FOREVER") = detail::kRetryForever;
  m.attr("ACTOR_DEFAULT_RETRIES") = detail::kActorDefaultRetries;
  m.attr("NO_NODE") = detail::kAnyNode;
}

}  // namespace

}  // namespace mpiray_py

PYBIND11_MODULE(_core, m) {
  m.doc() = "mpiray runtime binding (use the mpiray package)";
  using namespace mpiray_py;
  TranslateErrors();
  RegisterPythonRuntime(m);
  BindConstants(m);
  BindObjectRef(m);
  BindObjects(m);
  BindLifecycle(m);
  BindTasks(m);
  BindCluster(m);
}

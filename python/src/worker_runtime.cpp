// mpiray._core: the Python language runtime, what a worker's C++ runtime calls to run Python
// tasks, create actors and call their methods (through mpiray._worker_hooks, GIL held).
#include "binding.h"

#include <cstdlib>

#include "thread_state.h"

namespace mpiray_py {

namespace {

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

}  // namespace

void RegisterPythonRuntime() {
  g_py_runtime = new PyRuntime();
  detail::RegisterLanguage(detail::kLanguagePython, g_py_runtime);
}

}  // namespace mpiray_py

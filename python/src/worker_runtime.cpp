// mpiray._core: the Python language runtime, what a worker's C++ runtime calls to run Python
// tasks, create actors and call their methods (through mpiray._worker_hooks, GIL held).
#include "binding.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>

#include "thread_state.h"

namespace mpiray_py {

namespace {

// Threads whose waits a cancel ended (interrupt_waits(thread, True)); changed with the GIL held.
std::vector<uint64_t>& InterruptedThreads() {
  static auto* threads = new std::vector<uint64_t>();
  return *threads;
}

// After each Python task or method, on its thread, GIL held: whatever a cancel of it left
// behind goes. run_task's own `finally` clears the thread's interrupt flag, but a cancel's
// KeyboardInterrupt can land inside that `finally` (skipping the clearing), or arrive after the
// task's last bytecode (pending in the thread state): either would fail the thread's next task
// ("cancelled while it waited", or a KeyboardInterrupt of its own). Costs one empty() check when
// no cancel happened.
void EndCancelOfThisThread() noexcept {
  auto& threads = InterruptedThreads();
  if (threads.empty()) return;
  const uint64_t me = PyThread_get_thread_ident();
  auto it = std::find(threads.begin(), threads.end(), me);
  if (it == threads.end()) return;
  threads.erase(it);
  try {
    detail::Client()->InterruptWaits(me, false);
    PyThreadState_SetAsyncExc(static_cast<unsigned long>(me), nullptr);  // a pending one, if any
    Hooks().attr("_interrupted").attr("discard")(me);
  } catch (...) {
    PyErr_Clear();  // the runtime is going away; nothing to keep consistent
  }
}

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

// The calls of an async actor on their way to its event loop: the worker's thread puts them
// here without taking the GIL and wakes the loop through an eventfd (only when the queue was
// empty); the loop's thread takes them all at once (_worker_hooks.attach_calls).
struct CallQueue {
  struct Entry {
    std::string method;
    detail::ArgList args;
    std::unique_ptr<detail::DeferredCall> call;
  };
  std::mutex mu;
  std::deque<Entry> items;
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

  CallQueue() = default;
  CallQueue(const CallQueue&) = delete;
  CallQueue& operator=(const CallQueue&) = delete;
  ~CallQueue() {
    if (fd >= 0) close(fd);
  }
  void Put(Entry e) {
    bool wake;
    {
      std::lock_guard<std::mutex> lk(mu);
      wake = items.empty();  // else a wake-up is on its way and the loop has not taken them yet
      items.push_back(std::move(e));
    }
    uint64_t one = 1;
    if (wake && write(fd, &one, sizeof one) < 0) {
      std::fprintf(stderr, "mpiray: waking an async actor's event loop failed: %s\n", std::strerror(errno));
    }
  }
  std::deque<Entry> TakeAll() {
    std::lock_guard<std::mutex> lk(mu);
    return std::exchange(items, {});
  }
};

// An actor instance as the worker holds it: the Python object, and whether its calls are
// deferred (async actors: _worker_hooks.defers_calls), then handed to its loop by `calls`.
struct PyActor {
  py::object instance;
  bool defers = false;
  std::shared_ptr<CallQueue> calls;
};

// What a deferred call is on the actor's loop thread (_worker_hooks.attach_calls):
// finish(values) stores the return values, fail(exc) the error; the first of them counts.
class PyDeferred {
 public:
  explicit PyDeferred(std::unique_ptr<detail::DeferredCall> call) : call_(std::move(call)) {}
  void Finish(py::object values);
  void Fail(py::handle exc);
  // Ends the call with `st` (a failure's detail and retry flag from the runtime).
  void End(mpiray::Status st);
  // The call's part of the runtime context (task_id, actor_id, incarnation, gpu_ids, as
  // mpiray._core.context() would give them on its own thread; the rest is the process's).
  py::dict Context() {
    call_->SetCurrent(true);
    struct Leave {
      detail::DeferredCall* c;
      ~Leave() { c->SetCurrent(false); }
    } leave{call_.get()};
    return mpiray_py::CallContext();
  }

 private:
  std::unique_ptr<detail::DeferredCall> call_;
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
      bool defers = Hooks().attr("defers_calls")(inst).cast<bool>();
      std::shared_ptr<CallQueue> calls;
      if (defers) {
        calls = std::make_shared<CallQueue>();
        if (calls->fd < 0) {
          return mpiray::Status(StatusCode::kTaskError, std::string("cannot create the eventfd that hands "
                                                                    "calls to the async actor's loop: ") +
                                                            std::strerror(errno));
        }
        Hooks().attr("attach_calls")(inst, calls->fd, py::cpp_function([calls] { return TakeCalls(*calls); }));
      }
      auto* holder = new PyActor{std::move(inst), defers, std::move(calls)};
      return std::shared_ptr<void>(holder, [](void* p) {
        py::gil_scoped_acquire g;
        delete static_cast<PyActor*>(p);
      });
    } catch (py::error_already_set& e) {
      return Failure(e);
    }
  }
  mpiray::Status CallMethod(void* self, const std::string& method, const detail::ArgList& args,
                            detail::ResultSink& sink) override {
    mpiray_py::KeepThreadState();
    py::gil_scoped_acquire gil;
    auto* actor = static_cast<PyActor*>(self);
    return Run(sink, [&] { return Hooks().attr("call_method")(actor->instance, method, Args(args)); });
  }
  bool DefersCalls(void* self) override { return static_cast<PyActor*>(self)->defers; }
  bool StartMethod(void* self, const std::string& method, const detail::ArgList& args,
                   std::unique_ptr<detail::DeferredCall>& call) override {
    auto* actor = static_cast<PyActor*>(self);
    if (!actor->defers) return false;
    actor->calls->Put({method, args, std::move(call)});  // no GIL: the loop's thread takes it
    return true;
  }
  void BeforeExit() override {
    if (!Py_IsInitialized()) return;
    py::gil_scoped_acquire gil;
    try {
      Hooks().attr("flush_output")();
    } catch (...) {
    }
  }
  void ActorProcessEnding(bool graceful) override {
    if (!Py_IsInitialized()) return;
    py::gil_scoped_acquire gil;
    try {
      Hooks().attr("actor_process_ending")(graceful);
    } catch (...) {  // (an atexit handler's error is printed by atexit itself)
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
  // (PyDeferred stores a deferred call's values and errors as CallMethod would.)
  friend class PyDeferred;
  // On the actor's loop thread, GIL held: the calls put since the last time, each
  // (method, arguments, done, runtime context); one whose arguments cannot be read fails here.
  static py::list TakeCalls(CallQueue& q);
  static py::list Args(const detail::ArgList& args) {
    py::list out;
    for (const Buffer& b : args) out.append(DeserializePy(b));
    return out;
  }
  template <class F>
  mpiray::Status Run(detail::ResultSink& sink, F&& call) {
    struct AfterTask {
      ~AfterTask() { EndCancelOfThisThread(); }
    } after;
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
    return FailureOf(e.value());
  }
  mpiray::Status FailureOf(py::handle exc) {
    py::tuple t = Hooks().attr("format_error")(exc);
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

py::list PyRuntime::TakeCalls(CallQueue& q) {
  py::list out;
  for (CallQueue::Entry& e : q.TakeAll()) {
    auto* deferred = new PyDeferred(std::move(e.call));
    py::object done = py::cast(deferred, py::return_value_policy::take_ownership);
    try {
      out.append(py::make_tuple(py::str(e.method), Args(e.args), done, deferred->Context()));
    } catch (py::error_already_set& err) {
      deferred->End(g_py_runtime->Failure(err));
    } catch (const std::exception& err) {
      deferred->End(mpiray::Status(StatusCode::kTaskError, err.what()));
    }
  }
  return out;
}

void PyDeferred::Finish(py::object values) {
  if (!call_) return;
  End(g_py_runtime->Run(call_->sink(), [&] { return values; }));
}

void PyDeferred::Fail(py::handle exc) {
  if (!call_) return;
  End(g_py_runtime->FailureOf(exc));
}

void PyDeferred::End(mpiray::Status st) {
  if (!call_) return;
  std::unique_ptr<detail::DeferredCall> call = std::move(call_);
  std::string detail_text;
  bool retryable = false;
  if (!st.ok()) {
    detail_text = g_py_runtime->TakeErrorDetail();
    retryable = g_py_runtime->TakeRetryable();
  }
  py::gil_scoped_release release;  // reporting it posts a message: no Python needed
  call->Finish(std::move(st), std::move(detail_text), retryable);
}

}  // namespace

void NoteInterruptedThread(uint64_t thread, bool on) {
  auto& threads = InterruptedThreads();
  auto it = std::find(threads.begin(), threads.end(), thread);
  if (on && it == threads.end()) threads.push_back(thread);
  if (!on && it != threads.end()) threads.erase(it);
}

void RegisterPythonRuntime(py::module_& m) {
  g_py_runtime = new PyRuntime();
  detail::RegisterLanguage(detail::kLanguagePython, g_py_runtime);
  py::class_<PyDeferred>(m, "_DeferredCall")
      .def("finish", &PyDeferred::Finish, "The call's return values (a list, as call_method's)")
      .def("fail", &PyDeferred::Fail, "The call failed with this exception");
}

}  // namespace mpiray_py

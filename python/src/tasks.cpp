// mpiray._core: submitting tasks, actor creations and actor calls (TaskOptions, submit);
// streaming items; killing and looking up actors.
#include "binding.h"

namespace mpiray_py {

namespace {

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
    if (PyRefObject* ref = AsRef(a)) {
      arg.by_ref = true;
      arg.ref = RefUse(ref);
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

}  // namespace

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
    // With the GIL held (a short lock inside, no Python): the caller's bookkeeping
    // (_worker_hooks._interrupted) and this flag change as one step. Releasing the GIL here let
    // a task that ended at that moment clear the flag before a cancel set it, so it stayed set
    // and every later get/wait of that thread failed with TaskCancelledError.
    detail::Client()->InterruptWaits(thread, on);
    NoteInterruptedThread(thread, on);  // cleared after the thread's task at the latest
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
  m.def("call_retried", [](const std::string& task) {  // task: TaskId::ToString, "proc.n"
    auto dot = task.find('.');
    if (dot == std::string::npos) throw py::value_error("not a task id: '" + task + "'");
    mpiray::TaskId id;
    id.value = (std::stoull(task.substr(0, dot)) << 40) | std::stoull(task.substr(dot + 1));
    detail::Client()->CallRetried(id);
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

}  // namespace mpiray_py

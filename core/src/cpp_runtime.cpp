// The C++ language runtime of a worker: functions, actor factories and methods registered by
// MPIRAY_REMOTE (in the program, or in a shared library named by "lib:<path>:<function>"), and
// how a C++ exception becomes a task's error.
#include <cxxabi.h>
#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <set>
#include <typeinfo>

#include "worker.h"

namespace mpiray {

namespace {

std::string Demangle(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = (status == 0 && d) ? d : name;
  free(d);
  return out;
}

}  // namespace

Status CurrentExceptionStatus(const std::string& where) {
  try {
    throw;
  } catch (const Error& e) {
    return Status(e.code(), where + ": " + Demangle(typeid(e).name()) + ": " + e.what());
  } catch (const std::exception& e) {
    return Status(StatusCode::kTaskError, where + ": " + Demangle(typeid(e).name()) + ": " + e.what());
  } catch (...) {
    return Status(StatusCode::kTaskError, where + ": unknown exception");
  }
}

// ------------------------------------------------------------------ C++ functions

// "lib:<path>:<function>": a function registered by a shared library, loaded on first use
// (a Python driver calling C++ functions uses this form).
static Status LoadFunctionLibrary(const std::string& spec, std::string* function) {
  auto colon = spec.rfind(':');
  if (spec.rfind("lib:", 0) != 0 || colon <= 4) {
    *function = spec;
    return Status::OK();
  }
  std::string path = spec.substr(4, colon - 4);
  *function = spec.substr(colon + 1);
  static std::mutex mu;
  static std::set<std::string> loaded;
  std::lock_guard<std::mutex> lk(mu);
  if (loaded.count(path)) return Status::OK();
  if (!dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
    return Status(StatusCode::kTaskError, std::string("cannot load library ") + path + ": " + dlerror());
  }
  loaded.insert(path);
  return Status::OK();
}

Status CppRuntime::CallFunction(const std::string& spec, const detail::ArgList& args,
                                detail::ResultSink& sink) {
  std::string name;
  MPIRAY_RETURN_IF_ERROR(LoadFunctionLibrary(spec, &name));
  const detail::TaskFn* fn = detail::FunctionRegistry::Instance().FindTask(name);
  if (!fn) {
    return Status(StatusCode::kTaskError,
                  "function '" + name +
                      "' is not registered in this worker process (missing MPIRAY_REMOTE, or the "
                      "worker runs a different program)");
  }
  try {
    (*fn)(args, sink);
  } catch (...) {
    return CurrentExceptionStatus("exception");
  }
  return Status::OK();
}

Result<std::shared_ptr<void>> CppRuntime::CreateActor(const std::string& factory,
                                                      const detail::ArgList& args) {
  const detail::FactoryFn* fn = detail::FunctionRegistry::Instance().FindFactory(factory);
  if (!fn) {
    return Status(StatusCode::kTaskError,
                  "actor factory '" + factory + "' is not registered in this worker process");
  }
  try {
    std::shared_ptr<void> obj = (*fn)(args);
    if (!obj) return Status(StatusCode::kTaskError, "actor factory '" + factory + "' returned null");
    return obj;
  } catch (...) {
    return CurrentExceptionStatus("exception");
  }
}

Status CppRuntime::CallMethod(void* self, const std::string& method, const detail::ArgList& args,
                              detail::ResultSink& sink) {
  const detail::MethodFn* fn = detail::FunctionRegistry::Instance().FindMethod(method);
  if (!fn) {
    return Status(StatusCode::kTaskError,
                  "actor method '" + method + "' is not registered in this worker process");
  }
  try {
    (*fn)(self, args, sink);
  } catch (...) {
    return CurrentExceptionStatus("exception");
  }
  return Status::OK();
}

}  // namespace mpiray

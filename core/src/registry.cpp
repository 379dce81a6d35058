// Behind mpiray/core/detail/registry.h: the process-wide function registry.
#include "mpiray/core/detail/registry.h"

namespace mpiray {
namespace detail {

FunctionRegistry& FunctionRegistry::Instance() {
  static FunctionRegistry* r = new FunctionRegistry();  // never destroyed: used at exit
  return *r;
}

void FunctionRegistry::AddTask(const std::string& name, const void* key, TaskFn fn) {
  std::lock_guard<std::mutex> lk(mu_);
  tasks_[name] = std::move(fn);
  names_[key] = name;
}

void FunctionRegistry::AddFactory(const std::string& name, const void* key, FactoryFn fn) {
  std::lock_guard<std::mutex> lk(mu_);
  factories_[name] = std::move(fn);
  names_[key] = name;
}

void FunctionRegistry::AddMethod(const std::string& name, const std::string& key, MethodFn fn) {
  std::lock_guard<std::mutex> lk(mu_);
  methods_[name] = std::move(fn);
  method_names_[key] = name;
}

const TaskFn* FunctionRegistry::FindTask(const std::string& name) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = tasks_.find(name);
  return it == tasks_.end() ? nullptr : &it->second;
}

const FactoryFn* FunctionRegistry::FindFactory(const std::string& name) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = factories_.find(name);
  return it == factories_.end() ? nullptr : &it->second;
}

const MethodFn* FunctionRegistry::FindMethod(const std::string& name) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = methods_.find(name);
  return it == methods_.end() ? nullptr : &it->second;
}

const std::string* FunctionRegistry::NameOf(const void* key) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = names_.find(key);
  return it == names_.end() ? nullptr : &it->second;
}

const std::string* FunctionRegistry::MethodNameOf(const std::string& key) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = method_names_.find(key);
  return it == method_names_.end() ? nullptr : &it->second;
}

std::vector<std::string> FunctionRegistry::Names() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<std::string> out;
  for (const auto& [n, f] : tasks_) out.push_back(n);
  for (const auto& [n, f] : factories_) out.push_back(n);
  for (const auto& [n, f] : methods_) out.push_back(n);
  return out;
}

std::vector<std::string> SplitRemoteNames(const char* names) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;  // commas inside <...> belong to template arguments
  auto flush = [&] {
    size_t b = cur.find_first_not_of(" \t\n&");
    size_t e = cur.find_last_not_of(" \t\n");
    out.push_back(b == std::string::npos ? std::string() : cur.substr(b, e - b + 1));
    cur.clear();
  };
  for (const char* p = names; *p; ++p) {
    if (*p == '<') ++depth;
    if (*p == '>') --depth;
    if (*p == ',' && depth == 0) {
      flush();
    } else {
      cur += *p;
    }
  }
  flush();
  return out;
}

}  // namespace detail
}  // namespace mpiray

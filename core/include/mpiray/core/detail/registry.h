// The function registry behind MPIRAY_REMOTE: maps names to type-erased invokers, and function
// pointers back to names. It is process-wide because registration happens during static
// initialisation; every process of a job runs the same binary (or loads the same libraries), so
// names agree everywhere.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <typeinfo>
#include <string>
#include <unordered_map>
#include <vector>

#include "mpiray/core/buffer.h"
#include "mpiray/core/serialization.h"

namespace mpiray::detail {

using ArgList = std::vector<Buffer>;

/// @brief Where an invoker puts its return value (written out immediately).
class ResultSink {
 public:
  virtual ~ResultSink() = default;
  virtual void Emit(const SerializedValue& value) = 0;
};

using TaskFn = std::function<void(const ArgList&, ResultSink&)>;
using FactoryFn = std::function<std::shared_ptr<void>(const ArgList&)>;
using MethodFn = std::function<void(void* self, const ArgList&, ResultSink&)>;

class FunctionRegistry {
 public:
  static FunctionRegistry& Instance();

  void AddTask(const std::string& name, const void* key, TaskFn fn);
  void AddFactory(const std::string& name, const void* key, FactoryFn fn);
  void AddMethod(const std::string& name, const std::string& key, MethodFn fn);

  const TaskFn* FindTask(const std::string& name) const;
  const FactoryFn* FindFactory(const std::string& name) const;
  const MethodFn* FindMethod(const std::string& name) const;
  /// @brief Registered name of a free function or factory (null if unregistered).
  const std::string* NameOf(const void* key) const;
  /// @brief Registered name of a member function, keyed by its pointer bytes.
  const std::string* MethodNameOf(const std::string& key) const;
  std::vector<std::string> Names() const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, TaskFn> tasks_;
  std::unordered_map<std::string, FactoryFn> factories_;
  std::unordered_map<std::string, MethodFn> methods_;
  std::unordered_map<const void*, std::string> names_;
  std::unordered_map<std::string, std::string> method_names_;
};

/// @brief Split "f, &A::g" into {"f", "A::g"}.
std::vector<std::string> SplitRemoteNames(const char* names);

template <class M>
std::string MemberKey(M m) {
  std::string key(reinterpret_cast<const char*>(&m), sizeof(M));
  return std::string(typeid(M).name()) + "#" + key;
}

template <class T>
struct IsUniquePtr : std::false_type {};
template <class T, class D>
struct IsUniquePtr<std::unique_ptr<T, D>> : std::true_type {};

/// The class an actor factory's return type (T* or unique_ptr<T>) points to.
template <class R>
struct FactoryObject {
  using type = void;
};
template <class T>
struct FactoryObject<T*> {
  using type = T;
};
template <class T, class D>
struct FactoryObject<std::unique_ptr<T, D>> {
  using type = T;
};

template <class R>
constexpr bool kIsFactoryReturn =
    (std::is_pointer_v<R> && std::is_class_v<std::remove_pointer_t<R>>) || IsUniquePtr<R>::value;

template <class R, class... A, class F, size_t... I>
R CallWithArgs(const F& f, const ArgList& args, std::index_sequence<I...>) {
  return f(Deserialize<std::decay_t<A>>(args[I])...);
}

inline void CheckArity(size_t got, size_t want, const std::string& what) {
  if (got != want) {
    throw InvalidArgumentError(what + " takes " + std::to_string(want) + " arguments, got " +
                               std::to_string(got));
  }
}

template <class R>
void EmitResult(ResultSink& sink, const R& r) {
  sink.Emit(Serialize(r));
}

/// Run `call` (taking A...) on deserialized args and emit its result.
template <class R, class... A, class F>
void InvokeAndEmit(const F& call, const ArgList& args, ResultSink& sink, const std::string& name) {
  CheckArity(args.size(), sizeof...(A), name);
  if constexpr (std::is_void_v<R>) {
    CallWithArgs<void, A...>(call, args, std::index_sequence_for<A...>{});
    EmitResult(sink, msgpack::type::nil_t());
  } else {
    EmitResult(sink, CallWithArgs<R, A...>(call, args, std::index_sequence_for<A...>{}));
  }
}

template <class R, class... A>
void RegisterOne(const std::string& name, R (*f)(A...)) {
  auto& reg = FunctionRegistry::Instance();
  if constexpr (kIsFactoryReturn<R>) {
    using T = typename FactoryObject<R>::type;
    reg.AddFactory(name, reinterpret_cast<const void*>(f), [f, name](const ArgList& args) {
      CheckArity(args.size(), sizeof...(A), name);
      R obj = CallWithArgs<R, A...>(f, args, std::index_sequence_for<A...>{});
      if constexpr (std::is_pointer_v<R>) {
        return std::shared_ptr<void>(obj, [](void* p) { delete static_cast<T*>(p); });
      } else {
        return std::shared_ptr<void>(obj.release(), [](void* p) { delete static_cast<T*>(p); });
      }
    });
  } else {
    reg.AddTask(name, reinterpret_cast<const void*>(f),
                [f, name](const ArgList& args, ResultSink& sink) {
                  InvokeAndEmit<R, A...>(f, args, sink, name);
                });
  }
}

template <class T, class R, class... A, class M>
void RegisterMethod(const std::string& name, M m) {
  FunctionRegistry::Instance().AddMethod(
      name, MemberKey(m), [m, name](void* self, const ArgList& args, ResultSink& sink) {
        auto* obj = static_cast<T*>(self);
        auto call = [obj, m](auto&&... a) -> R { return (obj->*m)(std::forward<decltype(a)>(a)...); };
        InvokeAndEmit<R, A...>(call, args, sink, name);
      });
}

template <class T, class R, class... A>
void RegisterOne(const std::string& name, R (T::*m)(A...)) {
  RegisterMethod<T, R, A...>(name, m);
}
template <class T, class R, class... A>
void RegisterOne(const std::string& name, R (T::*m)(A...) const) {
  RegisterMethod<T, R, A...>(name, m);
}

template <class... F>
bool RegisterRemote(const char* names, F... fs) {
  std::vector<std::string> n = SplitRemoteNames(names);
  size_t i = 0;
  (RegisterOne(n.at(i++), fs), ...);
  return true;
}

}  // namespace mpiray::detail

/// Register functions, actor factories and actor methods so they can run remotely:
/// `MPIRAY_REMOTE(Plus, Counter::Create, &Counter::Add);`
#define MPIRAY_REMOTE(...)                                                         \
  [[maybe_unused]] static const bool MPIRAY_CONCAT(mpiray_remote_registered_,      \
                                                   __COUNTER__) =                  \
      ::mpiray::detail::RegisterRemote(#__VA_ARGS__, __VA_ARGS__)

// The C++ API, in the style of Ray's C++ API:
//
//   int Plus(int a, int b) { return a + b; }
//   MPIRAY_REMOTE(Plus);
//   auto ref = mpiray::Task(Plus).Remote(1, 2);   // ObjectRef<int>
//   int three = *mpiray::Get(ref);
//
// Actors: a factory returning T* (or unique_ptr<T>) plus member functions, all registered:
//   auto counter = mpiray::Actor(Counter::Create).Remote(0);
//   auto r = counter.Task(&Counter::Add).Remote(5);
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "mpiray/core/detail/core_client.h"
#include "mpiray/core/detail/language.h"
#include "mpiray/core/detail/registry.h"
#include "mpiray/core/errors.h"
#include "mpiray/core/object_ref.h"
#include "mpiray/core/options.h"
#include "mpiray/core/placement_group.h"
#include "mpiray/core/serialization.h"

namespace mpiray {

/// @brief True between Init and Shutdown in this process.
bool IsInitialized();
/// @brief Stop the cluster (head) or leave it; frees every object and removes the session.
void Shutdown();

/// @brief Run `callback` on the driver when the job is about to end: on SIGTERM (Slurm's time
/// limit or preemption) and on the early-warning signal (`#SBATCH --signal=USR1@120`;
/// MPIRAY_CHECKPOINT_SIGNAL picks another). Callbacks run in registration order on a runtime
/// thread while the cluster still works; then it shuts down cleanly and the process exits
/// (status 0 after the early warning, 143 after SIGTERM). A `--requeue` job can resume from
/// what the callbacks saved.
void AddCheckpointCallback(std::function<void()> callback);

/// @brief The cluster as the head sees it: nodes with total and available resources, object,
/// task and actor counts (driver only).
using ClusterSnapshot = detail::ClusterSnapshot;
ClusterSnapshot GetClusterSnapshot();
/// @brief Total resources of the cluster, summed over nodes (Ray: cluster_resources()).
std::map<std::string, double> ClusterResources();
/// @brief Resources not in use right now (Ray: available_resources()).
std::map<std::string, double> AvailableResources();

namespace detail {

template <class T>
struct IsObjectRef : std::false_type {};
template <class T>
struct IsObjectRef<ObjectRef<T>> : std::true_type {
  using type = T;
};

/// Build one argument for parameter type P from the caller's value A.
template <class P, class A>
TaskArgument MakeArgument(A&& a) {
  using D = std::decay_t<A>;
  using PD = std::decay_t<P>;
  TaskArgument arg;
  if constexpr (IsObjectRef<D>::value && !IsObjectRef<PD>::value) {
    using U = typename IsObjectRef<D>::type;
    static_assert(std::is_convertible_v<U, PD>,
                  "ObjectRef<U> passed where the remote function expects a type U does not convert to");
    arg.by_ref = true;
    arg.ref = a.ID();
  } else {
    static_assert(std::is_convertible_v<A, PD>,
                  "argument type does not convert to the remote function's parameter type");
    PD value = static_cast<PD>(std::forward<A>(a));
    SerializedValue s = Serialize(value);
    arg.value = s.ToVector();
    arg.nested = std::move(s.nested);
  }
  return arg;
}

template <class... P, class... A>
std::vector<TaskArgument> MakeArguments(A&&... a) {
  static_assert(sizeof...(P) == sizeof...(A), "wrong number of arguments for the remote function");
  std::vector<TaskArgument> args;
  args.reserve(sizeof...(A));
  (args.push_back(MakeArgument<P>(std::forward<A>(a))), ...);
  return args;
}

/// Options shared by task, actor and actor-method callers.
template <class Derived>
class CallerOptions {
 public:
  /// @brief Require `amount` of resource `name` ("CPU", "GPU", "memory" or custom).
  Derived& SetResource(const std::string& name, double amount) {
    req_.resources.emplace_back(name, amount);
    req_.resources_set = true;
    return self();
  }
  Derived& SetResources(const std::map<std::string, double>& resources) {
    for (const auto& [n, a] : resources) SetResource(n, a);
    req_.resources_set = true;
    return self();
  }
  /// @brief Run in bundle `bundle_index` of `group` (-1: any of its bundles), on the resources
  /// the group reserved there (as Ray's PlacementGroupSchedulingStrategy).
  Derived& SetPlacementGroup(const PlacementGroup& group, int bundle_index = -1) {
    req_.placement_group = group.GetID();
    req_.bundle_index = bundle_index;
    return self();
  }
  /// @brief Spread over nodes (round-robin) rather than pack (Ray's "SPREAD").
  Derived& SetSpread() {
    req_.strategy = 1;
    return self();
  }
  /// @brief Run on `node` (as Ray's NodeAffinitySchedulingStrategy): with `soft`, prefer it and
  /// run elsewhere when it is gone or busy; without, only there (an error if no such node).
  Derived& SetNodeAffinity(NodeId node, bool soft = false) {
    if (soft) {
      req_.strategy = 2;
      req_.node = node;
    } else {
      if (!req_.resources_set && req_.kind == TaskKind::kNormal) req_.resources.emplace_back("CPU", 1.0);
      SetResource("node:" + std::to_string(node), 0.001);
    }
    return self();
  }
  /// @brief A display name (logs, timeline); for actors, the actor's name.
  Derived& SetName(const std::string& name) {
    req_.name = name;
    return self();
  }

 protected:
  Derived& self() { return static_cast<Derived&>(*this); }
  TaskRequest req_;
};

}  // namespace detail

template <class T>
class ActorHandle;

/// @brief Calls a registered free function remotely (see Task()).
template <class F>
class TaskCaller;

template <class R, class... P>
class TaskCaller<R (*)(P...)> : public detail::CallerOptions<TaskCaller<R (*)(P...)>> {
 public:
  TaskCaller(R (*f)(P...), std::string name) {
    this->req_.function = std::move(name);
    (void)f;
  }
  /// @brief Retries after a worker failure (default 3).
  TaskCaller& SetMaxRetries(int n) {
    this->req_.max_retries = n;
    return *this;
  }
  /// @brief Submit the task; arguments may be values or ObjectRefs (resolved before the call).
  template <class... A>
  ObjectRef<R> Remote(A&&... args) {
    auto req = this->req_;
    req.args = detail::MakeArguments<P...>(std::forward<A>(args)...);
    auto ids = detail::Client()->Submit(std::move(req));
    return ObjectRef<R>(ids.at(0), detail::AdoptRef{});
  }
};

/// @brief Start building a remote call of `f` (which must be registered with MPIRAY_REMOTE).
template <class R, class... P>
TaskCaller<R (*)(P...)> Task(R (*f)(P...)) {
  const std::string* name = detail::FunctionRegistry::Instance().NameOf(reinterpret_cast<const void*>(f));
  if (!name) {
    throw InvalidArgumentError(
        "function is not registered for remote execution; add MPIRAY_REMOTE(<function>) at "
        "namespace scope");
  }
  return TaskCaller<R (*)(P...)>(f, *name);
}

/// @brief Calls one method of an actor.
template <class T, class M>
class ActorTaskCaller;

template <class T, class C, class R, class... P>
class ActorTaskCaller<T, R (C::*)(P...)>
    : public detail::CallerOptions<ActorTaskCaller<T, R (C::*)(P...)>> {
 public:
  ActorTaskCaller(const ActorId& actor, std::string name) {
    this->req_.kind = detail::TaskKind::kActorCall;
    this->req_.actor = actor;
    this->req_.function = std::move(name);
    this->req_.max_retries = detail::kActorDefaultRetries;
  }
  /// @brief Re-send this call up to `n` times if the actor dies with it (its instance is
  /// restarted); -1: forever. Default: the actor's SetMaxTaskRetries.
  ActorTaskCaller& SetMaxRetries(int n) {
    this->req_.max_retries = n;
    return *this;
  }
  template <class... A>
  ObjectRef<R> Remote(A&&... args) {
    auto req = this->req_;
    req.args = detail::MakeArguments<P...>(std::forward<A>(args)...);
    auto ids = detail::Client()->Submit(std::move(req));
    return ObjectRef<R>(ids.at(0), detail::AdoptRef{});
  }
};

/// @brief A handle to a remote actor of type T; copyable and passable to tasks.
template <class T>
class ActorHandle {
 public:
  ActorHandle() = default;
  explicit ActorHandle(const ActorId& id) : id_(id) {}

  /// @brief Call `method` on the actor; calls from one caller run in submission order.
  template <class R, class C, class... P>
  ActorTaskCaller<T, R (C::*)(P...)> Task(R (C::*method)(P...)) const {
    static_assert(std::is_base_of_v<C, T>, "method does not belong to this actor's class");
    return ActorTaskCaller<T, R (C::*)(P...)>(id_, MethodName(method));
  }
  template <class R, class C, class... P>
  ActorTaskCaller<T, R (C::*)(P...)> Task(R (C::*method)(P...) const) const {
    static_assert(std::is_base_of_v<C, T>, "method does not belong to this actor's class");
    return ActorTaskCaller<T, R (C::*)(P...)>(id_, MethodName(method));
  }
  /// @brief Terminate the actor; pending and later calls fail with ActorDiedError. With
  /// no_restart=false an actor with restarts left is restarted instead.
  void Kill(bool no_restart = true) const { detail::Client()->KillActor(id_, no_restart); }
  const ActorId& ID() const { return id_; }

 private:
  template <class M>
  static std::string MethodName(M method) {
    const std::string* n = detail::FunctionRegistry::Instance().MethodNameOf(detail::MemberKey(method));
    if (!n) {
      throw InvalidArgumentError(
          "actor method is not registered; add it to MPIRAY_REMOTE(...) as &Class::Method");
    }
    return *n;
  }
  ActorId id_;
};

/// @brief Creates an actor from a registered factory (see Actor()).
template <class F>
class ActorCreator;

template <class R, class... P>
class ActorCreator<R (*)(P...)> : public detail::CallerOptions<ActorCreator<R (*)(P...)>> {
  using T = typename detail::FactoryObject<R>::type;

 public:
  explicit ActorCreator(std::string name) {
    this->req_.kind = detail::TaskKind::kActorCreate;
    this->req_.function = std::move(name);
    this->req_.max_retries = 0;
  }
  /// @brief Register the actor as `name` in namespace `ns` (default: the job's) so that
  /// GetActor finds it; creating a second live actor with the same name fails.
  ActorCreator& SetName(const std::string& name, const std::string& ns = "") {
    this->req_.name = name;
    this->req_.named = true;
    this->req_.ns = ns.empty() ? detail::CurrentContext().ns : ns;
    return *this;
  }
  /// @brief Run up to `n` method calls of this actor at once (default 1: strictly sequential).
  ActorCreator& SetMaxConcurrency(int n) {
    this->req_.max_concurrency = n;
    return *this;
  }
  /// @brief Restart the actor (run its constructor again on a live worker) up to `n` times
  /// when its worker dies; -1: forever. Default 0. Handles keep working across restarts.
  ActorCreator& SetMaxRestarts(int n) {
    this->req_.max_restarts = n;
    return *this;
  }
  /// @brief Calls in flight when the actor dies are re-sent to the restarted actor up to `n`
  /// times (-1: forever) instead of failing with ActorDiedError. Default 0.
  ActorCreator& SetMaxTaskRetries(int n) {
    this->req_.max_task_retries = n;
    return *this;
  }
  template <class... A>
  ActorHandle<T> Remote(A&&... args) {
    auto req = this->req_;
    req.args = detail::MakeArguments<P...>(std::forward<A>(args)...);
    auto ids = detail::Client()->Submit(std::move(req));
    ObjectRef<void> creation(ids.at(0), detail::AdoptRef{});  // released: the actor lives on
    return ActorHandle<T>(creation.ID().task_id());
  }
};

/// @brief The live actor registered as `name` (ActorCreator::SetName) in namespace `ns`
/// (default: the job's), or nothing. `T` must be the actor's class (not checked).
template <class T>
std::optional<ActorHandle<T>> GetActor(const std::string& name, const std::string& ns = "") {
  ActorId id;
  Buffer meta;
  if (!detail::Client()->GetNamedActor(ns.empty() ? detail::CurrentContext().ns : ns, name, &id, &meta)) {
    return std::nullopt;
  }
  return ActorHandle<T>(id);
}

/// @brief Start building an actor from `factory` (registered with MPIRAY_REMOTE).
template <class R, class... P>
ActorCreator<R (*)(P...)> Actor(R (*factory)(P...)) {
  static_assert(detail::kIsFactoryReturn<R>, "an actor factory must return T* or std::unique_ptr<T>");
  const std::string* name =
      detail::FunctionRegistry::Instance().NameOf(reinterpret_cast<const void*>(factory));
  if (!name) {
    throw InvalidArgumentError("actor factory is not registered; add MPIRAY_REMOTE(<factory>)");
  }
  return ActorCreator<R (*)(P...)>(*name);
}

/// @brief Store `value` in the object store.
template <class T>
ObjectRef<T> Put(const T& value) {
  detail::SerializedValue s = detail::Serialize(value);
  ObjectId id = detail::Client()->Put(s);
  return ObjectRef<T>(id, detail::AdoptRef{});
}

/// @brief Wait for and read an object. timeout_ms < 0 waits forever; GetTimeoutError otherwise.
template <class T>
std::shared_ptr<T> Get(const ObjectRef<T>& ref, int64_t timeout_ms = -1) {
  auto bufs = detail::Client()->Get({ref.ID()}, timeout_ms);
  if constexpr (std::is_void_v<T>) {
    if (detail::CheckPayload(bufs[0]) == detail::PayloadFormat::kError) {
      ThrowIfError(detail::ErrorFromPayload(bufs[0]));
    }
    return nullptr;
  } else {
    return std::make_shared<T>(detail::Deserialize<T>(bufs[0]));
  }
}

/// @brief Read many objects at once (one round trip).
template <class T>
std::vector<std::shared_ptr<T>> Get(const std::vector<ObjectRef<T>>& refs, int64_t timeout_ms = -1) {
  std::vector<ObjectId> ids;
  ids.reserve(refs.size());
  for (const auto& r : refs) ids.push_back(r.ID());
  auto bufs = detail::Client()->Get(ids, timeout_ms);
  std::vector<std::shared_ptr<T>> out;
  out.reserve(bufs.size());
  for (const auto& b : bufs) {
    if constexpr (std::is_void_v<T>) {
      if (detail::CheckPayload(b) == detail::PayloadFormat::kError) {
        ThrowIfError(detail::ErrorFromPayload(b));
      }
      out.push_back(nullptr);
    } else {
      out.push_back(std::make_shared<T>(detail::Deserialize<T>(b)));
    }
  }
  return out;
}

template <class T>
auto ObjectRef<T>::Get(int64_t timeout_ms) const {
  return mpiray::Get(*this, timeout_ms);
}

/// @brief Result of Wait: refs that are ready, and those that are not (each in input order).
template <class T>
struct WaitResult {
  std::vector<ObjectRef<T>> ready;
  std::vector<ObjectRef<T>> unready;
};

/// @brief Wait until `num_objects` of `refs` are ready or `timeout_ms` passes (< 0: forever).
template <class T>
WaitResult<T> Wait(const std::vector<ObjectRef<T>>& refs, int num_objects, int64_t timeout_ms = -1) {
  if (num_objects < 0 || static_cast<size_t>(num_objects) > refs.size()) {
    throw InvalidArgumentError("Wait: num_objects must be between 0 and the number of refs (" +
                               std::to_string(refs.size()) + "), got " +
                               std::to_string(num_objects));
  }
  std::vector<ObjectId> ids;
  ids.reserve(refs.size());
  for (const auto& r : refs) ids.push_back(r.ID());
  auto ready = detail::Client()->Wait(ids, static_cast<size_t>(num_objects), timeout_ms);
  WaitResult<T> out;
  // As in Ray: at most num_objects refs are reported ready, in input order.
  for (size_t i = 0; i < refs.size(); ++i) {
    bool r = ready[i] && out.ready.size() < static_cast<size_t>(num_objects);
    (r ? out.ready : out.unready).push_back(refs[i]);
  }
  return out;
}

/// @brief Cancel the task that produces `ref`: a queued task never runs; a running one's result
/// becomes TaskCancelledError (C++ code is not interrupted unless force kills the worker).
template <class T>
void Cancel(const ObjectRef<T>& ref, bool force = false, bool recursive = true) {
  detail::Client()->Cancel(ref.ID(), force, recursive);
}

}  // namespace mpiray

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {
  template <class T>
  struct pack<mpiray::ActorHandle<T>> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const mpiray::ActorHandle<T>& v) const {
      uint64_t id = v.ID().value;
      o.pack_ext(8, mpiray::detail::kExtActorHandle);
      o.pack_ext_body(reinterpret_cast<const char*>(&id), 8);
      return o;
    }
  };
  template <class T>
  struct convert<mpiray::ActorHandle<T>> {
    const msgpack::object& operator()(const msgpack::object& o, mpiray::ActorHandle<T>& v) const {
      if (o.type != msgpack::type::EXT || o.via.ext.type() != mpiray::detail::kExtActorHandle ||
          o.via.ext.size != 8) {
        throw msgpack::type_error();
      }
      uint64_t id;
      std::memcpy(&id, o.via.ext.data(), 8);
      v = mpiray::ActorHandle<T>(mpiray::ActorId{id});
      return o;
    }
  };
  }  // namespace adaptor
}
}  // namespace msgpack

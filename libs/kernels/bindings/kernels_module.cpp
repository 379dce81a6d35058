// mpiray._kernels: the Python binding of libs/kernels. Arrays cross zero-copy: inputs are read
// in place when they already have the kernel's dtype and C order (otherwise numpy converts them
// once), outputs must be C-ordered arrays of the exact dtype and are written in place. The GIL
// is released while a kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <optional>
#include <string>

#include "mpiray/core/errors.h"
#include "mpiray/kernels/advantages.h"
#include "mpiray/kernels/envs.h"
#include "mpiray/kernels/reduce.h"
#include "mpiray/kernels/runtime.h"

namespace py = pybind11;
namespace k = mpiray::kernels;

namespace {

template <class T>
using In = py::array_t<T, py::array::c_style | py::array::forcecast>;

// Debian's pybind11 (2.10) reads the dtype's element size from numpy 1.x's struct layout,
// which numpy 2 changed: ask Python for it instead (kind() is at the same place in both).
py::ssize_t ItemSize(const py::array& a) { return a.dtype().attr("itemsize").cast<py::ssize_t>(); }

std::string Describe(const py::array& a) {
  return std::string(py::str(a.dtype())) + " array of shape " + std::string(py::str(py::tuple(
                                                                     py::cast(std::vector<py::ssize_t>(
                                                                         a.shape(), a.shape() + a.ndim())))));
}

// An output array written in place: exact dtype, C-contiguous, writeable, `count` elements.
template <class T>
T* OutPtr(py::array& a, size_t count, const char* name) {
  if (!py::isinstance<py::array_t<T>>(a) || !a.dtype().equal(py::dtype::of<T>())) {
    throw py::type_error(std::string(name) + " must be a " + std::string(py::str(py::dtype::of<T>())) +
                         " array, got a " + Describe(a));
  }
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
  if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only");
  if (static_cast<size_t>(a.size()) != count) {
    throw py::value_error(std::string(name) + " must have " + std::to_string(count) +
                          " elements, got " + Describe(a));
  }
  return static_cast<T*>(a.mutable_data());
}

// A 0/1 mask read in place when it is bool or uint8 and C-ordered (bool is one byte, 0 or 1).
struct Mask {
  py::array keep;
  const uint8_t* ptr = nullptr;
};
Mask MaskIn(const py::object& o, size_t count, const char* name) {
  Mask m;
  if (o.is_none()) return m;
  py::array a = py::array::ensure(o);
  if (!a) throw py::type_error(std::string(name) + " must be an array of booleans");
  const char kind = a.dtype().kind();
  if (!((kind == 'b' || kind == 'u' || kind == 'i') && ItemSize(a) == 1) || !(a.flags() & py::array::c_style)) {
    a = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(
        a.attr("astype")(py::dtype::of<uint8_t>()));
  }
  if (static_cast<size_t>(a.size()) != count) {
    throw py::value_error(std::string(name) + " must have " + std::to_string(count) +
                          " elements, got " + Describe(a));
  }
  m.keep = a;
  m.ptr = static_cast<const uint8_t*>(a.data());
  return m;
}

k::ReduceOp ParseOp(const std::string& op) {
  if (op == "sum") return k::ReduceOp::kSum;
  if (op == "product" || op == "prod") return k::ReduceOp::kProduct;
  if (op == "min") return k::ReduceOp::kMin;
  if (op == "max") return k::ReduceOp::kMax;
  throw py::value_error("unknown reduce op '" + op + "' (sum, product, min, max)");
}

k::DType DTypeOf(const py::array& a, bool bfloat16) {
  const char kind = a.dtype().kind();
  const auto size = ItemSize(a);
  if (bfloat16) {
    if (size != 2) throw py::type_error("bfloat16 data must be given as 16-bit words (e.g. uint16)");
    return k::DType::kBFloat16;
  }
  if (kind == 'f' && size == 2) return k::DType::kFloat16;
  if (kind == 'f' && size == 4) return k::DType::kFloat32;
  if (kind == 'f' && size == 8) return k::DType::kFloat64;
  if (kind == 'i' && size == 4) return k::DType::kInt32;
  if (kind == 'i' && size == 8) return k::DType::kInt64;
  if (kind == 'u' && size == 1) return k::DType::kUInt8;
  throw py::type_error("reduce_into: unsupported dtype " + std::string(py::str(a.dtype())) +
                       " (float16, bfloat16, float32, float64, int32, int64, uint8)");
}

void ReduceIntoPy(const std::string& op, py::array dst, py::array src, bool bfloat16) {
  const k::ReduceOp o = ParseOp(op);
  const k::DType dt = DTypeOf(dst, bfloat16);
  if (!src.dtype().equal(dst.dtype()) || ItemSize(src) != ItemSize(dst)) {
    throw py::type_error("reduce_into: src is " + Describe(src) + " but dst is " + Describe(dst));
  }
  if (src.size() != dst.size()) {
    throw py::value_error("reduce_into: src has " + std::to_string(src.size()) + " elements, dst " +
                          std::to_string(dst.size()));
  }
  if (!(dst.flags() & py::array::c_style) || !(src.flags() & py::array::c_style)) {
    throw py::value_error("reduce_into: arrays must be C-contiguous");
  }
  if (!dst.writeable()) throw py::value_error("reduce_into: dst is read-only");
  void* d = dst.mutable_data();
  const void* s = src.data();
  const size_t n = static_cast<size_t>(dst.size());
  py::gil_scoped_release release;
  k::ReduceInto(o, dt, d, s, n);
}

// [T, N] shape of a rollout array.
std::pair<int64_t, int64_t> Shape2(const py::array& a, const char* name) {
  if (a.ndim() == 2) return {a.shape(0), a.shape(1)};
  if (a.ndim() == 1) return {a.shape(0), 1};
  throw py::value_error(std::string(name) + " must be [T, N] (or [T]), got " + Describe(a));
}

template <class Real>
struct RolloutArgs {
  In<Real> rewards, values, bootstrap, finals;
  Mask term, trunc;
  k::RolloutView<Real> view;
};

template <class Real>
void FillRollout(RolloutArgs<Real>& r, const py::object& rewards, const py::object& values,
                 const py::object& terminated, const py::object& truncated,
                 const py::object& bootstrap, const py::object& finals, bool need_values) {
  r.rewards = In<Real>::ensure(rewards);
  if (!r.rewards) throw py::type_error("rewards must be a numeric array");
  auto [T, N] = Shape2(r.rewards, "rewards");
  const size_t TN = static_cast<size_t>(T * N);
  auto same = [&](In<Real>& arr, const py::object& o, const char* name, size_t count) {
    if (o.is_none()) return;
    arr = In<Real>::ensure(o);
    if (!arr) throw py::type_error(std::string(name) + " must be a numeric array");
    if (static_cast<size_t>(arr.size()) != count) {
      throw py::value_error(std::string(name) + " must have " + std::to_string(count) +
                            " elements (rollout [" + std::to_string(T) + ", " + std::to_string(N) +
                            "]), got " + Describe(arr));
    }
  };
  if (need_values && values.is_none()) throw py::value_error("values are required");
  same(r.values, values, "values", TN);
  same(r.bootstrap, bootstrap, "bootstrap_values", static_cast<size_t>(N));
  same(r.finals, finals, "final_values", TN);
  r.term = MaskIn(terminated, TN, "terminated");
  r.trunc = MaskIn(truncated, TN, "truncated");
  r.view.num_steps = T;
  r.view.num_envs = N;
  r.view.rewards = r.rewards.data();
  r.view.values = values.is_none() ? nullptr : r.values.data();
  r.view.terminated = r.term.ptr;
  r.view.truncated = r.trunc.ptr;
  r.view.bootstrap_values = bootstrap.is_none() ? nullptr : r.bootstrap.data();
  r.view.final_values = finals.is_none() ? nullptr : r.finals.data();
}

template <class Real>
py::tuple GaeT(const py::object& rewards, const py::object& values, const py::object& terminated,
               const py::object& truncated, const py::object& bootstrap, const py::object& finals,
               double gamma, double lambda) {
  RolloutArgs<Real> r;
  FillRollout(r, rewards, values, terminated, truncated, bootstrap, finals, true);
  std::vector<py::ssize_t> shape(r.rewards.shape(), r.rewards.shape() + r.rewards.ndim());
  py::array_t<Real> adv(shape), targets(shape);
  Real* a = adv.mutable_data();
  Real* t = targets.mutable_data();
  {
    py::gil_scoped_release release;
    k::ComputeGae(r.view, k::GaeOptions{gamma, lambda}, a, t);
  }
  return py::make_tuple(adv, targets);
}

template <class Real>
py::array ReturnsT(const py::object& rewards, const py::object& terminated, const py::object& truncated,
                   double gamma, const py::object& bootstrap, const py::object& values,
                   const py::object& finals) {
  RolloutArgs<Real> r;
  FillRollout(r, rewards, values, terminated, truncated, bootstrap, finals, false);
  std::vector<py::ssize_t> shape(r.rewards.shape(), r.rewards.shape() + r.rewards.ndim());
  py::array_t<Real> out(shape);
  Real* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    k::DiscountedReturns(r.view, gamma, o);
  }
  return out;
}

bool IsFloat64(const py::object& o) {
  return py::isinstance<py::array>(o) && py::array(o.cast<py::array>()).dtype().equal(py::dtype::of<double>());
}

py::dict InfoDict(const k::EnvInfo& i) {
  py::dict d;
  d["id"] = i.id;
  d["obs_dim"] = i.obs_dim;
  d["state_dim"] = i.state_dim;
  d["discrete"] = i.discrete;
  d["num_actions"] = i.num_actions;
  d["action_dim"] = i.action_dim;
  d["obs_low"] = i.obs_low;
  d["obs_high"] = i.obs_high;
  d["action_low"] = i.action_low;
  d["action_high"] = i.action_high;
  d["max_episode_steps"] = i.max_episode_steps;
  return d;
}

double OptDouble(const py::object& o) {
  return o.is_none() ? k::ResetBounds::kDefault : o.cast<double>();
}

}  // namespace

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "mpiray's native kernels (libs/kernels): reductions, GAE, batched classic control";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const mpiray::InvalidArgumentError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("backend", &k::Backend, "What runs the kernels (Kokkos and its backend, or plain C++).");
  m.def("uses_kokkos", &k::UsesKokkos);
  m.def("reduce_into", &ReduceIntoPy, py::arg("op"), py::arg("dst"), py::arg("src"),
        py::arg("bfloat16") = false,
        "dst = op(dst, src) elementwise, in place (float16/bfloat16 computed in float32).");

  m.def(
      "gae",
      [](const py::object& rewards, const py::object& values, const py::object& terminated,
         const py::object& truncated, const py::object& bootstrap_values, const py::object& final_values,
         double gamma, double lambda_) {
        if (IsFloat64(rewards) && IsFloat64(values)) {
          return GaeT<double>(rewards, values, terminated, truncated, bootstrap_values, final_values,
                              gamma, lambda_);
        }
        return GaeT<float>(rewards, values, terminated, truncated, bootstrap_values, final_values,
                           gamma, lambda_);
      },
      py::arg("rewards"), py::arg("values"), py::arg("terminated") = py::none(),
      py::arg("truncated") = py::none(), py::arg("bootstrap_values") = py::none(),
      py::arg("final_values") = py::none(), py::arg("gamma") = 0.99, py::arg("lambda_") = 0.95);
  m.def(
      "discounted_returns",
      [](const py::object& rewards, const py::object& terminated, const py::object& truncated,
         double gamma, const py::object& bootstrap_values, const py::object& values,
         const py::object& final_values) {
        if (IsFloat64(rewards)) {
          return ReturnsT<double>(rewards, terminated, truncated, gamma, bootstrap_values, values,
                                  final_values);
        }
        return ReturnsT<float>(rewards, terminated, truncated, gamma, bootstrap_values, values,
                               final_values);
      },
      py::arg("rewards"), py::arg("terminated") = py::none(), py::arg("truncated") = py::none(),
      py::arg("gamma") = 0.99, py::arg("bootstrap_values") = py::none(), py::arg("values") = py::none(),
      py::arg("final_values") = py::none());

  m.def("env_ids", &k::EnvIds);
  m.def("env_info", [](const std::string& id) { return InfoDict(k::GetEnvInfo(id)); });

  py::class_<k::BatchedEnv>(m, "BatchedEnv")
      .def(py::init([](const std::string& id, int64_t num_envs, int max_episode_steps,
                       int autoreset_mode, bool sutton_barto_reward, double g, double goal_velocity) {
             k::BatchedEnvOptions o;
             o.num_envs = num_envs;
             o.max_episode_steps = max_episode_steps;
             if (autoreset_mode < 0 || autoreset_mode > 2) throw py::value_error("bad autoreset mode");
             o.autoreset_mode = static_cast<k::AutoresetMode>(autoreset_mode);
             o.sutton_barto_reward = sutton_barto_reward;
             o.g = g;
             o.goal_velocity = goal_velocity;
             return std::make_unique<k::BatchedEnv>(id, o);
           }),
           py::arg("id"), py::arg("num_envs"), py::arg("max_episode_steps") = -1,
           py::arg("autoreset_mode") = 0, py::arg("sutton_barto_reward") = false, py::arg("g") = 10.0,
           py::arg("goal_velocity") = 0.0)
      .def_property_readonly("info", [](const k::BatchedEnv& e) { return InfoDict(e.info()); })
      .def_property_readonly("num_envs", &k::BatchedEnv::num_envs)
      .def_property_readonly("max_episode_steps", &k::BatchedEnv::max_episode_steps)
      .def(
          "reset",
          [](k::BatchedEnv& e, py::array obs, const py::object& seeds, const py::object& mask,
             const py::object& low, const py::object& high, const py::object& x_init,
             const py::object& y_init) {
            const size_t n = static_cast<size_t>(e.num_envs());
            float* o = OutPtr<float>(obs, n * static_cast<size_t>(e.info().obs_dim), "obs");
            py::array_t<uint64_t, py::array::c_style | py::array::forcecast> s;
            if (!seeds.is_none()) {
              s = decltype(s)::ensure(seeds);
              if (!s || static_cast<size_t>(s.size()) != n) {
                throw py::value_error("seeds must be " + std::to_string(n) + " integers");
              }
            }
            Mask mk = MaskIn(mask, n, "reset_mask");
            k::ResetBounds b;
            b.low = OptDouble(low);
            b.high = OptDouble(high);
            b.x_init = OptDouble(x_init);
            b.y_init = OptDouble(y_init);
            const uint64_t* sp = seeds.is_none() ? nullptr : s.data();
            py::gil_scoped_release release;
            e.Reset(o, sp, mk.ptr, b);
          },
          py::arg("obs"), py::arg("seeds") = py::none(), py::arg("mask") = py::none(),
          py::arg("low") = py::none(), py::arg("high") = py::none(), py::arg("x_init") = py::none(),
          py::arg("y_init") = py::none())
      .def(
          "step",
          [](k::BatchedEnv& e, const py::object& actions, py::array obs, py::array rewards,
             py::array terminated, py::array truncated, const py::object& final_obs) {
            const auto& info = e.info();
            const size_t n = static_cast<size_t>(e.num_envs());
            const size_t no = n * static_cast<size_t>(info.obs_dim);
            py::array act;
            const void* ap;
            if (info.discrete) {
              auto a = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(actions);
              if (!a || static_cast<size_t>(a.size()) != n) {
                throw py::value_error("actions must be " + std::to_string(n) + " integers for " + info.id);
              }
              act = a;
              ap = a.data();
            } else {
              auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(actions);
              if (!a || static_cast<size_t>(a.size()) != n * static_cast<size_t>(info.action_dim)) {
                throw py::value_error("actions must be a [" + std::to_string(n) + ", " +
                                      std::to_string(info.action_dim) + "] float array for " + info.id);
              }
              act = a;
              ap = a.data();
            }
            float* o = OutPtr<float>(obs, no, "obs");
            double* r = OutPtr<double>(rewards, n, "rewards");
            auto* te = reinterpret_cast<uint8_t*>(OutPtr<bool>(terminated, n, "terminated"));
            auto* tr = reinterpret_cast<uint8_t*>(OutPtr<bool>(truncated, n, "truncated"));
            float* fo = nullptr;
            py::array fobs;
            if (!final_obs.is_none()) {
              fobs = final_obs.cast<py::array>();
              fo = OutPtr<float>(fobs, no, "final_obs");
            }
            py::gil_scoped_release release;
            e.Step(ap, o, r, te, tr, fo);
          },
          py::arg("actions"), py::arg("obs"), py::arg("rewards"), py::arg("terminated"),
          py::arg("truncated"), py::arg("final_obs") = py::none())
      .def("get_state",
           [](const k::BatchedEnv& e) {
             const auto n = static_cast<py::ssize_t>(e.num_envs());
             py::array_t<double> state({n, static_cast<py::ssize_t>(e.info().state_dim)});
             py::array_t<int32_t> steps(std::vector<py::ssize_t>{n});  // (n) would give stride 0
             e.GetState(state.mutable_data(), steps.mutable_data());
             return py::make_tuple(state, steps);
           })
      .def(
          "set_state",
          [](k::BatchedEnv& e, const py::object& state, const py::object& steps, const py::object& obs) {
            const size_t n = static_cast<size_t>(e.num_envs());
            auto s = In<double>::ensure(state);
            if (!s || static_cast<size_t>(s.size()) != n * static_cast<size_t>(e.info().state_dim)) {
              throw py::value_error("state must be a [" + std::to_string(n) + ", " +
                                    std::to_string(e.info().state_dim) + "] array");
            }
            In<int32_t> st;
            if (!steps.is_none()) {
              st = In<int32_t>::ensure(steps);
              if (!st || static_cast<size_t>(st.size()) != n) {
                throw py::value_error("elapsed steps must be " + std::to_string(n) + " integers");
              }
            }
            float* o = nullptr;
            py::array oa;
            if (!obs.is_none()) {
              oa = obs.cast<py::array>();
              o = OutPtr<float>(oa, n * static_cast<size_t>(e.info().obs_dim), "obs");
            }
            e.SetState(s.data(), steps.is_none() ? nullptr : st.data(), o);
          },
          py::arg("state"), py::arg("elapsed_steps") = py::none(), py::arg("obs") = py::none())
      .def("pending_resets", [](const k::BatchedEnv& e) {
        py::array_t<bool> p(std::vector<py::ssize_t>{static_cast<py::ssize_t>(e.num_envs())});
        e.GetPendingResets(reinterpret_cast<uint8_t*>(p.mutable_data()));
        return p;
      });
}

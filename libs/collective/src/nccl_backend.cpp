// The "nccl" backend: NCCL on CUDA device memory. NCCL and the CUDA runtime are loaded at run
// time (dlopen), so the build needs neither their headers nor the CUDA toolkit: the few entry
// points used are declared here with NCCL's and CUDA's stable C ABI. Search order: the
// MPIRAY_NCCL_LIBRARY / MPIRAY_CUDART_LIBRARY files, libraries already loaded in the process
// (torch loads both), the directories given by SetNcclSearchPaths (the Python package passes
// the nvidia-* wheels' lib directories), then the dynamic linker's path.
//
// The unique id goes through the group's rendezvous (rank 0 publishes it). Operations are
// enqueued on the group's stream (or the one set with SetCudaStream) and waited for by polling
// the stream, so a dead member (same host: its pid; elsewhere: NCCL's asynchronous error) or
// the timeout aborts the communicator instead of hanging.
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <msgpack.hpp>
#include <thread>

#include "communicator.h"
#include "health.h"
#include "nccl_paths.h"

namespace mpiray::collective::detail {

namespace {

std::mutex g_paths_mu;
std::vector<std::string>& SearchPaths() {
  static std::vector<std::string> paths;
  return paths;
}

}  // namespace

void SetNcclSearchPaths(const std::vector<std::string>& dirs) {
  std::lock_guard<std::mutex> lk(g_paths_mu);
  SearchPaths() = dirs;
}

#if MPIRAY_COLLECTIVE_NCCL

namespace {

// --- The ABI subset (nccl.h 2.x, cuda_runtime_api.h 11+) -----------------------------------
using ncclComm_t = void*;
struct ncclUniqueId {
  char internal[128];
};
using ncclResult_t = int;  // 0 ncclSuccess, 7 ncclInProgress
using cudaError_t = int;   // 0 cudaSuccess, 600 cudaErrorNotReady
using cudaStream_t = void*;
constexpr int kNcclInProgress = 7;
constexpr int kCudaNotReady = 600;

struct Api {
  void* nccl = nullptr;
  void* cudart = nullptr;
  std::string error;
  ncclResult_t (*GetVersion)(int*) = nullptr;
  ncclResult_t (*GetUniqueId)(ncclUniqueId*) = nullptr;
  ncclResult_t (*CommInitRank)(ncclComm_t*, int, ncclUniqueId, int) = nullptr;
  ncclResult_t (*CommDestroy)(ncclComm_t) = nullptr;
  ncclResult_t (*CommAbort)(ncclComm_t) = nullptr;
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t*) = nullptr;
  const char* (*GetErrorString)(ncclResult_t) = nullptr;
  ncclResult_t (*AllReduce)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*Reduce)(const void*, void*, size_t, int, int, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*Broadcast)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*AllGather)(const void*, void*, size_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*ReduceScatter)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*Send)(const void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*Recv)(void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  cudaError_t (*GetDeviceCount)(int*) = nullptr;
  cudaError_t (*GetDevice)(int*) = nullptr;
  cudaError_t (*SetDevice)(int) = nullptr;
  cudaError_t (*StreamCreate)(cudaStream_t*) = nullptr;
  cudaError_t (*StreamDestroy)(cudaStream_t) = nullptr;
  cudaError_t (*StreamQuery)(cudaStream_t) = nullptr;
  cudaError_t (*PointerGetAttributes)(void*, const void*) = nullptr;
  cudaError_t (*Malloc)(void**, size_t) = nullptr;
  cudaError_t (*Free)(void*) = nullptr;
  const char* (*CudaErrorString)(cudaError_t) = nullptr;
};

void* OpenFirst(const char* env, const std::vector<std::string>& names, std::string* tried) {
  std::vector<std::string> candidates;
  if (const char* e = std::getenv(env); e && *e) candidates.emplace_back(e);
  std::vector<std::string> dirs;
  {
    std::lock_guard<std::mutex> lk(g_paths_mu);
    dirs = SearchPaths();
  }
  // Already loaded (e.g. by torch): RTLD_NOLOAD finds it by soname.
  for (const auto& n : names) {
    if (void* h = dlopen(n.c_str(), RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL)) return h;
  }
  for (const auto& d : dirs) {
    for (const auto& n : names) candidates.push_back(d + "/" + n);
  }
  for (const auto& n : names) candidates.push_back(n);
  for (const auto& c : candidates) {
    if (void* h = dlopen(c.c_str(), RTLD_NOW | RTLD_GLOBAL)) return h;
    if (tried) *tried += std::string(tried->empty() ? "" : "; ") + dlerror();
  }
  return nullptr;
}

template <class F>
bool Sym(void* lib, const char* name, F* out, std::string* err) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  if (!*out) *err = std::string("missing symbol ") + name;
  return *out != nullptr;
}

const Api& LoadApi() {
  static Api api;
  static std::once_flag once;
  std::call_once(once, [] {
    std::string tried;
    api.cudart = OpenFirst("MPIRAY_CUDART_LIBRARY",
                           {"libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"}, &tried);
    if (!api.cudart) {
      api.error = "the CUDA runtime library (libcudart.so) cannot be loaded (" + tried +
                  "); install the nvidia-cuda-runtime wheel (pip install torch brings it) or set "
                  "MPIRAY_CUDART_LIBRARY";
      return;
    }
    tried.clear();
    api.nccl = OpenFirst("MPIRAY_NCCL_LIBRARY", {"libnccl.so.2", "libnccl.so"}, &tried);
    if (!api.nccl) {
      api.error = "NCCL (libnccl.so.2) cannot be loaded (" + tried +
                  "); install the nvidia-nccl-cu12 wheel (pip install torch brings it) or set MPIRAY_NCCL_LIBRARY";
      return;
    }
    std::string err;
    bool ok = Sym(api.nccl, "ncclGetVersion", &api.GetVersion, &err) &&
              Sym(api.nccl, "ncclGetUniqueId", &api.GetUniqueId, &err) &&
              Sym(api.nccl, "ncclCommInitRank", &api.CommInitRank, &err) &&
              Sym(api.nccl, "ncclCommDestroy", &api.CommDestroy, &err) &&
              Sym(api.nccl, "ncclCommAbort", &api.CommAbort, &err) &&
              Sym(api.nccl, "ncclCommGetAsyncError", &api.CommGetAsyncError, &err) &&
              Sym(api.nccl, "ncclGetErrorString", &api.GetErrorString, &err) &&
              Sym(api.nccl, "ncclAllReduce", &api.AllReduce, &err) && Sym(api.nccl, "ncclReduce", &api.Reduce, &err) &&
              Sym(api.nccl, "ncclBroadcast", &api.Broadcast, &err) &&
              Sym(api.nccl, "ncclAllGather", &api.AllGather, &err) &&
              Sym(api.nccl, "ncclReduceScatter", &api.ReduceScatter, &err) &&
              Sym(api.nccl, "ncclSend", &api.Send, &err) && Sym(api.nccl, "ncclRecv", &api.Recv, &err) &&
              Sym(api.cudart, "cudaGetDeviceCount", &api.GetDeviceCount, &err) &&
              Sym(api.cudart, "cudaGetDevice", &api.GetDevice, &err) &&
              Sym(api.cudart, "cudaSetDevice", &api.SetDevice, &err) &&
              Sym(api.cudart, "cudaStreamCreate", &api.StreamCreate, &err) &&
              Sym(api.cudart, "cudaStreamDestroy", &api.StreamDestroy, &err) &&
              Sym(api.cudart, "cudaStreamQuery", &api.StreamQuery, &err) &&
              Sym(api.cudart, "cudaPointerGetAttributes", &api.PointerGetAttributes, &err) &&
              Sym(api.cudart, "cudaMalloc", &api.Malloc, &err) && Sym(api.cudart, "cudaFree", &api.Free, &err) &&
              Sym(api.cudart, "cudaGetErrorString", &api.CudaErrorString, &err);
    if (!ok) api.error = "NCCL or the CUDA runtime is unusable: " + err;
  });
  return api;
}

// Usable with at least one GPU; otherwise the reason.
Status CheckUsable() {
  const Api& api = LoadApi();
  if (!api.error.empty()) return Status(StatusCode::kUnavailable, "the nccl backend cannot run here: " + api.error);
  int n = 0;
  cudaError_t e = api.GetDeviceCount(&n);
  if (e != 0) {
    return Status(StatusCode::kUnavailable,
                  std::string("the nccl backend needs an NVIDIA GPU, and this process sees none (cudaGetDeviceCount: ") +
                      api.CudaErrorString(e) + "); use backend='ucx' for host memory");
  }
  if (n == 0) {
    return Status(StatusCode::kUnavailable,
                  "the nccl backend needs an NVIDIA GPU, and this process sees none (CUDA_VISIBLE_DEVICES='" +
                      std::string(std::getenv("CUDA_VISIBLE_DEVICES") ? std::getenv("CUDA_VISIBLE_DEVICES") : "") +
                      "'); ask for one with num_gpus=1, or use backend='ucx' for host memory");
  }
  return Status::OK();
}

int NcclType(DType d) {
  switch (d) {
    case DType::kUInt8: return 1;
    case DType::kInt32: return 2;
    case DType::kInt64: return 4;
    case DType::kFloat16: return 6;
    case DType::kFloat32: return 7;
    case DType::kFloat64: return 8;
    case DType::kBFloat16: return 9;
  }
  return 7;
}

int NcclOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return 0;
    case ReduceOp::kProduct: return 1;
    case ReduceOp::kMax: return 2;
    case ReduceOp::kMin: return 3;
  }
  return 0;
}

struct NcclInfo {
  int rank = 0;
  int pid = 0;
  uint64_t start_time = 0;
  std::string host;
  int device = 0;
  std::string unique_id;  // rank 0 only
  MSGPACK_DEFINE(rank, pid, start_time, host, device, unique_id)
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const GroupOptions& o, int device, std::unique_ptr<Health> health)
      : opts_(o), device_(device), health_(std::move(health)), api_(LoadApi()) {}
  ~NcclCommunicator() override {
    if (comm_) (broken_ ? api_.CommAbort : api_.CommDestroy)(comm_);
    if (own_stream_) api_.StreamDestroy(own_stream_);
    if (barrier_buf_) api_.Free(barrier_buf_);
  }

  Status Init(const ncclUniqueId& id) {
    if (cudaError_t e = api_.SetDevice(device_); e != 0) return CudaStatus(e, "cudaSetDevice");
    if (cudaError_t e = api_.StreamCreate(&own_stream_); e != 0) return CudaStatus(e, "cudaStreamCreate");
    stream_ = own_stream_;
    ncclResult_t r = api_.CommInitRank(&comm_, opts_.world_size, id, opts_.rank);
    if (r != 0) {
      comm_ = nullptr;
      return NcclStatus(r, "ncclCommInitRank");
    }
    return Status::OK();
  }

  void SetCudaStream(void* stream) override { stream_ = stream ? stream : own_stream_; }

  Status AllReduce(void* data, size_t count, DType dtype, ReduceOp op) override {
    MPIRAY_RETURN_IF_ERROR(CheckDevice(data, "allreduce"));
    return Run("allreduce", api_.AllReduce(data, data, count, NcclType(dtype), NcclOp(op), comm_, stream_));
  }
  Status Reduce(void* data, size_t count, DType dtype, int root, ReduceOp op) override {
    MPIRAY_RETURN_IF_ERROR(CheckDevice(data, "reduce"));
    return Run("reduce", api_.Reduce(data, data, count, NcclType(dtype), NcclOp(op), root, comm_, stream_));
  }
  Status Broadcast(void* data, size_t count, DType dtype, int root) override {
    MPIRAY_RETURN_IF_ERROR(CheckDevice(data, "broadcast"));
    return Run("broadcast", api_.Broadcast(data, data, count, NcclType(dtype), root, comm_, stream_));
  }
  Status AllGather(const void* input, void* output, size_t count, DType dtype) override {
    MPIRAY_RETURN_IF_ERROR(CheckDevice(input, "allgather"));
    MPIRAY_RETURN_IF_ERROR(CheckDevice(output, "allgather"));
    return Run("allgather", api_.AllGather(input, output, count, NcclType(dtype), comm_, stream_));
  }
  Status ReduceScatter(const void* input, void* output, size_t count, DType dtype, ReduceOp op) override {
    MPIRAY_RETURN_IF_ERROR(CheckDevice(input, "reducescatter"));
    MPIRAY_RETURN_IF_ERROR(CheckDevice(output, "reducescatter"));
    return Run("reducescatter",
               api_.ReduceScatter(input, output, count, NcclType(dtype), NcclOp(op), comm_, stream_));
  }
  Status Barrier() override {
    // NCCL has no barrier: an all-reduce of one element on the device does it.
    MPIRAY_RETURN_IF_ERROR(Enter());
    if (!barrier_buf_) {
      if (cudaError_t e = api_.Malloc(&barrier_buf_, sizeof(float)); e != 0) return CudaStatus(e, "cudaMalloc");
    }
    return Run("barrier", api_.AllReduce(barrier_buf_, barrier_buf_, 1, NcclType(DType::kFloat32),
                                         NcclOp(ReduceOp::kSum), comm_, stream_));
  }
  Status Send(const void* data, size_t count, DType dtype, int dst) override {
    MPIRAY_RETURN_IF_ERROR(CheckDevice(data, "send"));
    return Run("send", api_.Send(data, count, NcclType(dtype), dst, comm_, stream_));
  }
  Status Recv(void* data, size_t count, DType dtype, int src) override {
    MPIRAY_RETURN_IF_ERROR(CheckDevice(data, "recv"));
    return Run("recv", api_.Recv(data, count, NcclType(dtype), src, comm_, stream_));
  }

 private:
  Status CudaStatus(cudaError_t e, const char* what) {
    return Status(StatusCode::kUnavailable, "collective group '" + opts_.name + "' (nccl): " + what + ": " +
                                                api_.CudaErrorString(e));
  }
  Status NcclStatus(ncclResult_t r, const char* what) {
    return Status(StatusCode::kUnavailable, "collective group '" + opts_.name + "' (nccl): " + what + ": " +
                                                api_.GetErrorString(r));
  }
  // The communicator's device is current on the calling thread (actor calls may come on
  // another thread than the one that created the group).
  Status Enter() {
    if (cudaError_t e = api_.SetDevice(device_); e != 0) return CudaStatus(e, "cudaSetDevice");
    return Status::OK();
  }
  Status CheckDevice(const void* p, const char* what) {
    MPIRAY_RETURN_IF_ERROR(Enter());
    // cudaPointerAttributes starts with {int type; int device; ...}; type 2 is device, 3 managed.
    alignas(8) unsigned char attr[256] = {};
    if (api_.PointerGetAttributes(attr, p) != 0) {
      return Status(StatusCode::kInvalidArgument, std::string("collective group '") + opts_.name + "': " + what +
                                                      " on the nccl backend needs CUDA tensors (device memory)");
    }
    int type = 0;
    std::memcpy(&type, attr, sizeof type);
    if (type != 2 && type != 3) {
      return Status(StatusCode::kInvalidArgument, std::string("collective group '") + opts_.name + "': " + what +
                                                      " on the nccl backend needs CUDA tensors (device memory), got host memory");
    }
    return Status::OK();
  }
  Status Run(const char* what, ncclResult_t r) {
    if (broken_) return health_->broken();
    if (r != 0 && r != kNcclInProgress) return Fail(NcclStatus(r, what));
    auto start = Clock::now();
    Backoff backoff;
    for (uint64_t i = 0;; ++i) {
      cudaError_t q = api_.StreamQuery(stream_);
      if (q == 0) return Status::OK();
      if (q != kCudaNotReady) return Fail(CudaStatus(q, what));
      if ((i & 63) == 63) {
        ncclResult_t async = 0;
        api_.CommGetAsyncError(comm_, &async);
        if (async != 0 && async != kNcclInProgress) return Fail(NcclStatus(async, what));
        Status st = health_->Check(what, start, false);
        if (!st.ok()) return Fail(st);
      }
      backoff.Pause([] { std::this_thread::sleep_for(std::chrono::microseconds(200)); });
    }
  }
  Status Fail(const Status& st) {
    broken_ = true;
    Status s = health_->Fail(st);
    if (comm_) {
      api_.CommAbort(comm_);  // unblocks the kernels of this communicator
      comm_ = nullptr;
    }
    return s;
  }

  GroupOptions opts_;
  int device_;
  std::unique_ptr<Health> health_;
  const Api& api_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t own_stream_ = nullptr;
  cudaStream_t stream_ = nullptr;
  bool broken_ = false;
  void* barrier_buf_ = nullptr;
};

class NcclConnector final : public Connector {
 public:
  explicit NcclConnector(const GroupOptions& o) : opts_(o) {}

  Result<std::string> LocalInfo() override {
    MPIRAY_RETURN_IF_ERROR(CheckUsable());
    const Api& api = LoadApi();
    int device = opts_.device;
    if (device < 0 && api.GetDevice(&device) != 0) device = 0;
    ProcessIdentity self = SelfIdentity();
    info_ = NcclInfo{opts_.rank, self.pid, self.start_time, self.host, device, {}};
    if (opts_.rank == 0) {
      ncclUniqueId id{};
      if (ncclResult_t r = api.GetUniqueId(&id); r != 0) {
        return Status(StatusCode::kUnavailable, std::string("ncclGetUniqueId: ") + api.GetErrorString(r));
      }
      info_.unique_id.assign(id.internal, sizeof id.internal);
    }
    msgpack::sbuffer sb;
    msgpack::pack(sb, info_);
    return std::string(sb.data(), sb.size());
  }

  Result<std::unique_ptr<Communicator>> Connect(const Roster& roster, const Exchange&) override {
    std::vector<PeerProcess> peers;
    ncclUniqueId id{};
    for (size_t r = 0; r < roster.members.size(); ++r) {
      NcclInfo m;
      try {
        auto oh = msgpack::unpack(roster.members[r].data(), roster.members[r].size());
        m = oh.get().as<NcclInfo>();
      } catch (const std::exception& e) {
        return Status(StatusCode::kInvalidArgument,
                      "collective group '" + opts_.name + "': member " + std::to_string(r) +
                          " did not join with the nccl backend (" + e.what() + ")");
      }
      if (r == 0) {
        if (m.unique_id.size() != sizeof id.internal) {
          return Status(StatusCode::kInvalidArgument, "collective group '" + opts_.name + "': rank 0 published no NCCL id");
        }
        std::memcpy(id.internal, m.unique_id.data(), sizeof id.internal);
      }
      if (static_cast<int>(r) == opts_.rank) continue;
      peers.push_back(PeerProcess{m.rank, ProcessIdentity{m.pid, m.start_time, m.host}, m.host == info_.host,
                                  "pid " + std::to_string(m.pid) + ", GPU " + std::to_string(m.device)});
    }
    auto health = std::make_unique<Health>(opts_.name, opts_.rank, EffectiveTimeoutMs(opts_), std::move(peers));
    auto comm = std::make_unique<NcclCommunicator>(opts_, info_.device, std::move(health));
    MPIRAY_RETURN_IF_ERROR(comm->Init(id));
    return std::unique_ptr<Communicator>(std::move(comm));
  }

 private:
  GroupOptions opts_;
  NcclInfo info_;
};

}  // namespace

bool NcclAvailable(std::string* why) {
  Status st = CheckUsable();
  if (!st.ok() && why) *why = st.message();
  return st.ok();
}

Result<std::unique_ptr<Connector>> MakeNcclConnector(const GroupOptions& options) {
  MPIRAY_RETURN_IF_ERROR(CheckUsable());
  return std::unique_ptr<Connector>(std::make_unique<NcclConnector>(options));
}

#else  // !MPIRAY_COLLECTIVE_NCCL

bool NcclAvailable(std::string* why) {
  if (why) *why = "this mpiray was built without the nccl backend (MPIRAY_WITH_NCCL=OFF)";
  return false;
}

Result<std::unique_ptr<Connector>> MakeNcclConnector(const GroupOptions&) {
  return Status(StatusCode::kUnavailable, "this mpiray was built without the nccl backend (MPIRAY_WITH_NCCL=OFF)");
}

#endif

}  // namespace mpiray::collective::detail

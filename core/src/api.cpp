// Small pieces behind the public headers: status names, the Status -> exception mapping, id
// formatting, payload helpers and the function registry.
#include <cstdio>
#include <cstring>

#include "mpiray/core/api.h"

namespace mpiray {

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kNotFound: return "NotFound";
    case StatusCode::kTimeout: return "Timeout";
    case StatusCode::kIoError: return "IoError";
    case StatusCode::kObjectStoreFull: return "ObjectStoreFull";
    case StatusCode::kObjectLost: return "ObjectLost";
    case StatusCode::kTaskError: return "TaskError";
    case StatusCode::kCancelled: return "TaskCancelled";
    case StatusCode::kActorDied: return "ActorDied";
    case StatusCode::kWorkerCrashed: return "WorkerCrashed";
    case StatusCode::kInfeasible: return "Infeasible";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kInternal: return "Internal";
    case StatusCode::kAlreadyExists: return "AlreadyExists";
    case StatusCode::kUnauthenticated: return "Unauthenticated";
    case StatusCode::kFabricError: return "FabricError";
    case StatusCode::kMpiError: return "MpiError";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(StatusCodeName(code_)) + ": " + message_;
}

void ThrowIfError(const Status& st) {
  if (st.ok()) return;
  const std::string& m = st.message();
  switch (st.code()) {
    case StatusCode::kTaskError: throw TaskError(m);
    case StatusCode::kTimeout: throw GetTimeoutError(m);
    case StatusCode::kObjectStoreFull: throw ObjectStoreFullError(m);
    case StatusCode::kObjectLost: throw ObjectLostError(m);
    case StatusCode::kCancelled: throw TaskCancelledError(m);
    case StatusCode::kActorDied: throw ActorDiedError(m);
    case StatusCode::kWorkerCrashed: throw WorkerCrashedError(m);
    case StatusCode::kInfeasible: throw InfeasibleError(m);
    case StatusCode::kInvalidArgument: throw InvalidArgumentError(m);
    default: throw Error(st.code(), std::string(StatusCodeName(st.code())) + ": " + m);
  }
}

std::string TaskId::ToString() const {
  char buf[48];
  snprintf(buf, sizeof buf, "%u.%llu", submitter(),
           static_cast<unsigned long long>(value & ((1ull << 40) - 1)));
  return buf;
}

std::string ObjectId::Hex() const {
  char buf[40];
  snprintf(buf, sizeof buf, "%016llx%08x%08x", static_cast<unsigned long long>(task), index, kind);
  return buf;
}

bool ObjectId::FromHex(const std::string& hex, ObjectId* out) {
  if (hex.size() != 32) return false;
  for (char c : hex) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  out->task = std::strtoull(hex.substr(0, 16).c_str(), nullptr, 16);
  out->index = static_cast<uint32_t>(std::strtoul(hex.substr(16, 8).c_str(), nullptr, 16));
  out->kind = static_cast<uint32_t>(std::strtoul(hex.substr(24, 8).c_str(), nullptr, 16));
  return true;
}

namespace detail {

ClusterSnapshot CoreClient::Snapshot() {
  throw Error(StatusCode::kInvalidArgument, "cluster information is not available here");
}
Status CoreClient::DrainProcesses(const std::vector<ProcId>&) {
  return InvalidArgument("draining is only possible on the driver");
}
bool CoreClient::GetNamedActor(const std::string&, const std::string&, ActorId*, Buffer*) {
  throw Error(StatusCode::kInvalidArgument, "named actors are not available here");
}
ObjectId CoreClient::CreatePlacementGroup(const std::string&, uint8_t,
                                          const std::vector<std::vector<std::pair<std::string, double>>>&,
                                          TaskId*) {
  throw Error(StatusCode::kInvalidArgument, "placement groups are not available here");
}
void CoreClient::RemovePlacementGroup(TaskId) {
  throw Error(StatusCode::kInvalidArgument, "placement groups are not available here");
}
std::vector<PlacementGroupEntry> CoreClient::PlacementGroups() {
  throw Error(StatusCode::kInvalidArgument, "placement groups are not available here");
}
int CoreClient::StreamNext(TaskId, uint32_t, int64_t, bool) {
  throw Error(StatusCode::kInvalidArgument, "streaming tasks are not available here");
}
void CoreClient::StreamRelease(TaskId, uint32_t, uint32_t) {}
std::vector<uint8_t> CoreClient::ListState(size_t) {
  throw Error(StatusCode::kInvalidArgument, "the job's state is not available here");
}
double CoreClient::MeasureFabricGbps(ProcId, uint64_t) {
  throw Error(StatusCode::kInvalidArgument, "fabric measurement is not available here");
}

std::vector<ObjectId>*& NestedRefCollector() {
  thread_local std::vector<ObjectId>* collector = nullptr;
  return collector;
}

const Buffer*& CurrentPayload() {
  thread_local const Buffer* payload = nullptr;
  return payload;
}

std::vector<uint8_t> MakeErrorPayload(StatusCode code, const std::string& message,
                                      const std::string& extra) {
  msgpack::sbuffer sb;
  msgpack::packer<msgpack::sbuffer> pk(sb);
  pk.pack_array(extra.empty() ? 2 : 3);
  pk.pack(static_cast<int>(code));
  pk.pack(message);
  if (!extra.empty()) {
    pk.pack_bin(static_cast<uint32_t>(extra.size()));
    pk.pack_bin_body(extra.data(), static_cast<uint32_t>(extra.size()));
  }
  std::vector<uint8_t> out(sizeof(PayloadHeader) + sb.size());
  PayloadHeader h;
  h.format = static_cast<uint8_t>(PayloadFormat::kError);
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + sizeof h, sb.data(), sb.size());
  return out;
}

PayloadFormat CheckPayload(const Buffer& payload) {
  PayloadHeader h;
  if (payload.size() < sizeof h) {
    throw Error(StatusCode::kInternal, "corrupt object: " + std::to_string(payload.size()) + " bytes");
  }
  std::memcpy(&h, payload.data(), sizeof h);
  if (h.magic != kPayloadMagic) throw Error(StatusCode::kInternal, "corrupt object: bad magic");
  return static_cast<PayloadFormat>(h.format);
}

Status ErrorFromPayload(const Buffer& payload) {
  try {
    if (CheckPayload(payload) != PayloadFormat::kError) return Internal("not an error payload");
    msgpack::object_handle oh = msgpack::unpack(
        reinterpret_cast<const char*>(payload.data() + sizeof(PayloadHeader)),
        payload.size() - sizeof(PayloadHeader));
    const msgpack::object& o = oh.get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size < 2) return Internal("corrupt error object");
    return Status(static_cast<StatusCode>(o.via.array.ptr[0].as<int>()),
                  o.via.array.ptr[1].as<std::string>());
  } catch (const std::exception& e) {
    return Internal(std::string("corrupt error object: ") + e.what());
  }
}

std::string ErrorExtraFromPayload(const Buffer& payload) {
  try {
    if (CheckPayload(payload) != PayloadFormat::kError) return {};
    msgpack::object_handle oh = msgpack::unpack(
        reinterpret_cast<const char*>(payload.data() + sizeof(PayloadHeader)),
        payload.size() - sizeof(PayloadHeader));
    const msgpack::object& o = oh.get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size < 3) return {};
    const msgpack::object& e = o.via.array.ptr[2];
    if (e.type != msgpack::type::BIN) return {};
    return std::string(e.via.bin.ptr, e.via.bin.size);
  } catch (const std::exception&) {
    return {};
  }
}

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

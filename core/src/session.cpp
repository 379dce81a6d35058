#include "session.h"

#include "dir_lease.h"
#include "shm_format.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

extern char** environ;

namespace mpiray {
namespace {

const std::string* Find(const EnvMap& env, const std::string& key) {
  auto it = env.find(key);
  return (it == env.end() || it->second.empty()) ? nullptr : &it->second;
}

Result<int64_t> ParseInt(const std::string& what, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str() || *end != '\0') {
    return InvalidArgument(what + " must be an integer, got '" + text + "'");
  }
  return static_cast<int64_t>(v);
}

Result<double> ParseDouble(const std::string& what, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (errno != 0 || end == text.c_str() || *end != '\0' || !std::isfinite(v)) {
    return InvalidArgument(what + " must be a number, got '" + text + "'");
  }
  return v;
}

bool Truthy(const std::string& s) { return s == "1" || s == "true" || s == "yes" || s == "on"; }

Status WriteFile(const std::string& path, const std::string& content, mode_t mode) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) return IoError("cannot write " + path + ": " + std::strerror(errno));
  fchmod(fd, mode);
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = write(fd, content.data() + off, content.size() - off);
    if (n <= 0) {
      close(fd);
      return IoError("cannot write " + path + ": " + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  close(fd);
  return Status::OK();
}

}  // namespace

EnvMap CurrentEnv() {
  EnvMap env;
  for (char** e = environ; e && *e; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq) env.emplace(std::string(*e, eq - *e), std::string(eq + 1));
  }
  return env;
}

std::string RandomHex(size_t bytes) {
  if (sodium_init() < 0) std::abort();
  std::vector<unsigned char> raw(bytes);
  randombytes_buf(raw.data(), raw.size());
  std::string hex(bytes * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), raw.data(), raw.size());
  hex.resize(bytes * 2);
  return hex;
}

Result<uint64_t> ParseBytes(const std::string& what, const std::string& text) {
  if (text.empty()) return InvalidArgument(what + " is empty");
  std::string num = text;
  uint64_t mult = 1;
  char last = static_cast<char>(std::toupper(static_cast<unsigned char>(num.back())));
  if (last == 'B' && num.size() > 1) {
    num.pop_back();
    last = static_cast<char>(std::toupper(static_cast<unsigned char>(num.back())));
  }
  if (last == 'K' || last == 'M' || last == 'G' || last == 'T') {
    mult = last == 'K' ? 1ull << 10 : last == 'M' ? 1ull << 20 : last == 'G' ? 1ull << 30 : 1ull << 40;
    num.pop_back();
  }
  MPIRAY_ASSIGN_OR_RETURN(double v, ParseDouble(what, num));
  if (v < 0) return InvalidArgument(what + " must not be negative, got '" + text + "'");
  return static_cast<uint64_t>(v * static_cast<double>(mult));
}

Result<proto::Resources> ParseResourceList(const std::string& what, const std::string& text) {
  proto::Resources out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgument(what + ": expected name=amount, got '" + item + "'");
    }
    MPIRAY_ASSIGN_OR_RETURN(double v, ParseDouble(what + " (" + item.substr(0, eq) + ")",
                                                  item.substr(eq + 1)));
    if (v < 0) return InvalidArgument(what + ": '" + item.substr(0, eq) + "' is negative");
    out.emplace_back(item.substr(0, eq), std::llround(v * proto::kResourceUnit));
  }
  return out;
}

Result<proto::Resources> NodeResourcesFromEnv(const EnvMap& env) {
  const char* what = "MPIRAY_NODE_RESOURCES";
  auto* v = Find(env, what);
  if (!v) return proto::Resources{};
  proto::Resources out;
  std::stringstream ss(*v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    auto eq = item.find('=');
    std::string name = item.substr(0, eq);
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgument(std::string(what) + ": expected name=amount, got '" + item + "'");
    }
    if (name == "memory") {  // bytes, as Ray's resource of that name (K/M/G/T accepted)
      MPIRAY_ASSIGN_OR_RETURN(uint64_t bytes, ParseBytes(std::string(what) + " (memory)", item.substr(eq + 1)));
      out.emplace_back(name, static_cast<int64_t>(bytes) * proto::kResourceUnit);
      continue;
    }
    MPIRAY_ASSIGN_OR_RETURN(auto one, ParseResourceList(what, item));
    out.insert(out.end(), one.begin(), one.end());
  }
  return out;
}

Result<RuntimeConfig> ConfigFromEnv(const EnvMap& env, const InitOptions& o) {
  RuntimeConfig c;
  if (auto* v = Find(env, "MPIRAY_NUM_WORKERS")) {
    MPIRAY_ASSIGN_OR_RETURN(int64_t n, ParseInt("MPIRAY_NUM_WORKERS", *v));
    if (n < 0) return InvalidArgument("MPIRAY_NUM_WORKERS must be >= 0, got " + *v);
    c.num_workers = static_cast<int32_t>(n);
  }
  if (o.num_workers >= 0) c.num_workers = o.num_workers;
  if (auto* v = Find(env, "MPIRAY_NUM_CPUS")) {
    MPIRAY_ASSIGN_OR_RETURN(c.num_cpus, ParseDouble("MPIRAY_NUM_CPUS", *v));
    if (c.num_cpus < 0) return InvalidArgument("MPIRAY_NUM_CPUS must be >= 0, got " + *v);
  }
  if (o.num_cpus >= 0) c.num_cpus = o.num_cpus;
  if (auto* v = Find(env, "MPIRAY_NUM_GPUS")) {
    MPIRAY_ASSIGN_OR_RETURN(c.num_gpus, ParseDouble("MPIRAY_NUM_GPUS", *v));
    if (c.num_gpus < 0) return InvalidArgument("MPIRAY_NUM_GPUS must be >= 0, got " + *v);
  }
  if (o.num_gpus >= 0) c.num_gpus = o.num_gpus;
  if (auto* v = Find(env, "MPIRAY_RESOURCES")) {
    MPIRAY_ASSIGN_OR_RETURN(c.custom, ParseResourceList("MPIRAY_RESOURCES", *v));
  }
  for (const auto& [name, amount] : o.resources) {
    if (!std::isfinite(amount) || amount < 0) {
      return InvalidArgument("resource '" + name + "' must be a non-negative number");
    }
    if (name == "CPU" || name == "GPU") {
      return InvalidArgument("use num_cpus / num_gpus instead of resources[\"" + name + "\"]");
    }
    c.custom.erase(std::remove_if(c.custom.begin(), c.custom.end(),
                                  [&](const auto& p) { return p.first == name; }),
                   c.custom.end());
    c.custom.emplace_back(name, std::llround(amount * proto::kResourceUnit));
  }
  if (auto* v = Find(env, "MPIRAY_OBJECT_STORE_MEMORY")) {
    MPIRAY_ASSIGN_OR_RETURN(c.store_capacity, ParseBytes("MPIRAY_OBJECT_STORE_MEMORY", *v));
  }
  if (o.object_store_memory == 0) {
    return InvalidArgument("object_store_memory must be positive");
  }
  if (o.object_store_memory > 0) c.store_capacity = static_cast<uint64_t>(o.object_store_memory);
  if (auto* v = Find(env, "MPIRAY_RANKS_PER_NODE")) {
    MPIRAY_ASSIGN_OR_RETURN(int64_t n, ParseInt("MPIRAY_RANKS_PER_NODE", *v));
    if (n < 1) return InvalidArgument("MPIRAY_RANKS_PER_NODE must be >= 1, got " + *v);
    c.ranks_per_node = static_cast<int32_t>(n);
  }
  if (o.ranks_per_node > 0) c.ranks_per_node = o.ranks_per_node;
  std::string level_source = "MPIRAY_LOG_LEVEL";
  if (auto* v = Find(env, "MPIRAY_LOG_LEVEL")) c.log_level = *v;
  if (!o.log_level.empty()) {
    c.log_level = o.log_level;
    level_source = "InitOptions::log_level";
  }
  {
    static const char* kLevels[] = {"trace", "debug", "info", "warn", "warning", "error", "critical", "off"};
    if (std::none_of(std::begin(kLevels), std::end(kLevels),
                     [&](const char* l) { return c.log_level == l; })) {
      return InvalidArgument(level_source + " must be one of trace, debug, info, warn, error, off; got '" +
                             c.log_level + "'");
    }
  }
  if (auto* v = Find(env, "MPIRAY_INLINE_THRESHOLD")) {
    MPIRAY_ASSIGN_OR_RETURN(c.inline_threshold, ParseBytes("MPIRAY_INLINE_THRESHOLD", *v));
  }
  if (auto* v = Find(env, "MPIRAY_MAX_TASKS_IN_FLIGHT")) {
    MPIRAY_ASSIGN_OR_RETURN(int64_t n, ParseInt("MPIRAY_MAX_TASKS_IN_FLIGHT", *v));
    if (n < 1) return InvalidArgument("MPIRAY_MAX_TASKS_IN_FLIGHT must be >= 1");
    c.max_inflight_per_worker = static_cast<int32_t>(n);
  }
  if (auto* v = Find(env, "MPIRAY_SPIN_US")) {
    MPIRAY_ASSIGN_OR_RETURN(int64_t n, ParseInt("MPIRAY_SPIN_US", *v));
    c.spin_us = static_cast<int32_t>(std::max<int64_t>(0, n));
  }
  if (auto* v = Find(env, "MPIRAY_HEARTBEAT_TIMEOUT_MS")) {
    MPIRAY_ASSIGN_OR_RETURN(int64_t n, ParseInt("MPIRAY_HEARTBEAT_TIMEOUT_MS", *v));
    if (n < 100) return InvalidArgument("MPIRAY_HEARTBEAT_TIMEOUT_MS must be >= 100");
    c.heartbeat_timeout_ms = static_cast<int32_t>(n);
  }
  if (auto* v = Find(env, "MPIRAY_FETCH_CHUNK")) {
    MPIRAY_ASSIGN_OR_RETURN(c.fetch_chunk, ParseBytes("MPIRAY_FETCH_CHUNK", *v));
    if (c.fetch_chunk < 4096) return InvalidArgument("MPIRAY_FETCH_CHUNK must be >= 4K");
  }
  if (auto* v = Find(env, "MPIRAY_KEEP_SESSION")) c.keep_session = Truthy(*v);
  if (auto* v = Find(env, "MPIRAY_REPLACE_WORKERS")) c.replace_workers = Truthy(*v);
  if (auto* v = Find(env, "MPIRAY_ACTOR_PROCESSES")) {
    if (*v != "dedicated" && *v != "shared") {
      return InvalidArgument("MPIRAY_ACTOR_PROCESSES must be 'dedicated' (a process per actor) or "
                             "'shared' (actors share worker processes); got '" + *v + "'");
    }
    c.actor_processes = *v == "dedicated";
  }
  if (o.keep_session) c.keep_session = true;
  c.keep_mpi = o.keep_mpi;
  c.log_to_driver = o.log_to_driver;
  if (auto* v = Find(env, "MPIRAY_LOG_TO_DRIVER")) c.log_to_driver = c.log_to_driver && Truthy(*v);
  c.ns = o.ns;
  c.autoscale = !o.autoscale.empty() || Find(env, "MPIRAY_AUTOSCALE") != nullptr;
  if (auto* v = Find(env, "MPIRAY_SAME_MACHINE_COPY")) c.same_machine_copy = Truthy(*v);
  return c;
}

std::vector<NodeId> AssignNodes(const std::vector<int>& host_of_rank, int ranks_per_node) {
  std::vector<NodeId> node(host_of_rank.size());
  std::map<int, int> seen_on_host;     // ranks placed so far per host
  std::map<std::pair<int, int>, NodeId> ids;  // (host, group) -> node id, in order of appearance
  for (size_t r = 0; r < host_of_rank.size(); ++r) {
    int host = host_of_rank[r];
    int local = seen_on_host[host]++;
    int group = ranks_per_node > 0 ? local / ranks_per_node : 0;
    auto key = std::make_pair(host, group);
    auto it = ids.find(key);
    if (it == ids.end()) it = ids.emplace(key, static_cast<NodeId>(ids.size())).first;
    node[r] = it->second;
  }
  return node;
}

uint64_t AvailableMemory() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024;
  }
  return 0;
}

int DetectGpus(const EnvMap& env, const std::string& nvidia_proc) {
  if (auto* v = Find(env, "CUDA_VISIBLE_DEVICES")) {
    if (*v == "NoDevFiles" || *v == "-1") return 0;
    if (!v->empty()) return static_cast<int>(std::count(v->begin(), v->end(), ',')) + 1;
  }
  if (auto* v = Find(env, "SLURM_GPUS_ON_NODE")) {
    auto n = ParseInt("SLURM_GPUS_ON_NODE", *v);
    if (n.ok() && *n > 0) return static_cast<int>(*n);
  }
  // Nothing said: the NVIDIA driver lists one directory per device (as nvidia-smi sees them).
  int n = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(nvidia_proc, ec), end; !ec && it != end; it.increment(ec)) ++n;
  return n;
}

uint64_t DefaultStoreCapacity(const std::string& shm_dir, int nodes_on_host) {
  struct statvfs vfs {};
  uint64_t total = 2ull << 30;
  if (statvfs(shm_dir.c_str(), &vfs) == 0) total = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  return static_cast<uint64_t>(total * 0.3) / static_cast<uint64_t>(std::max(1, nodes_on_host));
}

Result<SessionInfo> CreateSession(const EnvMap& env, const InitOptions& options,
                                  const RuntimeConfig& config) {
  SessionInfo s;
  s.config = config;
  std::string name = RandomHex(4);
  if (auto* job = Find(env, "SLURM_JOB_ID")) name = "j" + *job + "-" + name;
  s.name = name;
  if (s.config.ns.empty()) s.config.ns = "anonymous-" + name;  // as Ray: one per job
  std::string root = options.session_root;
  if (root.empty()) {
    if (auto* v = Find(env, "MPIRAY_SESSION_ROOT")) root = *v;
  }
  if (root.empty()) {
    if (auto* v = Find(env, "TMPDIR")) root = *v;
  }
  if (root.empty()) root = "/tmp";
  s.dir = root + "/mpiray-" + name;
  std::string shm = "/dev/shm";
  if (auto* v = Find(env, "MPIRAY_SHM_DIR")) shm = *v;
  s.shm_root = shm + "/mpiray-" + name;
  // Spill directories are made on first use, by the node that spills, on its own host.
  std::string spill = options.spill_dir;
  if (spill.empty()) {
    if (auto* v = Find(env, "MPIRAY_SPILL_DIR")) spill = *v;
  }
  s.spill_root = spill.empty() ? s.dir + "/spill" : spill + "/mpiray-" + name;
  s.token = RandomHex(32);
  if (mkdir(s.dir.c_str(), 0700) != 0) {
    return IoError("cannot create session directory " + s.dir + ": " + std::strerror(errno));
  }
  chmod(s.dir.c_str(), 0700);
  LeaseDir(s.dir);  // before the token: a session with a token and no holder is left over
  if (s.config.keep_session) MPIRAY_RETURN_IF_ERROR(WriteFile(s.dir + "/kept", "", 0600));
  if (mkdir(s.LogDir().c_str(), 0700) != 0) {
    return IoError("cannot create " + s.LogDir() + ": " + std::strerror(errno));
  }
  MPIRAY_RETURN_IF_ERROR(WriteFile(s.TokenFile(), s.token + "\n", 0600));
  return s;
}

Status EnsureSessionDirs(const SessionInfo& s) {
  if (mkdir(s.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return IoError("cannot create session directory " + s.dir + ": " + std::strerror(errno));
  }
  LeaseDir(s.dir);
  if (mkdir(s.LogDir().c_str(), 0700) != 0 && errno != EEXIST) {
    return IoError("cannot create " + s.LogDir() + ": " + std::strerror(errno));
  }
  return Status::OK();
}

Result<SessionInfo> ReadSessionForJoin(const std::string& dir, std::string* head_address) {
  SessionInfo s;
  s.dir = dir;
  std::ifstream tok(s.TokenFile());
  if (!tok || !(tok >> s.token)) {
    return Status(StatusCode::kUnauthenticated,
                  "cannot read the session token " + s.TokenFile() +
                      " (is the session running, and is it yours?)");
  }
  std::ifstream addr(s.AddressFile());
  if (!addr || !(addr >> *head_address)) {
    return NotFound("cannot read the head address from " + s.AddressFile());
  }
  return s;
}

void RemoveTree(const std::string& dir) {
  if (dir.empty()) return;
  // This process's kept writer mappings go first, while the files still hold their pages:
  // unmapping is then page-table work only, and the pages are freed by the closing thread
  // below (were a mapping the last reference, munmap would free them under the mm lock).
  shm::DropWriterMappings();
  std::error_code ec;
  // A big file's pages are freed when its last reference goes, which takes ~0.15 s per GB of
  // tmpfs here: such files are opened, unlinked (their names are gone at once) and closed by a
  // thread of their own, so that shutdown returns while the kernel frees their memory.
  std::vector<int> held;
  for (auto it = std::filesystem::recursive_directory_iterator(
           dir, std::filesystem::directory_options::none, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code fec;
    if (!it->is_regular_file(fec) || it->is_symlink(fec)) continue;
    if (it->file_size(fec) >= (16u << 20)) {
      int fd = ::open(it->path().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd >= 0) held.push_back(fd);
    }
    ::unlink(it->path().c_str());
  }
  std::filesystem::remove_all(dir, ec);
  if (held.empty()) return;
  auto close_all = [held] {
    for (int fd : held) ::close(fd);
  };
  try {
    std::thread(close_all).detach();
  } catch (const std::exception&) {  // out of threads: free them here
    close_all();
  }
}

void RemoveSessionFiles(const SessionInfo& s) {
  std::error_code ec;
  ReleaseDirLeases(s.dir);
  ReleaseDirLeases(s.shm_root);
  if (!s.dir.empty()) std::filesystem::remove_all(s.dir, ec);
  if (s.shm_root.empty()) return;
  std::filesystem::path root(s.shm_root);
  std::string prefix = root.filename().string() + "-n";
  std::vector<std::filesystem::path> stores;
  for (auto it = std::filesystem::directory_iterator(root.parent_path(), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    std::string n = it->path().filename().string();
    if (n.rfind(prefix, 0) == 0) stores.push_back(it->path());
  }
  for (const auto& store : stores) {
    // The spill directory of each node whose store lives on this host: only those, so a
    // spill directory on a shared file system keeps the other hosts' files.
    if (!s.spill_root.empty()) {
      std::string node = store.filename().string().substr(prefix.size());
      std::error_code spill_ec;
      std::filesystem::remove_all(s.spill_root + "-n" + node, spill_ec);
    }
    RemoveTree(store.string());
  }
}

}  // namespace mpiray

#include "shm_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "log.h"

namespace mpiray {
namespace {

constexpr uint64_t kCtlMagic = 0x6d70697261795354ull;  // "mpiraySt"

struct Mapping {
  void* addr = nullptr;
  size_t len = 0;
  ~Mapping() {
    if (addr) munmap(addr, len);
  }
};

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string HumanBytes(uint64_t b) {
  char buf[64];
  if (b >= (1ull << 30)) {
    snprintf(buf, sizeof buf, "%.2f GiB", b / double(1ull << 30));
  } else if (b >= (1ull << 20)) {
    snprintf(buf, sizeof buf, "%.2f MiB", b / double(1ull << 20));
  } else {
    snprintf(buf, sizeof buf, "%llu bytes", static_cast<unsigned long long>(b));
  }
  return buf;
}

}  // namespace

struct ShmStore::Ctl {
  std::atomic<uint64_t> magic;
  std::atomic<uint64_t> used;
  uint64_t capacity;
};

std::string ShmStore::NodeDir(const std::string& root, NodeId node) {
  return root + "-n" + std::to_string(node);
}

Result<std::unique_ptr<ShmStore>> ShmStore::Open(const StoreOptions& options) {
  std::unique_ptr<ShmStore> s(new ShmStore());
  s->node_ = options.node;
  s->dir_ = NodeDir(options.root, options.node);
  if (mkdir(s->dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return IoError(Errno("cannot create object store directory " + s->dir_));
  }
  std::string ctl_path = s->dir_ + "/.ctl";
  bool creator = false;
  int fd = open(ctl_path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd >= 0) {
    creator = true;
    if (ftruncate(fd, sizeof(Ctl)) != 0) {
      close(fd);
      return IoError(Errno("cannot size " + ctl_path));
    }
  } else if (errno == EEXIST) {
    fd = open(ctl_path.c_str(), O_RDWR);
    if (fd < 0) return IoError(Errno("cannot open " + ctl_path));
    // The creator may not have sized the file yet.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    struct stat st {};
    while (fstat(fd, &st) == 0 && static_cast<size_t>(st.st_size) < sizeof(Ctl)) {
      if (std::chrono::steady_clock::now() > deadline) {
        close(fd);
        return IoError("object store control file " + ctl_path + " was never initialised");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  } else {
    return IoError(Errno("cannot create " + ctl_path));
  }
  void* p = mmap(nullptr, sizeof(Ctl), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return IoError(Errno("cannot map " + ctl_path));
  s->ctl_ = static_cast<Ctl*>(p);
  if (creator) {
    s->ctl_->capacity = options.capacity;
    s->ctl_->used.store(0);
    s->ctl_->magic.store(kCtlMagic, std::memory_order_release);
  } else {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (s->ctl_->magic.load(std::memory_order_acquire) != kCtlMagic) {
      if (std::chrono::steady_clock::now() > deadline) {
        return IoError("object store control file " + ctl_path + " is corrupt");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  return s;
}

ShmStore::~ShmStore() {
  if (ctl_) munmap(ctl_, sizeof(Ctl));
}

uint64_t ShmStore::used() const { return ctl_->used.load(); }
uint64_t ShmStore::capacity() const { return ctl_->capacity; }

std::string ShmStore::PathOf(const ObjectId& id) const { return dir_ + "/" + id.Hex(); }

Status ShmStore::Reserve(uint64_t size) {
  const uint64_t cap = ctl_->capacity;
  if (size > cap) {
    return Status(StatusCode::kObjectStoreFull,
                  "object of " + HumanBytes(size) + " is larger than the object store of node " +
                      std::to_string(node_) + " (" + HumanBytes(cap) +
                      "; raise it with object_store_memory or MPIRAY_OBJECT_STORE_MEMORY)");
  }
  uint64_t cur = ctl_->used.load();
  while (true) {
    if (cur + size > cap) {
      return Status(StatusCode::kObjectStoreFull,
                    "object store of node " + std::to_string(node_) + " is full: " +
                        HumanBytes(size) + " needed, " + HumanBytes(cur) + " of " +
                        HumanBytes(cap) + " in use");
    }
    if (ctl_->used.compare_exchange_weak(cur, cur + size)) return Status::OK();
  }
}

void ShmStore::Release(uint64_t size) { ctl_->used.fetch_sub(size); }

Result<WritableObject> ShmStore::Create(const ObjectId& id, uint64_t size) {
  MPIRAY_RETURN_IF_ERROR(Reserve(size));
  WritableObject obj;
  obj.id = id;
  obj.size = size;
  obj.tmp_path = dir_ + "/.w-" + id.Hex() + "-" + std::to_string(getpid()) + "-" +
                 std::to_string(reinterpret_cast<uintptr_t>(&obj) & 0xffff);
  int fd = open(obj.tmp_path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    Release(size);
    return IoError(Errno("cannot create " + obj.tmp_path));
  }
  int rc = posix_fallocate(fd, 0, static_cast<off_t>(size));
  if (rc != 0) {
    close(fd);
    unlink(obj.tmp_path.c_str());
    Release(size);
    return Status(StatusCode::kObjectStoreFull,
                  "shared memory of this host is exhausted while storing " + HumanBytes(size) +
                      ": " + std::strerror(rc));
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    unlink(obj.tmp_path.c_str());
    Release(size);
    return IoError(Errno("cannot map " + obj.tmp_path));
  }
  auto m = std::make_shared<Mapping>();
  m->addr = p;
  m->len = size;
  obj.data = static_cast<uint8_t*>(p);
  obj.mapping = m;
  return obj;
}

Result<Buffer> ShmStore::Seal(WritableObject& obj) {
  std::string path = PathOf(obj.id);
  // link() fails if a copy is already there (two processes fetched it at once): keep theirs.
  if (link(obj.tmp_path.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(obj.tmp_path.c_str());
    Release(obj.size);
    if (err != EEXIST) return IoError("cannot publish " + path + ": " + std::strerror(err));
    obj.mapping.reset();
    return Map(obj.id);
  }
  unlink(obj.tmp_path.c_str());
  Buffer view(obj.data, obj.size, obj.mapping);
  std::lock_guard<std::mutex> lk(mu_);
  maps_[obj.id] = obj.mapping;
  return view;
}

void ShmStore::Abort(WritableObject& obj) {
  if (obj.tmp_path.empty()) return;
  unlink(obj.tmp_path.c_str());
  Release(obj.size);
  obj.mapping.reset();
  obj.tmp_path.clear();
}

Result<Buffer> ShmStore::Map(const ObjectId& id) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = maps_.find(id);
    if (it != maps_.end()) {
      if (auto m = it->second.lock()) {
        auto* mp = static_cast<const Mapping*>(m.get());
        return Buffer(static_cast<const uint8_t*>(mp->addr), mp->len, m);
      }
      maps_.erase(it);
    }
  }
  std::string path = PathOf(id);
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    return Status(StatusCode::kObjectLost,
                  "object " + id.Hex() + " is not in the store of node " + std::to_string(node_));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_size == 0) {
    close(fd);
    return IoError(Errno("cannot stat " + path));
  }
  void* p = mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return IoError(Errno("cannot map " + path));
  auto m = std::make_shared<Mapping>();
  m->addr = p;
  m->len = st.st_size;
  Buffer view(static_cast<const uint8_t*>(p), m->len, m);
  std::lock_guard<std::mutex> lk(mu_);
  if (maps_.size() > 4096) {  // prune dead entries now and then
    for (auto it = maps_.begin(); it != maps_.end();) {
      it = it->second.expired() ? maps_.erase(it) : std::next(it);
    }
  }
  maps_[id] = m;
  return view;
}

bool ShmStore::Contains(const ObjectId& id) const {
  struct stat st {};
  return stat(PathOf(id).c_str(), &st) == 0;
}

void ShmStore::Delete(const ObjectId& id) {
  std::string path = PathOf(id);
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return;
  if (unlink(path.c_str()) == 0) Release(static_cast<uint64_t>(st.st_size));
  std::lock_guard<std::mutex> lk(mu_);
  maps_.erase(id);
}

void ShmStore::RemoveAll() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace mpiray

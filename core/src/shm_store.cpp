#include "shm_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "log.h"

namespace mpiray {
namespace {

constexpr uint64_t kCtlMagic = 0x6d70697261795354ull;   // "mpiraySt"
constexpr uint64_t kFileMagic = 0x6d7069726179466full;  // "mpirayFo"
constexpr size_t kHeaderSize = 4096;                     // one page, so the payload is aligned

// The first page of every object file.
struct FileHeader {
  uint64_t magic;
  std::atomic<int64_t> pins;  // live mappings, in any process; -1 while being recycled
  uint64_t payload;
  ObjectId id;  // which object the file holds now (a recycled file changes identity)
};
static_assert(sizeof(FileHeader) <= kHeaderSize);

// A process's view of one object file: the header page (read-write, for the pin count) and the
// payload. Destroying it drops the pin.
struct Mapping {
  FileHeader* header = nullptr;
  uint8_t* payload = nullptr;
  size_t len = 0;
  ~Mapping() {
    if (header) header->pins.fetch_sub(1, std::memory_order_acq_rel);
    if (payload) munmap(payload, len);
    if (header) munmap(header, kHeaderSize);
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

FileHeader* MapHeader(int fd) {
  void* p = mmap(nullptr, kHeaderSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? nullptr : static_cast<FileHeader*>(p);
}

}  // namespace

struct ShmStore::Ctl {
  std::atomic<uint64_t> magic;
  std::atomic<uint64_t> used;    // live objects (file sizes)
  std::atomic<uint64_t> pooled;  // recycled files waiting for reuse
  uint64_t capacity;
};

std::string ShmStore::NodeDir(const std::string& root, NodeId node) {
  return root + "-n" + std::to_string(node);
}

Result<std::unique_ptr<ShmStore>> ShmStore::Open(const StoreOptions& options) {
  std::unique_ptr<ShmStore> s(new ShmStore());
  s->node_ = options.node;
  s->root_ = options.root;
  s->dir_ = NodeDir(options.root, options.node);
  s->pool_dir_ = s->dir_ + "/.pool";
  if (mkdir(s->dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return IoError(Errno("cannot create object store directory " + s->dir_));
  }
  if (mkdir(s->pool_dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return IoError(Errno("cannot create " + s->pool_dir_));
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
    s->ctl_->pooled.store(0);
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
uint64_t ShmStore::pooled() const { return ctl_->pooled.load(); }
uint64_t ShmStore::capacity() const { return ctl_->capacity; }

std::string ShmStore::PathOf(const ObjectId& id) const { return dir_ + "/" + id.Hex(); }

// Pool files are named <file size>-<unique>.
static bool PoolEntrySize(const char* name, uint64_t* size) {
  char* end = nullptr;
  unsigned long long v = std::strtoull(name, &end, 10);
  if (end == name || *end != '-') return false;
  *size = v;
  return true;
}

bool ShmStore::EvictPool(uint64_t need) {
  // Unlinking is always safe: processes that still map a file keep their pages.
  DIR* d = opendir(pool_dir_.c_str());
  if (!d) return false;
  bool freed = false;
  while (dirent* e = readdir(d)) {
    uint64_t size = 0;
    if (!PoolEntrySize(e->d_name, &size)) continue;
    std::string path = pool_dir_ + "/" + e->d_name;
    if (unlink(path.c_str()) == 0) {
      ctl_->pooled.fetch_sub(size);
      freed = true;
      if (ctl_->used.load() + ctl_->pooled.load() + need <= ctl_->capacity) break;
    }
  }
  closedir(d);
  return freed;
}

Status ShmStore::Reserve(uint64_t size) {
  const uint64_t cap = ctl_->capacity;
  if (size > cap) {
    return Status(StatusCode::kObjectStoreFull,
                  "object of " + HumanBytes(size) + " is larger than the object store of node " +
                      std::to_string(node_) + " (" + HumanBytes(cap) +
                      "; raise it with object_store_memory or MPIRAY_OBJECT_STORE_MEMORY)");
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    uint64_t cur = ctl_->used.load();
    while (cur + size <= cap) {
      if (ctl_->used.compare_exchange_weak(cur, cur + size)) {
        if (cur + size + ctl_->pooled.load() > cap) EvictPool(size);  // make tmpfs room
        return Status::OK();
      }
    }
    if (!EvictPool(size)) break;
  }
  uint64_t cur = ctl_->used.load();
  return Status(StatusCode::kObjectStoreFull,
                "object store of node " + std::to_string(node_) + " is full: " + HumanBytes(size) +
                    " needed, " + HumanBytes(cur) + " of " + HumanBytes(cap) + " in use");
}

void ShmStore::Release(uint64_t size) { ctl_->used.fetch_sub(size); }

// Take a pool file of about `file_size` bytes that nobody maps, rename it to `tmp_path` and
// return an open fd (or -1).
int ShmStore::ClaimFromPool(uint64_t file_size, const std::string& tmp_path) {
  DIR* d = opendir(pool_dir_.c_str());
  if (!d) return -1;
  std::vector<std::pair<uint64_t, std::string>> candidates;
  while (dirent* e = readdir(d)) {
    uint64_t size = 0;
    // Close in size: shrinking a much larger file would waste its warm pages.
    if (PoolEntrySize(e->d_name, &size) && size >= file_size && size <= file_size + file_size / 2 + (1u << 20)) {
      candidates.emplace_back(size, e->d_name);
    }
  }
  closedir(d);
  std::sort(candidates.begin(), candidates.end());
  for (const auto& [size, name] : candidates) {
    std::string path = pool_dir_ + "/" + name;
    int fd = open(path.c_str(), O_RDWR);
    if (fd < 0) continue;
    FileHeader* h = MapHeader(fd);
    if (!h) {
      close(fd);
      continue;
    }
    int64_t zero = 0;
    bool claimed = h->magic == kFileMagic && h->pins.compare_exchange_strong(zero, -1);
    if (claimed && rename(path.c_str(), tmp_path.c_str()) != 0) {
      h->pins.store(0);
      claimed = false;
    }
    munmap(h, kHeaderSize);
    if (!claimed) {
      close(fd);
      continue;
    }
    ctl_->pooled.fetch_sub(size);
    if (size != file_size && ftruncate(fd, static_cast<off_t>(file_size)) != 0) {
      close(fd);
      unlink(tmp_path.c_str());
      return -1;
    }
    return fd;
  }
  return -1;
}

Result<WritableObject> ShmStore::Create(const ObjectId& id, uint64_t size) {
  const uint64_t file_size = kHeaderSize + size;
  MPIRAY_RETURN_IF_ERROR(Reserve(file_size));
  static std::atomic<uint64_t> counter{0};
  WritableObject obj;
  obj.id = id;
  obj.size = size;
  obj.tmp_path = dir_ + "/.w-" + id.Hex() + "-" + std::to_string(getpid()) + "-" +
                 std::to_string(counter.fetch_add(1));
  auto fail = [&](Status st, int fd) -> Result<WritableObject> {
    if (fd >= 0) close(fd);
    unlink(obj.tmp_path.c_str());
    Release(file_size);
    return st;
  };
  int fd = ClaimFromPool(file_size, obj.tmp_path);
  if (fd < 0) {
    fd = open(obj.tmp_path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return fail(IoError(Errno("cannot create " + obj.tmp_path)), -1);
    int rc = posix_fallocate(fd, 0, static_cast<off_t>(file_size));
    if (rc != 0) {
      return fail(Status(StatusCode::kObjectStoreFull,
                         "shared memory of this host is exhausted while storing " +
                             HumanBytes(size) + ": " + std::strerror(rc)),
                  fd);
    }
  }
  auto m = std::make_shared<Mapping>();
  m->header = MapHeader(fd);
  if (!m->header) return fail(IoError(Errno("cannot map " + obj.tmp_path)), fd);
  m->header->magic = kFileMagic;
  m->header->payload = size;
  m->header->id = id;
  m->header->pins.store(1, std::memory_order_release);  // this mapping
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                 static_cast<off_t>(kHeaderSize));
  close(fd);
  if (p == MAP_FAILED) {
    m.reset();
    return fail(IoError(Errno("cannot map " + obj.tmp_path)), -1);
  }
  m->payload = static_cast<uint8_t*>(p);
  m->len = size;
  obj.data = m->payload;
  obj.mapping = m;
  return obj;
}

Result<Buffer> ShmStore::Seal(WritableObject& obj) {
  std::string path = PathOf(obj.id);
  // link() fails if a copy is already there (two processes fetched it at once): keep theirs.
  if (link(obj.tmp_path.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(obj.tmp_path.c_str());
    Release(kHeaderSize + obj.size);
    obj.mapping.reset();
    obj.tmp_path.clear();
    if (err != EEXIST) return IoError("cannot publish " + path + ": " + std::strerror(err));
    return Map(obj.id);
  }
  unlink(obj.tmp_path.c_str());
  obj.tmp_path.clear();
  Buffer view(obj.data, obj.size, obj.mapping);
  std::lock_guard<std::mutex> lk(mu_);
  maps_[obj.id] = obj.mapping;
  return view;
}

void ShmStore::Abort(WritableObject& obj) {
  if (obj.tmp_path.empty()) return;
  unlink(obj.tmp_path.c_str());
  Release(kHeaderSize + obj.size);
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
        return Buffer(mp->payload, mp->len, m);
      }
      maps_.erase(it);
    }
  }
  return MapPath(PathOf(id), id, true);
}

Result<Buffer> ShmStore::MapFrom(NodeId node, const ObjectId& id) {
  return MapPath(NodeDir(root_, node) + "/" + id.Hex(), id, false);
}

Result<Buffer> ShmStore::MapPath(const std::string& path, const ObjectId& id, bool cache) {
  auto lost = [&] {
    return Status(StatusCode::kObjectLost, "object " + id.Hex() + " is not in " + path);
  };
  int fd = open(path.c_str(), O_RDWR);
  if (fd < 0) return lost();
  auto m = std::make_shared<Mapping>();
  FileHeader* h = MapHeader(fd);
  if (!h || h->magic != kFileMagic) {
    if (h) munmap(h, kHeaderSize);
    close(fd);
    return IoError("object file " + path + " is corrupt");
  }
  int64_t pins = h->pins.load();
  do {
    if (pins < 0) {  // being recycled: the object is gone
      munmap(h, kHeaderSize);
      close(fd);
      return lost();
    }
  } while (!h->pins.compare_exchange_weak(pins, pins + 1));
  m->header = h;  // from here the Mapping drops the pin
  if (h->id != id) {
    // The file was recycled for another object between open() and the pin.
    close(fd);
    return lost();
  }
  size_t size = h->payload;
  void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(kHeaderSize));
  close(fd);
  if (p == MAP_FAILED) return IoError(Errno("cannot map " + path));
  m->payload = static_cast<uint8_t*>(p);
  m->len = size;
  Buffer view(m->payload, m->len, m);
  if (!cache) return view;
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
  {
    std::lock_guard<std::mutex> lk(mu_);
    maps_.erase(id);
  }
  std::string path = PathOf(id);
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return;
  auto size = static_cast<uint64_t>(st.st_size);
  // Keep the warm file for a later object when the pool has room (at most half the store).
  static std::atomic<uint64_t> counter{0};
  if (ctl_->pooled.load() + size <= ctl_->capacity / 2) {
    std::string pooled = pool_dir_ + "/" + std::to_string(size) + "-" + id.Hex() + "-" +
                         std::to_string(getpid()) + "-" + std::to_string(counter.fetch_add(1));
    if (rename(path.c_str(), pooled.c_str()) == 0) {
      ctl_->pooled.fetch_add(size);
      Release(size);
      return;
    }
  }
  if (unlink(path.c_str()) == 0) Release(size);
}

void ShmStore::RemoveAll() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace mpiray

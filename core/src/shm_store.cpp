#include "shm_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>
#include <tuple>
#include <vector>

#include "session.h"
#include "log.h"
#include "dir_lease.h"
#include "shm_format.h"

namespace mpiray {

namespace shm {
namespace {

struct KeptMapping {
  dev_t dev;
  ino_t ino;
  uint8_t* payload;
  size_t len;
};

struct WriterMappings {
  std::mutex mu;
  std::vector<KeptMapping> kept;  // oldest first
  size_t bytes = 0;
};

WriterMappings& Kept() {
  static auto* k = new WriterMappings();  // leaked on purpose: mappings may die at exit
  return *k;
}

constexpr size_t kKeptMaxEntries = 8;
constexpr size_t kKeptMaxBytes = size_t{2} << 30;  // an 800 MB put is kept too
constexpr size_t kKeptMinBytes = size_t{1} << 20;  // small mappings are cheap to redo

}  // namespace

bool KeepWriterMapping(dev_t dev, ino_t ino, uint8_t* payload, size_t len) {
  static const bool enabled = [] {
    const char* v = std::getenv("MPIRAY_STORE_KEEP_MAPPINGS");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  if (!enabled || len < kKeptMinBytes || len > kKeptMaxBytes) return false;
  auto& k = Kept();
  std::vector<KeptMapping> evicted;
  {
    std::lock_guard<std::mutex> lk(k.mu);
    k.kept.push_back({dev, ino, payload, len});
    k.bytes += len;
    while (k.kept.size() > kKeptMaxEntries || k.bytes > kKeptMaxBytes) {
      evicted.push_back(k.kept.front());
      k.bytes -= k.kept.front().len;
      k.kept.erase(k.kept.begin());
    }
  }
  for (auto& e : evicted) munmap(e.payload, e.len);
  return true;
}

uint8_t* TakeWriterMapping(dev_t dev, ino_t ino, size_t len) {
  auto& k = Kept();
  std::lock_guard<std::mutex> lk(k.mu);
  for (auto it = k.kept.begin(); it != k.kept.end(); ++it) {
    if (it->dev == dev && it->ino == ino) {
      uint8_t* p = it->payload;
      size_t l = it->len;
      k.bytes -= l;
      k.kept.erase(it);
      if (l == len) return p;
      munmap(p, l);
      return nullptr;
    }
  }
  return nullptr;
}

bool HasWriterMapping(ino_t ino) {
  auto& k = Kept();
  std::lock_guard<std::mutex> lk(k.mu);
  for (const auto& e : k.kept) {
    if (e.ino == ino) return true;
  }
  return false;
}

void DropWriterMappings() {
  auto& k = Kept();
  std::vector<KeptMapping> all;
  {
    std::lock_guard<std::mutex> lk(k.mu);
    all.swap(k.kept);
    k.bytes = 0;
  }
  for (auto& e : all) munmap(e.payload, e.len);
}

}  // namespace shm

using namespace shm;  // the file format (shm_format.h)
std::string ShmStore::NodeDir(const std::string& root, NodeId node) {
  return root + "-n" + std::to_string(node);
}

Result<std::unique_ptr<ShmStore>> ShmStore::Open(const StoreOptions& options) {
  std::unique_ptr<ShmStore> s(new ShmStore());
  s->node_ = options.node;
  s->root_ = options.root;
  s->dir_ = NodeDir(options.root, options.node);
  s->pool_dir_ = s->dir_ + "/.pool";
  s->spill_root_ = options.spill_root;
  s->full_wait_ms_ = options.full_wait_ms;
  if (!options.spill_root.empty()) s->spill_dir_ = NodeDir(options.spill_root, options.node);
  if (mkdir(s->dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return IoError(Errno("cannot create object store directory " + s->dir_));
  }
  LeaseDir(s->dir_);  // before .ctl: a store with .ctl and no holder is left over
  s->leased_ = true;
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
    s->ctl_->spilled_total.store(0);
    s->ctl_->restored_total.store(0);
    s->ctl_->spilled_now.store(0);
    s->ctl_->spills.store(0);
    s->ctl_->restores.store(0);
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
  DropWriterMappings();
  if (ctl_) munmap(ctl_, sizeof(Ctl));
  if (leased_) ReleaseDirLease(dir_);
  if (spill_leased_) ReleaseDirLease(spill_dir_);
}

uint64_t ShmStore::used() const { return ctl_->used.load(); }
uint64_t ShmStore::pooled() const { return ctl_->pooled.load(); }
uint64_t ShmStore::capacity() const { return ctl_->capacity; }

StoreStats ShmStore::stats() const {
  StoreStats st;
  st.used = ctl_->used.load();
  st.capacity = ctl_->capacity;
  st.spilled_total = ctl_->spilled_total.load();
  st.restored_total = ctl_->restored_total.load();
  st.spilled_now = ctl_->spilled_now.load();
  st.spills = ctl_->spills.load();
  st.restores = ctl_->restores.load();
  return st;
}

bool ShmStore::PeekStats(const std::string& root, NodeId node, StoreStats* out) {
  std::string path = NodeDir(root, node) + "/.ctl";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st {};
  if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) < sizeof(Ctl)) {
    close(fd);
    return false;
  }
  void* p = mmap(nullptr, sizeof(Ctl), PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return false;
  const Ctl* c = static_cast<const Ctl*>(p);
  bool ok = c->magic.load(std::memory_order_acquire) == kCtlMagic;
  if (ok) {
    out->used = c->used.load();
    out->capacity = c->capacity;
    out->spilled_total = c->spilled_total.load();
    out->restored_total = c->restored_total.load();
    out->spilled_now = c->spilled_now.load();
    out->spills = c->spills.load();
    out->restores = c->restores.load();
  }
  munmap(p, sizeof(Ctl));
  return ok;
}

std::string ShmStore::PathOf(const ObjectId& id) const { return dir_ + "/" + id.Hex(); }

std::string ShmStore::SpillPathOf(const std::string& spill_dir, const ObjectId& id) const {
  return spill_dir.empty() ? std::string() : spill_dir + "/" + id.Hex();
}

// Pool files are named <file size>-<unique>.
static bool PoolEntrySize(const char* name, uint64_t* size) {
  char* end = nullptr;
  unsigned long long v = std::strtoull(name, &end, 10);
  if (end == name || *end != '-') return false;
  *size = v;
  return true;
}

bool ShmStore::EvictPool(uint64_t need) {
  // Unlinking is always safe: processes that still map a file keep their pages (a writer's
  // dormant mapping does not: UnlinkFreeing frees them).
  DIR* d = opendir(pool_dir_.c_str());
  if (!d) return false;
  bool freed = false;
  while (dirent* e = readdir(d)) {
    uint64_t size = 0;
    if (!PoolEntrySize(e->d_name, &size)) continue;
    std::string path = pool_dir_ + "/" + e->d_name;
    if (UnlinkFreeing(path)) {
      ctl_->pooled.fetch_sub(size);
      freed = true;
      if (ctl_->used.load() + ctl_->pooled.load() + need <= ctl_->capacity) break;
    }
  }
  closedir(d);
  return freed;
}

Status ShmStore::Reserve(uint64_t size, bool wait) {
  const uint64_t cap = ctl_->capacity;
  if (size > cap) {
    return Status(StatusCode::kObjectStoreFull,
                  "object of " + HumanBytes(size) + " is larger than the object store of node " +
                      std::to_string(node_) + " (" + HumanBytes(cap) +
                      "; raise it with object_store_memory or MPIRAY_OBJECT_STORE_MEMORY)");
  }
  // Bytes in transit (an object another process is spilling, or one reserved but not yet on
  // its file) change hands in a moment, and objects in use are usually released soon: wait
  // for them (polling, with backoff) rather than fail.
  const auto start = std::chrono::steady_clock::now();
  auto pause = std::chrono::microseconds(200);
  while (true) {
    uint64_t cur = ctl_->used.load();
    while (cur + size <= cap) {
      if (ctl_->used.compare_exchange_weak(cur, cur + size)) return Status::OK();
    }
    std::string why;
    SpillScan scan;
    if (!spill_dir_.empty()) {
      auto freed = SpillLru(cur + size - cap, &scan);
      if (freed.ok() && *freed > 0) continue;
      if (!freed.ok()) why = freed.status().message();
    }
    if (ctl_->used.load() < cur) continue;  // another process released bytes meanwhile
    const auto waited = std::chrono::steady_clock::now() - start;
    const bool in_transit = scan.seen < cur;
    const bool in_use = scan.pinned > 0 || scan.writing > 0;
    if (!spill_dir_.empty() && why.empty() &&
        ((scan.busy > 0 && waited < std::chrono::seconds(30)) ||
         (in_transit && waited < std::chrono::seconds(5)) ||
         (in_use && wait && waited < std::chrono::milliseconds(full_wait_ms_)))) {
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(10000));
      continue;
    }
    std::string msg = "object store of node " + std::to_string(node_) + " is full: " +
                      HumanBytes(size) + " needed, " + HumanBytes(cur) + " of " +
                      HumanBytes(cap) + " in use";
    if (!spill_dir_.empty()) {
      msg += " (" + HumanBytes(scan.pinned) + " pinned by readers, " + HumanBytes(scan.writing) +
             " being written";
      if (in_transit) msg += ", " + HumanBytes(cur - scan.seen) + " held by no file";
      msg += why.empty() ? "); nothing can be spilled to " + spill_dir_ : "); " + why;
    }
    return Status(StatusCode::kObjectStoreFull, msg);
  }
}

void ShmStore::Release(uint64_t size) { ctl_->used.fetch_sub(size); }

// Take a pool file of about `file_size` bytes that nobody maps, rename it to `tmp_path` and
// return an open fd (or -1).
int ShmStore::ClaimFromPool(uint64_t file_size, const std::string& tmp_path) {
  DIR* d = opendir(pool_dir_.c_str());
  if (!d) return -1;
  std::vector<std::tuple<bool, uint64_t, std::string>> candidates;
  while (dirent* e = readdir(d)) {
    uint64_t size = 0;
    // Close in size: shrinking a much larger file would waste its warm pages.
    if (PoolEntrySize(e->d_name, &size) && size >= file_size && size <= file_size + file_size / 2 + (1u << 20)) {
      // Files whose pages this process still maps first (no mapping work at all).
      candidates.emplace_back(!(size == file_size && HasWriterMapping(e->d_ino)), size, e->d_name);
    }
  }
  closedir(d);
  std::sort(candidates.begin(), candidates.end());
  for (const auto& [not_mine, size, name] : candidates) {
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

Result<WritableObject> ShmStore::Create(const ObjectId& id, uint64_t size, bool wait) {
  auto w = CreateFile(id, size, wait, true);
  if (w.ok() || w.status().code() != StatusCode::kObjectStoreFull || spill_dir_.empty() ||
      kHeaderSize + size > ctl_->capacity) {
    return w;
  }
  return CreateOnDisk(id, size, w.status());
}

Result<WritableObject> ShmStore::CreateFile(const ObjectId& id, uint64_t size, bool wait,
                                            bool populate) {
  const uint64_t file_size = kHeaderSize + size;
  MPIRAY_RETURN_IF_ERROR(Reserve(file_size, wait));
  WritableObject obj;
  obj.id = id;
  obj.size = size;
  obj.tmp_path = dir_ + "/.w-" + id.Hex() + "-" + UniqueSuffix();
  auto fail = [&](Status st, int fd) -> Result<WritableObject> {
    if (fd >= 0) close(fd);
    unlink(obj.tmp_path.c_str());
    Release(file_size);
    return st;
  };
  int fd = ClaimFromPool(file_size, obj.tmp_path);
  if (fd < 0) {
    // A new file: first drop recycled files that would take the store past its capacity.
    if (ctl_->used.load() + ctl_->pooled.load() > ctl_->capacity) EvictPool(0);
    fd = open(obj.tmp_path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return fail(IoError(Errno("cannot create " + obj.tmp_path)), -1);
    int rc = posix_fallocate(fd, 0, static_cast<off_t>(file_size));
    if (rc == ENOSPC && !spill_dir_.empty()) {
      // The host's shared memory is short (other stores or programs use it): spill ours.
      (void)Spill(file_size);
      rc = posix_fallocate(fd, 0, static_cast<off_t>(file_size));
    }
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
  m->header->last_use.store(NowNs(), std::memory_order_relaxed);
  m->header->pins.store(1, std::memory_order_release);  // this mapping
  struct stat st {};
  if (fstat(fd, &st) == 0) {
    m->writer = true;
    m->dev = st.st_dev;
    m->ino = st.st_ino;
  }
  // A recycled file this process wrote before: its pages are still mapped here.
  void* p = m->writer && static_cast<uint64_t>(st.st_size) == file_size
                ? TakeWriterMapping(st.st_dev, st.st_ino, size)
                : nullptr;
  if (!p) {
    // A writer writes every page through the mapping: map them all at once.
    const int flags = MAP_SHARED | (populate ? MAP_POPULATE : 0);
    p = mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, fd, static_cast<off_t>(kHeaderSize));
  }
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
  // An object created on disk is published under its spill name (readers find it there).
  std::string path = obj.on_disk ? SpillPathOf(spill_dir_, obj.id) : PathOf(obj.id);
  // link() fails if a copy is already there (two processes fetched it at once): keep theirs.
  if (link(obj.tmp_path.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(obj.tmp_path.c_str());
    if (!obj.on_disk) Release(kHeaderSize + obj.size);
    obj.mapping.reset();
    obj.tmp_path.clear();
    if (err != EEXIST) return IoError("cannot publish " + path + ": " + std::strerror(err));
    return Map(obj.id);
  }
  unlink(obj.tmp_path.c_str());
  obj.tmp_path.clear();
  if (obj.on_disk) {
    ctl_->spilled_now.fetch_add(obj.size);
    ctl_->spilled_total.fetch_add(obj.size);
    ctl_->spills.fetch_add(1);
  }
  Buffer view(obj.data, obj.size, obj.mapping);
  std::lock_guard<std::mutex> lk(mu_);
  maps_[obj.id] = obj.mapping;
  return view;
}

void ShmStore::Abort(WritableObject& obj) {
  if (obj.tmp_path.empty()) return;
  unlink(obj.tmp_path.c_str());
  if (!obj.on_disk) Release(kHeaderSize + obj.size);
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
  return Lookup(PathOf(id), SpillPathOf(spill_dir_, id), id, true);
}

Result<Buffer> ShmStore::MapFrom(NodeId node, const ObjectId& id) {
  std::string spill_path;
  if (!spill_root_.empty()) spill_path = SpillPathOf(NodeDir(spill_root_, node), id);
  return Lookup(NodeDir(root_, node) + "/" + id.Hex(), spill_path, id, false);
}

Result<Buffer> ShmStore::Lookup(const std::string& path, const std::string& spill_path,
                                const ObjectId& id, bool local) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int misses = 0;
  while (true) {
    Found found = Found::kError;
    auto r = MapPath(path, id, local, &found);
    if (found == Found::kMapped || found == Found::kError || spill_path.empty()) return r;
    if (std::chrono::steady_clock::now() > deadline) {
      return Status(StatusCode::kObjectLost,
                    "object " + id.Hex() + " stayed unavailable in " + path + " for 60 s");
    }
    if (found == Found::kBusy) {
      // Another process is spilling it: the file is about to appear on disk.
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    int fd = open(spill_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      // A restore publishes the object in memory before it removes the spill file, so one more
      // look at memory settles whether the object is really gone.
      if (++misses >= 2) {
        return Status(StatusCode::kObjectLost,
                      "object " + id.Hex() + " is neither in " + path + " nor in " + spill_path);
      }
      continue;
    }
    misses = 0;
    bool retry = false;
    auto v = local ? Restore(fd, spill_path, id, &retry) : MapSpilled(fd, spill_path, id, &retry);
    if (!retry) return v;
  }
}

Result<Buffer> ShmStore::MapPath(const std::string& path, const ObjectId& id, bool cache,
                                 Found* found) {
  auto lost = [&](Found why) {
    *found = why;
    return Status(StatusCode::kObjectLost, "object " + id.Hex() + " is not in " + path);
  };
  *found = Found::kError;
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return lost(Found::kAbsent);
  auto m = std::make_shared<Mapping>();
  FileHeader* h = MapHeader(fd);
  if (!h || h->magic != kFileMagic) {
    if (h) munmap(h, kHeaderSize);
    close(fd);
    return IoError("object file " + path + " is corrupt");
  }
  int64_t pins = h->pins.load();
  do {
    if (pins < 0) {  // being spilled (or recycled after a delete)
      munmap(h, kHeaderSize);
      close(fd);
      return lost(Found::kBusy);
    }
  } while (!h->pins.compare_exchange_weak(pins, pins + 1));
  m->header = h;  // from here the Mapping drops the pin
  if (h->id != id) {
    // The file left the object's path (recycled or spilled) between open() and the pin.
    close(fd);
    return lost(Found::kAbsent);
  }
  h->last_use.store(NowNs(), std::memory_order_relaxed);
  size_t size = h->payload;
  void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(kHeaderSize));
  close(fd);
  if (p == MAP_FAILED) return IoError(Errno("cannot map " + path));
  m->payload = static_cast<uint8_t*>(p);
  m->len = size;
  *found = Found::kMapped;
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
  return stat(PathOf(id).c_str(), &st) == 0 || IsSpilled(id);
}

void ShmStore::Delete(const ObjectId& id) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    maps_.erase(id);
  }
  std::string path = PathOf(id);
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) {
    auto size = static_cast<uint64_t>(st.st_size);
    bool done = false;
    // Keep the warm file for a later object when the pool has room (at most half the store).
    if (ctl_->pooled.load() + size <= ctl_->capacity / 2) {
      std::string pooled = pool_dir_ + "/" + std::to_string(size) + "-" + id.Hex() + "-" +
                           UniqueSuffix();
      ctl_->pooled.fetch_add(size);  // before it can be claimed or evicted
      if (rename(path.c_str(), pooled.c_str()) == 0) {
        Release(size);
        done = true;
      } else {
        ctl_->pooled.fetch_sub(size);
      }
    }
    if (!done && UnlinkFreeing(path)) Release(size);
  }
  if (!spill_dir_.empty()) UnlinkSpill(SpillPathOf(spill_dir_, id));
}

void ShmStore::RemoveAll() {
  DropWriterMappings();
  RemoveTree(dir_);
  std::error_code ec;
  if (!spill_dir_.empty()) std::filesystem::remove_all(spill_dir_, ec);
  spill_dir_ready_.store(false);
}

}  // namespace mpiray

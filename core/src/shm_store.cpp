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
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "log.h"

namespace mpiray {
namespace {

constexpr uint64_t kCtlMagic = 0x6d70697261795354ull;   // "mpiraySt"
constexpr uint64_t kFileMagic = 0x6d7069726179466full;  // "mpirayFo"
constexpr uint64_t kSpillMagic = 0x6d70697261795370ull;  // "mpiraySp"
constexpr size_t kHeaderSize = 4096;                     // one page, so the payload is aligned

// The first page of every object file.
struct FileHeader {
  uint64_t magic;
  // Live mappings, in any process; -1 while being recycled or spilled (readers then wait for
  // the file to reappear in memory or on disk).
  std::atomic<int64_t> pins;
  uint64_t payload;
  ObjectId id;  // which object the file holds now (a recycled file changes identity)
  std::atomic<uint64_t> last_use;  // steady clock (ns) of the last Create or Map: spill order
};
static_assert(sizeof(FileHeader) <= kHeaderSize);

// The first page of a spill file; the payload follows at kHeaderSize, so it can be mapped.
struct SpillHeader {
  uint64_t magic;
  uint64_t payload;
  ObjectId id;
};
static_assert(sizeof(SpillHeader) <= kHeaderSize);

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

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// pwrite/pread every byte; 0 or an errno.
int WriteAll(int fd, const uint8_t* p, size_t n, off_t off) {
  while (n > 0) {
    ssize_t w = pwrite(fd, p, std::min<size_t>(n, 1u << 30), off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : EIO;
    p += w;
    n -= static_cast<size_t>(w);
    off += w;
  }
  return 0;
}

int ReadAll(int fd, uint8_t* p, size_t n, off_t off) {
  while (n > 0) {
    ssize_t r = pread(fd, p, std::min<size_t>(n, 1u << 30), off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r < 0 ? errno : EIO;  // 0: the file is shorter than its header says
    p += r;
    n -= static_cast<size_t>(r);
    off += r;
  }
  return 0;
}

// Copies n bytes between files in the kernel (sendfile: no mapping, one copy), or through a
// buffer where that is not supported. 0 or an errno.
int CopyFile(int in, off_t in_off, int out, off_t out_off, size_t n) {
  if (lseek(out, out_off, SEEK_SET) == out_off) {
    while (n > 0) {
      ssize_t c = sendfile(out, in, &in_off, std::min<size_t>(n, 1u << 30));
      if (c < 0 && errno == EINTR) continue;
      if (c < 0 && (errno == EINVAL || errno == ENOSYS) && n > 0) break;  // use the buffer
      if (c <= 0) return c < 0 ? errno : EIO;
      n -= static_cast<size_t>(c);
      out_off += c;
    }
    if (n == 0) return 0;
  }
  std::vector<uint8_t> buf(std::min<size_t>(n, 1u << 20));
  while (n > 0) {
    size_t chunk = std::min(n, buf.size());
    if (int err = ReadAll(in, buf.data(), chunk, in_off)) return err;
    if (int err = WriteAll(out, buf.data(), chunk, out_off)) return err;
    in_off += static_cast<off_t>(chunk);
    out_off += static_cast<off_t>(chunk);
    n -= chunk;
  }
  return 0;
}

// Unique names for temporary and pool files.
std::string UniqueSuffix() {
  static std::atomic<uint64_t> counter{0};
  return std::to_string(getpid()) + "-" + std::to_string(counter.fetch_add(1));
}

}  // namespace

struct ShmStore::Ctl {
  std::atomic<uint64_t> magic;
  std::atomic<uint64_t> used;    // live objects in memory (file sizes)
  std::atomic<uint64_t> pooled;  // recycled files waiting for reuse
  uint64_t capacity;
  std::atomic<uint64_t> spilled_total;   // payload bytes
  std::atomic<uint64_t> restored_total;  // payload bytes
  std::atomic<uint64_t> spilled_now;     // payload bytes in spill files
  std::atomic<uint64_t> spills;
  std::atomic<uint64_t> restores;
};

// What a spill pass saw besides the objects it could spill (for the ObjectStoreFull message).
struct ShmStore::SpillScan {
  uint64_t pinned = 0;   // bytes of objects that some process maps
  uint64_t busy = 0;     // bytes another process is spilling right now
  uint64_t writing = 0;  // bytes reserved by objects still being written
  uint64_t seen = 0;     // bytes of every object file found (published or being written)
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
  s->spill_root_ = options.spill_root;
  s->full_wait_ms_ = options.full_wait_ms;
  if (!options.spill_root.empty()) s->spill_dir_ = NodeDir(options.spill_root, options.node);
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
  if (ctl_) munmap(ctl_, sizeof(Ctl));
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

Result<WritableObject> ShmStore::Create(const ObjectId& id, uint64_t size, bool wait) {
  auto w = CreateFile(id, size, wait, true);
  if (w.ok() || w.status().code() != StatusCode::kObjectStoreFull || spill_dir_.empty() ||
      kHeaderSize + size > ctl_->capacity) {
    return w;
  }
  return CreateOnDisk(id, size, w.status());
}

// Memory is full of objects in use: the new object is a spill file from the start. It is
// written through a shared mapping of a temporary file in the spill directory and published
// under the spill name by SealOnDisk; readers then restore it (or map it in place) like any
// spilled object.
Result<WritableObject> ShmStore::CreateOnDisk(const ObjectId& id, uint64_t size, const Status& full) {
  if (!EnsureSpillDir().ok()) return full;  // its message already names the spill directory
  WritableObject obj;
  obj.id = id;
  obj.size = size;
  obj.on_disk = true;
  obj.tmp_path = spill_dir_ + "/.s-" + id.Hex() + "-" + UniqueSuffix();
  auto fail = [&](int err, int fd) -> Result<WritableObject> {
    if (fd >= 0) close(fd);
    unlink(obj.tmp_path.c_str());
    return Status(StatusCode::kObjectStoreFull,
                  full.message() + "; writing it to " + spill_dir_ + " failed too: " +
                      std::strerror(err));
  };
  int fd = open(obj.tmp_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return fail(errno, -1);
  std::vector<uint8_t> page(kHeaderSize, 0);
  SpillHeader sh{kSpillMagic, size, id};
  std::memcpy(page.data(), &sh, sizeof sh);
  int err = WriteAll(fd, page.data(), page.size(), 0);
  if (!err) err = posix_fallocate(fd, 0, static_cast<off_t>(kHeaderSize + size));
  if (err) return fail(err, fd);
  auto m = std::make_shared<Mapping>();  // no header page: spill files carry no pins
  if (size > 0) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                   static_cast<off_t>(kHeaderSize));
    if (p == MAP_FAILED) return fail(errno, fd);
    m->payload = static_cast<uint8_t*>(p);
    m->len = size;
  }
  close(fd);
  obj.data = m->payload;
  obj.mapping = m;
  MPIRAY_LOG(debug, "object {} ({}) is created on disk in {}: {}", id.Hex(), HumanBytes(size),
             spill_dir_, full.message());
  return obj;
}

Result<Buffer> ShmStore::SealOnDisk(WritableObject& obj) {
  const std::string path = SpillPathOf(spill_dir_, obj.id);
  if (link(obj.tmp_path.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(obj.tmp_path.c_str());
    obj.mapping.reset();
    obj.tmp_path.clear();
    if (err != EEXIST) return IoError("cannot publish " + path + ": " + std::strerror(err));
    return Map(obj.id);
  }
  unlink(obj.tmp_path.c_str());
  obj.tmp_path.clear();
  ctl_->spilled_now.fetch_add(obj.size);
  ctl_->spilled_total.fetch_add(obj.size);
  ctl_->spills.fetch_add(1);
  Buffer view(obj.data, obj.size, obj.mapping);
  std::lock_guard<std::mutex> lk(mu_);
  maps_[obj.id] = obj.mapping;
  return view;
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
  // A writer writes every page through the mapping: map them all at once.
  const int flags = MAP_SHARED | (populate ? MAP_POPULATE : 0);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, fd, static_cast<off_t>(kHeaderSize));
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
  if (obj.on_disk) return SealOnDisk(obj);
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

// Checks a spill file's header against the object it should hold; returns the payload size.
static Result<uint64_t> CheckSpillFile(int fd, const std::string& spill_path, const ObjectId& id) {
  SpillHeader sh {};
  struct stat st {};
  if (ReadAll(fd, reinterpret_cast<uint8_t*>(&sh), sizeof sh, 0) != 0 || fstat(fd, &st) != 0 ||
      sh.magic != kSpillMagic || sh.id != id ||
      static_cast<uint64_t>(st.st_size) != kHeaderSize + sh.payload) {
    return IoError("spill file " + spill_path + " is corrupt");
  }
  return sh.payload;
}

Result<Buffer> ShmStore::MapSpilled(int fd, const std::string& spill_path, const ObjectId& id,
                                    bool* retry) {
  *retry = false;
  auto size = CheckSpillFile(fd, spill_path, id);
  if (!size.ok()) {
    close(fd);
    return size.status();
  }
  // Spill files are never changed in place (a new one replaces the name), so the mapping stays
  // valid even if the file is restored or deleted meanwhile.
  void* p = *size == 0 ? nullptr
                       : mmap(nullptr, *size, PROT_READ, MAP_SHARED, fd,
                              static_cast<off_t>(kHeaderSize));
  close(fd);
  if (p == MAP_FAILED) return IoError(Errno("cannot map " + spill_path));
  auto m = std::make_shared<Mapping>();
  m->payload = static_cast<uint8_t*>(p);
  m->len = *size;
  return Buffer(m->payload, m->len, m);
}

Result<Buffer> ShmStore::Restore(int fd, const std::string& spill_path, const ObjectId& id,
                                 bool* retry) {
  *retry = false;
  // One restorer per spill file; the others wait here and then find the object in memory.
  while (flock(fd, LOCK_EX) != 0 && errno == EINTR) {
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_nlink == 0) {  // restored (or deleted) while we waited
    close(fd);
    *retry = true;
    return Status(StatusCode::kObjectLost, "object " + id.Hex() + " moved");
  }
  auto size = CheckSpillFile(fd, spill_path, id);
  if (!size.ok()) {
    close(fd);
    return size.status();
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto w = CreateFile(id, *size, /*wait=*/false, /*populate=*/false);
  if (!w.ok()) {
    // Memory is full of objects in use: read this one from disk where it is.
    MPIRAY_LOG(debug, "object {} ({}) stays on disk and is mapped from {}: {}", id.Hex(),
               HumanBytes(*size), spill_path, w.status().message());
    auto v = MapSpilled(fd, spill_path, id, retry);
    if (v.ok()) {
      ctl_->restores.fetch_add(1);
      ctl_->restored_total.fetch_add(*size);
      std::lock_guard<std::mutex> lk(mu_);
      maps_[id] = v->owner();
    }
    return v;
  }
  // Copied in the kernel (the new file's pages need not be mapped to be filled).
  int err = 0;
  int out = open(w->tmp_path.c_str(), O_WRONLY | O_CLOEXEC);
  if (out < 0) err = errno;
  const auto at = static_cast<off_t>(kHeaderSize);
  if (!err) err = CopyFile(fd, at, out, at, *size);
  if (out >= 0) close(out);
  if (err) {
    Abort(*w);
    close(fd);
    return IoError("cannot read spill file " + spill_path + ": " + std::strerror(err));
  }
  // Publish it in memory; link() fails only if another copy got there first (use that one).
  std::string path = PathOf(id);
  if (link(w->tmp_path.c_str(), path.c_str()) != 0) {
    int err = errno;
    Abort(*w);
    close(fd);
    if (err == EEXIST) {
      *retry = true;
      return Status(StatusCode::kObjectLost, "object " + id.Hex() + " moved");
    }
    return IoError("cannot publish " + path + ": " + std::strerror(err));
  }
  unlink(w->tmp_path.c_str());
  w->tmp_path.clear();
  Buffer view(w->data, w->size, w->mapping);
  {
    std::lock_guard<std::mutex> lk(mu_);
    maps_[id] = w->mapping;
  }
  // The copy in memory is pinned by `view`, so it cannot be spilled again before this.
  UnlinkSpill(spill_path);
  close(fd);  // drops the lock
  ctl_->restores.fetch_add(1);
  ctl_->restored_total.fetch_add(*size);
  MPIRAY_LOG(debug, "restored object {} ({}) from {} in {:.1f} ms", id.Hex(), HumanBytes(*size),
             spill_path, MsSince(t0));
  return view;
}

bool ShmStore::Contains(const ObjectId& id) const {
  struct stat st {};
  return stat(PathOf(id).c_str(), &st) == 0 || IsSpilled(id);
}

bool ShmStore::IsSpilled(const ObjectId& id) const {
  if (spill_dir_.empty()) return false;
  struct stat st {};
  return stat(SpillPathOf(spill_dir_, id).c_str(), &st) == 0;
}

void ShmStore::UnlinkSpill(const std::string& spill_path) {
  struct stat st {};
  if (stat(spill_path.c_str(), &st) != 0) return;
  if (unlink(spill_path.c_str()) == 0 && static_cast<uint64_t>(st.st_size) >= kHeaderSize) {
    ctl_->spilled_now.fetch_sub(static_cast<uint64_t>(st.st_size) - kHeaderSize);
  }
}

Status ShmStore::EnsureSpillDir() {
  if (spill_dir_ready_.load(std::memory_order_acquire)) return Status::OK();
  std::error_code ec;
  std::filesystem::path parent = std::filesystem::path(spill_dir_).parent_path();
  std::filesystem::create_directories(parent, ec);  // e.g. a MPIRAY_SPILL_DIR that is not there yet
  if (ec) {
    return IoError("cannot create spill directory " + parent.string() + ": " + ec.message());
  }
  if (mkdir(spill_dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return IoError(Errno("cannot create spill directory " + spill_dir_));
  }
  spill_dir_ready_.store(true, std::memory_order_release);
  return Status::OK();
}

Result<uint64_t> ShmStore::Spill(uint64_t bytes) {
  SpillScan scan;
  return SpillLru(bytes, &scan);
}

Result<uint64_t> ShmStore::SpillLru(uint64_t bytes, SpillScan* scan) {
  if (spill_dir_.empty()) return Status(StatusCode::kUnavailable, "spilling is off");
  struct Candidate {
    uint64_t last_use;
    uint64_t size;
    std::string name;
  };
  std::vector<Candidate> candidates;
  DIR* d = opendir(dir_.c_str());
  if (!d) return IoError(Errno("cannot list " + dir_));
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    std::string path = dir_ + "/" + name;
    if (name.rfind(".w-", 0) == 0) {
      struct stat st {};
      if (stat(path.c_str(), &st) == 0) {
        scan->writing += static_cast<uint64_t>(st.st_size);
        scan->seen += static_cast<uint64_t>(st.st_size);
      }
      continue;
    }
    ObjectId id;
    if (!ObjectId::FromHex(name, &id)) continue;
    int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st {};
    FileHeader* h = fstat(fd, &st) == 0 ? MapHeader(fd) : nullptr;
    close(fd);
    if (!h) continue;
    if (h->magic == kFileMagic) {
      int64_t pins = h->pins.load();
      auto size = static_cast<uint64_t>(st.st_size);
      scan->seen += size;
      if (pins > 0) {
        scan->pinned += size;
      } else if (pins < 0) {
        scan->busy += size;
      } else {
        candidates.push_back({h->last_use.load(std::memory_order_relaxed), size, name});
      }
    }
    munmap(h, kHeaderSize);
  }
  closedir(d);
  // Least recently used first.
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) { return a.last_use < b.last_use; });
  uint64_t freed = 0;
  for (const Candidate& c : candidates) {
    if (freed >= bytes) break;
    const uint64_t pinned = scan->pinned;
    auto r = SpillFile(c.name, scan);
    if (!r.ok()) {
      // The spill directory is unusable (missing, read-only, disk full): stop here.
      if (freed == 0) return r.status();
      break;
    }
    // Not spilled and not pinned: it changed hands since the scan (spilled, deleted or
    // restored by another process), so its bytes are in transit.
    if (*r == 0 && scan->pinned == pinned) scan->busy += c.size;
    freed += *r;
  }
  return freed;
}

Result<uint64_t> ShmStore::SpillFile(const std::string& name, SpillScan* scan) {
  const std::string path = dir_ + "/" + name;
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return uint64_t{0};  // deleted meanwhile
  FileHeader* h = MapHeader(fd);
  int64_t pins = 0;
  if (!h || h->magic != kFileMagic || !h->pins.compare_exchange_strong(pins, -1)) {
    // Mapped by a reader, or being spilled by another process, since the scan.
    if (h) {
      struct stat st {};
      if (pins > 0 && fstat(fd, &st) == 0) scan->pinned += static_cast<uint64_t>(st.st_size);
      munmap(h, kHeaderSize);
    }
    close(fd);
    return uint64_t{0};
  }
  // Ours now: readers wait on the -1, nobody recycles or spills it. But the file may have
  // left this path since open() (deleted, recycled into another object): check it is still
  // this object's.
  const ObjectId id = h->id;
  if (id.Hex() != name) {
    h->pins.store(0, std::memory_order_release);
    munmap(h, kHeaderSize);
    close(fd);
    return uint64_t{0};
  }
  const uint64_t size = h->payload;
  const uint64_t file_size = kHeaderSize + size;
  const auto t0 = std::chrono::steady_clock::now();
  auto finish = [&](bool spilled) {
    if (spilled) h->id = ObjectId();  // late readers that pin it see it is not theirs
    h->pins.store(0, std::memory_order_release);
    munmap(h, kHeaderSize);
    close(fd);
  };
  Status ready = EnsureSpillDir();
  if (!ready.ok()) {
    finish(false);
    return Status(StatusCode::kIoError, "cannot spill to " + spill_dir_ + ": " + ready.message());
  }
  const std::string spill_path = SpillPathOf(spill_dir_, id);
  const std::string tmp = spill_dir_ + "/.s-" + name + "-" + UniqueSuffix();
  int err = 0;
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
  int sfd = open(tmp.c_str(), flags, 0600);
  if (sfd < 0 && errno == ENOENT) {  // the directory was removed behind our back
    spill_dir_ready_.store(false);
    if (EnsureSpillDir().ok()) sfd = open(tmp.c_str(), flags, 0600);
  }
  if (sfd < 0) err = errno;
  if (!err) {
    std::vector<uint8_t> page(kHeaderSize, 0);
    SpillHeader sh{kSpillMagic, size, id};
    std::memcpy(page.data(), &sh, sizeof sh);
    err = WriteAll(sfd, page.data(), page.size(), 0);
  }
  if (!err && size > 0) {
    const auto at = static_cast<off_t>(kHeaderSize);
    err = CopyFile(fd, at, sfd, at, size);
  }
  if (sfd >= 0 && close(sfd) != 0 && !err) err = errno;
  if (!err && rename(tmp.c_str(), spill_path.c_str()) != 0) err = errno;
  if (err) {
    if (sfd >= 0) unlink(tmp.c_str());
    finish(false);
    return IoError("cannot spill " + HumanBytes(size) + " to " + spill_dir_ + ": " +
                   std::strerror(err));
  }
  ctl_->spilled_now.fetch_add(size);
  // Leave shared memory: the warm file goes to the recycling pool when it has room.
  int gone = 0;  // 1: we removed it; -1: it was deleted while we wrote it
  if (ctl_->pooled.load() + file_size <= ctl_->capacity / 2) {
    std::string pooled = pool_dir_ + "/" + std::to_string(file_size) + "-" + name + "-s" +
                         UniqueSuffix();
    ctl_->pooled.fetch_add(file_size);  // before it can be claimed or evicted
    if (rename(path.c_str(), pooled.c_str()) == 0) {
      gone = 1;
    } else {
      ctl_->pooled.fetch_sub(file_size);
      if (errno == ENOENT) gone = -1;
    }
  }
  if (gone == 0) gone = unlink(path.c_str()) == 0 ? 1 : (errno == ENOENT ? -1 : 0);
  if (gone != 1) {
    // Deleted meanwhile (the deleter released its bytes), or not removable: no spill copy.
    UnlinkSpill(spill_path);
    finish(gone == -1);
    if (gone == 0) return IoError(Errno("cannot remove " + path + " after spilling it"));
    return uint64_t{0};
  }
  finish(true);
  Release(file_size);
  ctl_->spilled_total.fetch_add(size);
  ctl_->spills.fetch_add(1);
  MPIRAY_LOG(debug, "spilled object {} ({}) to {} in {:.1f} ms", id.Hex(), HumanBytes(size),
             spill_dir_, MsSince(t0));
  return file_size;
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
    if (!done && unlink(path.c_str()) == 0) Release(size);
  }
  if (!spill_dir_.empty()) UnlinkSpill(SpillPathOf(spill_dir_, id));
}

void ShmStore::RemoveAll() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  if (!spill_dir_.empty()) std::filesystem::remove_all(spill_dir_, ec);
  spill_dir_ready_.store(false);
}

}  // namespace mpiray

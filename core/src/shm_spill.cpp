// ShmStore's spilling half: objects leave shared memory for the node's spill directory when it is
// full (least recently used, unpinned first), come back on first read (or are mapped from disk
// when memory is full of objects in use), and are created on disk from the start when nothing
// can be spilled (Ray's fallback allocation). See "Spilling" in docs/architecture.md.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "dir_lease.h"
#include "log.h"
#include "shm_format.h"

namespace mpiray {

using namespace shm;  // the file format (shm_format.h)

// Memory is full of objects in use: the new object is a spill file from the start. It is
// written through a shared mapping of a temporary file in the spill directory and published
// under the spill name by Seal; readers then restore it (or map it in place) like any
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
  if (!spill_leased_.exchange(true)) {
    // Leased, then marked: a marked spill directory that nobody holds is left over.
    LeaseDir(spill_dir_);
    int fd = open((spill_dir_ + "/.leased").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) close(fd);
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
    // Unlinked (not pooled): its pages go, even under kept writer mappings; it stays at -1.
    if (!FreeIfOrphan(fd)) h->pins.store(0, std::memory_order_release);
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

}  // namespace mpiray

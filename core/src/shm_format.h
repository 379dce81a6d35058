// The on-disk and in-memory format shared by ShmStore's translation units (shm_store.cpp: memory,
// recycling, mapping; shm_spill.cpp: spilling, restoring, objects created on disk): file
// headers, the per-process mapping of an object, the control block, and small I/O helpers.
// Internal to core.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "shm_store.h"

namespace mpiray {
namespace shm {

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

// Writable payload mappings of object files this process wrote, kept after the object's last
// local view went away: when the file comes back from the recycling pool to this process, its
// pages are still mapped (mapping and unmapping a large file's pages costs as much as writing
// them). Keep() takes the mapping (false: not kept, the caller unmaps it); Take() hands one back
// for a file (device, inode) of exactly `len` payload bytes. Bounded per process; see
// "Recycling" in shm_store.cpp for why a kept mapping never holds memory the store does not
// account for.
// A file leaves the store only through UnlinkFreeing (or into the recycling pool, which the
// store accounts for), which frees its pages even while some process keeps such a mapping.
bool KeepWriterMapping(dev_t dev, ino_t ino, uint8_t* payload, size_t len);
uint8_t* TakeWriterMapping(dev_t dev, ino_t ino, size_t len);
bool HasWriterMapping(ino_t ino);
void DropWriterMappings();

// A process's view of one object file: the header page (read-write, for the pin count) and the
// payload. Destroying it drops the pin.
struct Mapping {
  FileHeader* header = nullptr;
  uint8_t* payload = nullptr;
  size_t len = 0;
  // Set for the mapping a writer created (the payload may be kept for the file's next use).
  bool writer = false;
  dev_t dev = 0;
  ino_t ino = 0;
  ~Mapping() {
    if (header) header->pins.fetch_sub(1, std::memory_order_acq_rel);
    if (payload && !(writer && KeepWriterMapping(dev, ino, payload, len))) munmap(payload, len);
    if (header) munmap(header, kHeaderSize);
  }
};

inline std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

inline std::string HumanBytes(uint64_t b) {
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

inline FileHeader* MapHeader(int fd) {
  void* p = mmap(nullptr, kHeaderSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? nullptr : static_cast<FileHeader*>(p);
}

// Unlinks an object or recycled file. When no process maps it (pin count 0; claimed here, so
// nobody can start to), its payload pages are freed at once by truncating it to its header
// page after the unlink, even if a writer keeps a dormant mapping of it (KeepWriterMapping).
// The header stays (a process that opened the file just before may still read it) with its
// pin count at -1, so nobody maps or recycles the orphan. A file readers still map keeps its
// pages until they let go, as before. True if the file was unlinked.
inline bool UnlinkFreeing(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  FileHeader* h = fd >= 0 ? MapHeader(fd) : nullptr;
  int64_t zero = 0;
  const bool claimed = h && h->magic == kFileMagic && h->pins.compare_exchange_strong(zero, -1);
  const bool gone = unlink(path.c_str()) == 0;
  // The name may have moved to another file since open() (e.g. the object was spilled into
  // the pool and restored): truncate only a file that has no name left.
  struct stat st {};
  const bool orphan = claimed && gone && fstat(fd, &st) == 0 && st.st_nlink == 0;
  if (claimed && !orphan) h->pins.store(0, std::memory_order_release);
  if (h) munmap(h, kHeaderSize);
  if (orphan) (void)!ftruncate(fd, static_cast<off_t>(kHeaderSize));
  if (fd >= 0) close(fd);
  return gone;
}

// Frees the payload pages of a file that has no name any more (see UnlinkFreeing); the caller
// holds it exclusively (pin count -1), so nothing maps its payload but dormant writer
// mappings, and must leave its pin count at -1 (nobody may map the orphan). A file that still
// has a name (e.g. moved into the pool) is left alone. True if the file was an orphan.
inline bool FreeIfOrphan(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_nlink != 0) return false;
  (void)!ftruncate(fd, static_cast<off_t>(kHeaderSize));
  return true;
}

inline uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

inline double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// pwrite/pread every byte; 0 or an errno.
inline int WriteAll(int fd, const uint8_t* p, size_t n, off_t off) {
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

inline int ReadAll(int fd, uint8_t* p, size_t n, off_t off) {
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
inline int CopyFile(int in, off_t in_off, int out, off_t out_off, size_t n) {
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
inline std::string UniqueSuffix() {
  static std::atomic<uint64_t> counter{0};
  return std::to_string(getpid()) + "-" + std::to_string(counter.fetch_add(1));
}
}  // namespace shm

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

}  // namespace mpiray

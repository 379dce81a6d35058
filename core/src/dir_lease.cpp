#include "dir_lease.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>

namespace mpiray {
namespace {

struct Lease {
  int fd = -1;
  int count = 0;
};

std::mutex& LeaseMu() {
  static std::mutex mu;
  return mu;
}

std::map<std::string, Lease>& Leases() {
  static auto* leases = new std::map<std::string, Lease>();  // outlives static destructors
  return *leases;
}

bool AllHex(const std::string& s, size_t from, size_t n) {
  if (s.size() < from + n) return false;
  for (size_t i = from; i < from + n; ++i) {
    char c = s[i];
    if (!std::isdigit(static_cast<unsigned char>(c)) && (c < 'a' || c > 'f')) return false;
  }
  return true;
}

bool AllDigits(const std::string& s, size_t from, size_t to) {
  if (to <= from) return false;
  for (size_t i = from; i < to; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

// Remove `path` if it is ours, complete (or old) and nobody holds it.
bool ReapOne(const std::string& path, const char* marker, int grace_s) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st {};
  bool removed = false;
  if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && flock(fd, LOCK_EX | LOCK_NB) == 0) {
    bool complete = Exists(path + "/" + marker);
    bool old = std::time(nullptr) - st.st_mtime > grace_s;
    bool kept = Exists(path + "/kept");
    if ((complete || old) && !kept) {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
      removed = !ec;
    }
  }
  close(fd);  // drops the exclusive lock
  return removed;
}

}  // namespace

void LeaseDir(const std::string& dir) {
  std::lock_guard<std::mutex> lk(LeaseMu());
  Lease& l = Leases()[dir];
  if (l.count++ > 0) return;
  l.fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (l.fd >= 0 && flock(l.fd, LOCK_SH) != 0) {
    close(l.fd);
    l.fd = -1;
  }
}

void ReleaseDirLease(const std::string& dir) {
  std::lock_guard<std::mutex> lk(LeaseMu());
  auto it = Leases().find(dir);
  if (it == Leases().end() || --it->second.count > 0) return;
  if (it->second.fd >= 0) close(it->second.fd);
  Leases().erase(it);
}

void ReleaseDirLeases(const std::string& path) {
  if (path.empty()) return;
  std::lock_guard<std::mutex> lk(LeaseMu());
  auto& leases = Leases();
  for (auto it = leases.begin(); it != leases.end();) {
    const std::string& d = it->first;
    bool under = d == path || (d.size() > path.size() && d.compare(0, path.size(), path) == 0 &&
                               (d[path.size()] == '/' || d[path.size()] == '-'));
    if (under) {
      if (it->second.fd >= 0) close(it->second.fd);
      it = leases.erase(it);
    } else {
      ++it;
    }
  }
}

bool IsSessionDirName(const std::string& name, bool store) {
  const std::string prefix = "mpiray-";
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  size_t p = prefix.size();
  if (p < name.size() && name[p] == 'j') {  // "j<job id>-"
    size_t dash = name.find('-', p + 1);
    if (dash == std::string::npos || !AllDigits(name, p + 1, dash)) return false;
    p = dash + 1;
  }
  if (!AllHex(name, p, 8)) return false;
  p += 8;
  if (!store) return p == name.size();
  return name.size() > p + 2 && name.compare(p, 2, "-n") == 0 && AllDigits(name, p + 2, name.size());
}

std::vector<std::string> ReapStaleSessions(const std::string& session_root, const std::string& shm_root,
                                           const std::string& spill_root, int grace_s) {
  std::vector<std::string> removed;
  auto sweep = [&](const std::string& root, bool store, const char* marker) {
    if (root.empty()) return;
    std::vector<std::string> candidates;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(root, ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (IsSessionDirName(name, store)) candidates.push_back(it->path().string());
    }
    for (const auto& path : candidates) {
      {
        // Our own live directories are leased by this process; flock() would not stop us
        // (a second open file description of the same process conflicts, but be explicit).
        std::lock_guard<std::mutex> lk(LeaseMu());
        if (Leases().count(path)) continue;
      }
      if (ReapOne(path, marker, grace_s)) removed.push_back(path);
    }
  };
  sweep(session_root, false, "token");
  sweep(shm_root, true, ".ctl");
  sweep(spill_root, true, ".leased");
  return removed;
}

}  // namespace mpiray

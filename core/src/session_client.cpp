#include "mpiray/core/session_client.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "join.h"
#include "session.h"

namespace mpiray {

std::vector<std::string> FindSessions(const std::string& job_id) {
  namespace fs = std::filesystem;
  EnvMap env = CurrentEnv();
  // Where CreateSession puts them: the first of MPIRAY_SESSION_ROOT, TMPDIR, /tmp.
  std::vector<std::string> roots;
  for (const char* var : {"MPIRAY_SESSION_ROOT", "TMPDIR"}) {
    auto it = env.find(var);
    if (it != env.end() && !it->second.empty()) {
      roots.push_back(it->second);
      break;
    }
  }
  if (roots.empty()) roots.push_back("/tmp");
  std::vector<std::pair<fs::file_time_type, std::string>> found;
  std::string prefix = job_id.empty() ? "mpiray-" : "mpiray-j" + job_id + "-";
  for (const auto& root : roots) {
    std::error_code ec;
    for (auto it = fs::directory_iterator(root, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (name.rfind(prefix, 0) != 0) continue;
      struct stat st {};
      if (stat(it->path().c_str(), &st) != 0 || st.st_uid != getuid()) continue;
      if (!fs::exists(it->path() / "head.addr")) continue;
      std::string p = it->path().string();
      bool dup = std::any_of(found.begin(), found.end(), [&](const auto& f) { return f.second == p; });
      if (!dup) found.emplace_back(fs::last_write_time(it->path(), ec), p);
    }
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

Result<std::string> QueryHead(const std::string& session_dir, const std::string& command,
                              int timeout_ms) {
  std::string address;
  MPIRAY_ASSIGN_OR_RETURN(SessionInfo s, ReadSessionForJoin(session_dir, &address));
  JoinRequest req;
  req.token = s.token;
  req.role = "client";
  req.command = command;
  req.peer.pid = getpid();
  MPIRAY_ASSIGN_OR_RETURN(JoinReply reply, SendJoinRequest(address, req, timeout_ms));
  if (!reply.ok) return Status(StatusCode::kUnavailable, "the head refused: " + reply.error);
  return reply.status;
}

}  // namespace mpiray

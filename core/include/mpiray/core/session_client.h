// Talking to a running job from outside it (the mpiray CLI): find its session directory and
// send its head a command, authenticated with the session token (readable only by the owner).
#pragma once

#include <string>
#include <vector>

#include "mpiray/core/status.h"

namespace mpiray {

/// @brief Session directories of this user that have a head address, newest first. With a
/// job id, only that Slurm job's. Searched where sessions are created: MPIRAY_SESSION_ROOT, else
/// TMPDIR, else /tmp.
std::vector<std::string> FindSessions(const std::string& job_id = "");

/// @brief Send `command` ("status", "timeline", "stop") to the head of the session in
/// `session_dir`; returns its reply (JSON).
Result<std::string> QueryHead(const std::string& session_dir, const std::string& command,
                              int timeout_ms = 10000);

}  // namespace mpiray

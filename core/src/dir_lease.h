// Leases on session and object-store directories, and the removal of directories that a killed
// job left behind.
//
// Every process of a job holds a shared flock() on the job's session directory and on its
// node's object-store directory for as long as it uses them. A process killed with SIGKILL
// (srun's double Ctrl-C, the OOM killer, scancel --signal=KILL) cannot remove its files, but
// the kernel drops its locks. So a directory that no process holds is known to be left over,
// without trusting pids (which are reused) or clocks: the next job of the same user on the
// host takes an exclusive lock on it and removes it.
#pragma once

#include <string>
#include <vector>

namespace mpiray {

/// @brief Hold a shared lock on `dir` until ReleaseDirLeases() covers it or the process ends.
/// Leases are counted: the same directory leased twice needs two releases. Best effort: a
/// directory that cannot be opened or locked is simply not leased.
void LeaseDir(const std::string& dir);

/// @brief Drop one lease of `dir` (e.g. an object store closed).
void ReleaseDirLease(const std::string& dir);

/// @brief Drop every lease of `path` and of directories under it (its files are being removed).
void ReleaseDirLeases(const std::string& path);

/// @brief Whether `name` is a name mpiray gives a session directory ("mpiray-<8 hex>",
/// "mpiray-j<job>-<8 hex>") or, with `store`, an object-store directory (the same + "-n<node>").
bool IsSessionDirName(const std::string& name, bool store);

/// @brief Remove session directories under `session_root`, object-store directories under
/// `shm_root` and spill directories under `spill_root` (when not empty: a MPIRAY_SPILL_DIR)
/// that belong to this user and that no live process holds. A directory counts as
/// complete once its creator wrote its marker (`token` in a session directory, `.ctl` in a
/// store, `.leased` in a spill directory); one without a marker may be in the middle of being created and is removed only
/// when it is older than `grace_s`. A session kept on purpose (MPIRAY_KEEP_SESSION: a `kept`
/// file) stays. Returns the paths removed.
std::vector<std::string> ReapStaleSessions(const std::string& session_root, const std::string& shm_root,
                                           const std::string& spill_root = "", int grace_s = 60);

}  // namespace mpiray

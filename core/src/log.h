// Process logging: spdlog, one file per process in the session directory; warnings and errors
// also reach the driver's console (workers forward them to the head).
#pragma once

#include <spdlog/spdlog.h>

#include <functional>
#include <string>

namespace mpiray::logging {

/// @brief Where and how much this process logs.
struct LogOptions {
  std::string file;                 // empty: no file
  std::string level = "info";       // file level: trace, debug, info, warn, error, off
  std::string console_level = "warn";
  std::string name = "mpiray";      // shown in each line, e.g. "head" or "worker-3"
  /// When set, warnings and errors go here instead of the local console (workers forward them).
  std::function<void(int level, const std::string& line)> forward;
};

/// @brief The process logger (a stderr logger until Configure is called).
spdlog::logger* Logger();
/// @brief Replace the process logger.
void Configure(const LogOptions& options);
/// @brief Stop forwarding (before the transport goes away) and flush.
void StopForwarding();
/// @brief Print a forwarded line on this process's console.
void PrintForwarded(int level, const std::string& line);
/// @brief Parse a level name; returns false for an unknown name.
bool ParseLevel(const std::string& name, spdlog::level::level_enum* out);

inline constexpr auto kLevel_trace = spdlog::level::trace;
inline constexpr auto kLevel_debug = spdlog::level::debug;
inline constexpr auto kLevel_info = spdlog::level::info;
inline constexpr auto kLevel_warn = spdlog::level::warn;
inline constexpr auto kLevel_error = spdlog::level::err;

}  // namespace mpiray::logging

/// MPIRAY_LOG(info|warn|error|debug|trace, "format {}", args...)
#define MPIRAY_LOG(lvl, ...)                                                         \
  do {                                                                               \
    auto* _mpiray_l = ::mpiray::logging::Logger();                                   \
    if (_mpiray_l->should_log(::mpiray::logging::kLevel_##lvl)) _mpiray_l->lvl(__VA_ARGS__); \
  } while (0)

// OutputForwarder: a worker's stdout and stderr (file descriptors 1 and 2, so output of C
// extensions and child processes too) go through one pipe; a thread writes every line to the
// worker's log file and hands batches of lines to a callback (sent to the driver's console).
// One pipe keeps stdout and stderr lines in the order they were written.
#pragma once

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "mpiray/core/status.h"

namespace mpiray {

class OutputForwarder {
 public:
  using Sink = std::function<void(std::vector<std::string>&& lines)>;
  /// @brief Redirect fds 1 and 2 into the pipe; `file` gets every line, `sink` (may be null)
  /// gets them in batches.
  Status Start(const std::string& file, Sink sink);
  /// @brief Restore nothing (the process is exiting): close our ends, drain, join.
  void Stop();
  /// @brief The process's original stderr, for messages that must reach it directly.
  static int OriginalStderr();

 private:
  void Loop(int fd, int file_fd);
  std::thread thread_;
  Sink sink_;
  bool started_ = false;
};

}  // namespace mpiray

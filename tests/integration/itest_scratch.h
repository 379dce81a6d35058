// Scratch files of the integration and chaos scenarios: remote code writes into them to tell
// the driver what happened (which process ran it, how often); the driver removes them at the
// end.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace itest {

inline std::vector<std::string>& ScratchFiles() {
  static std::vector<std::string> files;
  return files;
}

// A fresh path for `name`, private to this driver process.
inline std::string Scratch(const std::string& name) {
  std::string path = "/tmp/mpiray-itest-" + std::to_string(getpid()) + "-" + name;
  std::remove(path.c_str());
  ScratchFiles().push_back(path);
  return path;
}

inline void RemoveScratch() {
  for (const auto& p : ScratchFiles()) std::remove(p.c_str());
  ScratchFiles().clear();
}

// Remote code appends its process id; the driver reads them back.
inline void AppendPid(const std::string& log) {
  std::ofstream(log, std::ios::app) << getpid() << "\n";
}

inline std::vector<int> ReadPids(const std::string& log) {
  std::vector<int> pids;
  std::ifstream in(log);
  for (int p; in >> p;) pids.push_back(p);
  return pids;
}

}  // namespace itest

#include "mpiray/mpi/survival.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

namespace mpiray::mpi {
namespace {

using EnvMap = std::map<std::string, std::string>;

const std::string* Find(const EnvMap& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? nullptr : &it->second;
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// OpenMPI's and Slurm's spellings of a boolean; anything else is "not set".
int Bool(const std::string* v) {
  if (!v) return -1;
  std::string s = Lower(Trim(*v));
  if (s == "1" || s == "true" || s == "yes" || s == "on" || s == "enabled" || s == "t" ||
      s == "y") {
    return 1;
  }
  if (s == "0" || s == "false" || s == "no" || s == "off" || s == "disabled" || s == "f" ||
      s == "n") {
    return 0;
  }
  return -1;
}

// Seconds; -1 when absent or not a number.
long Seconds(const std::string* v) {
  if (!v) return -1;
  std::string s = Trim(*v);
  if (s.empty()) return -1;
  char* end = nullptr;
  long n = std::strtol(s.c_str(), &end, 10);
  return (end && *end == '\0' && n >= 0) ? n : -1;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) return {};
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

const char kCannot[] = "this launch cannot survive a worker death: ";
const char kSee[] = " (see docs/fault-tolerance.md)";

WorkerDeathCheck Fatal(const std::string& why) { return {false, kCannot + why + kSee}; }

}  // namespace

WorkerDeathCheck CheckWorkerDeathSurvivable(const LaunchInfo& info, const EnvMap& env,
                                            const LauncherSettings& settings) {
  bool mpi_launch = info.launcher == Launcher::kMpirun || info.launcher == Launcher::kSrun ||
                    info.launcher == Launcher::kOtherMpi;
  if (!mpi_launch) return {};  // local workers or a joining process: the head handles deaths
  if (settings.mpi_kept) {
    return Fatal(
        "MPI stays initialised after start-up (InitOptions::keep_mpi, or the program called "
        "MPI_Init itself), so the launcher ends the job when a process dies inside MPI");
  }
  if (info.launcher == Launcher::kMpirun) {
    // mpirun --enable-recovery (or --mca orte_enable_recovery 1) puts the setting into every
    // rank's environment; an MCA parameter file does not, so those are read too.
    int recovery = Bool(Find(env, "OMPI_MCA_orte_enable_recovery"));
    if (recovery < 0) recovery = Bool(Find(env, "PRTE_MCA_prte_enable_recovery"));  // Open MPI 5
    if (recovery < 0) recovery = Bool(Find(settings.mca_params, "orte_enable_recovery"));
    if (recovery == 1) return {};
    return Fatal(
        "mpirun was started without --enable-recovery, and Open MPI then aborts the whole job "
        "when any rank dies; launch with `mpirun --enable-recovery ...`");
  }
  if (info.launcher == Launcher::kSrun) {
    // srun's own options are invisible to the tasks; the input variables and slurm.conf are not.
    int kill = Bool(Find(env, "SLURM_KILL_BAD_EXIT"));
    std::string kill_source = "SLURM_KILL_BAD_EXIT=1";
    if (kill < 0) {
      const std::string* conf = Find(settings.slurm_conf, "killonbadexit");
      kill = conf ? (Seconds(conf) > 0 ? 1 : 0) : -1;
      kill_source = "KillOnBadExit=1 in slurm.conf";
    }
    if (kill == 1) {
      return Fatal("srun cancels the whole step when a task fails (" + kill_source +
                   "); launch with `SLURM_KILL_BAD_EXIT=0 srun ...`");
    }
    long wait = Seconds(Find(env, "SLURM_WAIT"));
    std::string wait_source = "SLURM_WAIT=" + std::to_string(wait);
    if (wait < 0) {
      wait = Seconds(Find(settings.slurm_conf, "waittime"));
      wait_source = "WaitTime=" + std::to_string(wait) + " in slurm.conf";
    }
    if (wait > 0) {
      return Fatal("srun ends every task " + std::to_string(wait) +
                   " s after the first one exits (" + wait_source +
                   "); launch with `SLURM_WAIT=0 srun ...`");
    }
    return {};
  }
  // Another MPI's launcher: what it does is unknown here (MPICH's hydra aborts the job unless
  // started with -disable-auto-cleanup); stay quiet rather than guess.
  return {};
}

int BootstrapTimeoutSeconds(const EnvMap& env) {
  long s = Seconds(Find(env, "MPIRAY_BOOTSTRAP_TIMEOUT"));
  return s < 0 ? 120 : static_cast<int>(std::min<long>(s, 1000000));
}

EnvMap ParseMcaParamFile(const std::string& text) {
  EnvMap out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    line = Trim(line.substr(0, line.find('#')));
    auto eq = line.find('=');
    if (line.empty() || eq == std::string::npos) continue;
    std::string key = Trim(line.substr(0, eq));
    if (!key.empty()) out[key] = Trim(line.substr(eq + 1));
  }
  return out;
}

EnvMap ParseSlurmConf(const std::string& text) {
  EnvMap out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    line = Trim(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    std::istringstream words(line);
    std::string word;
    std::vector<std::pair<std::string, std::string>> pairs;
    while (words >> word) {
      auto eq = word.find('=');
      if (eq == std::string::npos) continue;
      pairs.emplace_back(Lower(word.substr(0, eq)), word.substr(eq + 1));
    }
    // NodeName=..., PartitionName=... lines describe nodes and partitions, not the cluster.
    if (pairs.empty() || pairs.front().first == "nodename" ||
        pairs.front().first == "partitionname" || pairs.front().first == "nodeset" ||
        pairs.front().first == "downnodes" || pairs.front().first == "frontendname") {
      continue;
    }
    for (auto& [k, v] : pairs) out[k] = v;
  }
  return out;
}

LauncherSettings ReadLauncherSettings(const LaunchInfo& info, const EnvMap& env) {
  LauncherSettings s;
  if (info.launcher == Launcher::kMpirun) {
    // Open MPI reads its parameter files in order, the first one that sets a name wins.
    std::vector<std::string> files;
    if (const std::string* list = Find(env, "OMPI_MCA_mca_base_param_files")) {
      std::istringstream in(*list);
      std::string f;
      while (std::getline(in, f, ',')) files.push_back(Trim(f));
    } else {
      if (const std::string* home = Find(env, "HOME")) {
        files.push_back(*home + "/.openmpi/mca-params.conf");
      }
      if (const std::string* prefix = Find(env, "OPAL_PREFIX")) {
        files.push_back(*prefix + "/etc/openmpi-mca-params.conf");
      }
      files.push_back("/etc/openmpi/openmpi-mca-params.conf");
    }
    for (const std::string& f : files) {
      for (auto& [k, v] : ParseMcaParamFile(ReadFile(f))) s.mca_params.emplace(k, v);
    }
  } else if (info.launcher == Launcher::kSrun) {
    const std::string* conf = Find(env, "SLURM_CONF");
    s.slurm_conf = ParseSlurmConf(ReadFile(conf ? *conf : std::string("/etc/slurm/slurm.conf")));
  }
  return s;
}

}  // namespace mpiray::mpi

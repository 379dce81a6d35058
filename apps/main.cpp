// The `mpiray` command-line tool.
//   mpiray --version
//   mpiray submit [sbatch options] [--dry-run] -- command...   write and submit a batch job
//   mpiray status [--job ID | --session DIR] [--json]           nodes, resources, tasks, ...
//   mpiray stop   [--job ID | --session DIR]                    checkpoint and stop the job
//   mpiray logs   [--job ID | --session DIR] [--rank R] [--follow]
//   mpiray timeline [--job ID | --session DIR] -o trace.json    Chrome/Perfetto trace
//   mpiray worker [--join <session-dir>] [--lib libfoo.so ...]  join a running session
//   mpiray bench core [--quick] [--verbose]                      the core benchmark (JSON)
#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <nlohmann/json.hpp>

#include "mpiray/core/session_client.h"
#include "mpiray/slurm/batch.h"

#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "core_bench.h"
#include "mpiray/mpiray.h"

#ifndef MPIRAY_VERSION
#define MPIRAY_VERSION "unknown"
#endif

namespace po = boost::program_options;

namespace {

int Usage(std::ostream& os) {
  os << "usage: mpiray [--version] <command> [options]\n"
        "commands:\n"
        "  submit [--nodes N] [--ntasks-per-node K] [--time T] [--partition P] [--account A]\n"
        "         [--gpus-per-node G] [--job-name NAME] [--signal SIG@SECONDS] [--requeue]\n"
        "         [--sbatch OPTION]... [--dry-run] -- command...\n"
        "      write a batch script that runs the command with srun, and submit it\n"
        "  status [--job ID | --session DIR] [--json]   a running job: nodes, tasks, actors, store\n"
        "  stop [--job ID | --session DIR]             run checkpoint callbacks, stop the job\n"
        "  logs [--job ID | --session DIR] [--rank R] [--follow]\n"
        "  timeline [--job ID | --session DIR] -o FILE  task timeline as a Chrome/Perfetto trace\n"
        "  worker [--join <session-dir>] [--lib <shared library>]...\n"
        "      join a running session as a worker; each --lib is loaded first so that the\n"
        "      functions it registers with MPIRAY_REMOTE can run here\n"
        "  bench core [--quick] [--verbose]\n"
        "      run the core benchmark as the driver of this world and print JSON\n"
        "      (e.g. MPIRAY_RANKS_PER_NODE=2 scripts/mpirun -n 4 mpiray bench core)\n";
  return 2;
}

int Worker(const std::vector<std::string>& args) {
  po::options_description desc("mpiray worker");
  std::string join;
  std::vector<std::string> libs;
  desc.add_options()("join", po::value<std::string>(&join),
                     "session directory (default: $MPIRAY_JOIN, set by a head that starts us)")(
      "lib", po::value<std::vector<std::string>>(&libs), "shared library to load");
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).run(), vm);
  po::notify(vm);
  for (const auto& lib : libs) {
    if (!dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
      std::cerr << "mpiray worker: cannot load " << lib << ": " << dlerror() << "\n";
      return 1;
    }
  }
  if (join.empty()) {
    const char* env = std::getenv("MPIRAY_JOIN");
    if (!env || !*env) {
      std::cerr << "mpiray worker: --join <session-dir> is required\n";
      return 2;
    }
    join = env;
  }
  setenv("MPIRAY_JOIN", join.c_str(), 1);
  mpiray::Init();  // never returns: serves until the head shuts down
  return 0;
}

// ------------------------------------------------------------------ jobs

struct Target {
  std::string session;
  std::string job;
};

void AddTarget(po::options_description& desc, Target& t) {
  desc.add_options()("session", po::value<std::string>(&t.session), "session directory")(
      "job", po::value<std::string>(&t.job), "Slurm job id (default: $SLURM_JOB_ID or the newest session)");
}

std::string ResolveSession(const Target& t) {
  if (!t.session.empty()) return t.session;
  std::string job = t.job;
  if (job.empty()) {
    if (const char* j = std::getenv("SLURM_JOB_ID")) job = j;
  }
  auto found = mpiray::FindSessions(job);
  if (found.empty() && !job.empty() && t.job.empty()) found = mpiray::FindSessions();
  if (found.empty()) {
    throw std::runtime_error(job.empty() ? "no running mpiray session of yours was found"
                                         : "no mpiray session found for job " + job);
  }
  return found.front();
}

std::string Query(const Target& t, const std::string& command) {
  std::string dir = ResolveSession(t);
  auto r = mpiray::QueryHead(dir, command);
  if (!r.ok()) throw std::runtime_error(dir + ": " + r.status().message());
  return *r;
}

std::string Bytes(double b) {
  char buf[64];
  if (b >= 1 << 30) snprintf(buf, sizeof buf, "%.1f GiB", b / (1 << 30));
  else if (b >= 1 << 20) snprintf(buf, sizeof buf, "%.1f MiB", b / (1 << 20));
  else snprintf(buf, sizeof buf, "%.0f B", b);
  return buf;
}

int Status(const std::vector<std::string>& args) {
  po::options_description desc("mpiray status");
  Target t;
  bool json = false;
  AddTarget(desc, t);
  desc.add_options()("json", po::bool_switch(&json), "print the raw JSON");
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).run(), vm);
  po::notify(vm);
  auto j = nlohmann::json::parse(Query(t, "status"));
  if (json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << "session " << j["session"].get<std::string>() << " (" << j["session_dir"].get<std::string>()
            << "), up " << static_cast<int>(j["uptime_s"].get<double>()) << " s\n";
  std::cout << "tasks: " << j["tasks"]["queued"] << " queued, " << j["tasks"]["running"] << " running, "
            << j["tasks"]["finished"] << " finished (" << j["tasks"]["failed"] << " failed); actors: "
            << j["actors"] << "; objects: " << j["objects"] << "\n";
  std::cout << "nodes:\n";
  for (const auto& n : j["nodes"]) {
    auto res = [&](const char* key) {
      std::string out;
      for (auto it = n["total"].begin(); it != n["total"].end(); ++it) {
        if (it.key().rfind("node:", 0) == 0 || it.key() == "memory") continue;
        double total = it.value().get<double>();
        double avail = n["available"].value(it.key(), 0.0);
        if (total == 0) continue;
        char buf[128];
        snprintf(buf, sizeof buf, "%s %g/%g ", it.key().c_str(), total - avail, total);
        out += buf;
      }
      (void)key;
      return out;
    };
    std::cout << "  node " << n["id"] << " " << n["host"].get<std::string>() << ": " << n["workers"].size()
              << " workers, in use " << res("") << "; store "
              << Bytes(n["store_bytes"].get<double>()) << " of "
              << Bytes(j["store_capacity_per_node"].get<double>()) << "\n";
  }
  return 0;
}

int Stop(const std::vector<std::string>& args) {
  po::options_description desc("mpiray stop");
  Target t;
  AddTarget(desc, t);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).run(), vm);
  po::notify(vm);
  std::string dir = ResolveSession(t);
  auto r = mpiray::QueryHead(dir, "stop");
  if (!r.ok()) throw std::runtime_error(dir + ": " + r.status().message());
  // Wait (bounded) until the session is gone.
  for (int i = 0; i < 200 && std::filesystem::exists(dir); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::cout << (std::filesystem::exists(dir) ? "stop requested: " : "stopped: ") << dir << "\n";
  return 0;
}

int Timeline(const std::vector<std::string>& args) {
  po::options_description desc("mpiray timeline");
  Target t;
  std::string out;
  AddTarget(desc, t);
  desc.add_options()("output,o", po::value<std::string>(&out)->required(), "trace file to write");
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).run(), vm);
  po::notify(vm);
  std::string trace = Query(t, "timeline");
  std::ofstream f(out);
  f << trace;
  if (!f) throw std::runtime_error("cannot write " + out);
  auto j = nlohmann::json::parse(trace);
  std::cout << "wrote " << j["traceEvents"].size() << " events to " << out
            << " (open in chrome://tracing or ui.perfetto.dev)\n";
  return 0;
}

int Logs(const std::vector<std::string>& args) {
  po::options_description desc("mpiray logs");
  Target t;
  int rank = -1;
  bool follow = false;
  AddTarget(desc, t);
  desc.add_options()("rank", po::value<int>(&rank), "only this rank (0: the head)")(
      "follow,f", po::bool_switch(&follow), "keep printing new lines until the job ends");
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).run(), vm);
  po::notify(vm);
  namespace fs = std::filesystem;
  std::string dir = ResolveSession(t);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(fs::path(dir) / "logs")) {
    std::string n = e.path().filename().string();
    bool mine = rank < 0 || (rank == 0 && n.rfind("head.", 0) == 0) ||
                n.rfind("worker-" + std::to_string(rank) + ".", 0) == 0;
    if (mine) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw std::runtime_error("no log files for that rank in " + dir);
  std::vector<std::streamoff> pos(files.size(), 0);
  while (true) {
    for (size_t i = 0; i < files.size(); ++i) {
      std::ifstream f(files[i]);
      f.seekg(pos[i]);
      std::string line;
      while (std::getline(f, line)) {
        if (files.size() > 1) std::cout << "[" << files[i].filename().string() << "] ";
        std::cout << line << "\n";
      }
      f.clear();
      std::streamoff at = f.tellg();
      if (at >= 0) pos[i] = at;
    }
    std::cout.flush();
    if (!follow || !fs::exists(dir)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return 0;
}

int Submit(const std::vector<std::string>& args) {
  auto dash = std::find(args.begin(), args.end(), "--");
  std::vector<std::string> opts(args.begin(), dash);
  mpiray::slurm::BatchOptions o;
  if (dash != args.end()) o.command.assign(dash + 1, args.end());
  bool dry = false;
  po::options_description desc("mpiray submit");
  desc.add_options()("nodes,N", po::value<int>(&o.nodes), "nodes")(
      "ntasks-per-node", po::value<int>(&o.ntasks_per_node), "tasks (ranks) per node")(
      "cpus-per-task,c", po::value<int>(&o.cpus_per_task), "CPUs per task")(
      "gpus-per-node", po::value<int>(&o.gpus_per_node), "GPUs per node")(
      "time,t", po::value<std::string>(&o.time), "time limit, e.g. 01:00:00")(
      "partition,p", po::value<std::string>(&o.partition), "partition")(
      "account,A", po::value<std::string>(&o.account), "account")(
      "job-name,J", po::value<std::string>(&o.job_name), "job name")(
      "output,o", po::value<std::string>(&o.output), "output file (default mpiray-%j.out)")(
      "signal", po::value<std::string>(&o.signal), "early warning, default USR1@120 ('' for none)")(
      "requeue", po::bool_switch(&o.requeue), "let Slurm requeue the job")(
      "sbatch", po::value<std::vector<std::string>>(&o.extra_sbatch), "extra #SBATCH option")(
      "dry-run", po::bool_switch(&dry), "print the script instead of submitting it");
  po::variables_map vm;
  po::store(po::command_line_parser(opts).options(desc).run(), vm);
  po::notify(vm);
  if (o.command.empty()) throw po::error("nothing to run: use `mpiray submit [options] -- command...`");
  if (o.nodes < 1 || o.ntasks_per_node < 1) throw po::error("--nodes and --ntasks-per-node must be >= 1");
  if (o.nodes * o.ntasks_per_node < 2) {
    std::cerr << "mpiray submit: note: one task means a head without workers\n";
  }
  std::string script = mpiray::slurm::BatchScript(o);
  if (dry) {
    std::cout << script;
    return 0;
  }
  char path[] = "/tmp/mpiray-submit-XXXXXX.sh";
  int fd = mkstemps(path, 3);
  if (fd < 0) throw std::runtime_error("cannot create a temporary script");
  if (write(fd, script.data(), script.size()) != static_cast<ssize_t>(script.size())) {
    close(fd);
    throw std::runtime_error("cannot write the script");
  }
  close(fd);
  std::string cmd = "sbatch --parsable " + std::string(path);
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[256];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  int rc = p ? pclose(p) : -1;
  unlink(path);
  if (rc != 0) throw std::runtime_error("sbatch failed (" + std::to_string(rc) + "): " + out);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  std::cout << "submitted job " << out.substr(0, out.find(';')) << "\n";
  return 0;
}

int Bench(const std::vector<std::string>& args) {
  po::options_description desc("mpiray bench");
  std::string which;
  bool quick = false, verbose = false;
  desc.add_options()("which", po::value<std::string>(&which)->required(), "benchmark: core")(
      "quick", po::bool_switch(&quick), "small sizes (smoke run)")(
      "verbose", po::bool_switch(&verbose), "progress on stderr");
  po::positional_options_description pos;
  pos.add("which", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
  po::notify(vm);
  if (which != "core") {
    std::cerr << "mpiray bench: unknown benchmark '" << which << "' (available: core)\n";
    return 2;
  }
  mpiray::bench::CoreOptions o;
  o.verbose = verbose;
  if (quick) {
    o.tasks = 20000;
    o.rtt_iters = 500;
    o.big_bytes = 64ull << 20;
    o.spill_bytes = 256ull << 20;
    o.queue_tasks = 100000;
    o.idle_ms = 500;
  }
  return mpiray::bench::RunCore(o);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage(std::cerr);
  std::string cmd = argv[1];
  std::vector<std::string> rest(argv + 2, argv + argc);
  try {
    if (cmd == "--version" || cmd == "version") {
      std::cout << "mpiray " << MPIRAY_VERSION << "\n";
      return 0;
    }
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      Usage(std::cout);
      return 0;
    }
    if (cmd == "worker") return Worker(rest);
    if (cmd == "bench") return Bench(rest);
    if (cmd == "submit") return Submit(rest);
    if (cmd == "status") return Status(rest);
    if (cmd == "stop") return Stop(rest);
    if (cmd == "logs") return Logs(rest);
    if (cmd == "timeline") return Timeline(rest);
    std::cerr << "mpiray: unknown command '" << cmd << "'\n";
    return Usage(std::cerr);
  } catch (const po::error& e) {
    std::cerr << "mpiray " << cmd << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "mpiray " << cmd << ": " << e.what() << "\n";
    return 1;
  }
}

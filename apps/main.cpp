// The `mpiray` command-line tool.
//   mpiray --version
//   mpiray worker --join <session-dir> [--lib libfoo.so ...]   join a running session as a worker
//   mpiray bench core [--quick] [--verbose]                      the core benchmark (JSON)
#include <dlfcn.h>

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

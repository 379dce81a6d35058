// Unit tests of launcher detection (mpiray::mpi::DetectLauncher / CheckWorld) on realistic
// environments of mpirun, srun and a plain start.
#include <catch2/catch.hpp>

#include <map>
#include <string>

#include "mpiray/mpi/launcher.h"

using mpiray::StatusCode;
using mpiray::mpi::CheckWorld;
using mpiray::mpi::DetectLauncher;
using mpiray::mpi::LaunchInfo;
using mpiray::mpi::Launcher;
using Env = std::map<std::string, std::string>;

namespace {

LaunchInfo Detect(const Env& env) {
  auto r = DetectLauncher(env);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return *r;
}

// What Open MPI's mpirun sets (in or outside a Slurm allocation).
Env MpirunEnv(int rank, int size) {
  return {{"OMPI_COMM_WORLD_SIZE", std::to_string(size)},
          {"OMPI_COMM_WORLD_RANK", std::to_string(rank)},
          {"OMPI_COMM_WORLD_LOCAL_RANK", std::to_string(rank)},
          {"PMIX_RANK", std::to_string(rank)},
          {"PATH", "/usr/bin"},
          {"HOME", "/home/u"}};
}

// What srun sets in a job step; PMIx variables only with --mpi=pmix.
Env SrunEnv(int procid, int ntasks, bool pmix) {
  Env e = {{"SLURM_JOB_ID", "1234"},        {"SLURM_STEP_ID", "0"},
           {"SLURM_STEPID", "0"},           {"SLURM_NTASKS", std::to_string(ntasks)},
           {"SLURM_PROCID", std::to_string(procid)}, {"SLURM_LOCALID", "0"},
           {"SLURMD_NODENAME", "node01"},   {"PATH", "/usr/bin"}};
  if (pmix) {
    e["PMIX_RANK"] = std::to_string(procid);
    e["PMIX_NAMESPACE"] = "slurm.pmix.1234.0";
  }
  return e;
}

}  // namespace

TEST_CASE("DetectLauncher recognises OpenMPI's mpirun", "[launcher]") {
  LaunchInfo i = Detect(MpirunEnv(2, 4));
  CHECK(i.launcher == Launcher::kMpirun);
  CHECK(i.rank == 2);
  CHECK(i.size == 4);
  CHECK(i.slurm_ntasks == 0);
  CHECK_THAT(i.description, Catch::Contains("mpirun"));
  CHECK(CheckWorld(i, 2, 4).ok());

  // mpirun inside a Slurm allocation (even inside a step) is still mpirun.
  Env in_alloc = MpirunEnv(0, 2);
  in_alloc["SLURM_JOB_ID"] = "99";
  in_alloc["SLURM_STEP_ID"] = "0";
  in_alloc["SLURM_NTASKS"] = "8";
  LaunchInfo j = Detect(in_alloc);
  CHECK(j.launcher == Launcher::kMpirun);
  CHECK(j.slurm_ntasks == 0);
  CHECK(CheckWorld(j, 0, 2).ok());
}

TEST_CASE("DetectLauncher recognises srun with PMIx", "[launcher]") {
  LaunchInfo i = Detect(SrunEnv(3, 4, true));
  CHECK(i.launcher == Launcher::kSrun);
  CHECK(i.rank == 3);
  CHECK(i.size == 4);
  CHECK(i.slurm_ntasks == 4);
  CHECK_THAT(i.description, Catch::Contains("PMIx"));
  CHECK(CheckWorld(i, 3, 4).ok());

  Env pmi2 = SrunEnv(1, 2, false);
  pmi2["PMI_RANK"] = "1";
  pmi2["PMI_FD"] = "5";
  LaunchInfo j = Detect(pmi2);
  CHECK(j.launcher == Launcher::kSrun);
  CHECK(j.rank == 1);
  CHECK_THAT(j.description, Catch::Contains("PMI2"));
}

TEST_CASE("DetectLauncher refuses a multi-task srun step without PMI", "[launcher]") {
  auto r = DetectLauncher(SrunEnv(1, 4, false));
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(r.status().message(), Catch::Contains("--mpi=pmix"));
  CHECK_THAT(r.status().message(), Catch::Contains("task 1 of 4"));

  // A single-task step has nothing to connect: it is a plain start.
  LaunchInfo single = Detect(SrunEnv(0, 1, false));
  CHECK(single.launcher == Launcher::kNone);
  CHECK(single.slurm_ntasks == 1);
}

TEST_CASE("DetectLauncher recognises a join launch first", "[launcher]") {
  Env e = SrunEnv(0, 4, false);  // even inside an srun step that would otherwise be refused
  e["MPIRAY_JOIN"] = "/tmp/mpiray-abc";
  LaunchInfo i = Detect(e);
  CHECK(i.launcher == Launcher::kJoin);
  CHECK(i.rank == -1);
  CHECK(i.size == -1);

  // An empty MPIRAY_JOIN is not set.
  LaunchInfo none = Detect({{"MPIRAY_JOIN", ""}});
  CHECK(none.launcher == Launcher::kNone);
}

TEST_CASE("DetectLauncher without a launcher", "[launcher]") {
  LaunchInfo i = Detect({{"PATH", "/usr/bin"}, {"HOME", "/home/u"}});
  CHECK(i.launcher == Launcher::kNone);
  CHECK(i.rank == 0);
  CHECK(i.size == 1);
  CHECK(i.slurm_ntasks == 0);
  CHECK(CheckWorld(i, 0, 1).ok());
  // Inside an allocation but not in a step (sbatch script): still a plain start.
  LaunchInfo batch = Detect({{"SLURM_JOB_ID", "7"}, {"SLURM_NTASKS", "4"}});
  CHECK(batch.launcher == Launcher::kNone);
  CHECK(batch.slurm_ntasks == 0);
}

TEST_CASE("DetectLauncher recognises other MPI launchers", "[launcher]") {
  LaunchInfo i = Detect({{"PMI_RANK", "1"}, {"PMI_SIZE", "3"}, {"MPI_LOCALRANKID", "1"}});
  CHECK(i.launcher == Launcher::kOtherMpi);
  CHECK(i.rank == 1);
  CHECK(i.size == 3);
  CHECK(CheckWorld(i, 1, 3).ok());
}

TEST_CASE("CheckWorld catches a PMI mismatch and disagreeing worlds", "[launcher]") {
  LaunchInfo srun = Detect(SrunEnv(0, 4, true));
  auto st = CheckWorld(srun, 0, 1);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::Contains("PMI mismatch"));
  CHECK_THAT(st.message(), Catch::Contains("4 tasks"));

  LaunchInfo manual;
  manual.slurm_ntasks = 4;
  manual.size = -1;
  manual.rank = -1;
  CHECK_THAT(CheckWorld(manual, 0, 1).message(), Catch::Contains("PMI mismatch"));
  CHECK(CheckWorld(manual, 0, 4).ok());

  LaunchInfo mpirun = Detect(MpirunEnv(1, 4));
  auto size = CheckWorld(mpirun, 1, 3);
  CHECK(size.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(size.message(), Catch::Contains("4 processes") && Catch::Contains("3"));
  auto rank = CheckWorld(mpirun, 2, 4);
  CHECK(rank.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(rank.message(), Catch::Contains("rank 1") && Catch::Contains("rank 2"));
}

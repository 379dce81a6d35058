// Unit tests of the start-up check "can this launch survive a worker death?"
// (mpiray::mpi::CheckWorkerDeathSurvivable) on the environments mpirun and srun really give their
// processes (recorded with `mpirun ... env` and `srun ... env` on Open MPI 4.1 / Slurm 22.05),
// and of the parsers of the launchers' configuration files.
#include <catch2/catch.hpp>

#include <map>
#include <string>

#include "mpiray/mpi/launcher.h"
#include "mpiray/mpi/survival.h"

using mpiray::mpi::BootstrapTimeoutSeconds;
using mpiray::mpi::CheckWorkerDeathSurvivable;
using mpiray::mpi::DetectLauncher;
using mpiray::mpi::LauncherSettings;
using mpiray::mpi::LaunchInfo;
using mpiray::mpi::ParseMcaParamFile;
using mpiray::mpi::ParseSlurmConf;
using mpiray::mpi::WorkerDeathCheck;
using Env = std::map<std::string, std::string>;

namespace {

// What every rank of `mpirun -n 4` sees (a subset); --enable-recovery adds
// OMPI_MCA_orte_enable_recovery=1.
Env Mpirun(bool recovery) {
  Env e = {{"OMPI_COMM_WORLD_SIZE", "4"},
           {"OMPI_COMM_WORLD_RANK", "0"},
           {"OMPI_MCA_orte_hnp_uri", "1094909952.0;tcp://192.0.2.2:48515"},
           {"OMPI_MCA_ess", "^singleton"},
           {"PMIX_RANK", "0"},
           {"HOME", "/home/u"}};
  if (recovery) e["OMPI_MCA_orte_enable_recovery"] = "1";
  return e;
}

// What a task of `srun --mpi=pmix -n 4` sees (srun's -K and -W options leave no trace).
Env Srun() {
  return {{"SLURM_JOB_ID", "13"},     {"SLURM_STEP_ID", "0"},   {"SLURM_STEPID", "0"},
          {"SLURM_NTASKS", "4"},      {"SLURM_PROCID", "0"},    {"PMIX_RANK", "0"},
          {"SLURM_CONF", "/etc/slurm/slurm.conf"}};
}

WorkerDeathCheck Check(const Env& env, const LauncherSettings& settings = {}) {
  auto info = DetectLauncher(env);
  REQUIRE(info.ok());
  return CheckWorkerDeathSurvivable(*info, env, settings);
}

}  // namespace

TEST_CASE("mpirun survives a worker death only with --enable-recovery", "[survival]") {
  WorkerDeathCheck plain = Check(Mpirun(false));
  CHECK_FALSE(plain.survivable);
  CHECK_THAT(plain.warning, Catch::Contains("cannot survive a worker death") &&
                                Catch::Contains("mpirun --enable-recovery"));
  CHECK(plain.warning.find('\n') == std::string::npos);  // one line

  WorkerDeathCheck recovery = Check(Mpirun(true));
  CHECK(recovery.survivable);
  CHECK(recovery.warning.empty());

  // --mca orte_enable_recovery true, and an explicit "off" in the environment.
  Env spelled = Mpirun(false);
  spelled["OMPI_MCA_orte_enable_recovery"] = "true";
  CHECK(Check(spelled).survivable);
  spelled["OMPI_MCA_orte_enable_recovery"] = "0";
  CHECK_FALSE(Check(spelled).survivable);
}

TEST_CASE("mpirun's recovery setting from an MCA parameter file counts", "[survival]") {
  // Set in ~/.openmpi/mca-params.conf the setting never reaches the ranks' environment.
  LauncherSettings file;
  file.mca_params = ParseMcaParamFile("# mine\norte_enable_recovery = 1\n");
  CHECK(Check(Mpirun(false), file).survivable);
  // The environment wins over the file, as in Open MPI.
  Env off = Mpirun(false);
  off["OMPI_MCA_orte_enable_recovery"] = "false";
  CHECK_FALSE(Check(off, file).survivable);
}

TEST_CASE("srun survives a worker death unless told to end the step", "[survival]") {
  CHECK(Check(Srun()).survivable);

  Env kill = Srun();
  kill["SLURM_KILL_BAD_EXIT"] = "1";
  WorkerDeathCheck k = Check(kill);
  CHECK_FALSE(k.survivable);
  CHECK_THAT(k.warning, Catch::Contains("SLURM_KILL_BAD_EXIT=1") &&
                            Catch::Contains("SLURM_KILL_BAD_EXIT=0 srun"));

  LauncherSettings conf;
  conf.slurm_conf = ParseSlurmConf("ClusterName=c\nKillOnBadExit=1\n");
  WorkerDeathCheck c = Check(Srun(), conf);
  CHECK_FALSE(c.survivable);
  CHECK_THAT(c.warning, Catch::Contains("KillOnBadExit=1 in slurm.conf"));
  // SLURM_KILL_BAD_EXIT=0 overrides the cluster's setting.
  Env override_conf = Srun();
  override_conf["SLURM_KILL_BAD_EXIT"] = "0";
  CHECK(Check(override_conf, conf).survivable);
}

TEST_CASE("srun with a wait limit ends the job after the first task exits", "[survival]") {
  Env wait = Srun();
  wait["SLURM_WAIT"] = "30";
  WorkerDeathCheck w = Check(wait);
  CHECK_FALSE(w.survivable);
  CHECK_THAT(w.warning, Catch::Contains("30 s after the first one exits (SLURM_WAIT=30)") &&
                            Catch::Contains("SLURM_WAIT=0 srun"));

  LauncherSettings conf;
  conf.slurm_conf = ParseSlurmConf("WaitTime=60\n");
  CHECK_THAT(Check(Srun(), conf).warning, Catch::Contains("WaitTime=60 in slurm.conf"));
  wait["SLURM_WAIT"] = "0";  // 0: no limit, and it overrides slurm.conf
  CHECK(Check(wait, conf).survivable);
  conf.slurm_conf = ParseSlurmConf("WaitTime=0\n");
  CHECK(Check(Srun(), conf).survivable);
}

TEST_CASE("MPI kept alive after the bootstrap never survives a death", "[survival]") {
  LauncherSettings kept;
  kept.mpi_kept = true;
  WorkerDeathCheck s = Check(Srun(), kept);
  CHECK_FALSE(s.survivable);
  CHECK_THAT(s.warning, Catch::Contains("keep_mpi"));
  CHECK_FALSE(Check(Mpirun(true), kept).survivable);
}

TEST_CASE("Launches without an MPI launcher need no warning", "[survival]") {
  CHECK(Check({{"PATH", "/usr/bin"}}).survivable);                     // ./prog, python app.py
  CHECK(Check({{"MPIRAY_JOIN", "/tmp/mpiray-x"}}).survivable);         // a joining worker
  CHECK(Check({{"PMI_RANK", "1"}, {"PMI_SIZE", "3"}}).survivable);     // unknown: no guess
  LauncherSettings kept;
  kept.mpi_kept = true;  // nothing to keep without MPI
  CHECK(Check({{"PATH", "/usr/bin"}}, kept).survivable);
}

TEST_CASE("ParseMcaParamFile reads name = value lines", "[survival]") {
  auto p = ParseMcaParamFile(
      "# Debian's file\n"
      "btl_base_warn_component_unused = 0\n"
      "pml = ^ucx   # trailing comment\n"
      "\n"
      "  orte_enable_recovery=true\n"
      "not a setting\n");
  CHECK(p.size() == 3);
  CHECK(p["pml"] == "^ucx");
  CHECK(p["orte_enable_recovery"] == "true");
  CHECK(p["btl_base_warn_component_unused"] == "0");
}

TEST_CASE("ParseSlurmConf reads the cluster's settings, not node lines", "[survival]") {
  auto c = ParseSlurmConf(
      "ClusterName=mpiray\n"
      "# KillOnBadExit=1\n"
      "KillOnBadExit=1   # on purpose\n"
      "WaitTime=0\n"
      "NodeName=n[1-3] NodeAddr=127.0.0.1 CPUs=4 WaitTime=99\n"
      "PartitionName=debug Nodes=ALL Default=YES\n");
  CHECK(c["clustername"] == "mpiray");
  CHECK(c["killonbadexit"] == "1");
  CHECK(c["waittime"] == "0");
  CHECK(c.count("nodes") == 0);
  CHECK(c.count("cpus") == 0);
}

TEST_CASE("BootstrapTimeoutSeconds reads MPIRAY_BOOTSTRAP_TIMEOUT", "[survival]") {
  CHECK(BootstrapTimeoutSeconds({}) == 120);
  CHECK(BootstrapTimeoutSeconds({{"MPIRAY_BOOTSTRAP_TIMEOUT", "30"}}) == 30);
  CHECK(BootstrapTimeoutSeconds({{"MPIRAY_BOOTSTRAP_TIMEOUT", "0"}}) == 0);  // forever
  CHECK(BootstrapTimeoutSeconds({{"MPIRAY_BOOTSTRAP_TIMEOUT", "soon"}}) == 120);
  CHECK(BootstrapTimeoutSeconds({{"MPIRAY_BOOTSTRAP_TIMEOUT", "-5"}}) == 120);
}

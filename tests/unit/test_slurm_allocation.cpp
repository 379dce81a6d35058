#include <catch2/catch.hpp>

#include "mpiray/slurm/allocation.h"

using namespace mpiray;
using namespace mpiray::slurm;

TEST_CASE("ExpandHostList expands ranges, lists, padding and several groups", "[slurm]") {
  auto r = ExpandHostList("n[1-3,7],gpu-[01-04]");
  REQUIRE(r.ok());
  CHECK(*r == std::vector<std::string>{"n1", "n2", "n3", "n7", "gpu-01", "gpu-02", "gpu-03", "gpu-04"});
  CHECK(*ExpandHostList("login1") == std::vector<std::string>{"login1"});
  CHECK(*ExpandHostList("rack[1-2]-n[08-09]") ==
        std::vector<std::string>{"rack1-n08", "rack1-n09", "rack2-n08", "rack2-n09"});
  CHECK(*ExpandHostList("a,b[9-11]") == std::vector<std::string>{"a", "b9", "b10", "b11"});
  CHECK(ExpandHostList("").value().empty());
}

TEST_CASE("ExpandHostList rejects malformed lists with a reason", "[slurm]") {
  for (const char* bad : {"n[1-3", "n1-3]", "n[3-1]", "n[]", "n[a-b]", "a,,b"}) {
    auto r = ExpandHostList(bad);
    INFO(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kInvalidArgument);
  }
}

TEST_CASE("CompressHostList is the inverse of ExpandHostList for numbered hosts", "[slurm]") {
  CHECK(CompressHostList({"n1", "n2", "n3", "n7"}) == "n[1-3,7]");
  CHECK(CompressHostList({"gpu-01", "gpu-02", "gpu-04"}) == "gpu-[01-02,04]");
  CHECK(CompressHostList({"login"}) == "login");
  for (const char* list : {"n[1-3,7]", "gpu-[01-04],login", "c[10-12,20]"}) {
    CHECK(CompressHostList(*ExpandHostList(list)) == list);
  }
}

TEST_CASE("ExpandCounts reads Slurm's N(xK) lists", "[slurm]") {
  CHECK(*ExpandCounts("72(x2),36") == std::vector<int>{72, 72, 36});
  CHECK(*ExpandCounts("4") == std::vector<int>{4});
  CHECK(*ExpandCounts("2(x3)") == std::vector<int>{2, 2, 2});
  CHECK_FALSE(ExpandCounts("2(3)").ok());
  CHECK_FALSE(ExpandCounts("x").ok());
  CHECK_FALSE(ExpandCounts("2(x0)").ok());
}

TEST_CASE("ParseTime reads every Slurm time format", "[slurm]") {
  CHECK(**ParseTime("30") == 30 * 60);
  CHECK(**ParseTime("30:15") == 30 * 60 + 15);
  CHECK(**ParseTime("1:00:00") == 3600);
  CHECK(**ParseTime("2-12") == (2 * 24 + 12) * 3600);
  CHECK(**ParseTime("2-12:30") == (2 * 24 + 12) * 3600 + 30 * 60);
  CHECK(**ParseTime("2-12:30:15") == (2 * 24 + 12) * 3600 + 30 * 60 + 15);
  CHECK_FALSE(ParseTime("UNLIMITED")->has_value());
  CHECK_FALSE(ParseTime("1:2:3:4").ok());
  CHECK_FALSE(ParseTime("-5").ok());
  CHECK(FormatTime(3661) == "01:01:01");
  CHECK(FormatTime(2 * 86400 + 5) == "2-00:00:05");
}

TEST_CASE("ReadAllocation reads a job step's environment", "[slurm]") {
  EnvMap env = {
      {"SLURM_JOB_ID", "4242"},          {"SLURM_JOB_NAME", "sweep"},
      {"SLURM_JOB_PARTITION", "gpu"},    {"SLURM_JOB_ACCOUNT", "phys"},
      {"SLURM_JOB_NODELIST", "gpu-[01-03]"}, {"SLURM_JOB_CPUS_PER_NODE", "64(x2),32"},
      {"SLURM_TASKS_PER_NODE", "4(x3)"}, {"SLURM_NTASKS", "12"},
      {"SLURM_STEP_ID", "0"},            {"SLURM_PROCID", "5"},
      {"SLURM_GPUS_ON_NODE", "4"},       {"SLURM_MEM_PER_NODE", "256000"},
      {"SLURMD_NODENAME", "gpu-02"},     {"SLURM_JOB_END_TIME", "1800000000"},
  };
  auto a = ReadAllocation(env);
  REQUIRE(a.ok());
  CHECK(a->job_id == "4242");
  CHECK(a->partition == "gpu");
  CHECK(a->nodes == std::vector<std::string>{"gpu-01", "gpu-02", "gpu-03"});
  CHECK(a->cpus_per_node == std::vector<int>{64, 64, 32});
  CHECK(a->total_cpus() == 160);
  CHECK(a->tasks_per_node == std::vector<int>{4, 4, 4});
  CHECK(a->ntasks == 12);
  CHECK(a->in_step());
  CHECK(a->procid == 5);
  CHECK(a->gpus_per_node == 4);
  CHECK(a->memory_per_node_mb == 256000);
  CHECK(a->node_name == "gpu-02");
  CHECK(*a->end_time == 1800000000);
}

TEST_CASE("ReadAllocation outside a job, in a batch script and with bad values", "[slurm]") {
  CHECK(ReadAllocation({}).status().code() == StatusCode::kNotFound);
  auto batch = ReadAllocation({{"SLURM_JOB_ID", "7"}, {"SLURM_NODELIST", "n1"},
                               {"SLURM_GPUS_PER_NODE", "a100:2"}});
  REQUIRE(batch.ok());
  CHECK_FALSE(batch->in_step());
  CHECK(batch->gpus_per_node == 2);
  auto bad = ReadAllocation({{"SLURM_JOB_ID", "7"}, {"SLURM_JOB_NODELIST", "n[1-2]"},
                             {"SLURM_JOB_CPUS_PER_NODE", "4"}});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("SLURM_JOB_CPUS_PER_NODE") != std::string::npos);
  CHECK(ReadAllocation({{"SLURM_JOB_ID", "7"}, {"SLURM_MEM_PER_NODE", "lots"}}).status().message().find(
            "SLURM_MEM_PER_NODE") != std::string::npos);
}

#include "mpiray/slurm/batch.h"

TEST_CASE("BatchScript writes sbatch options and an srun line", "[slurm]") {
  BatchOptions o;
  o.job_name = "sweep";
  o.nodes = 4;
  o.ntasks_per_node = 8;
  o.gpus_per_node = 2;
  o.time = "02:00:00";
  o.partition = "gpu";
  o.account = "phys";
  o.extra_sbatch = {"--qos=high"};
  o.env = {{"MPIRAY_LOG_LEVEL", "debug"}};
  o.command = {"python", "train sweep.py", "--lr=0.1"};
  std::string s = BatchScript(o);
  for (const char* want : {"#!/bin/bash\n", "#SBATCH --job-name=sweep\n", "#SBATCH --nodes=4\n",
                           "#SBATCH --ntasks-per-node=8\n", "#SBATCH --gpus-per-node=2\n",
                           "#SBATCH --time=02:00:00\n", "#SBATCH --partition=gpu\n",
                           "#SBATCH --account=phys\n", "#SBATCH --signal=USR1@120\n",
                           "#SBATCH --qos=high\n", "export MPIRAY_LOG_LEVEL=debug\n",
                           "srun --mpi=pmix python 'train sweep.py' --lr=0.1\n"}) {
    INFO(want);
    CHECK(s.find(want) != std::string::npos);
  }
  CHECK(s.find("--requeue") == std::string::npos);
  CHECK(ShellQuote("it's") == "'it'\\''s'");
  CHECK(ShellQuote("plain-word_1.py") == "plain-word_1.py");
}

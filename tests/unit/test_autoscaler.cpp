#include <catch2/catch.hpp>

#include "mpiray/slurm/autoscaler.h"

using namespace mpiray;
using namespace mpiray::slurm;

namespace {

class FakeSlurm : public SlurmCommands {
 public:
  Result<std::string> Submit(const std::string& script) override {
    scripts.push_back(script);
    std::string id = std::to_string(100 + scripts.size());
    state[id] = "PENDING";
    return id;
  }
  Result<std::map<std::string, std::string>> States(const std::vector<std::string>& jobs) override {
    std::map<std::string, std::string> out;
    for (const auto& j : jobs) {
      if (state.count(j) && !state[j].empty()) out[j] = state[j];
    }
    return out;
  }
  Status Cancel(const std::string& job) override {
    cancelled.push_back(job);
    state[job] = "";
    return Status::OK();
  }
  std::vector<std::string> scripts;
  std::vector<std::string> cancelled;
  std::map<std::string, std::string> state;
};

class FakeCluster : public ClusterControl {
 public:
  detail::ClusterSnapshot Snapshot() override { return snap; }
  Status Drain(const std::vector<ProcId>& procs) override {
    drained.insert(drained.end(), procs.begin(), procs.end());
    return Status::OK();
  }
  // A worker process of `job` with `running` tasks.
  void AddWorker(ProcId proc, const std::string& job, int running = 0) {
    detail::ClusterSnapshot::Process p;
    p.proc = proc;
    p.job = job;
    p.running = running;
    p.worker = true;
    snap.processes.push_back(p);
  }
  detail::ClusterSnapshot snap;
  std::vector<ProcId> drained;
};

AutoscaleOptions Opts(const std::string& spec) {
  auto o = AutoscaleOptions::Parse(spec);
  REQUIRE(o.ok());
  return *o;
}

}  // namespace

TEST_CASE("AutoscaleOptions parses its spec and rejects bad keys", "[autoscaler]") {
  auto o = Opts("min=1,max=3,nodes=2,tasks_per_node=4,partition=debug,time=00:10:00,idle=5,delay=0.5,sbatch=--qos=x");
  CHECK(o.min_jobs == 1);
  CHECK(o.max_jobs == 3);
  CHECK(o.nodes_per_job == 2);
  CHECK(o.tasks_per_node == 4);
  CHECK(o.partition == "debug");
  CHECK(o.idle_timeout_s == 5);
  CHECK(o.upscale_delay_s == 0.5);
  CHECK(o.extra_sbatch == std::vector<std::string>{"--qos=x"});
  auto bad = AutoscaleOptions::Parse("maximum=3");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("valid: min, max") != std::string::npos);
  CHECK_FALSE(AutoscaleOptions::Parse("max=1,min=2").ok());
  CHECK_FALSE(AutoscaleOptions::Parse("time=soon").ok());
  CHECK_FALSE(AutoscaleOptions::Parse("idle=-1").ok());
}

TEST_CASE("Autoscaler grows while work waits, one starting job at a time, up to max", "[autoscaler]") {
  FakeSlurm slurm;
  FakeCluster cluster;
  Autoscaler a(Opts("max=2,delay=1,nodes=1,tasks_per_node=2"), slurm, cluster,
               {{"MPIRAY_JOIN_TOKEN", "secret"}}, {"python3", "-m", "mpiray._worker"}, "/tmp/s/logs");
  cluster.snap.queued_tasks = 50;
  a.Step(0.0);
  CHECK(slurm.scripts.empty());  // demand must persist for `delay`
  a.Step(1.5);
  REQUIRE(slurm.scripts.size() == 1);
  CHECK(slurm.scripts[0].find("srun --mpi=none python3 -m mpiray._worker") != std::string::npos);
  CHECK(slurm.scripts[0].find("#SBATCH --ntasks-per-node=2") != std::string::npos);
  CHECK(slurm.scripts[0].find("export MPIRAY_JOIN_TOKEN=secret") != std::string::npos);
  a.Step(2.5);
  CHECK(slurm.scripts.size() == 1);  // the first job has not joined yet
  slurm.state["101"] = "RUNNING";
  cluster.AddWorker(5, "101", 2);
  a.Step(3.5);
  CHECK(slurm.scripts.size() == 2);  // still demand: a second job
  slurm.state["102"] = "RUNNING";
  cluster.AddWorker(6, "102", 2);
  a.Step(4.5);
  CHECK(slurm.scripts.size() == 2);  // never more than max
  CHECK(a.ActiveJobs() == 2);
}

TEST_CASE("Autoscaler cancels idle jobs after the timeout, never busy ones, keeps min", "[autoscaler]") {
  FakeSlurm slurm;
  FakeCluster cluster;
  Autoscaler a(Opts("min=1,max=3,delay=0,idle=10"), slurm, cluster, {}, {"w"}, "");
  a.Step(0);  // below min: submits
  REQUIRE(slurm.scripts.size() == 1);
  cluster.snap.queued_tasks = 5;
  slurm.state["101"] = "RUNNING";
  cluster.AddWorker(3, "101", 1);
  a.Step(1);
  REQUIRE(slurm.scripts.size() == 2);
  slurm.state["102"] = "RUNNING";
  cluster.AddWorker(4, "102", 1);
  cluster.snap.queued_tasks = 0;
  a.Step(2);
  CHECK(slurm.cancelled.empty());  // both busy
  cluster.snap.processes[0].running = 0;  // job 101 idle, 102 busy
  a.Step(3);
  a.Step(12);
  CHECK(slurm.cancelled.empty());  // 9 s idle: not yet
  a.Step(13.5);
  REQUIRE(slurm.cancelled == std::vector<std::string>{"101"});
  CHECK(cluster.drained == std::vector<ProcId>{3});  // drained before the cancel
  cluster.snap.processes[1].running = 0;  // 102 idle too, but it is the last (min=1)
  a.Step(20);
  a.Step(40);
  CHECK(slurm.cancelled.size() == 1);
  CHECK(a.ActiveJobs() == 1);
}

TEST_CASE("Autoscaler notices jobs that ended on their own and cancels the rest on Stop", "[autoscaler]") {
  FakeSlurm slurm;
  FakeCluster cluster;
  Autoscaler a(Opts("max=2,delay=0"), slurm, cluster, {}, {"w"}, "");
  cluster.snap.queued_tasks = 1;
  a.Step(0);
  REQUIRE(a.ActiveJobs() == 1);
  slurm.state["101"] = "";  // e.g. hit its time limit
  a.Step(1);
  CHECK(a.History().size() >= 2);
  CHECK(a.Jobs()[0].cancelled);
  REQUIRE(slurm.scripts.size() == 2);  // demand remains: a replacement
  a.Stop();
  CHECK(slurm.cancelled == std::vector<std::string>{"102"});
}

#include "mpiray/slurm/autoscaler.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "mpiray/core/api.h"
#include "mpiray/core/bootstrap.h"
#include "mpiray/core/detail/language.h"
#include "mpiray/slurm/allocation.h"
#include "mpiray/slurm/batch.h"

namespace mpiray::slurm {
namespace {

Result<std::string> Run(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return IoError("cannot run: " + cmd);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  int rc = pclose(p);
  if (rc != 0) return Status(StatusCode::kUnavailable, cmd + " failed: " + out);
  return out;
}

bool Active(const std::string& state) {
  return state == "PENDING" || state == "CONFIGURING" || state == "RUNNING" || state == "COMPLETING" ||
         state == "REQUEUED" || state == "RESIZING" || state == "SUSPENDED";
}

}  // namespace

Result<AutoscaleOptions> AutoscaleOptions::Parse(const std::string& spec) {
  AutoscaleOptions o;
  std::stringstream ss(spec);
  std::string item;
  auto num = [](const std::string& key, const std::string& v, double* out) -> Status {
    char* end = nullptr;
    double d = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || d < 0) {
      return InvalidArgument("autoscale option '" + key + "' needs a non-negative number, got '" + v + "'");
    }
    *out = d;
    return Status::OK();
  };
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string::npos) return InvalidArgument("autoscale option '" + item + "' is not key=value");
    std::string k = item.substr(0, eq), v = item.substr(eq + 1);
    double d = 0;
    if (k == "min" || k == "max" || k == "nodes" || k == "tasks_per_node") {
      MPIRAY_RETURN_IF_ERROR(num(k, v, &d));
      int n = static_cast<int>(d);
      if (k == "min") o.min_jobs = n;
      if (k == "max") o.max_jobs = n;
      if (k == "nodes") o.nodes_per_job = std::max(1, n);
      if (k == "tasks_per_node") o.tasks_per_node = std::max(1, n);
    } else if (k == "idle") {
      MPIRAY_RETURN_IF_ERROR(num(k, v, &o.idle_timeout_s));
    } else if (k == "delay") {
      MPIRAY_RETURN_IF_ERROR(num(k, v, &o.upscale_delay_s));
    } else if (k == "partition") {
      o.partition = v;
    } else if (k == "account") {
      o.account = v;
    } else if (k == "time") {
      auto t = ParseTime(v);
      if (!t.ok()) return InvalidArgument("autoscale option 'time': " + t.status().message());
      o.time = v;
    } else if (k == "sbatch") {
      o.extra_sbatch.push_back(v);
    } else {
      return InvalidArgument("unknown autoscale option '" + k +
                             "'; valid: min, max, nodes, tasks_per_node, partition, account, time, "
                             "idle, delay, sbatch");
    }
  }
  if (o.max_jobs < o.min_jobs) {
    return InvalidArgument("autoscale: max (" + std::to_string(o.max_jobs) + ") is below min (" +
                           std::to_string(o.min_jobs) + ")");
  }
  return o;
}

Result<std::string> RealSlurmCommands::Submit(const std::string& script) {
  char path[] = "/tmp/mpiray-workers-XXXXXX.sh";
  int fd = mkstemps(path, 3);
  if (fd < 0) return IoError("cannot create a batch script file");
  bool ok = write(fd, script.data(), script.size()) == static_cast<ssize_t>(script.size());
  close(fd);
  if (!ok) {
    unlink(path);
    return IoError("cannot write the batch script");
  }
  auto out = Run(std::string("sbatch --parsable ") + path);
  unlink(path);
  if (!out.ok()) return out.status();
  std::string id = *out;
  id = id.substr(0, id.find_first_of(";\n"));
  return id;
}

Result<std::map<std::string, std::string>> RealSlurmCommands::States(const std::vector<std::string>& jobs) {
  std::map<std::string, std::string> states;
  if (jobs.empty()) return states;
  std::string list;
  for (const auto& j : jobs) list += (list.empty() ? "" : ",") + j;
  auto out = Run("squeue -h -o '%i %T' -j " + list);
  if (!out.ok()) {
    // squeue fails when none of the jobs exists any more: they are all gone.
    if (out.status().message().find("Invalid job id") != std::string::npos) return states;
    return out.status();
  }
  std::istringstream in(*out);
  std::string id, state;
  while (in >> id >> state) states[id] = state;
  return states;
}

Status RealSlurmCommands::Cancel(const std::string& job) {
  auto out = Run("scancel " + job);
  return out.ok() ? Status::OK() : out.status();
}

Autoscaler::Autoscaler(AutoscaleOptions options, SlurmCommands& slurm, ClusterControl& cluster,
                       std::vector<std::pair<std::string, std::string>> worker_env,
                       std::vector<std::string> worker_command, std::string output_dir)
    : o_(std::move(options)),
      slurm_(slurm),
      cluster_(cluster),
      env_(std::move(worker_env)),
      command_(std::move(worker_command)),
      output_dir_(std::move(output_dir)) {}

Autoscaler::~Autoscaler() { Stop(); }

std::string Autoscaler::WorkerScript() const {
  BatchOptions b;
  b.job_name = "mpiray-workers";
  b.nodes = o_.nodes_per_job;
  b.ntasks_per_node = o_.tasks_per_node;
  b.time = o_.time;
  b.partition = o_.partition;
  b.account = o_.account;
  b.output = output_dir_.empty() ? "" : output_dir_ + "/worker-job-%j.out";
  b.signal.clear();  // worker jobs need no checkpoint warning: the driver decides
  b.extra_sbatch = o_.extra_sbatch;
  b.env = env_;
  b.srun_args = "--mpi=none";  // workers join over the listener, no MPI
  b.command = command_;
  return BatchScript(b);
}

size_t Autoscaler::ActiveJobs() const {
  std::lock_guard<std::mutex> lk(mu_);
  return static_cast<size_t>(std::count_if(jobs_.begin(), jobs_.end(), [](const Job& j) { return !j.cancelled; }));
}

std::vector<Autoscaler::Job> Autoscaler::Jobs() const {
  std::lock_guard<std::mutex> lk(mu_);
  return jobs_;
}

std::vector<std::string> Autoscaler::History() const {
  std::lock_guard<std::mutex> lk(mu_);
  return history_;
}

void Autoscaler::Step(double now) {
  detail::ClusterSnapshot snap = cluster_.Snapshot();
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (const auto& j : jobs_) {
      if (!j.cancelled) ids.push_back(j.id);
    }
  }
  auto states = slurm_.States(ids);
  std::lock_guard<std::mutex> lk(mu_);
  if (states.ok()) {
    for (auto& j : jobs_) {
      if (j.cancelled) continue;
      auto it = states->find(j.id);
      j.state = it == states->end() ? "" : it->second;
      if (!Active(j.state)) {
        j.cancelled = true;  // ended on its own (time limit, failure, scancel by someone)
        history_.push_back("job " + j.id + " ended");
      }
    }
  }
  // Which live processes belong to which worker job.
  std::map<std::string, std::vector<const detail::ClusterSnapshot::Process*>> procs;
  for (const auto& p : snap.processes) {
    if (p.worker && !p.job.empty()) procs[p.job].push_back(&p);
  }
  size_t demand = snap.queued_tasks + snap.pipelined_tasks + snap.pending_actors;
  demand_since_ = demand > 0 ? (demand_since_ < 0 ? now : demand_since_) : -1;
  int active = 0, starting = 0;
  for (const auto& j : jobs_) {
    if (j.cancelled) continue;
    ++active;
    if (procs[j.id].empty()) ++starting;  // pending, or its workers have not joined yet
  }
  bool below_min = active < o_.min_jobs;
  bool needed = demand > 0 && now - demand_since_ >= o_.upscale_delay_s && starting == 0;
  if ((below_min || needed) && active < o_.max_jobs) {
    auto id = slurm_.Submit(WorkerScript());
    if (id.ok()) {
      Job j;
      j.id = *id;
      j.state = "PENDING";
      j.submitted_s = now;
      jobs_.push_back(j);
      history_.push_back("submitted job " + *id + " (demand " + std::to_string(demand) + ")");
    } else {
      history_.push_back("sbatch failed: " + id.status().message());
    }
    return;
  }
  // Scale down: a worker job whose workers have no task and no actor for idle_timeout.
  for (auto& j : jobs_) {
    if (j.cancelled) continue;
    const auto& mine = procs[j.id];
    if (mine.empty()) continue;
    bool busy = std::any_of(mine.begin(), mine.end(), [](const auto* p) { return p->running > 0 || p->actors > 0; });
    if (busy || demand > 0) {
      j.idle_since_s = -1;
      continue;
    }
    if (j.idle_since_s < 0) j.idle_since_s = now;
    if (now - j.idle_since_s < o_.idle_timeout_s || active <= o_.min_jobs) continue;
    std::vector<ProcId> leaving;
    for (const auto* p : mine) leaving.push_back(p->proc);
    Status drained = cluster_.Drain(leaving);  // no new work, objects copied off its nodes
    if (!drained.ok()) {
      history_.push_back("drain of job " + j.id + " failed: " + drained.message());
      continue;
    }
    Status st = slurm_.Cancel(j.id);
    j.cancelled = true;
    --active;
    history_.push_back("cancelled idle job " + j.id + (st.ok() ? "" : " (" + st.message() + ")"));
  }
}

void Autoscaler::Start(double period_s) {
  thread_ = std::thread([this, period_s] {
    auto t0 = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lk(mu_);
    while (!stop_) {
      lk.unlock();
      double now = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      try {
        Step(now);
      } catch (const std::exception&) {
        // the runtime is going away
      }
      lk.lock();
      cv_.wait_for(lk, std::chrono::duration<double>(period_s), [&] { return stop_; });
    }
  });
}

void Autoscaler::Stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& j : jobs_) {
    if (!j.cancelled) {
      (void)slurm_.Cancel(j.id);
      j.cancelled = true;
    }
  }
}

// ------------------------------------------------------------------ the driver's autoscaler

namespace {

class RuntimeControl final : public ClusterControl {
 public:
  detail::ClusterSnapshot Snapshot() override { return detail::Client()->Snapshot(); }
  Status Drain(const std::vector<ProcId>& procs) override { return detail::Client()->DrainProcesses(procs); }
};

struct DriverAutoscaler {
  RealSlurmCommands slurm;
  RuntimeControl control;
  std::unique_ptr<Autoscaler> scaler;
};

std::string ReadFirstWord(const std::string& path) {
  std::ifstream f(path);
  std::string w;
  f >> w;
  return w;
}

}  // namespace

Status StartDriverAutoscaler(const std::string& spec, const std::vector<std::string>& worker_command) {
  MPIRAY_ASSIGN_OR_RETURN(AutoscaleOptions o, AutoscaleOptions::Parse(spec));
  detail::RuntimeContext ctx = detail::CurrentContext();
  if (!ctx.driver) return InvalidArgument("the autoscaler runs on the driver");
  std::vector<std::string> cmd = worker_command.empty() ? detail::DefaultWorkerCommand() : worker_command;
  // Worker jobs may run where the session directory is not visible: they get the head's
  // address and the token in their environment (the script is only readable by Slurm).
  std::vector<std::pair<std::string, std::string>> env = {
      {"MPIRAY_JOIN", ctx.session_dir},
      {"MPIRAY_JOIN_ADDRESS", ReadFirstWord(ctx.session_dir + "/head.addr")},
      {"MPIRAY_JOIN_TOKEN", ReadFirstWord(ctx.session_dir + "/token")},
  };
  static DriverAutoscaler* d = nullptr;
  if (d) {
    d->scaler->Stop();
    delete d;
  }
  d = new DriverAutoscaler();
  d->scaler = std::make_unique<Autoscaler>(o, d->slurm, d->control, env, cmd, ctx.session_dir + "/logs");
  d->scaler->Start();
  detail::AddShutdownHook([] {
    if (d) {
      d->scaler->Stop();  // cancels the worker jobs still queued or running
      delete d;
      d = nullptr;
    }
  });
  return Status::OK();
}

}  // namespace mpiray::slurm

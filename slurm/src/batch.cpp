#include "mpiray/slurm/batch.h"

namespace mpiray::slurm {

std::string ShellQuote(const std::string& word) {
  bool plain = !word.empty();
  for (char c : word) {
    if (!(isalnum(static_cast<unsigned char>(c)) || std::string("@%+=:,./_-").find(c) != std::string::npos)) {
      plain = false;
    }
  }
  if (plain) return word;
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string BatchScript(const BatchOptions& o) {
  std::string s = "#!/bin/bash\n# Written by `mpiray submit`.\n";
  auto line = [&](const std::string& opt) { s += "#SBATCH " + opt + "\n"; };
  line("--job-name=" + ShellQuote(o.job_name));
  line("--nodes=" + std::to_string(o.nodes));
  line("--ntasks-per-node=" + std::to_string(o.ntasks_per_node));
  if (o.cpus_per_task > 0) line("--cpus-per-task=" + std::to_string(o.cpus_per_task));
  if (o.gpus_per_node > 0) line("--gpus-per-node=" + std::to_string(o.gpus_per_node));
  if (!o.time.empty()) line("--time=" + o.time);
  if (!o.partition.empty()) line("--partition=" + o.partition);
  if (!o.account.empty()) line("--account=" + o.account);
  if (!o.output.empty()) line("--output=" + o.output);
  if (!o.signal.empty()) line("--signal=" + o.signal);
  if (o.requeue) line("--requeue");
  for (const auto& e : o.extra_sbatch) line(e);
  s += "\nset -eo pipefail\n";
  for (const auto& [k, v] : o.env) s += "export " + k + "=" + ShellQuote(v) + "\n";
  s += "srun";
  if (!o.srun_args.empty()) s += " " + o.srun_args;
  for (const auto& w : o.command) s += " " + ShellQuote(w);
  s += "\n";
  return s;
}

}  // namespace mpiray::slurm

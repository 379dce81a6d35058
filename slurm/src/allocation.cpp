#include "mpiray/slurm/allocation.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>

namespace mpiray::slurm {
namespace {

const std::string* Get(const EnvMap& env, const char* key) {
  auto it = env.find(key);
  return (it == env.end() || it->second.empty()) ? nullptr : &it->second;
}

bool ParseInt(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (*end != '\0') return false;
  *out = v;
  return true;
}

// Split at commas that are not inside brackets.
std::vector<std::string> SplitTop(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  for (char c : s) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (c == ',' && depth == 0) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

// Expand one name that may contain bracket groups, e.g. "rack[1-2]-n[01-03]".
Status ExpandOne(const std::string& name, std::vector<std::string>* out) {
  auto open = name.find('[');
  if (open == std::string::npos) {
    if (name.find(']') != std::string::npos) return InvalidArgument("unbalanced ']' in host list entry '" + name + "'");
    out->push_back(name);
    return Status::OK();
  }
  auto close = name.find(']', open);
  if (close == std::string::npos) return InvalidArgument("unbalanced '[' in host list entry '" + name + "'");
  std::string prefix = name.substr(0, open);
  std::string body = name.substr(open + 1, close - open - 1);
  std::string rest = name.substr(close + 1);
  if (body.empty()) return InvalidArgument("empty range in host list entry '" + name + "'");
  size_t start = 0;
  while (start <= body.size()) {
    size_t comma = body.find(',', start);
    std::string range = body.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    auto dash = range.find('-');
    std::string lo = range.substr(0, dash);
    std::string hi = dash == std::string::npos ? lo : range.substr(dash + 1);
    int64_t a, b;
    if (!ParseInt(lo, &a) || !ParseInt(hi, &b) || a < 0 || b < a) {
      return InvalidArgument("bad range '" + range + "' in host list entry '" + name + "'");
    }
    if (b - a > 1000000) return InvalidArgument("range '" + range + "' is too large");
    size_t width = lo.size();  // "01-04" keeps two digits
    for (int64_t i = a; i <= b; ++i) {
      char buf[32];
      snprintf(buf, sizeof buf, "%0*lld", static_cast<int>(width), static_cast<long long>(i));
      MPIRAY_RETURN_IF_ERROR(ExpandOne(prefix + buf + rest, out));
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return Status::OK();
}

}  // namespace

Result<std::vector<std::string>> ExpandHostList(const std::string& list) {
  std::vector<std::string> out;
  if (list.empty()) return out;
  for (const std::string& part : SplitTop(list)) {
    if (part.empty()) return InvalidArgument("empty entry in host list '" + list + "'");
    MPIRAY_RETURN_IF_ERROR(ExpandOne(part, &out));
  }
  return out;
}

std::string CompressHostList(const std::vector<std::string>& hosts) {
  // Group by (prefix, width) of the trailing number, keeping first-appearance order.
  struct Group {
    std::string prefix;
    size_t width;
    std::vector<int64_t> nums;
  };
  std::vector<Group> groups;
  std::vector<std::string> plain;
  std::vector<std::pair<int, size_t>> order;  // 0: plain index, 1: group index
  for (const auto& h : hosts) {
    size_t i = h.size();
    while (i > 0 && std::isdigit(static_cast<unsigned char>(h[i - 1]))) --i;
    if (i == h.size()) {
      order.emplace_back(0, plain.size());
      plain.push_back(h);
      continue;
    }
    std::string prefix = h.substr(0, i), digits = h.substr(i);
    size_t width = digits.size() > 1 && digits[0] == '0' ? digits.size() : 0;
    int64_t n = std::atoll(digits.c_str());
    bool found = false;
    for (auto& g : groups) {
      if (g.prefix == prefix && g.width == width) {
        g.nums.push_back(n);
        found = true;
      }
    }
    if (!found) {
      order.emplace_back(1, groups.size());
      groups.push_back({prefix, width, {n}});
    }
  }
  std::string out;
  auto num = [](int64_t v, size_t width) {
    char buf[32];
    snprintf(buf, sizeof buf, "%0*lld", static_cast<int>(width), static_cast<long long>(v));
    return std::string(buf);
  };
  for (auto [kind, idx] : order) {
    if (!out.empty()) out += ",";
    if (kind == 0) {
      out += plain[idx];
      continue;
    }
    const Group& g = groups[idx];
    if (g.nums.size() == 1) {
      out += g.prefix + num(g.nums[0], g.width);
      continue;
    }
    std::vector<int64_t> v = g.nums;
    std::sort(v.begin(), v.end());
    std::string ranges;
    for (size_t i = 0; i < v.size();) {
      size_t j = i;
      while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
      if (!ranges.empty()) ranges += ",";
      ranges += num(v[i], g.width);
      if (j > i) ranges += "-" + num(v[j], g.width);
      i = j + 1;
    }
    out += g.prefix + "[" + ranges + "]";
  }
  return out;
}

Result<std::vector<int>> ExpandCounts(const std::string& list) {
  std::vector<int> out;
  if (list.empty()) return out;
  for (const std::string& part : SplitTop(list)) {
    auto paren = part.find('(');
    int64_t value, repeat = 1;
    if (paren == std::string::npos) {
      if (!ParseInt(part, &value)) return InvalidArgument("bad count '" + part + "' in '" + list + "'");
    } else {
      if (part.size() < paren + 4 || part[paren + 1] != 'x' || part.back() != ')' ||
          !ParseInt(part.substr(0, paren), &value) ||
          !ParseInt(part.substr(paren + 2, part.size() - paren - 3), &repeat) || repeat < 1) {
        return InvalidArgument("bad count '" + part + "' in '" + list + "' (expected N or N(xK))");
      }
    }
    if (value < 0) return InvalidArgument("negative count in '" + list + "'");
    for (int64_t i = 0; i < repeat; ++i) out.push_back(static_cast<int>(value));
  }
  return out;
}

Result<std::optional<int64_t>> ParseTime(const std::string& text) {
  if (text == "UNLIMITED" || text == "INFINITE" || text == "NOT_SET") return std::optional<int64_t>();
  if (text.empty()) return InvalidArgument("empty time");
  int64_t days = 0;
  std::string rest = text;
  auto dash = text.find('-');
  bool has_days = dash != std::string::npos;
  if (has_days) {
    if (!ParseInt(text.substr(0, dash), &days) || days < 0) return InvalidArgument("bad time '" + text + "'");
    rest = text.substr(dash + 1);
  }
  std::vector<int64_t> parts;
  size_t start = 0;
  while (true) {
    auto colon = rest.find(':', start);
    int64_t v;
    if (!ParseInt(rest.substr(start, colon == std::string::npos ? std::string::npos : colon - start), &v) || v < 0) {
      return InvalidArgument("bad time '" + text + "'");
    }
    parts.push_back(v);
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  if (parts.size() > 3) return InvalidArgument("bad time '" + text + "'");
  int64_t h = 0, m = 0, s = 0;
  if (has_days) {  // days-hours[:minutes[:seconds]]
    h = parts[0];
    if (parts.size() > 1) m = parts[1];
    if (parts.size() > 2) s = parts[2];
  } else if (parts.size() == 1) {  // minutes
    m = parts[0];
  } else if (parts.size() == 2) {  // minutes:seconds
    m = parts[0];
    s = parts[1];
  } else {  // hours:minutes:seconds
    h = parts[0];
    m = parts[1];
    s = parts[2];
  }
  return std::optional<int64_t>(((days * 24 + h) * 60 + m) * 60 + s);
}

std::string FormatTime(int64_t seconds) {
  char buf[64];
  int64_t d = seconds / 86400, h = seconds / 3600 % 24, m = seconds / 60 % 60, s = seconds % 60;
  if (d > 0) {
    snprintf(buf, sizeof buf, "%lld-%02lld:%02lld:%02lld", static_cast<long long>(d),
             static_cast<long long>(h), static_cast<long long>(m), static_cast<long long>(s));
  } else {
    snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld", static_cast<long long>(h),
             static_cast<long long>(m), static_cast<long long>(s));
  }
  return buf;
}

int Allocation::total_cpus() const {
  int t = 0;
  for (int c : cpus_per_node) t += c;
  return t;
}

Result<Allocation> ReadAllocation(const EnvMap& env) {
  Allocation a;
  const std::string* job = Get(env, "SLURM_JOB_ID");
  if (!job) job = Get(env, "SLURM_JOBID");
  if (!job) return NotFound("not inside a Slurm job (SLURM_JOB_ID is not set)");
  a.job_id = *job;
  if (auto* v = Get(env, "SLURM_JOB_NAME")) a.job_name = *v;
  if (auto* v = Get(env, "SLURM_JOB_PARTITION")) a.partition = *v;
  if (auto* v = Get(env, "SLURM_JOB_ACCOUNT")) a.account = *v;
  const std::string* nodes = Get(env, "SLURM_JOB_NODELIST");
  if (!nodes) nodes = Get(env, "SLURM_NODELIST");
  if (nodes) {
    auto r = ExpandHostList(*nodes);
    if (!r.ok()) return InvalidArgument("SLURM_JOB_NODELIST: " + r.status().message());
    a.nodes = *r;
  }
  if (auto* v = Get(env, "SLURM_JOB_CPUS_PER_NODE")) {
    auto r = ExpandCounts(*v);
    if (!r.ok()) return InvalidArgument("SLURM_JOB_CPUS_PER_NODE: " + r.status().message());
    a.cpus_per_node = *r;
    if (!a.nodes.empty() && a.cpus_per_node.size() != a.nodes.size()) {
      return InvalidArgument("SLURM_JOB_CPUS_PER_NODE lists " + std::to_string(a.cpus_per_node.size()) +
                             " nodes but SLURM_JOB_NODELIST has " + std::to_string(a.nodes.size()));
    }
  }
  if (auto* v = Get(env, "SLURM_TASKS_PER_NODE")) {
    auto r = ExpandCounts(*v);
    if (!r.ok()) return InvalidArgument("SLURM_TASKS_PER_NODE: " + r.status().message());
    a.tasks_per_node = *r;
  }
  int64_t n = 0;
  if (auto* v = Get(env, "SLURM_GPUS_ON_NODE")) {
    if (!ParseInt(*v, &n) || n < 0) return InvalidArgument("SLURM_GPUS_ON_NODE: bad value '" + *v + "'");
    a.gpus_per_node = static_cast<int>(n);
  } else if (auto* g = Get(env, "SLURM_GPUS_PER_NODE")) {
    // "4" or "a100:4"
    std::string s = *g;
    auto colon = s.rfind(':');
    if (!ParseInt(colon == std::string::npos ? s : s.substr(colon + 1), &n) || n < 0) {
      return InvalidArgument("SLURM_GPUS_PER_NODE: bad value '" + s + "'");
    }
    a.gpus_per_node = static_cast<int>(n);
  }
  if (auto* v = Get(env, "SLURM_MEM_PER_NODE")) {
    if (!ParseInt(*v, &n) || n < 0) return InvalidArgument("SLURM_MEM_PER_NODE: bad value '" + *v + "'");
    a.memory_per_node_mb = n;
  }
  const std::string* ntasks = Get(env, "SLURM_STEP_NUM_TASKS");
  if (!ntasks) ntasks = Get(env, "SLURM_NTASKS");
  if (ntasks) {
    if (!ParseInt(*ntasks, &n) || n < 0) return InvalidArgument("SLURM_NTASKS: bad value '" + *ntasks + "'");
    a.ntasks = static_cast<int>(n);
  }
  if (Get(env, "SLURM_STEP_ID") || Get(env, "SLURM_STEPID")) {
    if (auto* v = Get(env, "SLURM_PROCID")) {
      if (!ParseInt(*v, &n) || n < 0) return InvalidArgument("SLURM_PROCID: bad value '" + *v + "'");
      a.procid = static_cast<int>(n);
    }
  }
  if (auto* v = Get(env, "SLURMD_NODENAME")) a.node_name = *v;
  if (auto* v = Get(env, "SLURM_JOB_END_TIME")) {
    if (!ParseInt(*v, &n)) return InvalidArgument("SLURM_JOB_END_TIME: bad value '" + *v + "'");
    a.end_time = n;
  }
  return a;
}

}  // namespace mpiray::slurm

#include "log.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <mutex>

namespace mpiray::logging {
namespace {

std::mutex g_mu;
std::shared_ptr<spdlog::logger> g_logger;
std::function<void(int, const std::string&)> g_forward;

class ForwardSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    std::string line(buf.data(), buf.size());
    while (!line.empty() && line.back() == '\n') line.pop_back();
    std::function<void(int, const std::string&)> fwd;
    {
      std::lock_guard<std::mutex> lk(g_mu);
      fwd = g_forward;
    }
    if (fwd) {
      fwd(static_cast<int>(msg.level), line);
    } else {
      fprintf(stderr, "%s\n", line.c_str());
    }
  }
  void flush_() override {}
};

std::shared_ptr<spdlog::logger> MakeDefault() {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  sink->set_pattern("[mpiray %l] %v");
  auto l = std::make_shared<spdlog::logger>("mpiray", sink);
  l->set_level(spdlog::level::warn);
  return l;
}

}  // namespace

bool ParseLevel(const std::string& name, spdlog::level::level_enum* out) {
  static const std::pair<const char*, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"warning", spdlog::level::warn}, {"error", spdlog::level::err},
      {"critical", spdlog::level::critical}, {"off", spdlog::level::off}};
  for (auto& [n, l] : kLevels) {
    if (name == n) {
      *out = l;
      return true;
    }
  }
  return false;
}

spdlog::logger* Logger() {
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g_logger) g_logger = MakeDefault();
  return g_logger.get();
}

void Configure(const LogOptions& options) {
  spdlog::level::level_enum file_level = spdlog::level::info;
  spdlog::level::level_enum console_level = spdlog::level::warn;
  ParseLevel(options.level, &file_level);
  ParseLevel(options.console_level, &console_level);

  std::vector<spdlog::sink_ptr> sinks;
  if (!options.file.empty()) {
    try {
      auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file, false);
      file->set_level(file_level);
      file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] [" + options.name + " pid=%P tid=%t] %v");
      sinks.push_back(file);
    } catch (const spdlog::spdlog_ex&) {
      // fall back to console only; the caller's directory may be gone
    }
  }
  auto console = std::make_shared<ForwardSink>();
  console->set_level(console_level);
  console->set_pattern("(" + options.name + " pid=%P) [%l] %v");
  sinks.push_back(console);

  auto logger = std::make_shared<spdlog::logger>("mpiray", sinks.begin(), sinks.end());
  logger->set_level(std::min(file_level, console_level));
  // Lines at the configured level are rare (none per task at info): flush each, so the files
  // can be followed while the job runs.
  logger->flush_on(file_level);
  std::lock_guard<std::mutex> lk(g_mu);
  g_logger = logger;
  g_forward = options.forward;
}

void StopForwarding() {
  std::shared_ptr<spdlog::logger> l;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    g_forward = nullptr;
    l = g_logger;
  }
  if (l) l->flush();
}

void PrintForwarded(int, const std::string& line) { fprintf(stderr, "%s\n", line.c_str()); }

}  // namespace mpiray::logging

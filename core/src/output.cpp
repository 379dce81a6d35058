#include "output.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace mpiray {
namespace {
int g_original_stderr = 2;
}

int OutputForwarder::OriginalStderr() { return g_original_stderr; }

Status OutputForwarder::Start(const std::string& file, Sink sink) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return IoError(std::string("pipe: ") + std::strerror(errno));
  int file_fd = open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  fflush(stdout);
  fflush(stderr);
  g_original_stderr = fcntl(2, F_DUPFD_CLOEXEC, 3);
  if (dup2(fds[1], 1) < 0 || dup2(fds[1], 2) < 0) {
    close(fds[0]);
    close(fds[1]);
    if (file_fd >= 0) close(file_fd);
    return IoError(std::string("dup2: ") + std::strerror(errno));
  }
  close(fds[1]);
  setvbuf(stdout, nullptr, _IOLBF, 0);  // lines reach the driver as they are printed
  sink_ = std::move(sink);
  started_ = true;
  thread_ = std::thread([this, r = fds[0], file_fd] { Loop(r, file_fd); });
  return Status::OK();
}

void OutputForwarder::Loop(int fd, int file_fd) {
  std::string pending;
  char buf[65536];
  while (true) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buf, static_cast<size_t>(n));
    std::vector<std::string> lines;
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      lines.emplace_back(pending, start, nl - start);
    }
    pending.erase(0, start);
    if (file_fd >= 0) {  // the log file gets the text without the name tags
      std::string text;
      for (const auto& l : lines) {
        size_t from = 0;
        if (!l.empty() && l[0] == '\x01') {
          auto end = l.find('\x02');
          if (end != std::string::npos) from = end + 1;
        }
        text.append(l, from, std::string::npos);
        text += '\n';
      }
      (void)!write(file_fd, text.data(), text.size());
    }
    if (!lines.empty() && sink_) sink_(std::move(lines));
  }
  if (!pending.empty() && sink_) sink_({pending});
  close(fd);
  if (file_fd >= 0) close(file_fd);
}

void OutputForwarder::Stop() {
  if (!started_) return;
  started_ = false;
  fflush(stdout);
  fflush(stderr);
  // Point 1 and 2 back at the original stderr so the pipe's last writer goes away.
  dup2(g_original_stderr, 1);
  dup2(g_original_stderr, 2);
  if (thread_.joinable()) thread_.join();
}

}  // namespace mpiray

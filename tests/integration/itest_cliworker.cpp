// A driver whose local workers are the generic `mpiray worker` CLI (not this program),
// loading the functions from a shared library.
#include <mpiray/mpiray.h>
#include <unistd.h>

#include <cstdio>
#include <set>

int LibTriple(int x);
int LibPid();

int main() {
  mpiray::InitOptions o;
  o.num_workers = 2;
  o.worker_command = {MPIRAY_CLI, "worker", "--lib", MPIRAY_FUNCS_LIB};
  mpiray::Init(o);
  std::vector<mpiray::ObjectRef<int>> refs;
  for (int i = 0; i < 100; ++i) refs.push_back(mpiray::Task(LibTriple).Remote(i));
  auto vals = mpiray::Get(refs);
  for (int i = 0; i < 100; ++i) {
    if (*vals[static_cast<size_t>(i)] != 3 * i) return 1;
  }
  std::set<int> pids;
  for (int i = 0; i < 50; ++i) pids.insert(*mpiray::Get(mpiray::Task(LibPid).Remote()));
  if (pids.count(getpid())) return 1;
  std::printf("cli workers OK (%zu worker processes)\n", pids.size());
  mpiray::Shutdown();
  return 0;
}

// Functions in a shared library, loaded by `mpiray worker --lib` in generic CLI workers.
#include <mpiray/core/api.h>
#include <unistd.h>

int LibTriple(int x) { return 3 * x; }
int LibPid() { return static_cast<int>(getpid()); }
MPIRAY_REMOTE(LibTriple, LibPid);

"""The "mpi" backend: the launcher's MPI (MPI_Allreduce etc.) on host memory. Opt-in: only a
launch that keeps MPI alive after start-up can use it (``mpiray.init(keep_mpi=True)`` under
mpirun or srun), and such a launch cannot survive a worker's death (the launcher ends the
whole job). One member per process."""

from ._native_group import NativeGroup


class MPIGroup(NativeGroup):
    _backend = "mpi"
    _device = "host"

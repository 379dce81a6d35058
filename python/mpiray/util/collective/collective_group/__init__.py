"""One module per backend (as Ray's ``collective_group``): ucx, nccl, mpi."""

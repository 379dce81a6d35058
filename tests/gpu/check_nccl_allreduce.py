"""GPU check of the "nccl" collective backend: actors with one GPU each run every collective on
CUDA tensors and compare with the expected values; all-reduce bandwidth is printed.

    PYTHONPATH=python MPIRAY_BUILD_DIR=build python tests/gpu/check_nccl_allreduce.py

Needs an NVIDIA GPU, torch with CUDA, and NCCL (the nvidia-nccl wheel torch brings). Without a
GPU it says so and exits with status 77 (skipped). Exit status 0: every check passed.
"""

import sys
import time


def main():
    try:
        import torch
    except ImportError:
        print("check_nccl_allreduce: SKIPPED: torch is not installed")
        return 77
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        print("check_nccl_allreduce: SKIPPED: no NVIDIA GPU is visible to this process "
              f"(torch {torch.__version__}, torch.cuda.is_available() is False); run it on a GPU node")
        return 77

    import mpiray as ray
    import mpiray.util.collective as col
    from mpiray.util.collective import ReduceOp

    gpus = torch.cuda.device_count()
    world = min(gpus, 4)

    @ray.remote(num_gpus=1)
    class Member:
        def __init__(self, rank):
            self.rank = rank
            col.init_collective_group(world, rank, "nccl", "gpu")

        def checks(self):
            import torch
            bad = []
            dev = torch.device("cuda", torch.cuda.current_device())
            for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32, torch.int64):
                for n in (7, 1 << 20):
                    base = (torch.arange(n, device=dev) % 3 + 1).to(dtype)
                    for op, f in ((ReduceOp.SUM, lambda t: t * world), (ReduceOp.MAX, lambda t: t),
                                  (ReduceOp.MIN, lambda t: t)):
                        x = base.clone()
                        col.allreduce(x, "gpu", op)
                        if not torch.equal(x, f(base)):
                            bad.append(f"allreduce {op.name} {dtype} {n}")
            x = torch.full((1000,), float(self.rank), device=dev)
            col.broadcast(x, world - 1, "gpu")
            if not torch.all(x == world - 1):
                bad.append("broadcast")
            outs = [torch.zeros(10, device=dev) for _ in range(world)]
            col.allgather(outs, torch.full((10,), float(self.rank), device=dev), "gpu")
            if any(not torch.all(o == r) for r, o in enumerate(outs)):
                bad.append("allgather")
            out = torch.zeros(10, device=dev)
            col.reducescatter(out, [torch.full((10,), float(r), device=dev) for r in range(world)], "gpu")
            if not torch.all(out == self.rank * world):
                bad.append("reducescatter")
            col.barrier("gpu")
            if world > 1:
                got = torch.zeros(5, device=dev)
                to, frm = (self.rank + 1) % world, (self.rank - 1) % world
                if self.rank == 0:
                    col.send(torch.full((5,), 1.0 * self.rank, device=dev), to, "gpu")
                    col.recv(got, frm, "gpu")
                else:
                    col.recv(got, frm, "gpu")
                    col.send(torch.full((5,), 1.0 * self.rank, device=dev), to, "gpu")
                if not torch.all(got == frm):
                    bad.append("send/recv")
            try:
                col.allreduce(torch.ones(3), "gpu")  # host memory: a clear error
                bad.append("a CPU tensor was accepted by the nccl backend")
            except ValueError:
                pass
            return bad

        def bandwidth(self, nbytes, iters):
            import torch
            x = torch.ones(nbytes // 4, device="cuda", dtype=torch.float32)
            col.allreduce(x, "gpu")
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(iters):
                col.allreduce(x, "gpu")
            torch.cuda.synchronize()
            return (time.perf_counter() - t) / iters

    ray.init(num_gpus=gpus)
    try:
        members = [Member.remote(r) for r in range(world)]
        bad = sum(ray.get([m.checks.remote() for m in members]), [])
        for nbytes in (8, 1 << 20, 64 << 20):
            t = max(ray.get([m.bandwidth.remote(nbytes, 20) for m in members]))
            busbw = nbytes / t / 1e9 * (2 * (world - 1) / world if world > 1 else 1)
            print(f"nccl allreduce {nbytes:>10} B on {world} GPU(s): {t * 1e6:9.1f} us, busbw {busbw:7.2f} GB/s")
    finally:
        ray.shutdown()
    if bad:
        print("check_nccl_allreduce: FAILED:", *bad, sep="\n  ")
        return 1
    print(f"check_nccl_allreduce: OK ({world} GPU(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())

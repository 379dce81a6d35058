// The vendor's limit for the collective benchmark: MPI_Allreduce of float32 over the ranks of
// this mpirun, at sizes 4 B .. max, as JSON on rank 0's stdout (one object per size:
// {"bytes", "latency_us", "algbw_gbps", "busbw_gbps"}; busbw = algbw * 2(n-1)/n, the
// nccl-tests convention). Used by `python -m mpiray.bench --suite collective`.
//
//   mpirun -n 4 mpiray_bench_mpi_allreduce [--sizes 4,8,64,...] [--budget-s S] [--reps R]
//
// Each size: a warm-up, then R timed loops (each between barriers); the fastest loop counts
// (the machine may be shared), each loop's time being the slowest rank's.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double Now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Iterations for a size: enough to fill about `budget` seconds at a rough guess of the cost.
int Iterations(size_t bytes, double budget) {
  double guess_s = 5e-6 + static_cast<double>(bytes) / 1.5e9;
  int n = static_cast<int>(budget / guess_s);
  return std::clamp(n, 3, 2000);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::vector<size_t> sizes = {4, 8};
  for (size_t b = 16; b <= (size_t{256} << 20); b *= 4) sizes.push_back(b);
  double budget = 0.5;
  int reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--sizes") {
      sizes.clear();
      for (const char* p = argv[i + 1]; *p;) {
        char* end = nullptr;
        sizes.push_back(std::strtoull(p, &end, 10));
        p = *end == ',' ? end + 1 : end;
      }
    } else if (a == "--budget-s") budget = std::atof(argv[i + 1]);
    else if (a == "--reps") reps = std::max(1, std::atoi(argv[i + 1]));
    else {
      if (rank == 0) std::fprintf(stderr, "unknown option %s\n", a.c_str());
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
  }
  size_t max_bytes = *std::max_element(sizes.begin(), sizes.end());
  std::vector<float> buf(max_bytes / sizeof(float) + 1, 1.0f);
  if (rank == 0) std::printf("{\"ranks\": %d, \"results\": [", size);
  bool first = true;
  for (size_t bytes : sizes) {
    int count = static_cast<int>(bytes / sizeof(float));
    int iters = Iterations(bytes, budget);
    MPI_Bcast(&iters, 1, MPI_INT, 0, MPI_COMM_WORLD);
    // Warm-up (connections, pages), then the timed loop between barriers.
    for (int i = 0; i < std::min(iters, 3); ++i) {
      MPI_Allreduce(MPI_IN_PLACE, buf.data(), count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    double elapsed = 1e300;
    for (int rep = 0; rep < reps; ++rep) {
      std::fill(buf.begin(), buf.begin() + count, 1.0f);
      // Values grow by a factor `size` per call and reach inf after ~64 calls: inf costs the same.
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = Now();
      for (int i = 0; i < iters; ++i) {
        MPI_Allreduce(MPI_IN_PLACE, buf.data(), count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        // The first sum of ones is the world size on every rank.
        if (i == 0 && buf[0] != static_cast<float>(size)) {
          std::fprintf(stderr, "rank %d: wrong result %f\n", rank, static_cast<double>(buf[0]));
          MPI_Abort(MPI_COMM_WORLD, 3);
        }
      }
      double local = Now() - t0, slowest = 0;
      MPI_Allreduce(&local, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      elapsed = std::min(elapsed, slowest);
    }
    double per_op = elapsed / iters;
    double algbw = static_cast<double>(bytes) / per_op / 1e9;
    double busbw = algbw * 2.0 * (size - 1) / size;
    if (rank == 0) {
      std::printf("%s\n  {\"bytes\": %zu, \"iterations\": %d, \"latency_us\": %.3f, \"algbw_gbps\": %.4f, "
                  "\"busbw_gbps\": %.4f}",
                  first ? "" : ",", bytes, iters, per_op * 1e6, algbw, busbw);
      std::fflush(stdout);
    }
    first = false;
  }
  if (rank == 0) std::printf("\n]}\n");
  MPI_Finalize();
  return 0;
}

# Spack package for mpiray: `spack repo add ./spack && spack install mpiray+python`.
from spack.package import *


class Mpiray(CMakePackage):
    """Ray's API (tasks, actors, a distributed object store) rebuilt in C++ for
    supercomputers: launched with srun or mpirun, objects over UCX, elastic through Slurm."""

    homepage = "https://github.com/mpiray/mpiray"
    git = "https://github.com/mpiray/mpiray.git"

    maintainers("mpiray")
    license("Apache-2.0")

    version("main", branch="main")

    variant("python", default=True, description="Build the Python binding and package")
    variant("kokkos", default=False, description="Kokkos kernels (portable CPU/GPU)")
    variant("openmp", default=False,
            description="Kokkos' OpenMP backend: the kernels run on the host's threads")
    variant("hdf5", default=False, description="Parallel HDF5 I/O for datasets and checkpoints")
    variant("cuda", default=False, description="CUDA support (GPU objects, kernels)")
    variant("nccl", default=False, description="NCCL collectives between GPU workers")

    depends_on("cmake@3.20:", type="build")
    depends_on("pkgconfig", type="build")
    depends_on("mpi")
    depends_on("ucx")
    depends_on("boost+program_options")
    depends_on("spdlog")
    depends_on("fmt")
    depends_on("msgpack-c")
    depends_on("nlohmann-json")
    depends_on("libsodium")
    depends_on("cpp-httplib")
    depends_on("catch2@2", type="test")
    depends_on("slurm", type="run", when="platform=linux")

    with when("+python"):
        extends("python")
        depends_on("python@3.9:", type=("build", "link", "run"))
        # The range pyproject.toml's [build-system] allows and tests/install builds with.
        depends_on("py-pybind11@2.10:3.1", type="build")
        depends_on("py-numpy", type=("build", "run"))
        depends_on("py-cloudpickle", type="run")
        depends_on("py-pytest", type="test")

    # The Kokkos backend passes through: +openmp and +cuda select Kokkos' own, and mpiray's
    # kernels run on whatever Kokkos' default execution space is (CUDA over OpenMP over Serial).
    depends_on("kokkos", when="+kokkos")
    depends_on("kokkos+openmp", when="+kokkos+openmp")
    depends_on("kokkos+cuda+wrapper", when="+kokkos+cuda")
    depends_on("hdf5+mpi", when="+hdf5")
    depends_on("cuda", when="+cuda")
    depends_on("ucx+cuda", when="+cuda")
    depends_on("nccl", when="+nccl")

    conflicts("+nccl", when="~cuda", msg="NCCL collectives need +cuda")
    conflicts("+openmp", when="~kokkos", msg="+openmp is Kokkos' OpenMP backend: it needs +kokkos")
    conflicts("platform=darwin", msg="mpiray needs Linux (shared memory, UCX, Slurm)")
    conflicts("%gcc@:9", msg="mpiray needs C++20 (GCC 10 or newer)")

    def cmake_args(self):
        args = [
            self.define_from_variant("MPIRAY_PYTHON", "python"),
            self.define("MPIRAY_BUILD_TESTS", self.run_tests),
            self.define("MPIRAY_BUILD_EXAMPLES", False),
            self.define("MPIRAY_WERROR", False),
            # The optional libraries follow the variants, not what the build machine happens
            # to have installed.
            self.define_from_variant("MPIRAY_WITH_KOKKOS", "kokkos"),
            self.define_from_variant("MPIRAY_WITH_HDF5", "hdf5"),
            self.define_from_variant("MPIRAY_WITH_NCCL", "nccl"),
        ]
        if "+kokkos" in self.spec:
            # This Kokkos (and with +cuda its nvcc_wrapper, used for the Kokkos targets only).
            args.append(self.define("Kokkos_ROOT", self.spec["kokkos"].prefix))
        return args

    @run_after("install")
    @on_package_attributes(run_tests=True)
    def check_install(self):
        with working_dir(self.build_directory):
            ctest("-L", "unit", "--output-on-failure")

    def test_version(self):
        """mpiray --version runs and prints the version"""
        exe = which(self.prefix.bin.mpiray)
        out = exe("--version", output=str.split, error=str.split)
        assert "mpiray" in out

    def test_quickstart(self):
        """a two-process job starts, runs tasks and stops without a launcher"""
        if "+python" not in self.spec:
            raise SkipTest("the smoke test uses the Python package")
        python = which(self.spec["python"].command.path)
        script = (
            "import mpiray as ray\n"
            "ray.init(num_cpus=2)\n"
            "f = ray.remote(lambda x: x * x)\n"
            "assert ray.get([f.remote(i) for i in range(10)]) == [i * i for i in range(10)]\n"
            "ray.shutdown()\n"
            "print('smoke OK')\n"
        )
        out = python("-c", script, output=str.split, error=str.split)
        assert "smoke OK" in out

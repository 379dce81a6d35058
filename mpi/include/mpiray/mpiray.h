// Everything a C++ program needs: #include <mpiray/mpiray.h>, link mpiray::mpiray.
#pragma once

#include "mpiray/core/api.h"
#include "mpiray/mpi/init.h"

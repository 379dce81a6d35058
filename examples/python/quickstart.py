"""Quickstart: tasks, a DAG, an actor and a large numpy array.

    python quickstart.py                      # starts one local worker per core
    mpirun -n 4 python quickstart.py          # rank 0 runs this, ranks 1-3 are workers
"""
import numpy as np

import mpiray as ray


@ray.remote
def square(x):
    return x * x


@ray.remote
def add(a, b):
    return a + b


@ray.remote
class Counter:
    def __init__(self, start):
        self.value = start

    def add(self, x):
        self.value += x
        return self.value


@ray.remote
def column_sums(matrix):
    return matrix.sum(axis=0)


if __name__ == "__main__":
    ray.init()
    squares = ray.get([square.remote(i) for i in range(10)])
    print("sum of squares 0..9      =", sum(squares))

    dag = add.remote(square.remote(3), square.remote(4))  # refs as arguments
    print("3^2 + 4^2                =", ray.get(dag))

    counter = Counter.remote(10)
    for _ in range(5):
        counter.add.remote(1)
    print("counter after 5 adds     =", ray.get(counter.add.remote(0)))

    matrix = np.ones((2000, 1000))  # 16 MB: written once into shared memory
    ref = ray.put(matrix)
    sums = ray.get(column_sums.remote(ref))
    print("column sums              =", sums[:3], "...")

    ok = sum(squares) == 285 and ray.get(dag) == 25 and sums[0] == 2000
    print("python quickstart OK" if ok else "python quickstart FAILED")
    ray.shutdown()

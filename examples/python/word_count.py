"""Map-reduce word count over text files: one map task per file, reducers per key range.

    python word_count.py [files...]        # default: a generated corpus in a temp dir
"""
import collections
import os
import re
import sys
import tempfile
import zlib

import mpiray as ray

REDUCERS = 4


@ray.remote(num_returns=REDUCERS)
def map_file(path):
    counts = [collections.Counter() for _ in range(REDUCERS)]
    with open(path, encoding="utf-8", errors="replace") as f:
        for word in re.findall(r"[a-z']+", f.read().lower()):
            # A stable hash: every mapper must send a word to the same reducer (str hash is
            # randomised per process).
            counts[zlib.crc32(word.encode()) % REDUCERS][word] += 1
    return tuple(counts)


@ray.remote
def reduce_counts(*parts):
    total = collections.Counter()
    for p in parts:
        total.update(p)
    return total


def make_corpus(directory, files=8):
    words = "the quick brown fox jumps over the lazy dog while the cat sleeps".split()
    paths = []
    for i in range(files):
        path = os.path.join(directory, f"part-{i}.txt")
        with open(path, "w") as f:
            for j in range(2000):
                f.write(" ".join(words[(j + k + i) % len(words)] for k in range(10)) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    ray.init()
    with tempfile.TemporaryDirectory() as tmp:
        paths = sys.argv[1:] or make_corpus(tmp)
        mapped = [map_file.remote(p) for p in paths]  # each: REDUCERS refs
        reduced = [reduce_counts.remote(*[m[r] for m in mapped]) for r in range(REDUCERS)]
        total = collections.Counter()
        for part in ray.get(reduced):
            total.update(part)
    print(f"{sum(total.values())} words, {len(total)} distinct; most common:", total.most_common(5))
    ray.shutdown()

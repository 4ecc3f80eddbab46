"""faiss spherical k-means on the vectors engram-bench clusters; one JSON line.

Usage: python3 faiss_kmeans.py DATA.npy K ITERATIONS THREADS MAX_POINTS_PER_CENTROID SEED OUT.npy
Writes the trained centroids to OUT.npy (engram-bench scores both sides' centroids the same
way) and prints {"faiss_version", "seconds"} where seconds times `Kmeans.train` only.
Needs numpy and faiss-cpu from PyPI.
"""
import json
import os
import sys

threads = int(sys.argv[4])
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(threads)

import time  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402


def main():
    data = np.load(sys.argv[1])
    k, niter, max_points, seed = (int(a) for a in (sys.argv[2], sys.argv[3], sys.argv[5], sys.argv[6]))
    faiss.omp_set_num_threads(threads)
    km = faiss.Kmeans(data.shape[1], k, niter=niter, spherical=True, seed=seed,
                      max_points_per_centroid=max_points, verbose=False)
    t = time.perf_counter()
    km.train(data)
    seconds = time.perf_counter() - t
    np.save(sys.argv[7], km.centroids.astype(np.float32))
    print(json.dumps({"faiss_version": faiss.__version__, "seconds": seconds}))


main()

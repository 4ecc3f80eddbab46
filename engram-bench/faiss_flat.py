"""faiss IndexFlatIP on the same vectors engram-bench searches, printed as one JSON line.

Usage: python3 faiss_flat.py DATA.npy QUERIES.npy  (needs numpy and faiss-cpu from PyPI)
"""
import json
import sys
import time

import faiss
import numpy as np


def main():
    data = np.load(sys.argv[1])
    queries = np.load(sys.argv[2])
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    out = {"faiss_version": faiss.__version__}
    for threads, tag in ((1, "1t"), (faiss.omp_get_max_threads(), "all")):
        faiss.omp_set_num_threads(threads)
        index.search(queries[:5], 10)  # warm up
        times = []
        for q in queries[:30]:
            t = time.perf_counter()
            index.search(q[None, :], 10)
            times.append(time.perf_counter() - t)
        out[f"top10_ms_{tag}"] = 1e3 * sorted(times)[len(times) // 2]
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            _, ids = index.search(queries, 10)
            runs.append(time.perf_counter() - t)
        out[f"batch_qps_{tag}"] = len(queries) / sorted(runs)[1]
        out["threads_all"] = threads
    out["ids"] = ids[:20].tolist()
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Query latency of exact inner-product search over a large gallery: numpy against FAISS's IndexFlatIP.

Gallery embeddings are random (search cost does not depend on their values) at m-DAN's sizes: the
paper's (K = 2, d = 512: 1,536 floats) and the demo model's (d = 256: 768). One query at a time (an
interactive search) and a batch of queries; medians over repeats, same process and thread count, and
each query's top-k checked equal between the two.

    python benchmarks/gallery_search.py [--gallery 100000] [--repeats 50]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from sat_step import median_ms  # benchmarks/ is on sys.path when a script in it runs
from saved import save  # benchmarks/ is on sys.path when a script in it runs

from glimpse.runtime.gallery import InnerProductIndex
from glimpse.runtime.session import cpu_threads


def main() -> None:
    import faiss

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gallery", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--batch", type=int, default=64, help="queries per batched search")
    a = p.parse_args()
    faiss.omp_set_num_threads(cpu_threads())
    rng = np.random.default_rng(0)
    rows = []
    for dim, label in ((1536, "paper (K=2, d=512)"), (768, "demo (K=2, d=256)")):
        items = rng.standard_normal((a.gallery, dim), dtype=np.float32)
        queries = rng.standard_normal((a.batch, dim), dtype=np.float32)
        indexes = {}
        for backend in ("numpy", "faiss"):
            t = time.perf_counter()
            indexes[backend] = InnerProductIndex(items, backend)
            build = (time.perf_counter() - t) * 1e3
            one = median_ms(lambda i=indexes[backend], q=queries: i.search(q[:1], a.top_k), a.repeats)
            many = median_ms(lambda i=indexes[backend], q=queries: i.search(q, a.top_k), max(5, a.repeats // 5))
            rows.append(
                {"dim": dim, "model": label, "backend": backend, "build_ms": build, "query_ms": one, "batch_ms": many}
            )
        same = np.array_equal(*(indexes[b].search(queries, a.top_k)[1] for b in ("numpy", "faiss")))
        rows[-1]["same_results_as_numpy"] = rows[-2]["same_results_as_numpy"] = bool(same)
    lines = [
        f"| embeddings | backend | index build ms | 1 query ms | {a.batch} queries ms | per query in a batch ms |"
        " top-10 = numpy's |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dim']} ({r['model']}) | {r['backend']} | {r['build_ms']:.0f} | {r['query_ms']:.2f}"
            f" | {r['batch_ms']:.1f} | {r['batch_ms'] / a.batch:.2f}"
            f" | {'yes' if r['same_results_as_numpy'] else 'NO'} |"
        )
    table = "\n".join(lines)
    print(table)
    result = {
        "benchmark": "gallery_search",
        "gallery": a.gallery,
        "top_k": a.top_k,
        "threads": cpu_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "repeats": a.repeats,
        "rows": rows,
    }
    note = (
        f"{a.gallery:,} gallery embeddings, top-{a.top_k}, {cpu_threads()} threads, medians;"
        f" numpy {np.__version__}, faiss-cpu {faiss.__version__}. `python benchmarks/gallery_search.py`"
    )
    save("gallery_search", result, lines, note)


if __name__ == "__main__":
    main()

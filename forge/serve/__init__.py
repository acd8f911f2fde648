"""Serving a trained run over HTTP with LitServe (`forge serve`): load.py checks and loads the run, api.py is the
LitServe API, spec.py the endpoints, generate.py the batched decoding loop, metrics.py /metrics, server.py the
assembly. See docs/serving.md."""

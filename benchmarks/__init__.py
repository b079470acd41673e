"""tinyml's benchmark suite: ``python -m benchmarks`` from the repository root.

Each workload module has ``run(settings) -> core.Workload``; peers of the XOR
and digits workloads live in ``xor_peers.py`` and ``digits_peers.py``.
See ``benchmarks/README.md`` for what every number means.
"""

# workload name (for --only) -> module
WORKLOADS = {
    "xor": "xor",
    "eager": "eager",
    "startup": "startup",
    "engine": "engine",
    "memory": "memory",
    "digits": "digits",
    "sklearn": "sklearn_mlp",
    "ensemble": "ensemble",
    "activations": "activations",
    "cnn": "cnn",
    "lstm": "lstm",
    "wide": "wide",
    "expression": "expression",
}

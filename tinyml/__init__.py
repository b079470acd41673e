"""tinyml: a scalar autograd engine on a flat tape, swept by Numba kernels.

Where things are:
- ``ops.py``      the op-code table (append-only)
- ``graph.py``    the tape: growable struct-of-arrays, compaction, evaluation
- ``kernels.py``  the Numba kernels: forward, backward, update, compaction
- ``value.py``    ``Value``, the scalar handle with micrograd's operators
- ``tensor.py``   ``Tensor``, an N-D array of Values
- ``train.py``    compiled training: ``Program``, ``fit`` for MLPs and any module
- ``module.py``   ``Module``: parameters, state_dict, train/eval, fit/predict/save
- ``nn.py``       ``Activation``, ``Neuron``, ``Layer``, ``MLP`` (and their batch forward)
- ``layers.py``   PyTorch's layers: ``Sequential``, ``Linear``, ``Conv2d``, pooling, batch norm, ...
- ``recurrent.py`` ``RNN``, ``LSTM``, ``GRU`` and their cells, unrolled on the tape
- ``losses.py``   loss functions
- ``ensemble.py`` ``Ensemble``: many models of one architecture trained in one kernel call
- ``sweep.py``    ``sweep``: a grid of models, on all cores or a Dask cluster

Imports run one way, ``layers -> nn -> module -> train -> tensor -> value ->
graph -> kernels -> ops`` (``ensemble``, ``sweep`` and ``sklearn`` on top of
``nn`` and ``train``); only ``io`` (files, above ``nn``) is imported lazily by
the ``save``/``load`` methods below it.
"""

from . import io, losses, optim, tools
from .ensemble import Ensemble
from .graph import Graph, current_graph
from .io import ModelFileError
from .layers import (
    GELU,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
)
from .module import Module
from .nn import MLP, Activation, Layer, Neuron
from .ops import Op
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .sweep import SweepResult, sweep
from .tensor import Tensor
from .tools import draw_dot, gradcheck, to_dot
from .train import (
    EarlyStopping,
    FitOptions,
    History,
    Program,
    TrainingDiverged,
    compile,
    dropout,
    placeholders,
)
from .value import Value

__all__ = [
    "MLP",
    "Ensemble",
    "SweepResult",
    "sweep",
    "Activation",
    "Graph",
    "Layer",
    "Module",
    "Sequential",
    "Linear",
    "ReLU",
    "Tanh",
    "Sigmoid",
    "GELU",
    "SiLU",
    "LeakyReLU",
    "Softplus",
    "Identity",
    "Flatten",
    "Dropout",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "RNN",
    "LSTM",
    "GRU",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "Neuron",
    "Op",
    "Tensor",
    "Value",
    "EarlyStopping",
    "FitOptions",
    "History",
    "Program",
    "TrainingDiverged",
    "compile",
    "dropout",
    "placeholders",
    "current_graph",
    "losses",
    "ModelFileError",
    "draw_dot",
    "gradcheck",
    "to_dot",
    "io",
    "optim",
    "tools",
]
__version__ = "0.1.0"

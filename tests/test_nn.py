"""Neuron, Layer, MLP: the Rust tiny-ml unit tests' behaviour and API.md "Neural networks".

Outputs and gradients are checked against the same network written with the
pure-Python reference (tests/reference.py), built from tinyml's own weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinyml as tm

from . import reference as ref


@pytest.fixture(autouse=True)
def own_graph():
    with tm.Graph() as g:
        yield g


def ref_params(module) -> list[ref.Scalar]:
    """Reference leaves holding ``module.parameters()``' current values, same order."""
    return [ref.Scalar(p.data) for p in module.parameters()]


def ref_layer(params, n_inputs, n_outputs, x, activation):
    """Outputs of a reference layer whose parameters are laid out [w..., b] per neuron."""
    out = []
    for k in range(n_outputs):
        chunk = params[k * (n_inputs + 1) : (k + 1) * (n_inputs + 1)]
        out.append(ref.neuron(chunk[:-1], chunk[-1], x, activation))
    return out


def ref_mlp(params, sizes, x, activations):
    """Reference MLP forward over ``params`` in tinyml's ``parameters()`` order."""
    offset = 0
    h = list(x)
    for n_in, n_out, act in zip(sizes[:-1], sizes[1:], activations):
        count = n_out * (n_in + 1)
        h = ref_layer(params[offset : offset + count], n_in, n_out, h, act)
        offset += count
    assert offset == len(params)
    return h


def ref_sum(values):
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


# ---------------------------------------------------------------------------
# Value ops (the Rust original's value tests)
# ---------------------------------------------------------------------------
def test_sigmoid_at_zero_is_half():
    a = tm.Value(0.0)
    s = a.sigm()
    s.backward()
    assert (s.data, a.grad) == (0.5, 0.25)


def test_ln_3():
    a = tm.Value(3.0)
    b = a.log()
    b.backward()
    assert b.data == pytest.approx(math.log(3.0), rel=1e-15)
    assert a.grad == pytest.approx(1.0 / 3.0, rel=1e-15)


def test_value_arithmetic_and_backward():
    a, b = tm.Value(2.0), tm.Value(3.0)
    c = tm.Value.mul(tm.Value.add(a, b), b)  # (a + b) * b
    c.backward()
    assert (c.data, a.grad, b.grad) == (15.0, 3.0, 8.0)
    d = tm.Value(4.0)
    e = tm.Value.pow(d, 2.0).tanh()
    e.backward()
    assert d.grad == pytest.approx((1 - math.tanh(16.0) ** 2) * 8.0, rel=1e-12, abs=1e-300)


# ---------------------------------------------------------------------------
# Neuron
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "linear", "gelu", "silu", "leaky_relu"])
def test_neuron_forward_and_backward_match_reference(activation):
    n = tm.Neuron(3, activation=activation, seed=7)
    x = [0.5, -1.25, 2.0]
    out = n(x)
    out.backward()
    params = ref_params(n)
    r = ref.neuron(params[:-1], params[-1], x, activation)
    r.backward()
    assert out.data == pytest.approx(r.data, rel=1e-14, abs=1e-15)
    assert [p.grad for p in n.parameters()] == pytest.approx([p.grad for p in params], rel=1e-13, abs=1e-15)


def test_neuron_call_is_forward():
    n = tm.Neuron(2, seed=0)
    assert n([0.3, -0.7]).data == n.forward([0.3, -0.7]).data


def test_neuron_parameters_are_weights_then_bias():
    n = tm.Neuron(4, seed=1)
    assert len(n.weights) == 4
    assert all(type(w) is tm.Value for w in n.weights) and type(n.bias) is tm.Value
    assert n.parameters() == [*n.weights, n.bias]


def test_neuron_zero_grad():
    n = tm.Neuron(3, seed=2)
    n([1.0, 2.0, 3.0]).backward()
    assert any(p.grad != 0.0 for p in n.parameters())
    n.zero_grad()
    assert [p.grad for p in n.parameters()] == [0.0] * 4


def test_neuron_grads_accumulate_until_zeroed():
    n = tm.Neuron(2, activation="linear", seed=3)
    n([1.0, 2.0]).backward()
    n([1.0, 2.0]).backward()
    # linear neuron: d out / d w_i = x_i, d out / d b = 1, twice
    assert [p.grad for p in n.parameters()] == [2.0, 4.0, 2.0]


def test_neuron_tanh_and_sigmoid_ranges():
    t = tm.Neuron(3, activation=tm.Activation.TANH, seed=4)
    s = tm.Neuron(3, activation=tm.Activation.SIGM, seed=4)
    for x in ([100.0, 100.0, 100.0], [-3.0, 0.5, 2.0], [0.0, 0.0, 0.0]):
        assert -1.0 <= t(x).data <= 1.0
        assert 0.0 <= s(x).data <= 1.0
    # same seed, same weights: sigmoid(z) and tanh(z) are linked by tanh(z) = 2 sigmoid(2z) - 1
    x = [0.1, 0.2, 0.3]
    z = tm.Neuron(3, activation="linear", seed=4)(x).data
    assert t(x).data == pytest.approx(math.tanh(z), rel=1e-15)
    assert s(x).data == pytest.approx(ref.sigmoid(z), rel=1e-15)


def test_neuron_inputs_as_values_receive_gradients():
    n = tm.Neuron(2, activation="tanh", seed=5)
    xs = [tm.Value(0.4), tm.Value(-0.9)]
    out = n([xs[0], 1.5 * xs[1]])
    out.backward()
    params = ref_params(n)
    rx = [ref.Scalar(0.4), ref.Scalar(-0.9)]
    r = ref.neuron(params[:-1], params[-1], [rx[0], 1.5 * rx[1]], "tanh")
    r.backward()
    assert [v.grad for v in xs] == pytest.approx([v.grad for v in rx], rel=1e-13)


def test_neuron_mixed_numbers_and_values():
    n = tm.Neuron(3, activation="linear", seed=6)
    v = tm.Value(2.0)
    out = n([1.0, v, np.float64(-1.0)])
    w, b = [p.data for p in n.weights], n.bias.data
    assert out.data == pytest.approx(b + w[0] * 1.0 + w[1] * 2.0 - w[2], rel=1e-14)
    out.backward()
    assert v.grad == pytest.approx(w[1], rel=1e-15)


def test_neuron_numpy_input():
    n = tm.Neuron(3, seed=8)
    x = [0.25, -0.5, 1.0]
    assert n(np.array(x)).data == n(x).data
    assert n(np.array([1, 2, 3])).data == n([1.0, 2.0, 3.0]).data  # integer arrays too
    assert n(tuple(x)).data == n(x).data


def test_neuron_wrong_input_length_names_both_sizes():
    n = tm.Neuron(3, seed=0)
    for bad in ([1.0, 2.0], [1.0] * 5, np.zeros(2)):
        with pytest.raises(ValueError) as info:
            n(bad)
        msg = str(info.value)
        assert "3" in msg and str(len(bad)) in msg


def test_neuron_rejects_2d_and_non_numeric_input():
    n = tm.Neuron(2, seed=0)
    with pytest.raises(ValueError):
        n(np.zeros((1, 2)))
    with pytest.raises(TypeError):
        n(["a", "b"])
    with pytest.raises(TypeError):
        n("ab")


@pytest.mark.parametrize("bad", [0, -1])
def test_neuron_needs_inputs(bad):
    with pytest.raises(ValueError):
        tm.Neuron(bad)


def test_model_input_from_another_graph_is_rejected():
    n = tm.Neuron(2, seed=0)
    with tm.Graph():
        x = tm.Value(1.0)
    with pytest.raises(ValueError, match="graph"):
        n([x, 2.0])


# ---------------------------------------------------------------------------
# Layer
# ---------------------------------------------------------------------------
def test_layer_dimensions():
    layer = tm.Layer(3, 5, seed=0)
    assert len(layer.neurons) == 5
    assert all(len(n.weights) == 3 for n in layer.neurons)
    out = layer([1.0, 2.0, 3.0])
    assert isinstance(out, list) and len(out) == 5
    assert all(type(v) is tm.Value for v in out)


@pytest.mark.parametrize("n_in, n_out", [(1, 1), (3, 5), (7, 2)])
def test_layer_parameter_count(n_in, n_out):
    layer = tm.Layer(n_in, n_out, seed=0)
    assert len(layer.parameters()) == n_out * (n_in + 1)
    assert len({id(p) for p in layer.parameters()}) == n_out * (n_in + 1)


def test_layer_call_is_forward():
    layer = tm.Layer(2, 3, seed=1)
    assert [v.data for v in layer([0.5, 0.5])] == [v.data for v in layer.forward([0.5, 0.5])]


def test_layer_gradient_flow_matches_reference():
    layer = tm.Layer(3, 4, activation="tanh", seed=2)
    xs = [tm.Value(v) for v in (0.3, -0.6, 0.9)]
    outs = layer(xs)
    total = outs[0]
    for o in outs[1:]:
        total = total + o
    total.backward()
    params = ref_params(layer)
    rx = [ref.Scalar(v) for v in (0.3, -0.6, 0.9)]
    rtotal = ref_sum(ref_layer(params, 3, 4, rx, "tanh"))
    rtotal.backward()
    assert total.data == pytest.approx(rtotal.data, rel=1e-14)
    assert [p.grad for p in layer.parameters()] == pytest.approx([p.grad for p in params], rel=1e-13)
    assert [x.grad for x in xs] == pytest.approx([x.grad for x in rx], rel=1e-13)
    assert all(p.grad != 0.0 for p in layer.parameters())


def test_layer_zero_grad():
    layer = tm.Layer(2, 2, seed=3)
    layer([1.0, -1.0])[0].backward()
    layer.zero_grad()
    assert all(p.grad == 0.0 for p in layer.parameters())


# ---------------------------------------------------------------------------
# MLP
# ---------------------------------------------------------------------------
def test_mlp_structure():
    model = tm.MLP(3, [8, 4, 1], 0.01, tm.Activation.TANH)  # the Rust original's positional order
    assert [(layer.n_inputs, len(layer.neurons)) for layer in model.layers] == [(3, 8), (8, 4), (4, 1)]
    assert model.learning_rate == 0.01
    assert len(model.parameters()) == 8 * 4 + 4 * 9 + 1 * 5


def test_mlp_2_4_1_has_17_parameters():
    assert len(tm.MLP(2, [4, 1]).parameters()) == 17


def test_mlp_forward_matches_reference():
    model = tm.MLP(3, [4, 4, 2], activation="tanh", seed=11)
    x = [0.5, -0.25, 1.0]
    out = model(x)
    assert len(out) == 2
    r = ref_mlp(ref_params(model), [3, 4, 4, 2], x, ["tanh"] * 3)
    assert [v.data for v in out] == pytest.approx([v.data for v in r], rel=1e-14)
    assert [v.data for v in model.forward(x)] == [v.data for v in out]


def test_mlp_backward_matches_reference():
    model = tm.MLP(2, [3, 2], activation="relu", output_activation="sigmoid", seed=12)
    x = [0.7, -0.2]
    out = model(x)
    loss = (out[0] - 1.0) ** 2 + (out[1] + 0.5) ** 2
    loss.backward()
    params = ref_params(model)
    r = ref_mlp(params, [2, 3, 2], x, ["relu", "sigmoid"])
    rloss = (r[0] - 1.0) ** 2 + (r[1] + 0.5) ** 2
    rloss.backward()
    assert loss.data == pytest.approx(rloss.data, rel=1e-14)
    assert [p.grad for p in model.parameters()] == pytest.approx([p.grad for p in params], rel=1e-12)


def test_output_activation():
    x = [1.0, -2.0]
    linear_out = tm.MLP(2, [3, 1], activation="relu", output_activation="linear", seed=5)
    same_act = tm.MLP(2, [3, 1], activation="relu", seed=5)
    assert linear_out.output_activation == tm.Activation.LINEAR
    assert same_act.output_activation == tm.Activation.RELU  # None: the last layer uses `activation`
    for model, acts in ((linear_out, ["relu", "linear"]), (same_act, ["relu", "relu"])):
        r = ref_mlp(ref_params(model), [2, 3, 1], x, acts)
        assert model(x)[0].data == pytest.approx(r[0].data, rel=1e-14, abs=1e-300)


def test_output_activation_can_go_negative_with_linear():
    # relu hidden + linear output reaches negative values somewhere; relu output never does
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(50, 2))
    for seed in range(5):
        lin = tm.MLP(2, [3, 1], activation="relu", output_activation=tm.Activation.LINEAR, seed=seed)
        rel = tm.MLP(2, [3, 1], activation="relu", seed=seed)
        assert min(rel(x)[0].data for x in xs) >= 0.0
        if min(lin(x)[0].data for x in xs) < 0.0:
            return
    pytest.fail("a linear output layer never produced a negative value")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("relu", tm.Activation.RELU),
        ("tanh", tm.Activation.TANH),
        ("sigmoid", tm.Activation.SIGMOID),
        ("sigm", tm.Activation.SIGMOID),
        ("linear", tm.Activation.LINEAR),
        ("TANH", tm.Activation.TANH),
    ],
)
def test_string_activations(name, expected):
    assert tm.Activation.parse(name) is expected
    model = tm.MLP(2, [2, 1], activation=name, seed=0)
    assert model.activation is expected
    x = [0.3, -0.4]
    r = ref_mlp(ref_params(model), [2, 2, 1], x, [expected.value] * 2)
    assert model(x)[0].data == pytest.approx(r[0].data, rel=1e-14, abs=1e-300)


def test_activation_aliases_and_unknown_name():
    assert tm.Activation.SIGM is tm.Activation.SIGMOID
    assert tm.Activation.TANH == "tanh"
    with pytest.raises(ValueError, match="unknown activation"):
        tm.MLP(2, [1], activation="sofmax")
    with pytest.raises(TypeError):
        tm.MLP(2, [1], activation=3)


def test_seed_reproducibility():
    a = tm.MLP(3, [4, 2], seed=42)
    b = tm.MLP(3, [4, 2], seed=42)
    c = tm.MLP(3, [4, 2], seed=43)
    da = [p.data for p in a.parameters()]
    assert da == [p.data for p in b.parameters()]
    assert da != [p.data for p in c.parameters()]
    assert [p.data for p in tm.Neuron(5, seed=1).parameters()] == [
        p.data for p in tm.Neuron(5, seed=1).parameters()
    ]
    assert [p.data for p in tm.Layer(2, 3, seed=9).parameters()] == [
        p.data for p in tm.Layer(2, 3, seed=9).parameters()
    ]


def test_seed_none_gives_fresh_weights():
    a = tm.MLP(4, [8, 1])
    b = tm.MLP(4, [8, 1])
    assert [p.data for p in a.parameters()] != [p.data for p in b.parameters()]


def test_fan_in_init_bounds():
    model = tm.MLP(50, [20, 3], seed=0)  # init="fan_in" is the default
    for layer, fan_in in zip(model.layers, (50, 20)):
        bound = 1.0 / math.sqrt(fan_in)
        values = np.array([p.data for p in layer.parameters()])
        assert np.all(np.abs(values) <= bound)
        # uniform over the whole interval, not a narrower one, and both signs
        assert values.max() > 0.8 * bound and values.min() < -0.8 * bound
        biases = np.array([n.bias.data for n in layer.neurons])
        assert np.any(biases != 0.0)


def test_uniform01_init():
    model = tm.MLP(10, [30, 2], init="uniform01", seed=0)
    for layer in model.layers:
        weights = np.array([w.data for n in layer.neurons for w in n.weights])
        assert np.all(weights >= 0.0) and np.all(weights < 1.0)
        assert weights.max() > 0.9 and weights.min() < 0.1
        assert all(n.bias.data == 0.0 for n in layer.neurons)


def test_unknown_init_is_rejected():
    with pytest.raises(ValueError, match="init"):
        tm.MLP(2, [1], init="xavier")


def test_mlp_zero_grad_and_alias():
    model = tm.MLP(2, [3, 1], seed=1)
    for zero in (model.zero_grad, model.zero_gradients):
        model([1.0, 2.0])[0].backward()
        assert any(p.grad != 0.0 for p in model.parameters())
        zero()
        assert all(p.grad == 0.0 for p in model.parameters())


def test_update_is_p_minus_lr_grad_exactly():
    model = tm.MLP(3, [4, 2], learning_rate=0.037, seed=3)
    out = model([0.2, -0.4, 0.6])
    loss = (out[0] - 1.0) ** 2 + out[1] ** 2
    loss.backward()
    before = [(p.data, p.grad) for p in model.parameters()]
    model.update()
    after = [p.data for p in model.parameters()]
    assert after == [d - 0.037 * g for d, g in before]
    assert after != [d for d, _ in before]


def test_update_keeps_values_already_built():
    """Rows built before update() keep the parameters they were built with (as micrograd)."""
    model = tm.MLP(2, [2, 1], learning_rate=0.5, seed=4)
    out = model([1.0, 1.0])[0]
    out.backward()
    pending = model([1.0, 1.0])[0]  # built, not yet evaluated
    expected = out.data
    model.update()
    assert pending.data == expected
    assert model([1.0, 1.0])[0].data != expected


def test_learning_step_reduces_loss():
    model = tm.MLP(3, [4, 4, 1], 0.05, tm.Activation.TANH, seed=0)
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    ys = [1.0, -1.0, -1.0, 1.0]

    def total_loss():
        loss = 0.0
        for x, y in zip(xs, ys):
            loss = loss + (model(x)[0] - y) ** 2
        return loss

    first = total_loss()
    model.zero_grad()
    first.backward()
    model.update()
    assert total_loss().data < first.data


def test_eager_training_matches_reference_sgd():
    """Twenty epochs of full-batch SGD on XOR, step for step the same as the reference."""
    lr = 0.3
    model = tm.MLP(2, [4, 1], learning_rate=lr, seed=21)
    params = [p.data for p in model.parameters()]
    xs = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    ys = [0.0, 1.0, 1.0, 0.0]
    losses, ref_losses = [], []
    for _ in range(20):
        loss = 0.0
        for x, y in zip(xs, ys):
            loss = loss + (model(x)[0] - y) ** 2
        model.zero_grad()
        loss.backward()
        model.update()
        losses.append(loss.data)

        rp = [ref.Scalar(v) for v in params]
        rloss = ref_sum([(ref_mlp(rp, [2, 4, 1], x, ["tanh", "tanh"])[0] - y) ** 2 for x, y in zip(xs, ys)])
        rloss.backward()
        params = [p.data - lr * p.grad for p in rp]
        ref_losses.append(rloss.data)
    assert losses == pytest.approx(ref_losses, rel=1e-12)
    assert [p.data for p in model.parameters()] == pytest.approx(params, rel=1e-11, abs=1e-14)
    assert losses[-1] < losses[0]


def test_layer_sizes_validation():
    with pytest.raises(ValueError):
        tm.MLP(2, [])
    with pytest.raises(ValueError):
        tm.MLP(2, [3, 0])
    with pytest.raises(TypeError):
        tm.MLP(2, [3.5])


def test_mlp_output_is_list_of_values():
    out = tm.MLP(2, [3, 2], seed=0)(np.array([0.1, 0.2]))
    assert isinstance(out, list) and len(out) == 2 and all(type(v) is tm.Value for v in out)


def test_mlp_wrong_input_length_names_both_sizes():
    model = tm.MLP(4, [2, 1], seed=0)
    with pytest.raises(ValueError) as info:
        model([1.0, 2.0, 3.0])
    assert "4" in str(info.value) and "3" in str(info.value)


# ---------------------------------------------------------------------------
# A model whose graph was cleared: its parameters are freed Values
# ---------------------------------------------------------------------------
def test_model_of_a_cleared_graph_raises_clearly(own_graph):
    """API.md: a freed Value gives a clear exception, never silent garbage.

    Graph.clear() frees the parameters too (its docstring: models built in the
    graph must be rebuilt); using such a model must say so.
    """
    model = tm.MLP(2, [3, 1], seed=0)
    own_graph.clear()
    with pytest.raises(RuntimeError, match="freed"):
        model([1.0, 2.0])
    with pytest.raises(RuntimeError, match="freed"):
        model.update()
    with pytest.raises(RuntimeError, match="freed"):
        model.zero_grad()


def test_neuron_of_a_cleared_graph_raises_clearly(own_graph):
    neuron = tm.Neuron(2, seed=0)
    own_graph.clear()
    with pytest.raises(RuntimeError, match="freed"):
        neuron([1.0, 2.0])
    with pytest.raises(RuntimeError, match="freed"):
        neuron.zero_grad()


# ---------------------------------------------------------------------------
# Copies: copy.deepcopy and pickle give an independent model on its own graph
# ---------------------------------------------------------------------------
XOR_X = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
XOR_Y = [0.0, 1.0, 1.0, 0.0]


def eager_step(model) -> list[float]:
    """One eager SGD step on XOR; returns the gradients it used."""
    with model.graph:
        loss = sum(((model(x)[0] - y) ** 2 for x, y in zip(XOR_X, XOR_Y)), tm.Value(0.0))
        model.zero_grad()
        loss.backward()
        grads = [p.grad for p in model.parameters()]
        model.update()
    return grads


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_model_is_independent_of_the_original(how):
    import copy
    import pickle

    with tm.Graph():
        model = tm.MLP(2, [4, 1], 0.1, tm.Activation.TANH, seed=3)
    before = [p.data for p in model.parameters()]
    twin = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    assert twin.graph is not model.graph
    assert [p.data for p in twin.parameters()] == before
    assert twin.predict(np.array(XOR_X)).tolist() == model.predict(np.array(XOR_X)).tolist()
    # the same step on each gives the same gradients, and moves only its own model
    g_twin = eager_step(twin)
    assert [p.data for p in model.parameters()] == before
    assert g_twin == eager_step(model)
    assert [p.data for p in twin.parameters()] == [p.data for p in model.parameters()]
    # each graph's compaction renumbers only its own handles
    for graph in (twin.graph, model.graph):
        graph.collect()
    twin.fit(np.array(XOR_X), np.array(XOR_Y), epochs=20, progress=False)
    after_twin = [p.data for p in twin.parameters()]
    assert after_twin != [p.data for p in model.parameters()]
    model.graph.collect()
    assert [p.data for p in twin.parameters()] == after_twin


def test_a_shallow_copy_of_a_value_keeps_its_row_alive():
    import copy

    with tm.Graph() as g:
        a = tm.Value(2.0)
        b = copy.copy(a * 3.0)
        del a
        g.collect()
        assert b.data == 6.0 and (b * 2.0).data == 12.0
        with pytest.raises(TypeError, match="deepcopy"):
            copy.copy(g)


def test_complex_inputs_are_refused_not_truncated():
    with tm.Graph():
        model = tm.MLP(2, [3, 1], 0.1, seed=0)
        with pytest.raises(TypeError, match="real numbers"):
            model(np.array([1 + 5j, 2.0]))
        with pytest.raises(TypeError, match="real numbers"):
            model.predict(np.array([[1 + 5j, 2.0]]))

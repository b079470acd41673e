"""FitOptions: fit's options checked once, in one object, handed down unchanged."""

import numpy as np
import pytest

import tinyml as tm

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = np.array([[0.0], [1.0], [1.0], [0.0]])


def test_options_are_normalised_and_frozen():
    o = tm.FitOptions(epochs=np.int64(5), l2=1, batch_size=np.int32(2))
    assert type(o.epochs) is int and o.epochs == 5
    assert type(o.l2) is float and type(o.batch_size) is int
    with pytest.raises(AttributeError):
        o.epochs = 3


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"epochs": -1}, ValueError, "epochs"),
        ({"epochs": 2.0}, TypeError, "epochs"),
        ({"report_every": 0}, ValueError, "report_every"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"reduction": "max"}, ValueError, "reduction"),
        ({"callback": 3}, TypeError, "callback"),
        ({"l1": -0.1}, ValueError, "l1"),
        ({"dropout": 1.0}, ValueError, "dropout"),
        ({"lr": -0.5}, ValueError, "lr"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"optimizer": "adam"}, TypeError, "tm.optim"),
        ({"epochs": 2**63}, ValueError, "at most"),
        ({"batch_size": 10**30}, ValueError, "at most"),
    ],
)
def test_bad_options_are_refused_when_built(kwargs, error, words):
    with pytest.raises(error, match=words):
        tm.FitOptions(**kwargs)


def test_a_report_period_past_the_last_epoch_reports_the_last_one_only():
    # 10**30 does not fit in int64: it used to raise OverflowError from the epoch arithmetic
    model = tm.MLP(2, [3, 1], 0.1, seed=0)
    history = model.fit(X, Y, epochs=7, loss="sse", report_every=10**30)
    assert list(history.epoch) == [0, 6]
    assert tm.FitOptions(report_every=10**30).report_every == 2**62


def test_optimizer_class_instead_of_instance_says_how_to_fix():
    model = tm.MLP(2, [3, 1], seed=0)
    with pytest.raises(TypeError, match=r"class Adam itself.*tm\.optim\.Adam\(model\.parameters\(\)\)"):
        model.fit(X, Y, epochs=1, optimizer=tm.optim.Adam, progress=False)


def test_negative_learning_rate_refused_where_given():
    with pytest.raises(ValueError, match="learning_rate must be a finite number >= 0"):
        tm.MLP(2, [3, 1], learning_rate=-0.1)
    model = tm.MLP(2, [3, 1], seed=0)
    model.learning_rate = -1.0
    with pytest.raises(ValueError, match="the model's learning_rate"):
        model.fit(X, Y, epochs=1, progress=False)


def test_fit_with_equals_fit():
    """The same options through Program.fit and Program.fit_with give the same model."""
    results = []
    for use_options in (False, True):
        model = tm.MLP(2, [3, 1], seed=1)
        xs = tm.placeholders(2, model.graph)
        ys = tm.placeholders(1, model.graph)
        loss = tm.losses.mse(model(xs), ys)
        program = tm.compile(loss, xs + ys, model.parameters())
        samples = np.hstack([X, Y])
        if use_options:
            h = program.fit_with(
                samples, tm.FitOptions(epochs=7, lr=0.3, batch_size=2, seed=4, progress=False)
            )
        else:
            h = program.fit(samples, 7, lr=0.3, batch_size=2, seed=4, progress=False)
        results.append((h.loss, [p.data for p in model.parameters()]))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


def test_fit_with_wants_options():
    model = tm.MLP(2, [1], seed=0)
    xs = tm.placeholders(2, model.graph)
    program = tm.compile(model(xs)[0], xs, model.parameters())
    with pytest.raises(TypeError, match="FitOptions"):
        program.fit_with(X, {"epochs": 3})


# -- error messages that say how to fix the mistake ------------------------------------
def test_backward_on_a_tensor_of_many_elements_says_reduce_it():
    with tm.Graph():
        t = tm.Tensor([[1.0, 2.0], [3.0, 4.0]])
        with pytest.raises(ValueError, match=r"shape \(2, 2\).*t\.sum\(\)\.backward\(\)"):
            (t * t).backward()
        one = tm.Tensor([[3.0]])
        (one * one).backward()  # one element: backpropagates, as PyTorch
        np.testing.assert_array_equal(one.grad, [[6.0]])


def test_cross_entropy_on_one_output_suggests_binary_cross_entropy():
    model = tm.MLP(2, [3, 1], seed=0, output_activation="linear")
    with pytest.raises(ValueError, match="binary_cross_entropy"):
        model.fit(X, np.array([0, 1, 1, 0]), epochs=1, loss="cross_entropy", progress=False)


def test_labels_shaped_n_by_1_suggest_1d_labels():
    model = tm.MLP(2, [3, 2], seed=0, output_activation="linear")
    with pytest.raises(ValueError, match=r"shape \(4, 1\).*1-D array of shape \(4,\)"):
        model.fit(X, np.array([[0], [1], [1], [0]]), epochs=1, loss="cross_entropy", progress=False)


def test_saving_into_a_missing_folder_names_the_folder(tmp_path):
    missing = tmp_path / "no" / "such"
    with pytest.raises(FileNotFoundError, match=r"folder '.*no/such' does not exist.*makedirs"):
        tm.MLP(2, [1], seed=0).save(missing / "model.npz")
    assert not (tmp_path / "no").exists()


def test_summary_lists_layers_shapes_and_parameter_counts():
    model = tm.MLP(64, [32, 16, 10], activation="relu", output_activation="linear", seed=0)
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert lines[0] == "MLP: 64 inputs -> 32 -> 16 -> 10"
    rows = [line.split() for line in lines if line.startswith("Layer(")]
    assert [r[0] + r[1] + r[2] for r in rows] == [
        "Layer(64,32,relu)",
        "Layer(32,16,relu)",
        "Layer(16,10,linear)",
    ]
    assert [r[3] + r[4] for r in rows] == ["(n,32)", "(n,16)", "(n,10)"]
    counts = [int(r[5].replace(",", "")) for r in rows]
    assert counts == [64 * 32 + 32, 32 * 16 + 16, 16 * 10 + 10]
    assert f"Total params: {sum(counts):,}" in text and sum(counts) == len(model.parameters())

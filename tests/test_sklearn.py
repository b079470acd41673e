"""tinyml.sklearn: scikit-learn's own estimator checks, and behaviour against scikit-learn's MLPs."""

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from tinyml.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([MLPClassifier(random_state=0), MLPRegressor(random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


RNG = np.random.default_rng(0)
XC = RNG.normal(size=(60, 4))
YC = np.array(["a", "b", "c"])[(XC[:, 0] > 0).astype(int) + (XC[:, 1] > 0.5)]
YB = (XC[:, 0] + XC[:, 2] > 0).astype(int)
YR = np.column_stack([XC @ np.array([1.0, -1.0, 0.5, 0.0]), np.tanh(XC[:, 0])])

# settings under which scikit-learn's MLPs and ours take the same steps: same
# initialisation (both draw it from random_state), no shuffling, no alpha (ours
# also decays the intercepts), SGD (Adam places epsilon differently)
SAME = dict(solver="sgd", shuffle=False, alpha=0.0, random_state=3, learning_rate_init=0.05)


def pair(kind, **kwargs):
    import sklearn.neural_network as skn

    ours = {"clf": MLPClassifier, "reg": MLPRegressor}[kind](**kwargs)
    theirs = {"clf": skn.MLPClassifier, "reg": skn.MLPRegressor}[kind](**kwargs)
    return ours, theirs


def fit_both(ours, theirs, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
        theirs.fit(X, y)


def assert_same_model(ours, theirs, rtol=1e-9):
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("y", [YC, YB], ids=["multiclass", "binary"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_classifier_takes_sklearns_steps(y, momentum):
    ours, theirs = pair("clf", hidden_layer_sizes=(7,), max_iter=15, batch_size=16, momentum=momentum, **SAME)
    fit_both(ours, theirs, XC, y)
    assert_same_model(ours, theirs)
    np.testing.assert_allclose(ours.predict_proba(XC), theirs.predict_proba(XC), rtol=1e-9, atol=1e-14)
    np.testing.assert_array_equal(ours.predict(XC), theirs.predict(XC))
    assert ours.predict(XC).dtype == theirs.predict(XC).dtype


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_regressor_takes_sklearns_steps(activation):
    ours, theirs = pair("reg", hidden_layer_sizes=(6, 5), activation=activation, max_iter=12, **SAME)
    fit_both(ours, theirs, XC, YR)
    assert_same_model(ours, theirs)
    np.testing.assert_allclose(ours.predict(XC), theirs.predict(XC), rtol=1e-9)
    ours1, theirs1 = pair("reg", hidden_layer_sizes=(6,), max_iter=5, **SAME)
    fit_both(ours1, theirs1, XC, YR[:, 0])
    assert ours1.predict(XC).shape == (60,)
    assert_same_model(ours1, theirs1)


@pytest.mark.parametrize("learning_rate", ["invscaling", "adaptive"])
def test_learning_rate_schedules_as_sklearn(learning_rate):
    # momentum 0: with a changing learning rate, PyTorch's momentum buffer and
    # scikit-learn's velocity take different steps (see the module docstring)
    kwargs = dict(SAME, learning_rate_init=0.2, power_t=0.3, tol=1e-2, n_iter_no_change=2, momentum=0.0)
    ours, theirs = pair("reg", hidden_layer_sizes=(5,), learning_rate=learning_rate, max_iter=40, **kwargs)
    fit_both(ours, theirs, XC, YR[:, 0])
    assert_same_model(ours, theirs)


def test_stopping_rule_as_sklearn():
    """tol/n_iter_no_change on the training loss: the same epoch as scikit-learn's."""
    ours, theirs = pair("clf", hidden_layer_sizes=(5,), max_iter=500, tol=1e-3, n_iter_no_change=4, **SAME)
    fit_both(ours, theirs, XC, YC)
    assert ours.n_iter_ < 500, "the rule must stop training early for this test to mean anything"
    assert_same_model(ours, theirs)
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-9)


def test_early_stopping_as_sklearn():
    kwargs = dict(SAME, learning_rate_init=0.3, n_iter_no_change=3, validation_fraction=0.25)
    ours, theirs = pair("clf", hidden_layer_sizes=(5,), max_iter=300, early_stopping=True, **kwargs)
    fit_both(ours, theirs, XC, YC)
    assert ours.n_iter_ < 300
    assert_same_model(ours, theirs)
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
    assert ours.best_validation_score_ == theirs.best_validation_score_


def test_adam_close_to_sklearn():
    ours, theirs = pair("clf", hidden_layer_sizes=(8,), max_iter=20, shuffle=False, random_state=1)
    fit_both(ours, theirs, XC, YC)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)


def test_partial_fit_as_sklearn():
    ours, theirs = pair("clf", hidden_layer_sizes=(5,), momentum=0.9, **SAME)
    for k in range(4):
        part = slice(15 * k, 15 * k + 15)
        ours.partial_fit(XC[part], YC[part], classes=np.unique(YC))
        theirs.partial_fit(XC[part], YC[part], classes=np.unique(YC))
    assert_same_model(ours, theirs)
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(XC, YC)


def test_warm_start_continues():
    ours, theirs = pair("reg", hidden_layer_sizes=(5,), max_iter=4, warm_start=True, **SAME)
    for _ in range(2):
        fit_both(ours, theirs, XC, YR[:, 0])
    assert_same_model(ours, theirs)


def test_pickle_clone_pipeline_gridsearch():
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(XC, YC)
        twin = pickle.loads(pickle.dumps(clf))
        np.testing.assert_array_equal(twin.predict_proba(XC), clf.predict_proba(XC))
        twin.partial_fit(XC, YC)  # the optimiser's state travelled with it
        clf.partial_fit(XC, YC)
        np.testing.assert_array_equal(twin.predict_proba(XC), clf.predict_proba(XC))
        assert clone(clf).get_params() == clf.get_params() and not hasattr(clone(clf), "coefs_")
        pipe = make_pipeline(
            StandardScaler(), MLPRegressor(hidden_layer_sizes=(4,), max_iter=20, random_state=0)
        )
        search = GridSearchCV(pipe, {"mlpregressor__alpha": [1e-4, 1e-2]}, cv=2).fit(XC, YR[:, 0])
    assert set(search.cv_results_["param_mlpregressor__alpha"]) == {1e-4, 1e-2}
    assert search.predict(XC).shape == (60,)


def test_defaults_are_sklearns():
    import sklearn.neural_network as skn

    for ours, theirs in ((MLPClassifier(), skn.MLPClassifier()), (MLPRegressor(), skn.MLPRegressor())):
        assert ours.get_params() == theirs.get_params()


def test_lbfgs_refused_with_a_way_out():
    with pytest.raises(ValueError, match="lbfgs.*is not available.*solver='adam' or 'sgd'"):
        MLPClassifier(solver="lbfgs").fit(XC, YC)


def test_divergence_raises_sklearns_value_error():
    # scikit-learn raises ValueError("Solver produced non-finite parameter weights ...");
    # tinyml's TrainingDiverged (a FloatingPointError) must not leak out of a drop-in
    for est in pair("reg", solver="sgd", learning_rate_init=10.0, max_iter=20, random_state=0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # scikit-learn's overflow in its NumPy
            warnings.simplefilter("ignore", ConvergenceWarning)  # scikit-learn's, before its ValueError
            with pytest.raises(ValueError, match="non-finite parameter weights"):
                est.fit(XC * 1e150, YR[:, 0])

"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` trained by tinyml's kernels.

Drop-in for ``sklearn.neural_network.MLPClassifier``/``MLPRegressor``: the
same parameter names and defaults, the same fitted attributes (``coefs_``,
``intercepts_``, ``loss_curve_``, ``n_iter_``, ``classes_``, ...), the same
stopping rules (``tol``/``n_iter_no_change`` on the training loss, or on the
validation score with ``early_stopping``), the same initialisation (Glorot
uniform from ``random_state``), ``partial_fit`` and ``warm_start``. They work
in ``Pipeline``, ``GridSearchCV`` and ``clone`` and pass scikit-learn's
``check_estimator``. This module is the only one of tinyml that imports
scikit-learn (``pip install tinyml-tape[sklearn]``).

Differences from scikit-learn, all small:

- ``solver="lbfgs"`` is not available (tinyml trains with stochastic
  optimisers); ``fit`` says so. ``sample_weight`` is not accepted.
- ``alpha`` is tinyml's L2 penalty ``alpha / (2 * batch_size) * sum(p**2)`` per
  step, over every parameter: the intercepts decay too (scikit-learn leaves
  them alone), and the last partial batch uses the full batch's weight.
- Adam adds ``epsilon`` to ``sqrt(v_hat)`` (PyTorch's form) rather than to
  ``sqrt(v)``; SGD's momentum buffer is PyTorch's too (in gradient units, times
  the current learning rate), which takes the same steps as scikit-learn's
  velocity while the learning rate is constant, not while ``invscaling`` or
  ``adaptive`` change it. The shuffling order comes from tinyml's generator,
  seeded from ``random_state``.

Training runs in chunks of epochs, one kernel call each: with the training
loss as the stopping criterion, a chunk is as long as the epochs that must
pass before a stop is possible, so the result is the epoch-by-epoch rule's
exactly. ``early_stopping=True`` needs the validation score after every
epoch, so it trains one epoch per call.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d

from . import losses, optim
from .graph import Graph
from .lr_scheduler import LRScheduler
from .nn import MLP
from .train import FitOptions, TrainingDiverged, compile, placeholders

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)


ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


def _forward(coefs, intercepts, activation: str, X: np.ndarray) -> np.ndarray:
    """The network's last pre-activation for ``X``, in NumPy (prediction needs no kernel)."""
    a = X
    last = len(coefs) - 1
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        a = a @ w + b
        if i < last:
            if activation == "relu":
                a = np.maximum(a, 0.0)
            elif activation == "tanh":
                a = np.tanh(a)
            elif activation == "logistic":
                a = 0.5 * (1.0 + np.tanh(0.5 * a))  # the logistic function, without overflow
    return a


class _InvScaling(LRScheduler):
    """scikit-learn's ``learning_rate="invscaling"``: ``lr_init / (t + 1) ** power_t``,
    ``t`` the samples seen, advanced by one epoch's samples per epoch."""

    def __init__(self, optimizer, t0: int, n: int, power_t: float) -> None:
        self.t0, self.n, self.power_t = t0, n, power_t
        super().__init__(optimizer)

    def _closed_form(self, epochs: np.ndarray) -> np.ndarray:
        t = self.t0 + self.n * epochs.astype(np.float64)
        return self.base_lrs[0] / (t + 1.0) ** self.power_t


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, checks, the training loop."""

    _estimator_type_loss: str = ""

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun

    # -- parameter checks (at fit, as scikit-learn) -----------------------------------
    def _check_params(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral):
            sizes = [sizes]
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError(
                f"hidden_layer_sizes must be an int or a sequence of ints, got {self.hidden_layer_sizes!r}"
            ) from None
        if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive ints, got {self.hidden_layer_sizes!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.solver == "lbfgs":
            raise ValueError(
                "solver='lbfgs' is not available in tinyml.sklearn (its kernels train with stochastic "
                "optimisers); use solver='adam' or 'sgd', or sklearn.neural_network for lbfgs"
            )
        if self.solver not in ("adam", "sgd"):
            raise ValueError(f"solver must be 'adam' or 'sgd', got {self.solver!r}")
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            raise ValueError(
                f"learning_rate must be 'constant', 'invscaling' or 'adaptive', got {self.learning_rate!r}"
            )
        if self.batch_size != "auto" and not (
            isinstance(self.batch_size, numbers.Integral)
            and not isinstance(self.batch_size, bool)
            and self.batch_size >= 1
        ):
            raise ValueError(f"batch_size must be 'auto' or an int >= 1, got {self.batch_size!r}")
        if not (isinstance(self.max_iter, numbers.Integral) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be an int >= 1, got {self.max_iter!r}")
        n_iter = self.n_iter_no_change
        if not (
            (isinstance(n_iter, numbers.Integral) and n_iter >= 1)
            or (isinstance(n_iter, float) and n_iter == np.inf)
        ):
            raise ValueError(f"n_iter_no_change must be an int >= 1 or np.inf, got {n_iter!r}")
        for name, lo, hi, closed in (
            ("alpha", 0.0, np.inf, "left"),
            ("learning_rate_init", 0.0, np.inf, "neither"),
            ("power_t", 0.0, np.inf, "left"),
            ("tol", 0.0, np.inf, "left"),
            ("momentum", 0.0, 1.0, "both"),
            ("validation_fraction", 0.0, 1.0, "left"),
            ("beta_1", 0.0, 1.0, "left"),
            ("beta_2", 0.0, 1.0, "left"),
            ("epsilon", 0.0, np.inf, "neither"),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
            ok_lo = v >= lo if closed in ("left", "both") else v > lo
            ok_hi = v <= hi if closed in ("right", "both") else v < hi
            if not (ok_lo and ok_hi):
                left = "[" if closed in ("left", "both") else "("
                right = "]" if closed == "both" else ")"
                bounds = f"{left}{lo}, {hi}{right}"
                raise ValueError(f"{name} must be in {bounds}, got {v!r}")
        return [int(s) for s in sizes]

    # -- state that is not pickled: the tinyml model, program and optimiser --------
    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_tm", None)
        opt = getattr(self, "_tm", {}).get("optimizer")
        if opt is not None:
            state["_optimizer_state"] = opt.state_dict()
        return state

    def _machinery(self, n_in: int, sizes: list[int]) -> dict:
        """The tinyml model holding ``coefs_``/``intercepts_``, its training program and optimiser."""
        tm_state = self.__dict__.get("_tm")
        if tm_state is not None:
            return tm_state
        graph = Graph()
        model = MLP(
            n_in,
            sizes,
            self.learning_rate_init,
            ACTIVATIONS[self.activation],
            seed=0,
            output_activation="sigmoid" if self.out_activation_ == "logistic" else "linear",
            graph=graph,
        )
        xs = placeholders(n_in, graph)
        ys = placeholders(sizes[-1], graph)
        outputs = model(xs)
        if self.out_activation_ == "softmax":
            loss = losses.cross_entropy([outputs], [ys])
        elif self.out_activation_ == "logistic":
            loss = losses.binary_cross_entropy(outputs, ys)
        else:  # scikit-learn's squared error, whose gradient is that of half the sum over the outputs
            loss = losses.mse(outputs, ys, reduction="sum") / 2.0
        program = compile(loss, xs + ys, model.parameters())
        tm_state = {"model": model, "program": program, "optimizer": None}
        self._tm = tm_state
        self._load_params(tm_state)
        return tm_state

    def _optimizer(self, tm_state: dict, incremental: bool):
        """The optimiser: a new one for each ``fit`` (as scikit-learn), kept across ``partial_fit``."""
        opt = tm_state["optimizer"]
        saved = self.__dict__.pop("_optimizer_state", None)
        if opt is not None and incremental:
            return opt
        params = tm_state["model"].parameters()
        if self.solver == "adam":
            opt = optim.Adam(params, self.learning_rate_init, (self.beta_1, self.beta_2), self.epsilon)
        else:
            opt = optim.SGD(
                params,
                self.learning_rate_init,
                momentum=self.momentum,
                nesterov=bool(self.nesterovs_momentum) and self.momentum > 0,
            )
        if incremental and saved is not None and int(saved["kind"]) == opt.kind:
            opt.load_state_dict(saved)  # partial_fit after unpickling
        tm_state["optimizer"] = opt
        return opt

    def _load_params(self, tm_state: dict) -> None:
        """Copy ``coefs_``/``intercepts_`` into the tinyml model (neuron by neuron: weights, bias)."""
        flat = np.concatenate(
            [np.hstack([w.T, b[:, None]]).ravel() for w, b in zip(self.coefs_, self.intercepts_)]
        )
        model = tm_state["model"]
        g = model.graph
        g.evaluate()
        g.data[model.parameter_rows(), :] = flat[:, None]

    def _read_params(self, tm_state: dict) -> None:
        model = tm_state["model"]
        flat = model.graph.data[model.parameter_rows(), 0]
        at = 0
        for i, w in enumerate(self.coefs_):
            n_in, n_out = w.shape
            block = flat[at : at + n_out * (n_in + 1)].reshape(n_out, n_in + 1)
            self.coefs_[i] = np.ascontiguousarray(block[:, :n_in].T)
            self.intercepts_[i] = block[:, n_in].copy()
            at += n_out * (n_in + 1)

    def _initialize(self, layer_units: list[int], rng) -> None:
        """scikit-learn's initialisation: Glorot uniform, the same numbers for the same random_state."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(layer_units)
        self.coefs_, self.intercepts_ = [], []
        factor = 2.0 if self.activation == "logistic" else 6.0
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            self.coefs_.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
            self.intercepts_.append(rng.uniform(-bound, bound, fan_out))
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [b.copy() for b in self.intercepts_]
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf
        self.__dict__.pop("_tm", None)
        self.__dict__.pop("_optimizer_state", None)

    # -- training -----------------------------------------------------------------
    def _fit(self, X, y, incremental: bool):
        sizes = self._check_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        n_out = Y.shape[1]
        layer_units = [X.shape[1], *sizes, n_out]
        rng = check_random_state(self.random_state)
        if first_pass:
            self._initialize(layer_units, rng)
        elif [w.shape[0] for w in self.coefs_] + [self.coefs_[-1].shape[1]] != layer_units:
            raise ValueError(
                f"warm_start/partial_fit: the network has layers {[w.shape[0] for w in self.coefs_]}"
                f" + [{self.coefs_[-1].shape[1]}], the data and parameters ask for {layer_units}"
            )
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        tm_state = self._machinery(X.shape[1], [*sizes, n_out])
        self._load_params(tm_state)  # coefs_ may have been set by hand since
        diverged = None
        try:
            self._fit_stochastic(X, Y, tm_state, rng, incremental)
        except TrainingDiverged as e:  # scikit-learn's error for it, a ValueError
            diverged = e
        self._read_params(tm_state)
        if diverged is not None or not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain large values "
                "and need to be preprocessed."
            ) from diverged
        return self

    def _fit_stochastic(self, X, Y, tm_state, rng, incremental: bool) -> None:
        program = tm_state["program"]
        opt = self._optimizer(tm_state, incremental)
        early_stopping = self.early_stopping
        if early_stopping:
            # stratified for binary labels only, as scikit-learn
            stratify = Y[:, 0] if self._is_classifier and Y.shape[1] == 1 else None
            X, X_val, Y, Y_val = train_test_split(
                X, Y, random_state=rng, test_size=self.validation_fraction, stratify=stratify
            )
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the size of your "
                    "dataset."
                )
            if self._is_classifier:
                y_val = self._label_binarizer.inverse_transform(Y_val)
            else:
                y_val = Y_val.ravel() if Y_val.shape[1] == 1 else Y_val
        n = X.shape[0]
        if self.batch_size == "auto":
            batch = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                    stacklevel=4,
                )
            batch = int(np.clip(self.batch_size, 1, n))
        samples = np.hstack([X, Y]).astype(np.float64)
        adaptive = self.solver == "sgd" and self.learning_rate == "adaptive"
        scheduler = None
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            opt.lr = self.learning_rate_init
            scheduler = _InvScaling(opt, self.t_, n, self.power_t)
        patience = self.n_iter_no_change
        max_iter = 1 if incremental else self.max_iter
        self.n_iter_ = 0
        while True:
            if early_stopping:
                chunk = 1
            elif patience == np.inf:
                chunk = max_iter - self.n_iter_
            else:  # the epochs that must pass before the rule can stop training: same result
                chunk = int(min(max_iter - self.n_iter_, patience + 1 - self._no_improvement_count))
            options = FitOptions(
                epochs=chunk,
                optimizer=opt,
                batch_size=batch,
                report_every=1,
                shuffle=self.shuffle,
                seed=int(rng.randint(np.iinfo(np.int32).max)),
                l2=self.alpha / (2.0 * batch),
                progress=False,
                scheduler=scheduler,
            )
            history = program.fit_with(samples, options)
            # scikit-learn reports the squared error as half the mean over the outputs too
            reported = history.loss / (Y.shape[1] if not self._is_classifier else 1)
            for loss in reported.tolist():
                self.n_iter_ += 1
                self.t_ += n
                self.loss_ = loss
                self.loss_curve_.append(loss)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
                if not early_stopping:
                    self._count_no_improvement_loss()
            if early_stopping:
                self._read_params(tm_state)
                self._count_no_improvement_score(X_val, y_val)
            if self._no_improvement_count > patience:
                what = "Validation score" if early_stopping else "Training loss"
                msg = f"{what} did not improve more than tol={self.tol:f} for {patience} consecutive epochs."
                if adaptive and opt.lr > 1e-6:
                    opt.lr = opt.lr / 5.0
                    if self.verbose:
                        print(msg + f" Setting learning rate to {opt.lr:f}")
                    self._no_improvement_count = 0
                else:
                    if self.verbose:
                        print(msg + " Stopping.")
                    break
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                    "optimization hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=4,
                )
                break
        if early_stopping:
            self.coefs_ = [c.copy() for c in self._best_coefs]
            self.intercepts_ = [b.copy() for b in self._best_intercepts]
            self._load_params(tm_state)

    def _count_no_improvement_loss(self) -> None:
        if self.loss_curve_[-1] > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if self.loss_curve_[-1] < self.best_loss_:
            self.best_loss_ = self.loss_curve_[-1]

    def _count_no_improvement_score(self, X_val, y_val) -> None:
        score = self._score_raw(X_val, y_val)
        self.validation_scores_.append(score)
        if self.verbose:
            print(f"Validation score: {score:f}")
        if score < self.best_validation_score_ + self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_coefs = [c.copy() for c in self.coefs_]
            self._best_intercepts = [b.copy() for b in self.intercepts_]

    def fit(self, X, y):
        """Fit the model to ``X`` (n_samples, n_features) and ``y``; returns self."""
        return self._fit(X, y, incremental=False)

    def _output(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return _forward(self.coefs_, self.intercepts_, self.activation, X.astype(np.float64, copy=False))


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier``, trained by tinyml.

    Binary problems get one logistic output and the log loss, multiclass ones a
    softmax and the cross-entropy, as in scikit-learn. See the module docstring
    for the few differences.
    """

    _is_classifier = True

    @property
    def out_activation_(self) -> str:
        return "logistic" if len(self.classes_) == 2 else "softmax"

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, multi_output=False, dtype=(np.float64, np.float32), reset=reset)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if type_of_target(y) not in ("binary", "multiclass"):
            raise ValueError(f"MLPClassifier: unsupported target type {type_of_target(y)!r}")
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental and set(classes) != set(self.classes_):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the previous call to "
                    f"fit. Previously got {self.classes_}, `y` has {classes}"
                )
            if len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                    f"'y' has {classes}."
                )
        if len(self.classes_) < 2:
            raise ValueError(
                f"MLPClassifier needs samples of at least 2 classes to learn from; y has 1 class "
                f"({self.classes_[0]!r})"
            )
        self.n_outputs_ = 1 if len(self.classes_) == 2 else len(self.classes_)
        Y = self._label_binarizer.transform(y).astype(np.float64)
        return X, Y

    def _decode(self, Y: np.ndarray) -> np.ndarray:
        return self._label_binarizer.inverse_transform(Y)

    def _score_raw(self, X, y) -> float:
        p = self._proba_raw(X)
        if not np.isfinite(p).all():
            return np.nan
        return accuracy_score(y, self.classes_[p.argmax(1)])

    def _proba_raw(self, X) -> np.ndarray:
        z = _forward(self.coefs_, self.intercepts_, self.activation, X)
        if z.shape[1] == 1:
            p = 0.5 * (1.0 + np.tanh(0.5 * z[:, 0]))
            return np.column_stack([1.0 - p, p])
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``X``, ``y``; ``classes`` (every label there will be) on the first call."""
        first = not hasattr(self, "classes_")
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on the last call to partial_fit, "
                f"was: {self.classes_!r}"
            )
        return self._fit(X, y, incremental=True)

    def predict(self, X) -> np.ndarray:
        """The most probable class of each sample."""
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, (n_samples, n_classes), columns in ``classes_`` order."""
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self._proba_raw(X.astype(np.float64, copy=False))

    def predict_log_proba(self, X) -> np.ndarray:
        return np.log(self.predict_proba(X))


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor``, trained by tinyml.

    The squared-error loss (half the mean square, as scikit-learn's); several
    outputs when ``y`` has several columns.
    """

    _is_classifier = False
    out_activation_ = "identity"

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
    ):
        self.loss = loss
        super().__init__(
            hidden_layer_sizes,
            activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
        )

    def _check_params(self) -> list[int]:
        if self.loss != "squared_error":
            raise ValueError(
                f"MLPRegressor: loss must be 'squared_error' in tinyml.sklearn, got {self.loss!r}"
            )
        return super()._check_params()

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_data(
            self, X, y, multi_output=True, y_numeric=True, dtype=(np.float64, np.float32), reset=reset
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        self.n_outputs_ = Y.shape[1]
        return X, Y.astype(np.float64)

    def _score_raw(self, X, y) -> float:
        pred = _forward(self.coefs_, self.intercepts_, self.activation, X)
        if not np.isfinite(pred).all():
            return np.nan
        return r2_score(y, pred.ravel() if pred.shape[1] == 1 else pred)

    def partial_fit(self, X, y):
        """One epoch over ``X``, ``y``, continuing from the current parameters."""
        return self._fit(X, y, incremental=True)

    def predict(self, X) -> np.ndarray:
        """Predictions, (n_samples,) for one target, else (n_samples, n_outputs)."""
        out = self._output(X)
        return out.ravel() if out.shape[1] == 1 else out

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


__all__ = ["MLPClassifier", "MLPRegressor"]

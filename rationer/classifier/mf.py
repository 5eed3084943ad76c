"""Matrix factorisation over prompts x models (RouteLLM's MF router, multi-model form).

Every correctness table says, per prompt, which of several models answered
right. One shared projection ``h = W z`` of the standardised prompt input
``z`` and one vector ``u_m`` per model give P(model m right) =
sigmoid(u_m . h + b_m); all models' outcomes train ``W`` together, so the
4-model MMLU-Pro table teaches the projection more than the strong/weak pair
alone would. Routing needs only two model slots, ``strong`` and ``weak``, so
serving collapses to two linear logits (``z @ (W u_m) + b_m``) and the ONNX
graph is a scaler, one MatMul and a sigmoid.

The exported output mimics the ``gain3`` classifier's class probabilities
(loss, same, gain) under independence of the two models' errors, so the
serving scorer's ``P(gain) - P(loss)`` is exactly P(strong right) - P(weak
right) and the scorer needs no new code path.

Training-only (numpy, scipy, onnx).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

Array = npt.NDArray[np.float64]
STRONG, WEAK = "strong", "weak"


@dataclass
class MFModel:
    mean: Array
    scale: Array
    models: list[str]
    w: Array  # (d, k)
    u: Array  # (M, k)
    b: Array  # (M,)

    def logits(self, x: npt.ArrayLike) -> Array:
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        out: Array = (z @ self.w) @ self.u.T + self.b
        return out

    def serving_weights(self) -> tuple[Array, Array]:
        """(d, 2) weights and (2,) biases for the strong and weak slots, scaler folded out."""
        idx = [self.models.index(STRONG), self.models.index(WEAK)]
        return self.w @ self.u[idx].T, self.b[idx]

    def predict_proba(self, x: npt.ArrayLike) -> Array:
        """(n, 3): P(only weak right), P(no change), P(only strong right)."""
        idx = [self.models.index(STRONG), self.models.index(WEAK)]
        p = 1.0 / (1.0 + np.exp(-self.logits(x)[:, idx]))
        ps, pw = p[:, 0], p[:, 1]
        loss, gain = pw * (1 - ps), ps * (1 - pw)
        return np.stack([loss, 1.0 - loss - gain, gain], axis=1)


def outcome_matrix(sub: pd.DataFrame, aux: tuple[str, ...] | list[str] = ()) -> pd.DataFrame:
    """(n, 2 + len(aux)) right/wrong table: the strong and weak slots, then the
    ``m:<model>`` columns named in ``aux`` (NaN where a table lacks the model)."""
    import pandas as pd

    cols = {STRONG: sub["strong"].astype(float).to_numpy(), WEAK: sub["weak"].astype(float).to_numpy()}
    for name in aux:
        col = f"m:{name}"
        cols[col] = sub[col].to_numpy(dtype=float) if col in sub else np.full(len(sub), np.nan)
    return pd.DataFrame(cols)


def fit_mf(
    x: npt.ArrayLike, y: npt.ArrayLike, models: list[str], rank: int = 16, l2: float = 1e-3, seed: int = 7,
    max_iter: int = 300, groups: npt.ArrayLike | None = None,
) -> MFModel:  # fmt: skip
    """``y``: (n, M) with 1/0 for right/wrong and NaN where a table has no such model.

    ``groups`` (one int per row, e.g. the source data set) gives every group
    its own per-model bias during training. Pooled data sets differ mostly in
    base rates (MMLU-Pro is harder, with another strong model); without group
    biases the shared projection spends itself on telling the data sets apart
    (10 options vs 4) instead of ranking prompts within one, which measurably
    hurt MMLU and GSM8K validation APGR. Serving keeps the row-weighted mean
    bias: the threshold and Platt map are read off validation data anyway.
    """
    from scipy.optimize import minimize

    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    mean, scale = xa.mean(axis=0), xa.std(axis=0) + 1e-6
    z = (xa - mean) / scale
    obs = ~np.isnan(ya)
    target = np.where(obs, ya, 0.0)
    n_obs = max(1, int(obs.sum()))
    d, m = z.shape[1], ya.shape[1]
    g_idx = (
        np.zeros(len(z), dtype=np.int64) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    )
    n_g = int(g_idx.max()) + 1
    onehot = np.eye(n_g)[g_idx]  # (n, G)
    rng = np.random.default_rng(seed)
    # Each group's and column's base rate as the starting bias: the factors only learn deviations.
    rate = np.clip((onehot.T @ target) / np.maximum(onehot.T @ obs, 1), 0.02, 0.98)
    theta0 = np.concatenate(
        [rng.normal(scale=0.01, size=d * rank), rng.normal(scale=0.1, size=m * rank), np.log(rate / (1 - rate)).ravel()]
    )

    def unpack(theta: Array) -> tuple[Array, Array, Array]:
        w = theta[: d * rank].reshape(d, rank)
        return w, theta[d * rank : d * rank + m * rank].reshape(m, rank), theta[d * rank + m * rank :].reshape(n_g, m)

    def loss_grad(theta: Array) -> tuple[float, Array]:
        w, u, b = unpack(theta)
        h = z @ w
        logit = h @ u.T + onehot @ b
        p = 1.0 / (1.0 + np.exp(-logit))
        ll = np.logaddexp(0.0, logit) - target * logit
        loss = float((ll * obs).sum() / n_obs + l2 * ((w**2).sum() + (u**2).sum()))
        g = (p - target) * obs / n_obs
        gw = z.T @ (g @ u) + 2 * l2 * w
        gu = g.T @ h + 2 * l2 * u
        return loss, np.concatenate([gw.ravel(), gu.ravel(), (onehot.T @ g).ravel()])

    res = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    w, u, b = unpack(res.x)
    weights = onehot.sum(axis=0) / len(z)
    return MFModel(mean, scale, list(models), w, u, weights @ b)


def export_onnx(model: MFModel) -> tuple[bytes, str]:
    """ONNX graph X (n, d) -> probabilities (n, 3), as :meth:`MFModel.predict_proba`."""
    from onnx import TensorProto, helper, numpy_helper

    a, c = model.serving_weights()
    a_f = (a / model.scale[:, None]).astype(np.float32)  # fold the scaler into the weights
    c_f = (c - (model.mean / model.scale) @ a).astype(np.float32)
    inits = [
        numpy_helper.from_array(a_f, "A"),
        numpy_helper.from_array(c_f, "c"),
        numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "i1"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "i0"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "i2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["X", "A"], ["xa"]),
        helper.make_node("Add", ["xa", "c"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p"]),
        helper.make_node("Slice", ["p", "i0", "i1", "i1"], ["ps"]),
        helper.make_node("Slice", ["p", "i1", "i2", "i1"], ["pw"]),
        helper.make_node("Sub", ["one", "ps"], ["qs"]),
        helper.make_node("Sub", ["one", "pw"], ["qw"]),
        helper.make_node("Mul", ["pw", "qs"], ["loss"]),
        helper.make_node("Mul", ["ps", "qw"], ["gain"]),
        helper.make_node("Sub", ["one", "loss"], ["t"]),
        helper.make_node("Sub", ["t", "gain"], ["same"]),
        helper.make_node("Concat", ["loss", "same", "gain"], ["probabilities"], axis=1),
    ]
    d = a_f.shape[0]
    graph = helper.make_graph(
        nodes,
        "rationer_mf_router",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, d])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3])],
        inits,
    )
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="rationer")
    onx.ir_version = 8
    return onx.SerializeToString(), "probabilities"

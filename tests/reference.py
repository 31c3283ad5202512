"""Independent float64 numpy implementations, written from the papers' equations.

Nothing here imports lightning_tx: these are what the package is checked against.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


# --------------------------------------------------------------------------- LogME
def reference_logme(f: np.ndarray, y: np.ndarray, regression: bool = False) -> float:
    """thuml/LogME's default solver (``LogME().fit``): a thin SVD of the [N, D] matrix and
    a loop over target columns, fixed-point iteration of at most 11 steps."""
    f = f.astype(np.float64)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > 1e-10
    u, sigma = u[:, keep], s[keep] ** 2
    if regression:
        columns = [y[:, i] for i in range(y.shape[1])]
    else:
        columns = [(y == c).astype(np.float64) for c in range(int(y.max()) + 1)]
    evidences = []
    for column in columns:
        x2 = (u.T @ column) ** 2
        res_x2 = column @ column - x2.sum()
        alpha = beta = 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / (t + sigma) ** 2).sum()
            res2 = (x2 / (1 + sigma / t) ** 2).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * sigma))  # the reference's k-term log det
            - beta / 2 * res2
            - alpha / 2 * m2
            - n / 2 * np.log(2 * np.pi)
        )
        evidences.append((evidence / n, alpha, len(sigma)))
    return evidences


def log_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log p(y | F, alpha, beta) of Bayesian linear regression, straight from its definition:
    y ~ N(0, I/beta + F F^T / alpha), computed through the D x D posterior precision."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, logdet = np.linalg.slogdet(a)
    return (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - beta / 2 * np.sum((y - f @ m) ** 2)
        - alpha / 2 * m @ m
        - 0.5 * logdet
        - n / 2 * np.log(2 * np.pi)
    )


def max_log_evidence(f: np.ndarray, y: np.ndarray) -> float:
    """Evidence maximised over (alpha, beta) by a generic optimiser, per frame."""
    result = minimize(
        lambda z: -log_evidence(f, y, np.exp(z[0]), np.exp(z[1])),
        x0=np.zeros(2),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
    )
    return -result.fun / f.shape[0]


# --------------------------------------------------------------------------- H-score
def reference_hscore(f: np.ndarray, y: np.ndarray) -> float:
    """Bao et al. 2019: tr(pinv(cov f) cov(E[f|y])), covariances over samples."""
    f = f.astype(np.float64)
    cov_f = np.cov(f, rowvar=False, bias=True)
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(0)
    cov_g = np.cov(g, rowvar=False, bias=True)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-12, hermitian=True) @ cov_g))


def reference_ledoit_wolf(x: np.ndarray) -> float:
    """Ledoit & Wolf (2004) shrinkage towards mu*I, for centred samples (sklearn's formula)."""
    x = x - x.mean(0)
    n, d = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / d
    pi_hat = sum(np.sum((np.outer(row, row) - s) ** 2) for row in x) / n**2 / d
    delta = np.sum((s - mu * np.eye(d)) ** 2) / d
    return min(pi_hat, delta) / delta


def reference_hscore_shrinkage(f: np.ndarray, y: np.ndarray) -> float:
    """Ibrahim et al. 2022: tr(((1-a) cov f + a mu I)^-1 (1-a) cov(E[f|y]))."""
    f = f.astype(np.float64)
    alpha = reference_ledoit_wolf(f)
    cov_f = np.cov(f, rowvar=False, bias=True)
    d = f.shape[1]
    shrunk = (1 - alpha) * cov_f + alpha * np.trace(cov_f) / d * np.eye(d)
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(0)
    cov_g = np.cov(g, rowvar=False, bias=True)
    return float(np.trace(np.linalg.solve(shrunk, (1 - alpha) * cov_g)))


# --------------------------------------------------------------------------- GBC
def reference_gbc(f: np.ndarray, y: np.ndarray, spherical: bool = False) -> float:
    """Pandy et al. 2022: -sum over ordered class pairs of exp(-Bhattacharyya distance)."""
    f = f.astype(np.float64)
    classes = np.unique(y)
    stats = []
    for c in classes:
        fc = f[y == c]
        var = fc.var(0)
        if spherical:
            var = np.full_like(var, var.mean())
        stats.append((fc.mean(0), var))
    total = 0.0
    for i, (mu1, v1) in enumerate(stats):
        for j, (mu2, v2) in enumerate(stats):
            if i == j:
                continue
            v = (v1 + v2) / 2
            distance = np.sum((mu1 - mu2) ** 2 / v) / 8 + 0.5 * (
                np.sum(np.log(v)) - 0.5 * np.sum(np.log(v1)) - 0.5 * np.sum(np.log(v2))
            )
            total -= np.exp(-distance)
    return total


# --------------------------------------------------------------------------- standardized LogME
def reference_logme_standardized(f: np.ndarray, y: np.ndarray) -> float:
    """LogME of z-scored features (constant dimensions dropped) and centred one-hot targets,
    through the same SVD-based solver as the reference (N > D: no rank deficiency)."""
    f = f.astype(np.float64)
    std = f.std(0)
    f = (f[:, std > 0] - f[:, std > 0].mean(0)) / std[std > 0]
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    scores = []
    for c in range(int(y.max()) + 1):
        column = (y == c).astype(np.float64)
        column = column - column.mean()
        x2 = (u.T @ column) ** 2
        res_x2 = column @ column - x2.sum()
        alpha = beta = 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / (t + sigma) ** 2).sum()
            res2 = (x2 / (1 + sigma / t) ** 2).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * sigma))
            - beta / 2 * res2
            - alpha / 2 * m2
            - n / 2 * np.log(2 * np.pi)
        )
        scores.append(evidence / n)
    return float(np.mean(scores))


# --------------------------------------------------------------------------- k-NN
def reference_knn(f: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int) -> float:
    """Leave-one-group-out k-NN majority vote on z-scored features, by brute force; ties go
    to the class whose nearest voter is nearest."""
    f = (f - f.mean(0)) / f.std(0)
    correct = 0
    for i in range(len(f)):
        candidates = [j for j in range(len(f)) if groups[j] != groups[i]]
        distances = [float(np.sum((f[i] - f[j]) ** 2)) for j in candidates]
        order = [candidates[j] for j in np.argsort(distances, kind="stable")[:k]]
        votes: dict[int, list[int]] = {}
        for rank, j in enumerate(order):
            votes.setdefault(int(y[j]), []).append(rank)
        best = max(votes, key=lambda c: (len(votes[c]), -min(votes[c])))
        correct += best == y[i]
    return correct / len(f)


# --------------------------------------------------------------------------- class SWD
def reference_ridge_probe(f: np.ndarray, y: np.ndarray, num_classes: int, relative_penalties) -> float:
    """Leave-one-out by refitting: for each penalty, M ridge regressions (an unpenalised
    intercept, one-hot targets, features z-scored over all M samples), each without one
    sample and predicting it; the penalty with the least squared error gives the accuracy."""
    x = f.astype(np.float64)
    x = (x - x.mean(0)) / x.std(0)
    m, d = x.shape
    targets = np.eye(num_classes)[y]
    best = None
    for relative in relative_penalties:
        penalty = relative * (x**2).sum() / d  # the mean eigenvalue of X^T X
        error, correct = 0.0, 0
        for i in range(m):
            rest = np.arange(m) != i
            xr, tr = x[rest], targets[rest]
            x_mean, t_mean = xr.mean(0), tr.mean(0)
            xc = xr - x_mean
            weights = np.linalg.solve(xc.T @ xc + penalty * np.eye(d), xc.T @ (tr - t_mean))
            prediction = t_mean + (x[i] - x_mean) @ weights
            error += ((prediction - targets[i]) ** 2).sum()
            correct += int(prediction.argmax() == y[i])
        if best is None or error < best[0]:
            best = (error, correct / m)
    return best[1]


def reference_class_swd(f: np.ndarray, y: np.ndarray, directions: np.ndarray) -> float:
    """Mean over class pairs of sqrt(mean over directions of W2^2 / pooled variance), with
    the 1-D W2 from POT."""
    import ot

    projected = f @ directions
    classes = [c for c in np.unique(y) if np.sum(y == c) >= 2]
    values = []
    for i, a in enumerate(classes):
        for b in classes[i + 1 :]:
            pa, pb = projected[y == a], projected[y == b]
            per_direction = []
            for column in range(directions.shape[1]):
                w2 = ot.wasserstein_1d(pa[:, column], pb[:, column], p=2)
                spread = (pa[:, column].var() + pb[:, column].var()) / 2
                per_direction.append(w2 / spread)
            values.append(np.sqrt(np.mean(per_direction)))
    return float(np.mean(values))


# --------------------------------------------------------------------------- voice probe
def reference_shared_evidence_penalty(x: np.ndarray, targets: np.ndarray) -> float:
    """alpha / beta at the maximum of the evidence of one Bayesian linear model for all C
    columns of the centred targets (shared alpha, beta; the intercept integrated out), by a
    numerical optimiser on the evidence itself (not the fixed point)."""
    from scipy.optimize import minimize

    t = targets - targets.mean(0)
    m, d = x.shape
    m -= 1  # centred: the data span the M - 1 dimensions orthogonal to the constant
    c = t.shape[1]
    gram, cross = x.T @ x, x.T @ t

    def negative_evidence(log_precisions):
        alpha, beta = np.exp(log_precisions)
        a = alpha * np.eye(d) + beta * gram
        mean = beta * np.linalg.solve(a, cross)  # [D, C]
        residual = ((t - x @ mean) ** 2).sum()
        _, log_det = np.linalg.slogdet(a)
        evidence = (
            c * (d / 2 * np.log(alpha) + m / 2 * np.log(beta) - log_det / 2 - m / 2 * np.log(2 * np.pi))
            - beta / 2 * residual
            - alpha / 2 * (mean**2).sum()
        )
        return -evidence

    best = minimize(negative_evidence, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12,
                                                                                   "maxiter": 20000})  # fmt: skip
    alpha, beta = np.exp(best.x)
    return alpha / beta


def reference_voice_probe(f: np.ndarray, y: np.ndarray, speakers, num_classes: int, penalty: float) -> float:
    """Leave-one-speaker-out by refitting: for each held-out group (a speaker, or a sample
    when ``speakers`` is None), a ridge regression with an unpenalised intercept on the other
    samples (features z-scored over all of them), to one-hot targets that give each class
    the weight it has in all samples (its indicator times its count in all samples over its
    count in the fold), predicting the group's samples whose class the other groups have
    (arg-max over the classes the fold has); at ``penalty`` 0, the minimum-norm least-squares
    weights."""
    x = f.astype(np.float64)
    x = (x - x.mean(0)) / x.std(0)
    m, d = x.shape
    targets = np.eye(num_classes)[y]
    groups = np.arange(m) if speakers is None else np.asarray(speakers)
    correct, scored = 0, 0
    for group in np.unique(groups):
        held = groups == group
        fold_counts = targets[~held].sum(0)
        present = fold_counts > 0
        weight = np.where(present, targets.sum(0) / np.maximum(fold_counts, 1), 0.0)
        xr, tr = x[~held], targets[~held] * weight
        x_mean, t_mean = xr.mean(0), tr.mean(0)
        xc = xr - x_mean
        if penalty == 0:  # the limit: the minimum-norm least-squares fit
            weights = np.linalg.lstsq(xc, tr - t_mean, rcond=None)[0]
        else:
            weights = np.linalg.solve(xc.T @ xc + penalty * np.eye(d), xc.T @ (tr - t_mean))
        prediction = np.where(present, t_mean + (x[held] - x_mean) @ weights, -np.inf)
        predictable = np.isin(y[held], y[~held])  # a class the other groups have
        correct += int((prediction.argmax(1) == y[held])[predictable].sum())
        scored += int(predictable.sum())
    return correct / scored


def reference_logistic_probe(f: np.ndarray, y: np.ndarray, folds: np.ndarray, num_classes: int, scored=None) -> float:
    """Cross-validation by refitting: for each fold id in ``folds`` ([M]), the multinomial
    logistic regression with an unpenalised intercept, minimising the summed negative
    log-likelihood of the other folds' samples plus half the squared norm of the weights
    (features z-scored over all samples) over the classes those samples have, by BFGS with
    its analytic gradient; the accuracy over the ``scored`` samples (all by default)."""
    x = f.astype(np.float64)
    x = (x - x.mean(0)) / x.std(0)
    m, d = x.shape
    a = np.hstack([x, np.ones((m, 1))])
    predicted = np.empty(m, dtype=np.int64)

    def objective(theta, rows, onehot):
        w = theta.reshape(d + 1, onehot.shape[1])
        logits = a[rows] @ w
        logits = logits - logits.max(1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        value = -(onehot * log_p).sum() + 0.5 * (w[:d] ** 2).sum()
        grad = a[rows].T @ (np.exp(log_p) - onehot)
        grad[:d] += w[:d]
        return value, grad.ravel()

    for fold in np.unique(folds):
        held = folds == fold
        classes = np.unique(y[~held])  # the classes this fold can learn
        onehot = (y[~held, None] == classes[None, :]).astype(np.float64)
        best = minimize(objective, np.zeros((d + 1) * len(classes)), args=(~held, onehot), jac=True, method="BFGS",
                        options={"gtol": 1e-10, "maxiter": 10000})  # fmt: skip
        predicted[held] = classes[(a[held] @ best.x.reshape(d + 1, len(classes))).argmax(1)]
    scored = np.ones(m, dtype=bool) if scored is None else np.asarray(scored)
    return float((predicted == y)[scored].mean())

"""Writes ammuon_vectors.json: AM-Muon trajectories in 50 digits.

Written from the math of docs/variants.md ("AM-Muon"), independently of adamem (it imports only
mpmath). Per block (a matrix, or both for ``scope="global"``):

    a = sum prev_lr <g, d> - lr <d - g, g + lambd d> / (1 + lambd),
    b = sum lr ||d - g||^2 / (1 + lambd),      beta = select(a, b, cap)  (ALGORITHMS.md §7),
    w = (1 - beta) / (1 + lambd),  d' = d + w (g - d),  u = d' + w (g - d') if nesterov else d',
    x' = (1 - lr mu) x - lr s(m, n) NS(u),

with Newton-Schulz NS on the wide orientation after division by the Frobenius norm (at least
eps), and the first step d' = u = g. Gradients are those of a quadratic with fixed noise:
g = (i + 1) x + 4 sin(1 + 7 t + 3 i + j) at step t for matrix i and entry j.
Run ``python tests/data/make_ammuon_vectors.py`` to regenerate the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from mpmath import mp, mpf, sin, sqrt

mp.dps = 50

SHAPES = [(3, 2), (2, 4)]
LRS = [mpf("0.05"), mpf("0.05"), mpf("0.02"), mpf(0), mpf("0.08"), mpf("0.05")]
NOISE = mpf(4)  # large enough for betas inside (0, cap) as well as at 0 and the cap
MUON_COEFFICIENTS = (mpf("3.4445"), mpf("-4.7750"), mpf("2.0315"))


def matmul(p, q):
    return [
        [sum((p[i][k] * q[k][j] for k in range(len(q))), mpf(0)) for j in range(len(q[0]))]
        for i in range(len(p))
    ]


def transpose(p):
    return [list(row) for row in zip(*p)]


def combine(alpha, p, beta, q):
    return [[alpha * x + beta * y for x, y in zip(rp, rq)] for rp, rq in zip(p, q)]


def dot(p, q):
    return sum((x * y for rp, rq in zip(p, q) for x, y in zip(rp, rq)), mpf(0))


def newton_schulz(u, coefficients, steps, eps):
    a, b, c = coefficients
    tall = len(u) > len(u[0])
    x = transpose(u) if tall else u
    norm = max(sqrt(dot(x, x)), eps)
    x = [[v / norm for v in row] for row in x]
    for _ in range(steps):
        gram = matmul(x, transpose(x))
        poly = combine(b, gram, c, matmul(gram, gram))
        x = combine(a, x, 1, matmul(poly, x))
    return transpose(x) if tall else x


def select(num, den, cap):
    if den > 0:
        return min(max(num / den, mpf(0)), cap)
    return cap if num > 0 else mpf(0)


def lr_factor(shape, adjust_lr_fn):
    rows, cols = shape
    if adjust_lr_fn == "match_rms_adamw":
        return mpf("0.2") * sqrt(max(rows, cols))
    return sqrt(max(mpf(1), mpf(rows) / cols))


def as_stored(value):
    """The float64 value the file stores: the trajectory starts from exactly the inputs the
    tests read (Newton-Schulz amplifies input rounding well above 1e-12)."""
    return mpf(float(value))


def noise(shape, index, step):
    rows, cols = shape
    return [
        [as_stored(NOISE * sin(1 + 7 * step + 3 * index + r * cols + c)) for c in range(cols)]
        for r in range(rows)
    ]


def gradient(x, index, step):
    return combine(index + 1, x, 1, noise((len(x), len(x[0])), index, step))


def initial(shape, index):
    rows, cols = shape
    return [
        [as_stored(sin(mpf(5 + 11 * index + r * cols + c))) for c in range(cols)]
        for r in range(rows)
    ]


def trajectory(*, lambd, cap, weight_decay, nesterov, adjust_lr_fn, scope, steps=6):
    lambd, cap, weight_decay = mpf(lambd), mpf(cap), mpf(weight_decay)
    xs = [initial(shape, i) for i, shape in enumerate(SHAPES)]
    ds, prev_lr, betas = None, None, []
    for step in range(steps):
        lr = LRS[step]
        gs = [gradient(x, i, step) for i, x in enumerate(xs)]
        if ds is None:
            new_ds, us = gs, gs
        else:
            sums = []
            for g, d in zip(gs, ds):
                diff = combine(1, d, -1, g)
                pulled = combine(1, g, lambd, d)
                sums.append(
                    (
                        prev_lr * dot(g, d) - lr * dot(diff, pulled) / (1 + lambd),
                        lr * dot(diff, diff) / (1 + lambd),
                    )
                )
            if scope == "global":
                total = select(sum(a for a, _ in sums), sum(b for _, b in sums), cap)
                step_betas = [total] * len(sums)
            else:
                step_betas = [select(a, b, cap) for a, b in sums]
            betas.append([float(beta) for beta in step_betas])
            new_ds, us = [], []
            for g, d, beta in zip(gs, ds, step_betas):
                w = (1 - beta) / (1 + lambd)
                new_d = combine(1, d, w, combine(1, g, -1, d))
                new_ds.append(new_d)
                us.append(combine(1, new_d, w, combine(1, g, -1, new_d)) if nesterov else new_d)
        new_xs = []
        for x, u, shape in zip(xs, us, SHAPES):
            o = newton_schulz(u, MUON_COEFFICIENTS, 5, mpf("1e-7"))
            new_xs.append(
                combine(1 - lr * weight_decay, x, -lr * lr_factor(shape, adjust_lr_fn), o)
            )
        xs, ds, prev_lr = new_xs, new_ds, lr
    return {
        "betas": betas,
        "x_final": [[[float(v) for v in row] for row in x] for x in xs],
        "d_final": [[[float(v) for v in row] for row in d] for d in ds],
    }


CASES = {
    "default": dict(
        lambd=0.1, cap=0.95, weight_decay=0.1, nesterov=True, adjust_lr_fn=None, scope="tensor"
    ),
    "plain_match_rms": dict(
        lambd=0.3,
        cap=0.9,
        weight_decay=0.0,
        nesterov=False,
        adjust_lr_fn="match_rms_adamw",
        scope="tensor",
    ),
    "global_no_pull": dict(
        lambd=0.0,
        cap=0.95,
        weight_decay=0.05,
        nesterov=True,
        adjust_lr_fn="original",
        scope="global",
    ),
}

if __name__ == "__main__":

    def floats(matrix):
        return [[float(v) for v in row] for row in matrix]

    inputs = {
        "shapes": SHAPES,
        "lrs": [float(lr) for lr in LRS],
        "x0": [floats(initial(shape, i)) for i, shape in enumerate(SHAPES)],
        "noise": [
            [floats(noise(shape, i, step)) for i, shape in enumerate(SHAPES)]
            for step in range(len(LRS))
        ],
    }
    vectors = [
        {"name": name, "options": options, **inputs, "expected": trajectory(**options)}
        for name, options in CASES.items()
    ]
    path = Path(__file__).with_name("ammuon_vectors.json")
    path.write_text(json.dumps(vectors, indent=1) + "\n")
    print(f"wrote {len(vectors)} vectors to {path}")

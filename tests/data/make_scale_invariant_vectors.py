"""Writes scale_invariant_vectors.json: AM-AdamW with ``scale_invariant=True`` in 50 digits.

Written from the math of docs/variants.md ("Scale-invariant pull"), independently of adamem
(it imports only mpmath): with ``M = 1 / (P (1 + lambd))``,

    num = Gamma / lr - mu <x, d - g> - <d - g, M (g + lambd d)>,   den = <d - g, M (d - g)>,
    beta = select(num, den, cap)  (ALGORITHMS.md §7),
    d' = ((1 - beta) g + (lambd + beta) d) / (1 + lambd),   x' = (1 - mu lr) x - lr d' / P.

The trajectories run the whole optimizer (ALGORITHMS.md §5) on the quadratic of the spec's
vectors, with the displacement gap taken as <g, x_{t-1} - x_t> from the stored previous point.
Run ``python tests/data/make_scale_invariant_vectors.py`` to regenerate the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from mpmath import mp, mpf, sqrt

mp.dps = 50


def dot(a: list, b: list) -> mpf:
    return sum((p * q for p, q in zip(a, b)), mpf(0))


def select(num: mpf, den: mpf, cap: mpf) -> mpf:
    """ALGORITHMS.md §7 for finite values."""
    if den > 0:
        return min(max(num / den, mpf(0)), cap)
    return cap if num > 0 else mpf(0)


def model(x, g, d, p, *, lambd, mu, lr, gap):
    """num and den of the scale-invariant model, for one block."""
    metric = [1 / (pi * (1 + lambd)) for pi in p]
    difference = [di - gi for di, gi in zip(d, g)]
    pulled = [gi + lambd * di for gi, di in zip(g, d)]
    num = (
        gap / lr
        - mu * dot(x, difference)
        - dot(difference, [m * q for m, q in zip(metric, pulled)])
    )
    den = dot(difference, [m * q for m, q in zip(metric, difference)])
    return num, den


def step(x, g, d, p, beta, *, lambd, mu, lr):
    """The new memory and point."""
    new_d = [((1 - beta) * gi + (lambd + beta) * di) / (1 + lambd) for gi, di in zip(g, d)]
    new_x = [(1 - mu * lr) * xi - lr * di / pi for xi, di, pi in zip(x, new_d, p)]
    return new_x, new_d


def floats(values) -> list[float] | float:
    return [float(v) for v in values] if isinstance(values, list) else float(values)


def single_step(name: str, inputs: dict) -> dict:
    m = {
        key: [mpf(v) for v in value] if isinstance(value, list) else mpf(value)
        for key, value in inputs.items()
    }
    num, den = model(
        m["x"], m["g"], m["d"], m["P"], lambd=m["lam"], mu=m["mu"], lr=m["eta"], gap=m["Gamma"]
    )
    beta = select(num, den, m["beta_max"])
    new_x, new_d = step(
        m["x"], m["g"], m["d"], m["P"], beta, lambd=m["lam"], mu=m["mu"], lr=m["eta"]
    )
    expected = dict(num=num, den=den, beta=beta, d_next=new_d, x_next=new_x)
    return dict(
        name=name,
        kind="adamw_step",
        inputs=inputs,
        expected={key: floats(value) for key, value in expected.items()},
    )


def trajectory(name: str, inputs: dict) -> dict:
    """Per-tensor blocks; every step's betas (the first is beta1_max by rule)."""
    a = [[mpf(v) for v in row] for row in inputs["A"]]
    b = [mpf(v) for v in inputs["b"]]
    cap, beta2, eps = mpf(inputs["beta1_max"]), mpf(inputs["beta2"]), mpf(inputs["eps"])
    lambd, mu = mpf(inputs["lam"]), mpf(inputs["wd"])
    z = [mpf(v) for v in inputs["x0"]]
    n = len(z)
    d, v = [mpf(0)] * n, [mpf(0)] * n
    products = [mpf(1)] * len(inputs["sizes"])
    bounds, start = [], 0
    for size in inputs["sizes"]:
        bounds.append((start, start + size))
        start += size
    previous_z, previous_lr = None, None
    betas = []
    for k, lr in enumerate((mpf(value) for value in inputs["lrs"]), start=1):
        g = [dot(row, z) - bi for row, bi in zip(a, b)]
        v = [beta2 * vi + (1 - beta2) * gi * gi for vi, gi in zip(v, g)]
        p = [mpf(0)] * n
        for block, (lo, hi) in enumerate(bounds):
            for i in range(lo, hi):
                p[i] = (1 - cap * products[block]) * (sqrt(v[i] / (1 - beta2**k)) + eps)
        row = []
        for lo, hi in bounds:
            if k == 1:
                row.append(cap)
                continue
            part = slice(lo, hi)
            if inputs["gap"] == "displacement":
                gap = dot(g[part], [zp - zi for zp, zi in zip(previous_z[part], z[part])])
            else:  # compat: (1 + mu lr) prev_lr <g, d / P_t + mu x>
                direction = [di / pi + mu * zi for di, pi, zi in zip(d[part], p[part], z[part])]
                gap = (1 + mu * lr) * previous_lr * dot(g[part], direction)
            num, den = model(z[part], g[part], d[part], p[part], lambd=lambd, mu=mu, lr=lr, gap=gap)
            row.append(select(num, den, cap))
        new_z, new_d = [mpf(0)] * n, [mpf(0)] * n
        for block, (lo, hi) in enumerate(bounds):
            part = slice(lo, hi)
            new_z[part], new_d[part] = step(
                z[part], g[part], d[part], p[part], row[block], lambd=lambd, mu=mu, lr=lr
            )
            products[block] *= row[block]
        previous_z, previous_lr = z, lr
        z, d = new_z, new_d
        betas.append(floats(row))
    return dict(
        name=name,
        kind="adamw_traj",
        inputs=inputs,
        expected=dict(betas=betas, x_final=floats(z), d_final=floats(d)),
    )


STEP = dict(
    g=[0.2, -0.1, 0.05],
    d=[0.15, -0.12, 0.01],
    x=[0.5, -0.3, 1.2],
    P=[0.02, 0.011, 0.004],
    lam=0.1,
    mu=0.1,
    eta=1e-3,
    beta_max=0.89,
)
LARGE_P = dict(
    g=[2.0, -1.0, 0.5],
    d=[1.5, -1.2, 0.8],
    x=[0.5, -0.3, 1.2],
    P=[1.5, 0.8, 3.0],
    lam=0.5,
    mu=0.0,
    eta=0.05,
    beta_max=0.89,
)
QUADRATIC = dict(
    A=[[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]],
    b=[1.0, -1.0, 0.5],
    sizes=[2, 1],
    x0=[1.0, 1.0, 1.0],
    beta1_max=0.89,
    beta2=0.999,
    eps=1e-8,
    lrs=[0.3, 0.3, 0.15, 0.15, 0.6, 0.3, 0.3, 0.3],
)


def main() -> None:
    vectors = [
        single_step("si_interior", {**STEP, "Gamma": -5e-4}),
        single_step("si_clip_max", {**STEP, "Gamma": 1.5e-3}),
        single_step("si_clip_zero", {**STEP, "Gamma": -1.5e-3}),
        single_step("si_large_P", {**LARGE_P, "Gamma": -0.01}),
        trajectory(
            "si_traj_displacement", {**QUADRATIC, "lam": 0.1, "wd": 0.1, "gap": "displacement"}
        ),
        trajectory("si_traj_compat", {**QUADRATIC, "lam": 1.0, "wd": 0.0, "gap": "compat"}),
    ]
    data = dict(
        description=(
            "AM-AdamW with scale_invariant=True (docs/variants.md), computed in 50-digit mpmath "
            "by make_scale_invariant_vectors.py and rounded to float64; compare at 1e-12."
        ),
        vectors=vectors,
    )
    path = Path(__file__).with_name("scale_invariant_vectors.json")
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()

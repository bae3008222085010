"""What every AM optimizer shares: the three-phase step and its one dispatcher
(:mod:`~adamem._core.optimizer`), a group's tensors in a step (:mod:`~adamem._core.batch`),
argument checks, the distributed sums, and tensor helpers of the torch paths.

The math of beta itself is public: :mod:`adamem.beta`.
"""

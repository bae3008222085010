"""The fused kernels, by backend: :mod:`~adamem._kernels.fused` decides whether a group's step
takes them; :mod:`~adamem._kernels.cpu` runs the C sources in ``c/`` (built on first use by
:mod:`~adamem._kernels.build`), :mod:`~adamem._kernels.cuda` the Triton kernels. Both read the
one layout of :mod:`~adamem._kernels.contract`, where each optimizer also declares its
:class:`~adamem._kernels.contract.Kernels`.
"""

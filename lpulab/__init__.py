"""lpulab: a research workbook that checks the claims made about Groq's LPU against NVIDIA GPUs.

The modules, in the order data flows through them::

    units, catalog          data/ -> dataclasses in SI units
    workload, placement     what a model asks of memory and compute, and where it lives
    roofline, perf          how fast a deployment runs it (speed: claim C2)
    bandwidth, speed, cost  the claims (C1; C2; C3 and C4)
    claims                  verdicts
    plots, report           figures, the papermill runner and the reports
    kernels                 a pure-numpy decoder, sharded execution, a host bench

``import lpulab`` is cheap; each module loads on first use (``lpulab.perf``).
"""

import importlib

__version__ = "0.2.0"

__all__ = ["bandwidth", "catalog", "claims", "cost", "kernels", "paths", "perf", "placement", "plots",
           "report", "roofline", "speed", "units", "workload", "__version__"]


def __getattr__(name):
    if name in __all__:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'lpulab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

"""Running notebooks into citable reports: parameters, execution, provenance, HTML, index."""

from . import fmt
from .fmt import show, table
from .params import ParameterError, check_parameters, declared_parameters, validate
from .record import md, record
from .runner import RunResult, run_notebook

__all__ = ["ParameterError", "check_parameters", "declared_parameters", "validate", "md", "record",
           "RunResult", "run_notebook", "fmt", "show", "table"]

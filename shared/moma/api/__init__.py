"""The MoMa Python API: load, predict, train and compose from a notebook or a script.

    from moma import api
    result = api.compose("data.json.gz", ["modules/"], strategy="amc")
    table = api.predict(result.module_path, structures)   # pandas DataFrame

The CLIs (``moma-client train|predict|compose``) and the benchmarks call these same functions;
see ``docs/python.md``.
"""

from moma.api.compose import ComposeHooks, ComposeRequest, compose
from moma.api.predict import Model, load, predict
from moma.api.train import TrainHooks, train
from moma.training.loop import TrainConfig

__all__ = ["ComposeHooks", "ComposeRequest", "Model", "TrainConfig", "TrainHooks", "compose",
           "load", "predict", "train"]

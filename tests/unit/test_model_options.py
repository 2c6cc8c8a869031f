"""The model's options: one dataclass states the defaults, and the notebooks' literal parameter
defaults (papermill needs literals) are the same values."""

from __future__ import annotations

import ast
import dataclasses

import papermill as pm
import pytest
from repo_paths import ROOT

from mnist_lambda.modeling import candidates, training
from mnist_lambda.modeling.options import ModelOptions

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FIELDS = {f.name: f.default for f in dataclasses.fields(ModelOptions)}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_parameters_named_like_an_option_default_to_it(notebook) -> None:
    params = pm.inspect_notebook(str(notebook))
    shared = {name: ast.literal_eval(params[name]["default"]) for name in FIELDS if name in params}
    assert shared == {name: FIELDS[name] for name in shared}


def test_notebook_02_takes_every_option() -> None:
    params = pm.inspect_notebook(str(ROOT / "notebooks" / "02_train_model.ipynb"))
    assert set(FIELDS) <= set(params)


def test_the_models_are_built_from_the_options() -> None:
    options = ModelOptions(n_neighbors=3, pca_components=20, random_state=7)
    assert training.make_baseline(options).n_neighbors == 3
    serving = training.make_serving(options)
    assert serving.named_steps["pca"].n_components == 20
    assert serving.named_steps["pca"].random_state == 7
    candidate = candidates.get_candidate("pca_knn", options)
    assert candidate.options == options
    assert candidate.description.startswith("PCA 20 + distance-weighted 3-NN")

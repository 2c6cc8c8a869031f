"""The tutorial's function, deployed: its task root on the local stack, its SAM project for
``sam build``, and the arguments its stack is started with.

The handler (``app/app.py``) unpickles whatever S3 object a caller names: it is copied into a
temporary folder for a comparison and never into ``lambda_app/``.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import joblib
from sklearn.neighbors import KNeighborsClassifier

from mnist_lambda.image import sam_local
from mnist_lambda.paths import project_root
from mnist_lambda.template import MEMORY_PARAMETER

APP_DIR = Path(__file__).resolve().parent / "app"
"""The tutorial's function: ``app.py``, ``requirements.txt``, ``Dockerfile``, ``.dockerignore``."""
HANDLER = "app.lambda_handler"
MODEL_FILE = "model.joblib"
TASK_ROOT_FILES = ("app.py", "requirements.txt")
IMAGE_CONTEXT = ("Dockerfile", ".dockerignore", *TASK_ROOT_FILES)
TUTORIAL_MEMORY_MB = 5000
"""The SAM machine-learning quick-start templates (``sam init --app-template
ml-apigw-scikit-learn`` and siblings) set ``MemorySize: 5000``; the tutorial's container
deployment starts from one. An assumption, so a comparison also reports cost at our memory."""
NO_STAGE_THROTTLE = ("-P", "ThrottleRateLimit=10000", "-P", "ThrottleBurstLimit=5000")
"""What both sides of a comparison are started with: it measures the functions, not the
stage's 10 requests/s."""


def tutorial_task_root(knn: KNeighborsClassifier, dest: Path) -> Path:
    """``dest`` made the tutorial's image-like task root: its handler, its requirements and
    ``knn`` joblib'd as ``model.joblib``."""
    dest.mkdir(parents=True)
    joblib.dump(knn, dest / MODEL_FILE)
    for name in TASK_ROOT_FILES:
        shutil.copy(APP_DIR / name, dest / name)
    return dest


def tutorial_start_args(memory_mb: int) -> list[str]:
    """``mnist-lambda serve`` arguments of the tutorial's function at ``memory_mb``."""
    return ["--handler", HANDLER, "-P", f"{MEMORY_PARAMETER}={memory_mb}", *NO_STAGE_THROTTLE]


def stage_tutorial_project(dest: Path, model: Path) -> Path:
    """A SAM project in ``dest`` (made anew) for the tutorial's image: the project's template
    and OpenAPI, and ``app/``'s Dockerfile, handler and requirements with ``model`` as
    ``model.joblib``. Its ``DockerTag`` names the model's SHA-256 prefix."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in IMAGE_CONTEXT:
        shutil.copy2(APP_DIR / name, dest / name)
    shutil.copy2(model, dest / MODEL_FILE)
    shutil.copytree(project_root() / "openapi", dest / "openapi")
    digest = hashlib.sha256((dest / MODEL_FILE).read_bytes()).hexdigest()[:12]
    sam_local.write_template(dest, f"tutorial-{digest}")
    return dest

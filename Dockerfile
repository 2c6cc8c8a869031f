# The Lambda function image: AWS's Python base image (runtime interface client included), the
# pinned runtime dependencies and lambda_app/ (handler, mnist_serving, model/). .dockerignore
# reduces the build context to lambda_app/, so nothing of Jupyter, tests or .venv can get in.
#
# Python 3.12, not the project's 3.11: the python:3.11 Lambda image is Amazon Linux 2 (glibc
# 2.26), and numpy >= 2.3 publishes only manylinux_2_28 Linux wheels, so numpy 2.4.6 from
# poetry.lock does not install there; python:3.12 is Amazon Linux 2023 (glibc 2.34). The
# python3.11 runtime is also deprecated (2026-06-30, with Amazon Linux 2). The serving code runs
# on 3.11-3.13 (pyproject's range); tests/unit/test_dockerfile.py checks that every pinned wheel in
# poetry.lock fits this image. For byte-reproducible builds pin the digest too:
#   --build-arg PYTHON_VERSION=3.12@sha256:<digest>
ARG PYTHON_VERSION=3.12
FROM public.ecr.aws/lambda/python:${PYTHON_VERSION}

# Runtime dependencies only, as wheels, straight into the task root, without pip's cache: the
# handler's, and the model's own if it has any (an ONNX model's model-requirements.txt, written by
# the training step: onnxruntime; a .npz model needs nothing more). The [t] glob lets the COPY
# succeed when that file is absent.
COPY lambda_app/requirements.txt lambda_app/model/model-requirements.tx[t] /tmp/
RUN model_requirements=/tmp/model-requirements.txt; \
    [ -f "$model_requirements" ] || model_requirements=/tmp/requirements.txt; \
    pip install --no-cache-dir --disable-pip-version-check --only-binary=:all: \
        --target "${LAMBDA_TASK_ROOT}" -r /tmp/requirements.txt -r "$model_requirements" \
    && rm -f /tmp/requirements.txt /tmp/model-requirements.txt

# The handler, the mnist_serving package and the trained model (lambda_app/model/: model.npz or
# model.onnx, and its manifest.json).
COPY lambda_app/ ${LAMBDA_TASK_ROOT}/

# Lambda runs the code as a non-root user: make it world-readable whatever the build host's
# umask; byte-compile it (the function's filesystem is read-only); and fail the build here,
# not at the first request, if the model is missing or the handler does not import.
WORKDIR ${LAMBDA_TASK_ROOT}
RUN chmod -R a+rX lambda_predict.py mnist_serving model \
    && python -m compileall -q lambda_predict.py mnist_serving \
    && python -c "import lambda_predict"

CMD ["lambda_predict.lambda_handler"]

"""The benchmark: the tutorial's deployment and ours, side by side, in one run.

Both run under the same local stack (moto S3, the Lambda Runtime Interface Emulator, the API
Gateway front) on this machine, on the same MNIST rows, with calls alternating A, B, A, B.
:func:`.run.run_bench` runs it (``mnist-lambda bench``: :mod:`mnist_lambda.commands.bench`); the
tutorial's deployment itself is :mod:`mnist_lambda.tutorial`. See ``docs/performance.md``.
"""

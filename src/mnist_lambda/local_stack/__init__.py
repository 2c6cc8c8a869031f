"""The Docker-free local serverless stack: S3 (moto) + Lambda (aws-lambda-rie) + API Gateway.

This package is the client side (:mod:`.client`): start, find, redeploy and stop a stack, and
reach its S3. The server side (``mnist-lambda serve``) is :mod:`.supervisor`, run as a process.
"""

from mnist_lambda.local_stack.client import *  # noqa: F403
from mnist_lambda.local_stack.client import __all__  # noqa: F401

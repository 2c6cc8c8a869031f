"""mnist-lambda: MNIST from a scikit-learn notebook to an AWS Lambda endpoint, proven locally."""

__version__ = "0.1.0"

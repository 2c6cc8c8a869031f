"""``mnist-lambda tune``: what the function's settings and the traffic cost and allow."""

"""``python -m mnist_lambda.local_stack``: the same as ``mnist-lambda serve``."""

from mnist_lambda.local_stack.supervisor import serve_main

raise SystemExit(serve_main())

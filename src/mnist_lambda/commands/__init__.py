"""The ``mnist-lambda`` subcommands, one module each (``HELP``, ``EXAMPLES``,
``add_arguments(parser)``, ``main(args) -> int``)."""

"""The traffic what-if: a seeded Poisson arrival trace through the local stack, per rate.

``mnist-lambda tune --traffic 2,8 --duration 10`` calls :func:`.run.what_if`, which for each
rate redeploys the stack with N environments (reserved concurrency N), sends the trace of
:mod:`.arrivals` open loop (:mod:`.trace`) and turns what the client saw into the rate's numbers
(:mod:`.summary`, with the queue maths of :mod:`.queueing`); :mod:`.report` draws the table and
the figure.
"""

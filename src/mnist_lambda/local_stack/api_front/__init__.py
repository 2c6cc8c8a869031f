"""An API Gateway REST API in front of the emulated function (Lambda proxy integration).

:mod:`.server` answers HTTP (werkzeug) and dispatches each request: :mod:`.auth` (the method's
``AWS_IAM`` or ``API_KEY`` auth; SigV4 in :mod:`.sigv4`), :mod:`.throttle` (the stage's and
each usage plan's token bucket, a plan's quota), :mod:`.validation` (the OpenAPI request
validator), :mod:`.event` (the REST API payload 1.0 proxy event) and :mod:`.proxy_result` (the
function's answer mapped back). API Gateway's own answers and their order: docs/local-stack.md.
"""

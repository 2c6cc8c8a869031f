"""The tutorial's deployment, reproduced to compare ours against: its model (:mod:`.model`), its
function's files (``app/``: handler, requirements, Dockerfile) and how to serve them on the local
stack or build them with SAM (:mod:`.deployment`). Used by ``bench`` and ``tune``; never shipped.
"""

"""The function's container image with a Docker engine: the base image (AWS's, or a labelled
stand-in), ``docker build`` of the Dockerfile with a trained model, the SAM CLI's own local
commands (``sam build``, ``sam local invoke``, ``sam local start-api``), and what the image holds
beside the local stack's task root."""

"""What training and serving share: the pixel layout and the numpy-only model format.

This package ships inside the Lambda image (it lives in ``lambda_app/``) and is also installed
into the development environment, so the notebook's predictions and the endpoint's come from
the same code and cannot drift.
"""

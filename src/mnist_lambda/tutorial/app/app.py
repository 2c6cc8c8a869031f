"""The tutorial's Lambda handler, reproduced for ``mnist-lambda bench`` and ``tune`` ONLY.
Never deploy it.

It does what the tutorial's function did: import pandas and scikit-learn, ``joblib.load`` a
k-NN model at start-up, download the S3 object the caller names and ``joblib.load`` it (a
pickled pandas DataFrame of float64 pixels), predict, answer a JSON list. Unpickling an object a
caller chose runs code that caller chose: this is why it lives under
``src/mnist_lambda/tutorial/app/`` and is copied into a temporary folder for a comparison, and is
not (and must never be) in ``lambda_app/``.
"""

import json
import os
import tempfile

import boto3
import joblib
import pandas as pd  # noqa: F401  (the tutorial's image imports it; the DataFrame needs it)
import sklearn  # noqa: F401

s3 = boto3.client("s3")
model = joblib.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.joblib"))


def lambda_handler(event, context):
    body = json.loads(event["body"])
    bucket, key = body["bucket"], body["key"]
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "features.joblib")
        s3.download_file(bucket, key, local)
        features = joblib.load(local)
    predictions = model.predict(features)
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps([int(p) for p in predictions]),
    }

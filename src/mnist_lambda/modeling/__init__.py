"""Modelling: MNIST data, the split, training and cross-validation, the serving-model
candidates, ONNX export with its parity proof, what a model adds to the image, figures."""

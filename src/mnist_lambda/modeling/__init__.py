"""Modelling: MNIST data, the split, the model's options, training and cross-validation, the
serving-model candidates (registry, fit and export, comparison), ONNX export with its parity
proof, what a model adds to the image, figures."""

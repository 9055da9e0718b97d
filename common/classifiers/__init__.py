"""NumPy models: perceptron, module-style MLP, fully connected nets, a three-layer convnet, a captioning RNN."""

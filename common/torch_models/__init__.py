"""The course's PyTorch models (the only place torch models live): MLP, reduced VGG, RNN/LSTM, GAN, pretrained CNN."""

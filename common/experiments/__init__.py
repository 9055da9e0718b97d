"""Code that serves one notebook each, named after it: CNN training, palindromes, GANs, network visualisation,
style transfer, captioning features, hyperparameter search and the training-dynamics experiments."""

"""Writing embedding rows in the formats other tools read: TensorBoard's projector (projector),
word2vec text and binary (word2vec, read by gensim), and a .npy matrix with a vocabulary (npy).

Each writer takes a (n, d) float32 matrix and the rows' ids and token bytes, and writes every
file whole or not at all (embscope.atomic). Tokens are written as `keys` describes.
"""

"""Fashion-MNIST: the four IDX files found and verified (:mod:`~stochrelax.data.idx_files`), and the
dataset in memory (:mod:`~stochrelax.data.fashion_mnist`)."""

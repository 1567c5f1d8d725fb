"""Training: the loop and its run directory (:mod:`~stochrelax.training.loop`), clean and adversarial
strategies, training statistics and TensorBoard scalars."""

"""How robust a network is: attack tables and their rows, the adaptive worst case, gradient-masking
checks, clean evaluation, randomized smoothing and certification."""

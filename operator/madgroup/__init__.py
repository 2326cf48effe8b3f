"""The MAD Group control plane: one description of the group, three substrates."""

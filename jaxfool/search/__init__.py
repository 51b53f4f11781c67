"""Search: the MAP-Elites archive and generation, genome encodings, emitters."""

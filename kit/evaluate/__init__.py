"""Evaluation: runner (generate with a run's model, eval loss), responses (rows and responses read
and matched), score (the four objectives' metrics), claims (the hallucination proxy's text rules),
compare (two scorings side by side)."""

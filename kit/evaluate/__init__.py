"""Evaluation: runner (generate with a run's model, eval loss), stopping (a row's generation ends
where its JSON object closes), responses (rows and responses read and matched), facts (what one
response does), score (the four objectives' metrics), claims (the hallucination proxy's text rules),
compare (two scorings side by side)."""

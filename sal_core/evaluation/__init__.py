"""Evaluation: grade answers (grading), estimate accuracy per vote and n (votes, evaluate), pool seeds
(aggregate) and draw the figures (plot). `sal evaluate`, `sal aggregate` and `sal plot` live here."""

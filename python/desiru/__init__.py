"""desiru: save, load and journal compiled LM programs."""

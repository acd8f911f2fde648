"""Scientific papers in, training examples out: readers, preprocessing steps and example formats."""

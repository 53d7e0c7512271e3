"""Programme evaluation: the de-identified export and the suppressed aggregate report, for evaluators."""

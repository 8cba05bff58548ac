"""Alerts as they arrive from a survey: schemas, flat columns, decoding, synthetic streams."""

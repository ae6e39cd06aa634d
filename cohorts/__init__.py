"""Cohorts: the built-in phantom, real-dataset loaders (ACDC, M&Ms), preprocessing, splits and the judge network."""
